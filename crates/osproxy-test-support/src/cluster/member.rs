//! One member of an [`EtcdCluster`](super::EtcdCluster): its addresses and
//! paths, its process (spawned with its flags; start, kill,
//! `SIGSTOP`/`SIGCONT`, restart), health and waiting for it, `etcdctl` aimed
//! at it alone and its [`MemberStatus`].

use std::fmt::Write as _;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use super::config::Config;
use super::etcdctl::{expect_success, parse_status, run, MemberStatus};
use super::process::{etcd_command, health, http_get, log_files, Supervised};
use crate::wait::Deadline;

/// Lines of each log shown in a panic message.
pub(super) const LOG_TAIL_LINES: usize = 40;

/// One member of an [`EtcdCluster`](super::EtcdCluster).
///
/// Fault controls take `&self`, so tests can hold several members (or share
/// the cluster through an `Arc`) while injecting faults.
pub struct EtcdMember {
    pub(super) index: usize,
    pub(super) name: String,
    pub(super) client_port: u16,
    pub(super) peer_port: u16,
    pub(super) metrics_port: u16,
    pub(super) dir: PathBuf,
    pub(super) initial_cluster: String,
    pub(super) config: Arc<Config>,
    /// The process, its pid file `<dir>/etcd.pid` and its fault controls.
    pub(super) process: Supervised,
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

    /// The Go heap the member holds right after a forced garbage collection,
    /// in bytes: `GET /debug/pprof/heap?gc=1` on the client URL (which runs
    /// the collector; the cluster must be built with
    /// [`crate::EtcdClusterBuilder::pprof`], plain HTTP), then
    /// `go_memstats_heap_alloc_bytes` from `/metrics`. Unlike the resident
    /// size, which moves with the Go runtime's collections and its returns of
    /// memory to the OS, this is the live heap: what the member keeps per
    /// watcher shows in it byte for byte. `None` when either read fails.
    pub fn go_heap_after_gc(&self) -> Option<u64> {
        let timeout = Duration::from_secs(10);
        let profile = http_get(self.client_port, "/debug/pprof/heap?gc=1", timeout)?;
        if !profile.starts_with("HTTP/1.1 200") {
            return None;
        }
        let metrics = http_get(self.metrics_port, "/metrics", timeout)?;
        metrics.lines().find_map(|line| {
            let value = line.strip_prefix("go_memstats_heap_alloc_bytes ")?;
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            value.trim().parse::<f64>().ok().map(|v| v as u64)
        })
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

    /// The process id while a process is running (or stopped).
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Whether a process exists for this member (running or `SIGSTOP`ped).
    pub fn is_running(&self) -> bool {
        self.process.is_running()
    }

    /// Kills the process with `SIGKILL` and reaps it. No-op when not running.
    pub fn kill(&self) {
        self.process.kill();
    }

    /// Freezes the process with `SIGSTOP` (it keeps its sockets: clients see
    /// silence) and returns once the kernel reports it stopped.
    pub fn stop(&self) {
        self.process.stop();
    }

    /// Resumes a [`stop`](Self::stop)ped process with `SIGCONT`.
    pub fn cont(&self) {
        self.process.cont();
    }

    /// Starts the process on the existing data dir and ports, without
    /// waiting for health (use when quorum is lost and health cannot come
    /// until more members start). Panics when already running.
    pub fn start(&self) {
        self.process.start(|| self.spawn());
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
    pub(super) fn reset_dir(&self) {
        if self.dir.exists() {
            let _ = fs::remove_dir_all(&self.dir);
        }
        fs::create_dir_all(&self.dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", self.dir.display()));
    }

    /// Spawns etcd for this member with its flags (not waiting for health).
    pub(super) fn spawn(&self) -> Child {
        let config = &self.config;
        let client_url = self.client_url();
        let peer_url = self.peer_url();
        let (stderr, stdout) = log_files(&self.stderr_path());
        let mut cmd = etcd_command(&config.etcd_bin);
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
        if let Some(bytes) = config.max_request_bytes {
            cmd.arg("--max-request-bytes").arg(bytes.to_string());
        }
        if config.pprof {
            cmd.arg("--enable-pprof");
        }
        cmd.stdin(Stdio::null()).stdout(stdout).stderr(stderr);
        cmd.spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", config.etcd_bin.display()))
    }
}

/// Why a set of members did not become healthy ([`wait_healthy`]).
#[derive(Debug)]
pub(super) enum StartError {
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

/// Blocks until every one of `members` reports healthy, or one exits (its
/// exit reaped), or `timeout` passes.
pub(super) fn wait_healthy(members: &[EtcdMember], timeout: Duration) -> Result<(), StartError> {
    let deadline = Deadline::after(timeout);
    let mut healthy = vec![false; members.len()];
    loop {
        for (i, member) in members.iter().enumerate() {
            if healthy[i] {
                continue;
            }
            // Not started (or unknowable): it cannot get healthy below.
            if let Some(status) = member.process.reap_exited() {
                return Err(StartError::Exited {
                    member: member.index,
                    status,
                });
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
