//! Real etcd clusters on loopback ports.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use nix::sys::signal::{kill as send_signal, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::binaries;
use crate::pki::TestPki;
use crate::ports::free_ports;
use crate::wait::{wait_until, Deadline};
use crate::{unique_suffix, KEEP_ENV};

/// Default bound on "etcd is up and healthy".
const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on one `etcdctl` invocation (its own timeouts are shorter).
const ETCDCTL_TIMEOUT: Duration = Duration::from_secs(30);
/// How many times a launch is retried when a member exits during start-up
/// (typically a port taken between probing and etcd's bind).
const LAUNCH_ATTEMPTS: usize = 4;
/// Lines of each log shown in a panic message.
const LOG_TAIL_LINES: usize = 40;
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
}

impl Default for EtcdClusterBuilder {
    fn default() -> Self {
        EtcdClusterBuilder {
            members: 1,
            tls: None,
            root_password: None,
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
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

    /// Starts the members and blocks until every one reports healthy, then
    /// sets up auth if requested.
    ///
    /// Panics when etcd is not installed (see [`crate::ETCD_NOT_FOUND`]) or
    /// does not come up in time; the message carries the tail of the logs.
    pub fn launch(self) -> EtcdCluster {
        let etcd_bin = binaries::require("etcd");
        binaries::announce(&etcd_bin);
        let etcdctl_bin = binaries::require("etcdctl");
        let dir = tempfile::Builder::new()
            .prefix("osproxy-etcd-")
            .tempdir()
            .unwrap_or_else(|e| panic!("etcd cluster: cannot create a temporary directory: {e}"));
        let watchdog = spawn_watchdog(dir.path(), "member-*");
        let config = Arc::new(Config {
            etcd_bin,
            etcdctl_bin,
            tls: self.tls,
            root_password: self.root_password,
            auth_enabled: AtomicBool::new(false),
            startup_timeout: self.startup_timeout,
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

/// Settings shared by the cluster and its members.
struct Config {
    etcd_bin: PathBuf,
    etcdctl_bin: PathBuf,
    tls: Option<TestPki>,
    root_password: Option<String>,
    /// Set once `auth enable` went through; etcdctl then sends `--user`.
    auth_enabled: AtomicBool,
    startup_timeout: Duration,
    /// `--initial-cluster-token` of the current incarnation.
    token: Mutex<String>,
}

impl Config {
    fn token(&self) -> MutexGuard<'_, String> {
        self.token.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// An `etcdctl` command (API v3) aimed at `endpoints`, with the TLS and
    /// auth flags this cluster needs.
    fn etcdctl_command(&self, endpoints: &[String]) -> Command {
        let mut cmd = Command::new(&self.etcdctl_bin);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("ETCDCTL_") {
                cmd.env_remove(&name);
            }
        }
        cmd.env("ETCDCTL_API", "3");
        cmd.arg(format!("--endpoints={}", endpoints.join(",")));
        cmd.arg("--dial-timeout=2s").arg("--command-timeout=5s");
        if let Some(pki) = &self.tls {
            cmd.arg(flag("--cacert=", pki.ca_path().as_os_str()));
            cmd.arg(flag("--cert=", pki.client_cert_path().as_os_str()));
            cmd.arg(flag("--key=", pki.client_key_path().as_os_str()));
        }
        if let (true, Some(password)) = (
            self.auth_enabled.load(Ordering::SeqCst),
            &self.root_password,
        ) {
            cmd.arg(format!("--user=root:{password}"));
        }
        cmd
    }
}

fn flag(name: &str, value: &OsStr) -> std::ffi::OsString {
    let mut s = std::ffi::OsString::from(name);
    s.push(value);
    s
}

fn keep_requested() -> bool {
    std::env::var(KEEP_ENV).is_ok_and(|v| v == "1")
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
            .map(|i| EtcdMember {
                index: i,
                name: format!("m{i}"),
                client_port: ports[3 * i],
                peer_port: ports[3 * i + 1],
                metrics_port: ports[3 * i + 2],
                dir: dir.join(format!("member-{i}")),
                initial_cluster: initial_cluster.clone(),
                config: Arc::clone(&self.config),
                child: Mutex::new(None),
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

/// One member of an [`EtcdCluster`].
///
/// Fault controls take `&self`, so tests can hold several members (or share
/// the cluster through an `Arc`) while injecting faults.
pub struct EtcdMember {
    index: usize,
    name: String,
    client_port: u16,
    peer_port: u16,
    metrics_port: u16,
    dir: PathBuf,
    initial_cluster: String,
    config: Arc<Config>,
    child: Mutex<Option<Child>>,
}

impl std::fmt::Debug for EtcdMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdMember")
            .field("name", &self.name)
            .field("client_url", &self.client_url())
            .field("peer_port", &self.peer_port)
            .field("metrics_port", &self.metrics_port)
            .field("pid", &self.pid())
            .finish()
    }
}

/// A member's view of itself, from `etcdctl endpoint status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatus {
    /// The cluster id (changes with [`EtcdCluster::restart_empty`]).
    pub cluster_id: u64,
    /// This member's id.
    pub member_id: u64,
    /// The member's current revision.
    pub revision: i64,
    /// The raft term.
    pub raft_term: u64,
    /// The id of the leader this member knows of.
    pub leader: u64,
    /// The etcd server version, e.g. `3.4.23`.
    pub version: String,
}

impl MemberStatus {
    /// Whether this member is the leader.
    pub fn is_leader(&self) -> bool {
        self.leader == self.member_id
    }
}

impl EtcdMember {
    /// Position in the cluster (0-based).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The etcd member name (`m0`, `m1`, ...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Client endpoint: `"127.0.0.1:PORT"`, or `"https://127.0.0.1:PORT"`
    /// with TLS.
    pub fn endpoint(&self) -> String {
        match self.config.tls {
            Some(_) => self.client_url(),
            None => format!("127.0.0.1:{}", self.client_port),
        }
    }

    /// Client URL with scheme: `http://127.0.0.1:PORT` or `https://...`.
    pub fn client_url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.config.scheme(), self.client_port)
    }

    /// The client socket address (e.g. to put a [`crate::TcpForwarder`] in
    /// front of it).
    pub fn client_addr(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.client_port))
    }

    /// The peer URL (plain HTTP).
    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    /// The plain-HTTP metrics URL, serving `/health` and `/metrics` even when
    /// clients need TLS.
    pub fn metrics_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.metrics_port)
    }

    /// The etcd `--data-dir`.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The zap log file (`--log-outputs`).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("etcd.log")
    }

    /// Where the process's stdout and stderr go (start-up errors, and etcd
    /// 3.4's remaining capnslog lines).
    pub fn stderr_path(&self) -> PathBuf {
        self.dir.join("etcd.stderr")
    }

    fn pid_path(&self) -> PathBuf {
        self.dir.join("etcd.pid")
    }

    fn child(&self) -> MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The process id while a process is running (or stopped).
    pub fn pid(&self) -> Option<u32> {
        self.child().as_ref().map(Child::id)
    }

    /// Whether a process exists for this member (running or `SIGSTOP`ped).
    pub fn is_running(&self) -> bool {
        let mut child = self.child();
        match child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(_) => {
                // Exited on its own: reap it.
                *child = None;
                let _ = fs::remove_file(self.pid_path());
                false
            }
            None => false,
        }
    }

    /// Kills the process with `SIGKILL` and reaps it. No-op when not running.
    pub fn kill(&self) {
        let mut child = self.child();
        if let Some(mut process) = child.take() {
            // Remove the pid file first so the watchdog never kills a reused pid.
            let _ = fs::remove_file(self.pid_path());
            let _ = process.kill();
            let _ = process.wait();
        }
    }

    /// Freezes the process with `SIGSTOP` (it keeps its sockets: clients see
    /// silence) and returns once the kernel reports it stopped.
    pub fn stop(&self) {
        let pid = self.signal(Signal::SIGSTOP);
        wait_until(
            Duration::from_secs(5),
            &format!("{} is stopped", self.name),
            || process_state(pid) == Some('T'),
        );
    }

    /// Resumes a [`stop`](Self::stop)ped process with `SIGCONT`.
    pub fn cont(&self) {
        let pid = self.signal(Signal::SIGCONT);
        wait_until(
            Duration::from_secs(5),
            &format!("{} is resumed", self.name),
            || process_state(pid) != Some('T'),
        );
    }

    fn signal(&self, signal: Signal) -> u32 {
        let pid = self
            .pid()
            .unwrap_or_else(|| panic!("{}: cannot send {signal}: not running", self.name));
        let raw = i32::try_from(pid).unwrap_or_else(|_| panic!("pid {pid} out of range"));
        send_signal(Pid::from_raw(raw), signal)
            .unwrap_or_else(|e| panic!("{}: cannot send {signal} to {pid}: {e}", self.name));
        pid
    }

    /// Starts the process on the existing data dir and ports, without
    /// waiting for health (use when quorum is lost and health cannot come
    /// until more members start). Panics when already running.
    pub fn start(&self) {
        let mut child = self.child();
        if let Some(process) = child.as_mut() {
            if matches!(process.try_wait(), Ok(None)) {
                panic!("{}: already running (pid {})", self.name, process.id());
            }
        }
        let process = self.spawn();
        let _ = fs::write(self.pid_path(), process.id().to_string());
        *child = Some(process);
    }

    /// Kills the process if running, starts it again on the same data dir
    /// and ports, and waits until it is healthy (which needs a quorum).
    pub fn restart(&self) {
        self.kill();
        self.start();
        self.wait_healthy();
    }

    /// Whether `/health` on the metrics URL says `true` right now (a leader
    /// is known and a quorum read succeeds).
    pub fn is_healthy(&self) -> bool {
        health(self.metrics_port)
    }

    /// Blocks until [`is_healthy`](Self::is_healthy), bounded by the startup
    /// timeout; panics with this member's log tail otherwise.
    pub fn wait_healthy(&self) {
        if let Err(e) = wait_healthy(std::slice::from_ref(self), self.config.startup_timeout) {
            panic!(
                "etcd member {} is not healthy: {e}\n{}",
                self.name,
                self.log_tail(LOG_TAIL_LINES)
            );
        }
    }

    /// A prepared `etcdctl` command aimed at this member only.
    pub fn etcdctl_command(&self) -> Command {
        self.config.etcdctl_command(&[self.endpoint()])
    }

    /// Runs `etcdctl <args>` against this member only; returns the output
    /// whatever the exit status.
    pub fn try_etcdctl(&self, args: &[&str]) -> Output {
        run(self.etcdctl_command(), args)
    }

    /// Runs `etcdctl <args>` against this member only and returns stdout;
    /// panics with stderr on failure.
    pub fn etcdctl(&self, args: &[&str]) -> String {
        expect_success(self.try_etcdctl(args), args)
    }

    /// `etcdctl endpoint status` for this member.
    pub fn status(&self) -> MemberStatus {
        parse_status(&self.etcdctl(&["endpoint", "status", "--write-out=json"]))
    }

    /// The last `lines` lines of this member's log and stderr files.
    pub fn log_tail(&self, lines: usize) -> String {
        let mut out = format!(
            "---- etcd member {} ({}) ----",
            self.name,
            self.dir.display()
        );
        for path in [self.log_path(), self.stderr_path()] {
            let text = fs::read(&path).map(|b| String::from_utf8_lossy(&b).into_owned());
            let _ = write!(out, "\n[{}]", path.display());
            match text {
                Ok(text) => {
                    // etcd 3.4 logs every failed `/health` probe (ours, while
                    // it starts) on stderr; they would drown the real cause.
                    let (probes, all): (Vec<&str>, Vec<&str>) =
                        text.lines().partition(|l| l.contains("/health error"));
                    if !probes.is_empty() {
                        let _ = write!(
                            out,
                            " ({} failed /health probe lines omitted)",
                            probes.len()
                        );
                    }
                    for line in &all[all.len().saturating_sub(lines)..] {
                        let _ = write!(out, "\n{line}");
                    }
                }
                Err(e) => {
                    let _ = write!(out, " unreadable: {e}");
                }
            }
        }
        out
    }

    /// Empties the member directory (data, logs) for a fresh start.
    fn reset_dir(&self) {
        if self.dir.exists() {
            let _ = fs::remove_dir_all(&self.dir);
        }
        fs::create_dir_all(&self.dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", self.dir.display()));
    }

    fn spawn(&self) -> Child {
        let config = &self.config;
        let client_url = self.client_url();
        let peer_url = self.peer_url();
        let stderr = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.stderr_path())
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", self.stderr_path().display()));
        let stdout = stderr
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot clone a file handle: {e}"));
        let mut cmd = Command::new(&config.etcd_bin);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("ETCD") {
                cmd.env_remove(&name);
            }
        }
        cmd.arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--listen-client-urls")
            .arg(&client_url)
            .arg("--advertise-client-urls")
            .arg(&client_url)
            .arg("--listen-peer-urls")
            .arg(&peer_url)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer_url)
            .arg("--listen-metrics-urls")
            .arg(self.metrics_url())
            .arg("--initial-cluster")
            .arg(&self.initial_cluster)
            .arg("--initial-cluster-state")
            .arg("new")
            .arg("--initial-cluster-token")
            .arg(config.token().as_str())
            .arg("--heartbeat-interval")
            .arg("50")
            .arg("--election-timeout")
            .arg("500")
            .arg("--logger")
            .arg("zap")
            .arg("--log-level")
            .arg("warn")
            .arg("--log-outputs")
            .arg(self.log_path());
        if let Some(pki) = &config.tls {
            cmd.arg("--cert-file")
                .arg(pki.server_cert_path())
                .arg("--key-file")
                .arg(pki.server_key_path())
                .arg("--trusted-ca-file")
                .arg(pki.ca_path())
                .arg("--client-cert-auth");
        }
        cmd.stdin(Stdio::null()).stdout(stdout).stderr(stderr);
        cmd.spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", config.etcd_bin.display()))
    }
}

