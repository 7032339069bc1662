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

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::cluster::{etcd_command, log_files, EtcdCluster, Supervised, Workspace};
use crate::ports::free_ports;

/// How long a started proxy gets to answer a read.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `etcd grpc-proxy`, killed on drop.
pub struct EtcdProxy {
    /// The executables, the working directory and its watchdog.
    ws: Workspace,
    upstream: Vec<String>,
    port: u16,
    metrics_port: u16,
    /// The process, its pid file `<dir>/proxy/etcd.pid` and its fault
    /// controls.
    process: Supervised,
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
    /// Starts a proxy in front of every member of `cluster`, with the same
    /// `etcd` executable as the members, and waits until a read through it
    /// succeeds.
    pub fn start(cluster: &EtcdCluster) -> EtcdProxy {
        let bins = (
            cluster.etcd_bin().to_path_buf(),
            cluster.etcdctl_bin().to_path_buf(),
        );
        Self::launch_for(cluster.endpoints(), Some(bins))
    }

    /// Starts a proxy in front of exactly `upstream` (`host:port` each), with
    /// the default `etcd` (`OSPROXY_ETCD_BIN_DIR`'s, Debian's, `PATH`'s).
    pub fn start_for(upstream: Vec<String>) -> EtcdProxy {
        Self::launch_for(upstream, None)
    }

    fn launch_for(upstream: Vec<String>, bins: Option<(PathBuf, PathBuf)>) -> EtcdProxy {
        let ws = Workspace::prepare("grpc-proxy", "osproxy-etcd-proxy-", "proxy", bins);
        let ports = free_ports(2);
        let pid_path = ws.dir.path().join("proxy").join("etcd.pid");
        let proxy = EtcdProxy {
            ws,
            upstream,
            port: ports[0],
            metrics_port: ports[1],
            process: Supervised::new("grpc-proxy", pid_path),
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
        self.process.pid()
    }

    /// Kills the process with `SIGKILL` and reaps it. No-op when not running.
    pub fn kill(&self) {
        self.process.kill();
    }

    /// Freezes it with `SIGSTOP` (clients see silence on open connections)
    /// and returns once the kernel reports it stopped.
    pub fn stop(&self) {
        self.process.stop();
    }

    /// Resumes a [`stop`](Self::stop)ped proxy.
    pub fn cont(&self) {
        self.process.cont();
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
        let mut cmd = etcd_command(&self.ws.etcdctl_bin);
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
        self.process.start(|| {
            let (log, log2) = log_files(&self.log_path());
            etcd_command(&self.ws.etcd_bin)
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
                    self.ws.dir.path().join("data").display()
                ))
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log2)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start grpc-proxy: {e}"))
        });
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

    fn log_path(&self) -> PathBuf {
        self.ws.dir.path().join("proxy.log")
    }

    /// Its working directory.
    pub fn dir(&self) -> &Path {
        self.ws.dir.path()
    }
}

impl Drop for EtcdProxy {
    fn drop(&mut self) {
        self.kill();
        if let Some(mut watchdog) = self.ws.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
    }
}
