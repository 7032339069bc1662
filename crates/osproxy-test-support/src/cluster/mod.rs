//! Real etcd clusters on loopback ports.
//!
//! This module holds the cluster itself: [`EtcdClusterBuilder`] and
//! [`EtcdCluster`] (launch, cluster-wide faults, teardown on drop). The rest
//! is split by concern, each using only those listed after it (no circle):
//!
//! * `member`: [`EtcdMember`], one process's addresses, paths, spawn, health
//!   and fault controls (`kill`, `stop`/`cont`, `start`, `restart`) →
//!   `config`, `etcdctl`, `process`.
//! * `config`: the settings the cluster and its members share, and the
//!   `etcdctl` command they imply → `etcdctl`.
//! * `etcdctl`: running `etcdctl` with a bound and parsing its output
//!   ([`MemberStatus`]); a leaf.
//! * `process`: the OS side, shared with [`EtcdProxy`](crate::EtcdProxy):
//!   what a launch needs (binaries, directory, watchdog), an etcd command
//!   with a clean environment, a supervised process's pid file and signals,
//!   `/health` probes, `/proc` process state, the watchdog shell; a leaf.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tempfile::TempDir;

use crate::keys::unique_suffix;
use crate::pki::TestPki;
use crate::ports::free_ports;
use crate::wait::wait_until;

mod config;
mod etcdctl;
mod member;
mod process;

use config::Config;
pub use etcdctl::MemberStatus;
use etcdctl::{expect_success, flag, header_revision, parse_value, run};
pub use member::EtcdMember;
use member::{wait_healthy, StartError, LOG_TAIL_LINES};
use process::keep_requested;
pub use process::KEEP_ENV;
pub(crate) use process::{etcd_command, log_files, Supervised, Workspace};

/// Default bound on "etcd is up and healthy".
const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How many times a launch is retried when a member exits during start-up
/// (typically a port taken between probing and etcd's bind).
const LAUNCH_ATTEMPTS: usize = 4;
/// A key nobody writes, read to learn the current revision.
const PROBE_KEY: &str = "/osproxy-test-support/probe";

/// Configures and launches an [`EtcdCluster`]; see [`EtcdCluster::builder`].
#[derive(Debug, Clone)]
#[must_use = "call .launch() to start the cluster"]
pub struct EtcdClusterBuilder {
    members: usize,
    tls: Option<TestPki>,
    root_password: Option<String>,
    startup_timeout: Duration,
    max_request_bytes: Option<usize>,
    pprof: bool,
    bin_dir: Option<PathBuf>,
}

impl Default for EtcdClusterBuilder {
    fn default() -> Self {
        EtcdClusterBuilder {
            members: 1,
            tls: None,
            root_password: None,
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
            max_request_bytes: None,
            pprof: false,
            bin_dir: None,
        }
    }
}

impl EtcdClusterBuilder {
    /// Number of members (default 1). Panics on 0.
    pub fn members(mut self, n: usize) -> Self {
        assert!(n > 0, "an etcd cluster needs at least one member");
        self.members = n;
        self
    }

    /// Serve client URLs over TLS with `pki`'s server certificate and require
    /// client certificates signed by its CA (`--client-cert-auth`). Peer URLs
    /// stay plain HTTP. Endpoints become `https://127.0.0.1:PORT`.
    pub fn tls(mut self, pki: TestPki) -> Self {
        self.tls = Some(pki);
        self
    }

    /// Enable etcd auth once the cluster is healthy: user `root` with
    /// `root_password` (and role `root`), then `auth enable`. The
    /// [`EtcdCluster::etcdctl`] helpers then pass `--user root:<password>`.
    pub fn auth(mut self, root_password: impl Into<String>) -> Self {
        self.root_password = Some(root_password.into());
        self
    }

    /// Bound on waiting for the cluster (and for restarted members) to become
    /// healthy; default 30 s.
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// The largest request each member accepts (`--max-request-bytes`;
    /// etcd's default is 1.5 MiB), for tests of what a client does when etcd
    /// refuses a value as too large.
    pub fn max_request_bytes(mut self, bytes: usize) -> Self {
        self.max_request_bytes = Some(bytes);
        self
    }

    /// Serve Go's profiler on each member's client URL (`--enable-pprof`),
    /// so a benchmark can force a garbage collection
    /// ([`EtcdMember::go_heap_after_gc`]) before reading the heap.
    pub fn pprof(mut self) -> Self {
        self.pprof = true;
        self
    }

