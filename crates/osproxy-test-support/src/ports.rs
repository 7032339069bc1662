//! Picking free loopback ports.

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Mutex, OnceLock};

/// Ports are drawn below the usual Linux ephemeral range (32768..=60999) so
/// that an outgoing connection's local port cannot grab one between the probe
/// and etcd's own bind.
const RANGE: std::ops::Range<u16> = 15_000..32_000;

/// Ports already handed out by this process, never handed out twice.
fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static USED: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    USED.get_or_init(|| Mutex::new(HashSet::new()))
}

/// `n` distinct ports that were free on 127.0.0.1 a moment ago.
///
/// Each candidate is probed by binding it; all probes are held until every
/// port is chosen, then released. Another process may still take one before
/// etcd binds it: callers retry the launch when etcd exits early.
pub(crate) fn free_ports(n: usize) -> Vec<u16> {
    let mut used = handed_out().lock().unwrap_or_else(|e| e.into_inner());
    let mut probes = Vec::with_capacity(n);
    let mut ports = Vec::with_capacity(n);
    let mut attempts = 0;
    while ports.len() < n {
        attempts += 1;
        // After many misses fall back to letting the kernel choose.
        let candidate = if attempts < 2_000 {
            rand::random_range(RANGE)
        } else {
            0
        };
        if candidate != 0 && used.contains(&candidate) {
            continue;
        }
        let Ok(probe) = TcpListener::bind((Ipv4Addr::LOCALHOST, candidate)) else {
            continue;
        };
        let port = match probe.local_addr() {
            Ok(addr) => addr.port(),
            Err(_) => continue,
        };
        if used.insert(port) {
            ports.push(port);
            probes.push(probe);
        }
        if attempts > 10_000 {
            panic!("could not find {n} free loopback ports");
        }
    }
    drop(probes);
    ports
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_bindable() {
        let ports = free_ports(6);
        let unique: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(unique.len(), 6);
        for port in ports {
            TcpListener::bind((Ipv4Addr::LOCALHOST, port))
                .unwrap_or_else(|e| panic!("port {port} not bindable: {e}"));
        }
    }
}
