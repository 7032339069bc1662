//! One member of an [`EtcdCluster`](super::EtcdCluster): its addresses and
//! paths, its process (start, kill, `SIGSTOP`/`SIGCONT`, restart), health,
//! `etcdctl` aimed at it alone and its [`MemberStatus`].

use std::fmt::Write as _;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::process::{Child, Command, Output};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use nix::sys::signal::{kill as send_signal, Signal};
use nix::unistd::Pid;

use super::etcdctl::{expect_success, parse_status, run};
use super::process::{health, process_state, wait_healthy};
use super::{Config, LOG_TAIL_LINES};
use crate::wait::wait_until;

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
    pub(super) child: Mutex<Option<Child>>,
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
    /// The cluster id (changes with
    /// [`EtcdCluster::restart_empty`](super::EtcdCluster::restart_empty)).
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

    pub(super) fn pid_path(&self) -> PathBuf {
        self.dir.join("etcd.pid")
    }

    pub(super) fn child(&self) -> MutexGuard<'_, Option<Child>> {
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
    pub(super) fn reset_dir(&self) {
        if self.dir.exists() {
            let _ = fs::remove_dir_all(&self.dir);
        }
        fs::create_dir_all(&self.dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", self.dir.display()));
    }
}
