//! etcd's gRPC proxy (`etcd grpc-proxy start`), the watch fan-out tier users
//! put in front of a cluster (SPEC §5.12): it coalesces identical watches
//! into one server watcher and does not answer watch progress requests
//! (etcd-io/etcd#19710).
//!
//! [`EtcdProxy`] runs one in front of a cluster's members on a free loopback
//! port, with the members' fault controls (kill, `SIGSTOP`/`SIGCONT`,
//! restart on the same port). Plain HTTP only (the clusters with TLS or auth
//! are tested directly). It is killed on drop; a watchdog kills it if the
//! test process dies without unwinding.

use std::fs::{self, OpenOptions};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use nix::sys::signal::{kill as send_signal, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::binaries;
use crate::cluster::{process_state, spawn_watchdog, EtcdCluster};
use crate::ports::free_ports;
use crate::wait::wait_until;

/// How long a started proxy gets to answer a read.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `etcd grpc-proxy`, killed on drop.
pub struct EtcdProxy {
    etcd_bin: PathBuf,
    etcdctl_bin: PathBuf,
    upstream: Vec<String>,
    port: u16,
    metrics_port: u16,
    dir: TempDir,
    child: Mutex<Option<Child>>,
    watchdog: Option<Child>,
}

impl std::fmt::Debug for EtcdProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdProxy")
            .field("endpoint", &self.endpoint())
            .field("upstream", &self.upstream)
            .field("pid", &self.pid())
            .finish_non_exhaustive()
    }
}

impl EtcdProxy {
    /// Starts a proxy in front of every member of `cluster` and waits until
    /// a read through it succeeds.
    pub fn start(cluster: &EtcdCluster) -> EtcdProxy {
        Self::start_for(cluster.endpoints())
    }

    /// Starts a proxy in front of exactly `upstream` (`host:port` each).
    pub fn start_for(upstream: Vec<String>) -> EtcdProxy {
        let etcd_bin = binaries::require("etcd");
        binaries::announce(&etcd_bin);
        let etcdctl_bin = binaries::require("etcdctl");
        let dir = tempfile::Builder::new()
            .prefix("osproxy-etcd-proxy-")
            .tempdir()
            .unwrap_or_else(|e| panic!("grpc-proxy: cannot create a temporary directory: {e}"));
        let watchdog = spawn_watchdog(dir.path(), "proxy");
        let ports = free_ports(2);
        let proxy = EtcdProxy {
            etcd_bin,
            etcdctl_bin,
            upstream,
            port: ports[0],
            metrics_port: ports[1],
            dir,
            child: Mutex::new(None),
            watchdog,
        };
        proxy.launch();
        proxy
    }

    /// `127.0.0.1:<port>`, as the stores take endpoints.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Its listening address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The proxy's Prometheus endpoint.
    pub fn metrics_url(&self) -> String {
        format!("http://127.0.0.1:{}/metrics", self.metrics_port)
    }

    /// The members it forwards to.
    pub fn upstream(&self) -> &[String] {
        &self.upstream
    }

    /// The process id while it runs (or is stopped).
    pub fn pid(&self) -> Option<u32> {
        self.child().as_ref().map(Child::id)
    }

    /// Kills the process with `SIGKILL` and reaps it. No-op when not running.
    pub fn kill(&self) {
        let mut child = self.child();
        if let Some(mut process) = child.take() {
            // The pid file goes first so the watchdog never kills a reused pid.
            let _ = fs::remove_file(self.pid_path());
            let _ = process.kill();
            let _ = process.wait();
        }
    }

    /// Freezes it with `SIGSTOP` (clients see silence on open connections)
    /// and returns once the kernel reports it stopped.
    pub fn stop(&self) {
        let pid = self.signal(Signal::SIGSTOP);
        wait_until(Duration::from_secs(5), "grpc-proxy is stopped", || {
            process_state(pid) == Some('T')
        });
    }

    /// Resumes a [`stop`](Self::stop)ped proxy.
    pub fn cont(&self) {
        let pid = self.signal(Signal::SIGCONT);
        wait_until(Duration::from_secs(5), "grpc-proxy is resumed", || {
            process_state(pid) != Some('T')
        });
    }

    /// Kills it if running and starts it again on the same port, waiting
    /// until a read through it succeeds.
    pub fn restart(&self) {
        self.kill();
        self.launch();
    }

    /// Whether a read through the proxy succeeds right now.
    pub fn answers(&self) -> bool {
        self.etcdctl_command()
            .args(["get", "--command-timeout=2s", "osproxy-proxy-probe"])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// An `etcdctl` command aimed at the proxy.
    pub fn etcdctl_command(&self) -> Command {
        let mut cmd = Command::new(&self.etcdctl_bin);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("ETCD") {
                cmd.env_remove(&name);
            }
        }
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint()));
        cmd
    }

    /// The tail of its log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn launch(&self) {
        let mut child = self.child();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", self.log_path().display()));
        let log2 = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot clone a file handle: {e}"));
        let mut cmd = Command::new(&self.etcd_bin);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("ETCD") {
                cmd.env_remove(&name);
            }
        }
        let process = cmd
            .arg("grpc-proxy")
            .arg("start")
            .arg(format!("--endpoints={}", self.upstream.join(",")))
            .arg(format!("--listen-addr={}", self.endpoint()))
            .arg(format!("--advertise-client-url={}", self.endpoint()))
            .arg(format!(
                "--metrics-addr=http://127.0.0.1:{}",
                self.metrics_port
            ))
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join("data").display()
            ))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start grpc-proxy: {e}"));
        fs::create_dir_all(self.dir.path().join("proxy"))
            .unwrap_or_else(|e| panic!("cannot create the pid dir: {e}"));
        let _ = fs::write(self.pid_path(), process.id().to_string());
        *child = Some(process);
        drop(child);
        let ready = crate::wait::Deadline::after(READY_TIMEOUT);
        while !self.answers() {
            if ready.expired() {
                panic!(
                    "grpc-proxy on {} did not answer within {READY_TIMEOUT:?}:\n{}",
                    self.endpoint(),
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn child(&self) -> MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pid_path(&self) -> PathBuf {
        self.dir.path().join("proxy").join("etcd.pid")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("proxy.log")
    }

    fn signal(&self, signal: Signal) -> u32 {
        let pid = self
            .pid()
            .unwrap_or_else(|| panic!("grpc-proxy: cannot send {signal}: not running"));
        let raw = i32::try_from(pid).unwrap_or_else(|_| panic!("pid {pid} out of range"));
        send_signal(Pid::from_raw(raw), signal)
            .unwrap_or_else(|e| panic!("grpc-proxy: cannot send {signal} to {pid}: {e}"));
        pid
    }

    /// Its working directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for EtcdProxy {
    fn drop(&mut self) {
        self.kill();
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
    }
}