    /// Run the `etcd` and `etcdctl` in `dir` rather than the default ones
    /// (`OSPROXY_ETCD_BIN_DIR`, Debian's, `PATH`'s): for a benchmark that
    /// compares versions in one run. [`EtcdProxy::start`](crate::EtcdProxy::start)
    /// in front of this cluster runs the same `etcd`.
    pub fn etcd_bin_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.bin_dir = Some(dir.into());
        self
    }

    /// Starts the members and blocks until every one reports healthy, then
    /// sets up auth if requested.
    ///
    /// Panics when etcd is not installed (see [`crate::ETCD_NOT_FOUND`]) or
    /// does not come up in time; the message carries the tail of the logs.
    pub fn launch(self) -> EtcdCluster {
        let Workspace {
            etcd_bin,
            etcdctl_bin,
            dir,
            watchdog,
        } = Workspace::prepare(
            "etcd cluster",
            "osproxy-etcd-",
            "member-*",
            self.bin_dir
                .as_deref()
                .map(|dir| crate::binaries::etcd_pair(Some(dir))),
        );
        let config = Arc::new(Config {
            etcd_bin,
            etcdctl_bin,
            tls: self.tls,
            root_password: self.root_password,
            auth_enabled: AtomicBool::new(false),
            startup_timeout: self.startup_timeout,
            max_request_bytes: self.max_request_bytes,
            pprof: self.pprof,
            token: Mutex::new(String::new()),
        });
        // Built before anything is spawned so that a panic below still tears
        // down whatever was started.
        let mut cluster = EtcdCluster {
            members: Vec::new(),
            config,
            dir: Some(dir),
            watchdog,
        };
        let mut failures = String::new();
        for attempt in 1..=LAUNCH_ATTEMPTS {
            cluster.members = cluster.plan_members(self.members);
            *cluster.config.token() = format!("osproxy-test-{}", unique_suffix());
            for member in &cluster.members {
                member.reset_dir();
                member.start();
            }
            match wait_healthy(&cluster.members, cluster.config.startup_timeout) {
                Ok(()) => {
                    failures.clear();
                    break;
                }
                Err(StartError::Exited { member, status }) => {
                    let _ = write!(
                        failures,
                        "\nattempt {attempt}: member {member} exited during start-up ({status}):\n{}",
                        cluster.members[member].log_tail(LOG_TAIL_LINES)
                    );
                    cluster.kill_all();
                }
                Err(StartError::Timeout { unhealthy }) => panic!(
                    "etcd cluster did not become healthy within {:?} (unhealthy members: {unhealthy:?})\n{}",
                    cluster.config.startup_timeout,
                    cluster.log_tails()
                ),
            }
        }
        if !failures.is_empty() {
            panic!("etcd cluster failed to start {LAUNCH_ATTEMPTS} times:{failures}");
        }
        cluster.setup_auth();
        cluster
    }
}

/// A real etcd cluster of local processes, torn down on drop.
///
/// Launch with [`EtcdCluster::single`], [`EtcdCluster::three`] or
/// [`EtcdCluster::builder`]. Every method blocks; see the crate docs.
///
/// Members listen on `127.0.0.1` only: client, peer (plain HTTP) and a
/// separate plain-HTTP metrics URL whose `/health` the harness polls (so
/// health checks work the same with TLS). Election settings are small
/// (`--heartbeat-interval 50 --election-timeout 500`) so failover is quick.
///
/// On drop — also while a test panics — every member is `SIGKILL`ed and reaped
/// and the data directories are removed, unless `OSPROXY_ETCD_KEEP=1` (then
/// their location is printed). A watchdog shell kills the members should the
/// test process die without unwinding.
pub struct EtcdCluster {
    members: Vec<EtcdMember>,
    config: Arc<Config>,
    dir: Option<TempDir>,
    watchdog: Option<Child>,
}

impl std::fmt::Debug for EtcdCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdCluster")
            .field("members", &self.members)
            .field("tls", &self.config.tls.is_some())
            .field("auth", &self.config.root_password.is_some())
            .field("dir", &self.dir.as_ref().map(TempDir::path))
            .finish()
    }
}

impl EtcdCluster {
    /// A builder: one plain member unless configured otherwise.
    pub fn builder() -> EtcdClusterBuilder {
        EtcdClusterBuilder::default()
    }

    /// One plain member (no TLS, no auth), healthy.
    pub fn single() -> EtcdCluster {
        Self::builder().launch()
    }

    /// Three plain members, healthy.
    pub fn three() -> EtcdCluster {
        Self::builder().members(3).launch()
    }

