//! What the harness reads from the OS: clocks, CPU time, resident memory,
//! sockets and a description of the machine. Linux only (`/proc`).

use std::collections::HashSet;
use std::fs;
use std::time::Duration;

use nix::sys::resource::{getrusage, UsageWho};
use osproxy_core::{Clock, Instant, SystemClock};
use serde::Serialize;

/// Wall-clock nanoseconds (the clock the stores stamp their swaps with).
pub fn wall() -> u64 {
    SystemClock.unix_nanos()
}

/// Monotonic time, for windows and deadlines.
pub fn mono() -> Instant {
    SystemClock.now()
}

/// `a - b` in signed nanoseconds.
pub fn signed_delta(a: u64, b: u64) -> i64 {
    if a >= b {
        i64::try_from(a - b).unwrap_or(i64::MAX)
    } else {
        -i64::try_from(b - a).unwrap_or(i64::MAX)
    }
}

/// User + system CPU time of this process (every thread, dead ones included),
/// microsecond resolution.
pub fn process_cpu() -> Duration {
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(u) => tv(u.user_time()) + tv(u.system_time()),
        Err(_) => Duration::ZERO,
    }
}

fn tv(t: nix::sys::time::TimeVal) -> Duration {
    let secs = u64::try_from(t.tv_sec()).unwrap_or(0);
    let micros = u64::try_from(t.tv_usec()).unwrap_or(0);
    Duration::from_secs(secs) + Duration::from_micros(micros)
}

/// CPU time of another process: the sum of its threads' `schedstat` run
/// times (nanosecond resolution). Threads that exit inside a window are lost,
/// which for etcd's long-lived goroutine threads is negligible.
pub fn pid_cpu(pid: u32) -> Duration {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Duration::ZERO;
    };
    let mut total = 0u64;
    for task in tasks.flatten() {
        let path = task.path().join("schedstat");
        if let Ok(text) = fs::read_to_string(path) {
            if let Some(ns) = text
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
            {
                total += ns;
            }
        }
    }
    Duration::from_nanos(total)
}

/// CPU time every process on the machine spent busy (all cores, from the
/// `cpu` line of `/proc/stat`: everything but idle and iowait), 10 ms
/// resolution.
pub fn machine_busy() -> Duration {
    let text = fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else {
        return Duration::ZERO;
    };
    let ticks: u64 = line
        .split_whitespace()
        .skip(1)
        .enumerate()
        // user nice system idle iowait irq softirq steal (guest is in user)
        .filter(|(i, _)| !matches!(i, 3 | 4) && *i < 8)
        .filter_map(|(_, v)| v.parse::<u64>().ok())
        .sum();
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

/// `cpu` over `window` as a percentage of one core.
pub fn pct_of_core(cpu: Duration, window: Duration) -> f64 {
    if window.is_zero() {
        return 0.0;
    }
    cpu.as_secs_f64() / window.as_secs_f64() * 100.0
}

/// A `/proc/<pid>/status` field in KiB (`VmRSS`, `VmHWM`, …).
pub fn status_kib(pid: &str, field: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// This process's resident memory, KiB.
pub fn rss_kib() -> u64 {
    status_kib("self", "VmRSS").unwrap_or(0)
}

/// Established TCP connections owned by this process whose remote port is
/// `port`: socket inodes from `/proc/self/fd` matched against
/// `/proc/self/net/tcp{,6}` (which list the whole network namespace).
pub fn connections_to_port(port: u16) -> usize {
    let mut inodes = HashSet::new();
    if let Ok(fds) = fs::read_dir("/proc/self/fd") {
        for fd in fds.flatten() {
            if let Ok(target) = fs::read_link(fd.path()) {
                let t = target.to_string_lossy();
                if let Some(inode) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                    inodes.insert(inode.to_owned());
                }
            }
        }
    }
    let mut n = 0;
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
            if cols.len() < 10 {
                continue;
            }
            let remote_port = cols[2]
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            let established = cols[3] == "01";
            if established && remote_port == Some(port) && inodes.contains(cols[9]) {
                n += 1;
            }
        }
    }
    n
}

/// The open file limit of this process (soft, hard).
pub fn fd_limit() -> (String, String) {
    let text = fs::read_to_string("/proc/self/limits").unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with("Max open files"))
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (
                cols.get(3).copied().unwrap_or("?").to_owned(),
                cols.get(4).copied().unwrap_or("?").to_owned(),
            )
        })
        .unwrap_or_else(|| ("?".into(), "?".into()))
}

/// The 1/5/15-minute load averages.
pub fn load_average() -> [f64; 3] {
    let text = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut it = text.split_whitespace().map(|v| v.parse().unwrap_or(0.0));
    [
        it.next().unwrap_or(0.0),
        it.next().unwrap_or(0.0),
        it.next().unwrap_or(0.0),
    ]
}

/// What the run ran on.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub etcd_version: String,
    pub fd_limit_soft: String,
    pub fd_limit_hard: String,
}

impl Machine {
    pub fn describe() -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|r| r.split_once(':'))
            .map_or_else(|| "unknown".to_owned(), |(_, m)| m.trim().to_owned());
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".to_owned(), |s| s.trim().to_owned());
        let etcd_version = std::process::Command::new("etcd")
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .find_map(|l| l.strip_prefix("etcd Version:").map(|v| v.trim().to_owned()))
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let (soft, hard) = fd_limit();
        Machine {
            nproc: std::thread::available_parallelism().map_or(0, usize::from),
            cpu_model,
            kernel,
            etcd_version,
            fd_limit_soft: soft,
            fd_limit_hard: hard,
        }
    }
}

/// A small, fast, seedable generator for jitter (not for anything secret).
#[derive(Debug)]
pub struct XorShift(u64);

impl XorShift {
    pub fn seeded() -> XorShift {
        XorShift(wall() | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in `[lo, hi)`.
    pub fn duration(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = hi.saturating_sub(lo).as_nanos();
        let span = u64::try_from(span).unwrap_or(u64::MAX).max(1);
        lo + Duration::from_nanos(self.next_u64() % span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_deltas() {
        assert_eq!(signed_delta(5, 3), 2);
        assert_eq!(signed_delta(3, 5), -2);
    }

    #[test]
    fn proc_readers_see_this_process() {
        assert!(rss_kib() > 0);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let before = connections_to_port(port);
        let _client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (_server, _) = listener.accept().unwrap();
        assert_eq!(connections_to_port(port), before + 1);
        let me = std::process::id();
        assert!(pid_cpu(me) > Duration::ZERO);
        assert!(machine_busy() > Duration::ZERO);
        assert!(load_average()[0] >= 0.0);
    }

    #[test]
    fn jitter_stays_in_range() {
        let mut r = XorShift::seeded();
        for _ in 0..1000 {
            let d = r.duration(Duration::from_millis(2), Duration::from_millis(5));
            assert!(d >= Duration::from_millis(2) && d < Duration::from_millis(5));
        }
    }
}