/// Why a set of members did not become healthy.
#[derive(Debug)]
enum StartError {
    Exited { member: usize, status: ExitStatus },
    Timeout { unhealthy: Vec<String> },
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Exited { member, status } => write!(f, "member {member} exited ({status})"),
            StartError::Timeout { unhealthy } => write!(f, "timed out; unhealthy: {unhealthy:?}"),
        }
    }
}

fn wait_healthy(members: &[EtcdMember], timeout: Duration) -> Result<(), StartError> {
    let deadline = Deadline::after(timeout);
    let mut healthy = vec![false; members.len()];
    loop {
        for (i, member) in members.iter().enumerate() {
            if healthy[i] {
                continue;
            }
            {
                let mut child = member.child();
                match child.as_mut().map(Child::try_wait) {
                    Some(Ok(Some(status))) => {
                        *child = None;
                        let _ = fs::remove_file(member.pid_path());
                        return Err(StartError::Exited {
                            member: member.index,
                            status,
                        });
                    }
                    Some(Ok(None)) => {}
                    Some(Err(_)) | None => {
                        // Not started (or unknowable): cannot get healthy.
                    }
                }
            }
            healthy[i] = member.is_healthy();
        }
        if healthy.iter().all(|h| *h) {
            return Ok(());
        }
        if deadline.expired() {
            let unhealthy = members
                .iter()
                .zip(&healthy)
                .filter(|(_, h)| !**h)
                .map(|(m, _)| m.name.clone())
                .collect();
            return Err(StartError::Timeout { unhealthy });
        }
        std::thread::sleep(Duration::from_millis(25).min(deadline.remaining()));
    }
}