    fn plan_members(&self, n: usize) -> Vec<EtcdMember> {
        let dir = self.dir().to_path_buf();
        let ports = free_ports(3 * n);
        let initial_cluster = (0..n)
            .map(|i| format!("m{i}=http://127.0.0.1:{}", ports[3 * i + 1]))
            .collect::<Vec<_>>()
            .join(",");
        (0..n)
            .map(|i| {
                let name = format!("m{i}");
                let member_dir = dir.join(format!("member-{i}"));
                EtcdMember {
                    index: i,
                    client_port: ports[3 * i],
                    peer_port: ports[3 * i + 1],
                    metrics_port: ports[3 * i + 2],
                    process: Supervised::new(name.clone(), member_dir.join("etcd.pid")),
                    name,
                    dir: member_dir,
                    initial_cluster: initial_cluster.clone(),
                    config: Arc::clone(&self.config),
                }
            })
            .collect()
    }

    /// The directory holding every member's `data` dir and logs.
    pub fn dir(&self) -> &Path {
        match &self.dir {
            Some(dir) => dir.path(),
            None => Path::new("/nonexistent"),
        }
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Always `false`: a cluster has at least one member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Member `i` (0-based). Panics when out of range.
    pub fn member(&self, i: usize) -> &EtcdMember {
        self.members.get(i).unwrap_or_else(|| {
            panic!(
                "etcd cluster has {} members, there is no member {i}",
                self.members.len()
            )
        })
    }

    /// All members.
    pub fn members(&self) -> &[EtcdMember] {
        &self.members
    }

    /// Client endpoints of all members: `"127.0.0.1:PORT"`, or
    /// `"https://127.0.0.1:PORT"` with TLS.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(EtcdMember::endpoint).collect()
    }

    /// Client URLs of all members, always with a scheme.
    pub fn client_urls(&self) -> Vec<String> {
        self.members.iter().map(EtcdMember::client_url).collect()
    }

    /// The `etcd` executable the members run (and a proxy in front of
    /// them, [`EtcdProxy::start`](crate::EtcdProxy::start)).
    pub fn etcd_bin(&self) -> &Path {
        &self.config.etcd_bin
    }

    /// The `etcdctl` executable the cluster's helpers run.
    pub fn etcdctl_bin(&self) -> &Path {
        &self.config.etcdctl_bin
    }

    /// The version the members' `etcd` reports (`3.7.2`), or `unknown`.
    pub fn etcd_version(&self) -> String {
        crate::binaries::etcd_version(&self.config.etcd_bin)
    }

    /// The PKI the cluster serves TLS with, if any.
    pub fn pki(&self) -> Option<&TestPki> {
        self.config.tls.as_ref()
    }

