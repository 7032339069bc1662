//! [`LocalEtcd`]: a throwaway single-member etcd for `demo` — free loopback
//! ports, a temporary data directory, killed and removed on drop.
//!
//! Deliberately a launcher of its own, not test-support's `EtcdCluster`: a
//! shipped binary must not depend on a test crate (one that panics instead of
//! returning errors, pulls in TLS generation and signals, and picks etcd from
//! `OSPROXY_ETCD_BIN_DIR`), and the demo needs none of its fault injection.
//! What the two share is only etcd's own single-member flag list, too little
//! logic to warrant a crate both could use.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use osproxy_core::SystemClock;
use osproxy_etcd::config::ConnectionConfig;
use osproxy_etcd::{Layout, Publisher};
use tempfile::TempDir;

/// How to install etcd, for the error message.
pub const INSTALL_HINT: &str =
    "install it with `apt-get install etcd-server` (Debian/Ubuntu), or pass --etcd-bin PATH";

/// Why etcd could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LaunchError {
    /// No `etcd` executable was found.
    #[error("etcd is not installed (no `etcd` executable on PATH)")]
    NotInstalled,
    /// The temporary data directory could not be created.
    #[error("cannot create a temporary data directory")]
    TempDir(#[source] std::io::Error),
    /// No free loopback port could be reserved.
    #[error("cannot find free loopback ports")]
    Ports(#[source] std::io::Error),
    /// The process could not be spawned.
    #[error("cannot start etcd")]
    Spawn(#[source] std::io::Error),
    /// etcd exited while starting.
    #[error("etcd exited during startup; its last log line: {last_line}")]
    Exited {
        /// The last line etcd logged.
        last_line: String,
    },
    /// etcd did not answer in time.
    #[error("etcd did not become ready within {after:?}")]
    NotReady {
        /// The bound.
        after: Duration,
    },
}

/// A running throwaway etcd. Dropping it kills etcd and removes its data.
#[derive(Debug)]
pub struct LocalEtcd {
    child: Child,
    dir: TempDir,
    endpoint: String,
}

/// The `etcd` executable: `explicit` when given (and a file), else the first
/// `etcd` on `PATH`.
pub fn find_etcd(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return p.is_file().then(|| p.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("etcd"))
        .find(|candidate| candidate.is_file())
}

impl LocalEtcd {
    /// Starts `bin` and waits until it answers a read, within `ready_within`.
    /// A start that loses its ports to another process is retried with new
    /// ones (three attempts).
    ///
    /// # Errors
    /// A [`LaunchError`] naming what failed.
    pub async fn start(bin: &Path, ready_within: Duration) -> Result<LocalEtcd, LaunchError> {
        let mut last = LaunchError::NotReady {
            after: ready_within,
        };
        for _ in 0..3 {
            match Self::try_start(bin, ready_within).await {
                Ok(etcd) => return Ok(etcd),
                Err(e @ LaunchError::Exited { .. }) => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    async fn try_start(bin: &Path, ready_within: Duration) -> Result<LocalEtcd, LaunchError> {
        let dir = tempfile::Builder::new()
            .prefix("osproxy-demo-etcd-")
            .tempdir()
            .map_err(LaunchError::TempDir)?;
        let (client_port, peer_port) = free_ports().map_err(LaunchError::Ports)?;
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let log_path = dir.path().join("etcd.log");
        let log = File::create(&log_path).map_err(LaunchError::Spawn)?;
        let log_err = log.try_clone().map_err(LaunchError::Spawn)?;
        let mut cmd = Command::new(bin);
        // ETCD_* variables configure etcd too; the demo's flags must win.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("ETCD") {
                cmd.env_remove(&name);
            }
        }
        cmd.arg("--name")
            .arg("demo")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--listen-client-urls")
            .arg(&client_url)
            .arg("--advertise-client-urls")
            .arg(&client_url)
            .arg("--listen-peer-urls")
            .arg(&peer_url)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer_url)
            .arg("--initial-cluster")
            .arg(format!("demo={peer_url}"))
            .arg("--log-level")
            .arg("warn")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        let child = cmd.spawn().map_err(LaunchError::Spawn)?;
        let mut etcd = LocalEtcd {
            child,
            dir,
            endpoint: format!("127.0.0.1:{client_port}"),
        };
        let deadline = tokio::time::Instant::now() + ready_within;
        loop {
            if let Ok(Some(_)) = etcd.child.try_wait() {
                return Err(LaunchError::Exited {
                    last_line: last_line(&log_path),
                });
            }
            if etcd.answers().await {
                return Ok(etcd);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(LaunchError::NotReady {
                    after: ready_within,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether etcd answers a read now.
    async fn answers(&self) -> bool {
        let mut c = ConnectionConfig::new(std::slice::from_ref(&self.endpoint));
        c.connect_timeout = Duration::from_millis(500);
        c.request_timeout = Duration::from_millis(500);
        let layout = Layout::Key("/osproxy/demo/probe".to_owned());
        Publisher::connect(c, layout, Arc::new(SystemClock))
            .await
            .is_ok()
    }

    /// The client endpoint, `127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The temporary directory holding etcd's data and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for LocalEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // `dir` removes itself after this.
    }
}

/// Two ports that were free on 127.0.0.1 a moment ago.
fn free_ports() -> std::io::Result<(u16, u16)> {
    let a = TcpListener::bind("127.0.0.1:0")?;
    let b = TcpListener::bind("127.0.0.1:0")?;
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}

fn last_line(path: &Path) -> String {
    File::open(path)
        .ok()
        .and_then(|f| {
            BufReader::new(f)
                .lines()
                .map_while(Result::ok)
                .filter(|l| !l.trim().is_empty())
                .last()
        })
        .unwrap_or_else(|| "(empty log)".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_binary_must_exist() {
        assert_eq!(find_etcd(Some(Path::new("/nonexistent/etcd"))), None);
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("etcd");
        std::fs::write(&fake, b"").unwrap();
        assert_eq!(find_etcd(Some(&fake)), Some(fake));
    }

    #[test]
    fn free_ports_differ() {
        let (a, b) = free_ports().unwrap();
        assert_ne!(a, b);
    }
}