/// `GET /health` over plain HTTP/1.1 on the metrics port.
fn health(metrics_port: u16) -> bool {
    let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, metrics_port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    // etcd's own health check allows its quorum read one second.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let request = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response);
    response.starts_with("HTTP/1.1 200") && response.contains(r#""health":"true""#)
}

/// The state letter from `/proc/<pid>/stat` (`R`, `S`, `T`, ...).
pub(crate) fn process_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: the state follows
    // the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    after.trim_start().chars().next()
}

/// Runs `cmd args...` with a 30 s bound, capturing output.
fn run(mut cmd: Command, args: &[&str]) -> Output {
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run etcdctl {args:?}: {e}"));
    let stdout = child.stdout.take().map(read_in_background);
    let stderr = child.stderr.take().map(read_in_background);
    let deadline = Deadline::after(ETCDCTL_TIMEOUT);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if deadline.expired() => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("etcdctl {args:?} did not finish within {ETCDCTL_TIMEOUT:?}");
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("cannot wait for etcdctl {args:?}: {e}"),
        }
    };
    let join = |h: Option<std::thread::JoinHandle<Vec<u8>>>| {
        h.map(|h| h.join().unwrap_or_default()).unwrap_or_default()
    };
    Output {
        status,
        stdout: join(stdout),
        stderr: join(stderr),
    }
}