    /// `("root", password)` when auth is enabled.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        match (
            &self.config.root_password,
            self.config.auth_enabled.load(Ordering::SeqCst),
        ) {
            (Some(password), true) => Some(("root", password.as_str())),
            _ => None,
        }
    }

    /// A prepared `etcdctl` command (`ETCDCTL_API=3`) against every member,
    /// with TLS and `--user` flags as needed, `--dial-timeout=2s` and
    /// `--command-timeout=5s`. Append the subcommand; flags given later
    /// override earlier ones (e.g. `--command-timeout=1s`).
    pub fn etcdctl_command(&self) -> Command {
        self.config.etcdctl_command(&self.endpoints())
    }

    /// Like [`etcdctl_command`](Self::etcdctl_command) but aimed at the given
    /// endpoints (e.g. a [`crate::TcpForwarder`] in front of a member; prefix
    /// `https://` when the cluster uses TLS).
    pub fn etcdctl_command_for(&self, endpoints: &[String]) -> Command {
        self.config.etcdctl_command(endpoints)
    }

    /// Runs `etcdctl <args>` against the cluster and returns its output,
    /// whatever the exit status. Panics only when etcdctl cannot run or hangs
    /// for more than 30 s.
    pub fn try_etcdctl(&self, args: &[&str]) -> Output {
        run(self.etcdctl_command(), args)
    }

    /// Runs `etcdctl <args>` against the cluster and returns its stdout;
    /// panics with stderr when it fails. E.g.
    /// `cluster.etcdctl(&["put", &key, "value"])`.
    pub fn etcdctl(&self, args: &[&str]) -> String {
        expect_success(self.try_etcdctl(args), args)
    }

    /// `etcdctl put key value`.
    pub fn put(&self, key: &str, value: &str) {
        self.etcdctl(&["put", key, value]);
    }

    /// The value at `key` (linearizable read), `None` when absent.
    pub fn get(&self, key: &str) -> Option<String> {
        parse_value(&self.etcdctl(&["get", key, "--print-value-only"]))
    }

    /// The cluster's current revision (header of a linearizable read).
    pub fn revision(&self) -> i64 {
        header_revision(&self.etcdctl(&["get", PROBE_KEY, "--write-out=json"]))
    }

    /// Compacts the key-value history up to `revision` and waits for the
    /// physical compaction (`etcdctl compact --physical`).
    pub fn compact(&self, revision: i64) {
        self.etcdctl(&["compact", &revision.to_string(), "--physical"]);
    }

    /// Defragments every member (`etcdctl defrag` over all endpoints).
    pub fn defrag(&self) {
        self.etcdctl(&["defrag", "--command-timeout=30s"]);
    }

    /// Blocks until every member reports healthy (bounded by the startup
    /// timeout); panics with the logs otherwise.
    pub fn wait_healthy(&self) {
        if let Err(e) = wait_healthy(&self.members, self.config.startup_timeout) {
            panic!("etcd cluster is not healthy: {e}\n{}", self.log_tails());
        }
    }

    /// Kills every member (`SIGKILL`, reaped). Data is kept for
    /// [`start_all`](Self::start_all).
    pub fn stop_all(&self) {
        self.kill_all();
    }

    /// Starts every member that is not running, on the same data and ports,
    /// and waits until the whole cluster is healthy.
    pub fn start_all(&self) {
        for member in &self.members {
            if !member.is_running() {
                member.start();
            }
        }
        self.wait_healthy();
    }

    /// For a single-member cluster: kill it, wipe its data and start a brand
    /// new cluster (new token, hence new cluster and member ids) on the same
    /// ports. The revision goes back to 1. Auth, if configured, is set up
    /// again. Panics for multi-member clusters.
    pub fn restart_empty(&self) {
        assert!(
            self.members.len() == 1,
            "restart_empty is only supported for single-member clusters (this one has {})",
            self.members.len()
        );
        let member = &self.members[0];
        member.kill();
        let data = member.data_dir();
        if data.exists() {
            fs::remove_dir_all(&data)
                .unwrap_or_else(|e| panic!("cannot wipe {}: {e}", data.display()));
        }
        *self.config.token() = format!("osproxy-test-{}", unique_suffix());
        self.config.auth_enabled.store(false, Ordering::SeqCst);
        member.start();
        member.wait_healthy();
        self.setup_auth();
    }

    /// The tail of every member's logs, for failure messages.
    pub fn log_tails(&self) -> String {
        self.members
            .iter()
            .map(|m| m.log_tail(LOG_TAIL_LINES))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn kill_all(&self) {
        for member in &self.members {
            member.kill();
        }
    }

    fn setup_auth(&self) {
        let Some(password) = &self.config.root_password else {
            return;
        };
        self.etcdctl(&["user", "add", &format!("root:{password}")]);
        self.etcdctl(&["user", "grant-role", "root", "root"]);
        self.etcdctl(&["auth", "enable"]);
        self.config.auth_enabled.store(true, Ordering::SeqCst);
        // Every member must have applied `auth enable` before tests rely on
        // it: an unknown user must be refused and root accepted everywhere.
        // With TLS the client certificate's CN also authenticates, so the
        // unknown user presents a certificate of its own.
        let stranger = self
            .config
            .tls
            .as_ref()
            .map(|pki| pki.issue_client_cert("osproxy-stranger"));
        for member in &self.members {
            wait_until(
                self.config.startup_timeout,
                &format!("member {} enforces auth", member.name),
                || {
                    let mut anonymous = member.etcdctl_command();
                    anonymous.arg("--user=");
                    if let Some(cert) = &stranger {
                        anonymous.arg(flag("--cert=", cert.cert_path.as_os_str()));
                        anonymous.arg(flag("--key=", cert.key_path.as_os_str()));
                    }
                    !run(anonymous, &["get", PROBE_KEY]).status.success()
                        && member.try_etcdctl(&["get", PROBE_KEY]).status.success()
                },
            );
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for member in &self.members {
            member.kill();
        }
        if let Some(mut watchdog) = self.watchdog.take() {
            // Killed before its stdin closes, so it never acts.
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        if let Some(dir) = self.dir.take() {
            if keep_requested() {
                let path = dir.keep();
                eprintln!(
                    "{KEEP_ENV}=1: keeping etcd data and logs in {}",
                    path.display()
                );
            } else {
                let _ = dir.close();
            }
        }
    }
}
