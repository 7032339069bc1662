//! The OS side of a member: spawning the etcd process, probing `/health`
//! and waiting until members are healthy, reading a process's state from
//! `/proc`, and the watchdog shell that cleans up after a hard-killed test.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use super::{keep_requested, EtcdMember};
use crate::wait::Deadline;

impl EtcdMember {
    pub(super) fn spawn(&self) -> Child {
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
        if let Some(bytes) = config.max_request_bytes {
            cmd.arg("--max-request-bytes").arg(bytes.to_string());
        }
        cmd.stdin(Stdio::null()).stdout(stdout).stderr(stderr);
        cmd.spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", config.etcd_bin.display()))
    }
}

/// Why a set of members did not become healthy.
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

pub(super) fn wait_healthy(members: &[EtcdMember], timeout: Duration) -> Result<(), StartError> {
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
pub(super) fn health(metrics_port: u16) -> bool {
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
    fn reads_process_state() {
        let own = process_state(std::process::id());
        assert!(matches!(own, Some('R' | 'S')), "{own:?}");
        assert_eq!(process_state(u32::MAX), None);
    }
}