fn read_in_background(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

fn expect_success(out: Output, args: &[&str]) -> String {
    if !out.status.success() {
        panic!(
            "etcdctl {args:?} failed ({}):\nstderr: {}\nstdout: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end(),
            String::from_utf8_lossy(&out.stdout).trim_end()
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `get --print-value-only` prints the value plus a newline, or nothing.
fn parse_value(stdout: &str) -> Option<String> {
    if stdout.is_empty() {
        return None;
    }
    Some(stdout.strip_suffix('\n').unwrap_or(stdout).to_owned())
}

fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("etcdctl printed invalid JSON ({e}): {stdout}"))
}

fn header_revision(stdout: &str) -> i64 {
    let v = json(stdout);
    v["header"]["revision"]
        .as_i64()
        .unwrap_or_else(|| panic!("no header.revision in etcdctl output: {stdout}"))
}

fn parse_status(stdout: &str) -> MemberStatus {
    let v = json(stdout);
    let status = &v[0]["Status"];
    let header = &status["header"];
    let u = |x: &serde_json::Value, what: &str| {
        x.as_u64()
            .unwrap_or_else(|| panic!("no {what} in etcdctl output: {stdout}"))
    };
    MemberStatus {
        cluster_id: u(&header["cluster_id"], "cluster_id"),
        member_id: u(&header["member_id"], "member_id"),
        revision: header["revision"]
            .as_i64()
            .unwrap_or_else(|| panic!("no revision in etcdctl output: {stdout}")),
        raft_term: u(&header["raft_term"], "raft_term"),
        leader: u(&status["leader"], "leader"),
        version: status["version"].as_str().unwrap_or_default().to_owned(),
    }
}

/// A shell that, when its stdin reaches EOF because this process died without
/// unwinding, SIGKILLs every pid still listed in `<dir>/<pid_glob>/etcd.pid`
/// and removes `<dir>` (unless keeping). Best effort: without it a test
/// binary killed hard would orphan its etcds. A normal drop SIGKILLs the
/// watchdog first, so it does nothing then.
pub(crate) fn spawn_watchdog(dir: &Path, pid_glob: &str) -> Option<Child> {
    const SCRIPT: &str = r#"read _ignored; for f in "$0"/$2/etcd.pid; do [ -f "$f" ] && kill -9 "$(cat "$f")"; done 2>/dev/null; [ "$1" = 1 ] || rm -rf "$0"; exit 0"#;
    let keep = if keep_requested() { "1" } else { "0" };
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(SCRIPT)
        .arg(dir)
        .arg(keep)
        .arg(pid_glob)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    // The write end of its stdin stays open for as long as the cluster lives.
    if child.stdin.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    }
    Some(child)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_values_and_json() {
        assert_eq!(parse_value(""), None);
        assert_eq!(parse_value("\n").as_deref(), Some(""));
        assert_eq!(parse_value("v1\n").as_deref(), Some("v1"));
        let get = r#"{"header":{"cluster_id":15534692384254201323,"member_id":1381540707029590151,"revision":2,"raft_term":2}}"#;
        assert_eq!(header_revision(get), 2);
        let status = r#"[{"Endpoint":"127.0.0.1:23790","Status":{"header":{"cluster_id":15534692384254201323,"member_id":1381540707029590151,"revision":2,"raft_term":2},"version":"3.4.23","dbSize":20480,"leader":1381540707029590151,"raftIndex":14,"raftTerm":2,"raftAppliedIndex":14,"dbSizeInUse":20480}}]"#;
        let s = parse_status(status);
        assert_eq!(s.cluster_id, 15534692384254201323);
        assert_eq!(s.revision, 2);
        assert!(s.is_leader());
        assert_eq!(s.version, "3.4.23");
    }

    #[test]
    fn reads_process_state() {
        let own = process_state(std::process::id());
        assert!(matches!(own, Some('R' | 'S')), "{own:?}");
        assert_eq!(process_state(u32::MAX), None);
    }
}
