//! The OS side of the etcd processes under test control, members and
//! grpc-proxies alike: what launching them needs ([`Workspace`]), an etcd
//! command with a clean environment and its output in a file, a spawned
//! process with its pid file and fault controls ([`Supervised`]), probing
//! `/health`, reading a process's state from `/proc`, and the watchdog shell
//! that cleans up after a hard-killed test (or keeps the data: [`KEEP_ENV`]).
//! A leaf: it knows nothing of members or clusters.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use nix::sys::signal::{kill as send_signal, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::binaries;
use crate::wait::wait_until;

/// What launching etcd processes needs: both executables (the version in use
/// announced once per test process), a fresh working directory, and the
/// watchdog that cleans it up if the test process dies without unwinding.
pub(crate) struct Workspace {
    pub(crate) etcd_bin: PathBuf,
    pub(crate) etcdctl_bin: PathBuf,
    pub(crate) dir: TempDir,
    pub(crate) watchdog: Option<Child>,
}

impl Workspace {
    /// Takes `bins` (`etcd`, `etcdctl`) or finds the default executables
    /// (panicking with [`crate::ETCD_NOT_FOUND`] when missing),
    /// creates a temporary directory named `<prefix>…` and starts the
    /// watchdog over the pid files in `<dir>/<pid_glob>/etcd.pid`. `what`
    /// names the caller in panic messages.
    pub(crate) fn prepare(
        what: &str,
        prefix: &str,
        pid_glob: &str,
        bins: Option<(PathBuf, PathBuf)>,
    ) -> Workspace {
        let (etcd_bin, etcdctl_bin) = bins.unwrap_or_else(|| binaries::etcd_pair(None));
        binaries::announce(&etcd_bin);
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .unwrap_or_else(|e| panic!("{what}: cannot create a temporary directory: {e}"));
        let watchdog = spawn_watchdog(dir.path(), pid_glob);
        Workspace {
            etcd_bin,
            etcdctl_bin,
            dir,
            watchdog,
        }
    }
}

/// A command for `bin` (etcd or etcdctl) without any inherited `ETCD*`
/// variable: those configure etcd too, and the flags given here must win.
pub(crate) fn etcd_command(bin: &Path) -> Command {
    let mut cmd = Command::new(bin);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ETCD") {
            cmd.env_remove(&name);
        }
    }
    cmd
}

/// `path` opened for appending (created if missing), twice: for a child's
/// stdout and its stderr.
pub(crate) fn log_files(path: &Path) -> (File, File) {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    let copy = log
        .try_clone()
        .unwrap_or_else(|e| panic!("cannot clone a file handle: {e}"));
    (log, copy)
}

/// One spawned etcd process (a member or a grpc-proxy) under test control:
/// the child, the pid file the watchdog reads, and the fault controls both
/// offer. `name` names it in panic messages.
pub(crate) struct Supervised {
    name: String,
    pid_path: PathBuf,
    child: Mutex<Option<Child>>,
}

impl Supervised {
    /// Nothing running yet; the pid file will be `pid_path`.
    pub(crate) fn new(name: impl Into<String>, pid_path: PathBuf) -> Self {
        Supervised {
            name: name.into(),
            pid_path,
            child: Mutex::new(None),
        }
    }

    fn child(&self) -> MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The process id while a process is running (or stopped).
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child().as_ref().map(Child::id)
    }

    /// Spawns the process with `spawn` and records it (pid file included);
    /// panics when one is still running.
    pub(crate) fn start(&self, spawn: impl FnOnce() -> Child) {
        let mut child = self.child();
        if let Some(process) = child.as_mut() {
            if matches!(process.try_wait(), Ok(None)) {
                panic!("{}: already running (pid {})", self.name, process.id());
            }
        }
        let process = spawn();
        if let Some(parent) = self.pid_path.parent() {
            fs::create_dir_all(parent).unwrap_or_else(|e| panic!("cannot create the pid dir: {e}"));
        }
        let _ = fs::write(&self.pid_path, process.id().to_string());
        *child = Some(process);
    }

    /// Whether a process exists (running or `SIGSTOP`ped); one that exited on
    /// its own is reaped.
    pub(crate) fn is_running(&self) -> bool {
        let mut child = self.child();
        match child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(_) => {
                *child = None;
                let _ = fs::remove_file(&self.pid_path);
                false
            }
            None => false,
        }
    }

    /// The exit status of a process that exited on its own (now reaped);
    /// `None` while it runs or when none was started.
    pub(crate) fn reap_exited(&self) -> Option<ExitStatus> {
        let mut child = self.child();
        match child.as_mut().map(Child::try_wait) {
            Some(Ok(Some(status))) => {
                *child = None;
                let _ = fs::remove_file(&self.pid_path);
                Some(status)
            }
            _ => None,
        }
    }

    /// Kills the process with `SIGKILL` and reaps it. No-op when not running.
    pub(crate) fn kill(&self) {
        let mut child = self.child();
        if let Some(mut process) = child.take() {
            // The pid file goes first so the watchdog never kills a reused pid.
            let _ = fs::remove_file(&self.pid_path);
            let _ = process.kill();
            let _ = process.wait();
        }
    }

    /// Freezes the process with `SIGSTOP` (it keeps its sockets: clients see
    /// silence) and returns once the kernel reports it stopped.
    pub(crate) fn stop(&self) {
        let pid = self.signal(Signal::SIGSTOP);
        wait_until(
            Duration::from_secs(5),
            &format!("{} is stopped", self.name),
            || process_state(pid) == Some('T'),
        );
    }

    /// Resumes a [`stop`](Self::stop)ped process with `SIGCONT`.
    pub(crate) fn cont(&self) {
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
}

/// `GET /health` over plain HTTP/1.1 on the metrics port.
pub(super) fn health(metrics_port: u16) -> bool {
    // etcd's own health check allows its quorum read one second.
    http_get(metrics_port, "/health", Duration::from_secs(2)).is_some_and(|response| {
        response.starts_with("HTTP/1.1 200") && response.contains(r#""health":"true""#)
    })
}

/// A plain HTTP/1.1 `GET path` on a loopback port, bounded by `read_timeout`
/// per read; the whole response (status line, headers, body) as text.
pub(super) fn http_get(port: u16, path: &str, read_timeout: Duration) -> Option<String> {
    let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    let _ = stream.set_read_timeout(Some(read_timeout));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    Some(String::from_utf8_lossy(&response).into_owned())
}

/// The state letter from `/proc/<pid>/stat` (`R`, `S`, `T`, ...).
pub(crate) fn process_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: the state follows
    // the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    after.trim_start().chars().next()
}

/// Environment variable that, when set to `1`, keeps the etcd data
/// directories (and logs) after the cluster is dropped and prints where they
/// are.
pub const KEEP_ENV: &str = "OSPROXY_ETCD_KEEP";

/// Whether [`KEEP_ENV`] asks to keep the data directories.
pub(crate) fn keep_requested() -> bool {
    std::env::var(KEEP_ENV).is_ok_and(|v| v == "1")
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
