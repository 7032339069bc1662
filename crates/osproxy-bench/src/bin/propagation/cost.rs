//! The cost of a store at fleet scale in one process: connections, resident
//! memory and idle CPU, each measured as a delta against the same process
//! without the stores.

use std::time::Duration;

use osproxy_etcd::EtcdDirectiveStore;
use serde::Serialize;
use tokio::runtime::Runtime;

use crate::fleet::{connect_store, connect_stores, StoreOpts};
use crate::sys::{
    connections_to_port, mono, pct_of_core, pid_cpu, process_cpu, rss_kib, status_kib,
};
use crate::Res;

/// What the cost phase measured.
#[derive(Debug, Serialize)]
pub struct Cost {
    pub stores: usize,
    pub connect_seconds: f64,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub rss_per_store_kib: f64,
    pub connections_before: usize,
    pub connections_after: usize,
    pub connections_per_store: f64,
    pub stores_connected: usize,
    /// This process, before any store, over `baseline_window_s`.
    pub baseline_window_s: f64,
    pub process_cpu_no_stores_pct: f64,
    /// This process with the stores, over `idle_window_s`.
    pub idle_window_s: f64,
    pub process_cpu_with_stores_pct: f64,
    /// The difference: what the idle stores cost, % of one core.
    pub idle_cpu_stores_pct: f64,
    pub idle_cpu_per_store_pct: f64,
    pub etcd_cpu_no_stores_pct: f64,
    pub etcd_cpu_with_stores_pct: f64,
    pub etcd_rss_before_kib: u64,
    pub etcd_rss_after_kib: u64,
    pub etcd_rss_per_store_kib: f64,
}

/// Settings of the cost phase.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub stores: usize,
    pub baseline_window: Duration,
    pub idle_window: Duration,
}

/// CPU of this process and of etcd over `window`, as % of one core.
fn idle_cpu(etcd_pid: u32, window: Duration) -> (f64, f64) {
    let (p0, e0, t0) = (process_cpu(), pid_cpu(etcd_pid), mono());
    std::thread::sleep(window);
    let (p1, e1, t1) = (process_cpu(), pid_cpu(etcd_pid), mono());
    let elapsed = t1.saturating_duration_since(t0);
    (
        pct_of_core(p1.saturating_sub(p0), elapsed),
        pct_of_core(e1.saturating_sub(e0), elapsed),
    )
}

/// Creates `settings.stores` stores on `key` and measures what they cost;
/// returns the stores for the propagation run that follows.
pub fn run(
    rt: &Runtime,
    endpoint: &str,
    etcd_port: u16,
    etcd_pid: u32,
    key: &str,
    settings: Settings,
) -> Res<(Cost, Vec<EtcdDirectiveStore>)> {
    let endpoints = [endpoint.to_owned()];
    // Warm everything a first store initialises once per process (runtime
    // threads, allocator arenas, lazy statics), so the delta is per store.
    let warm = rt.block_on(connect_store(
        &endpoints,
        key,
        StoreOpts::DEFAULT,
        rt.handle().clone(),
    ))?;
    drop(warm);
    std::thread::sleep(Duration::from_secs(1));

    let (cpu_no_stores, etcd_no_stores) = idle_cpu(etcd_pid, settings.baseline_window);
    let pid = etcd_pid.to_string();
    let rss0 = rss_kib();
    let conn0 = connections_to_port(etcd_port);
    let etcd_rss0 = status_kib(&pid, "VmRSS").unwrap_or(0);

    let t0 = mono();
    let stores = connect_stores(rt, &endpoints, key, settings.stores, StoreOpts::DEFAULT)?;
    let connect_seconds = mono().saturating_duration_since(t0).as_secs_f64();
    // Let every watch settle (creation responses, first progress exchange).
    std::thread::sleep(Duration::from_secs(2));

    let rss1 = rss_kib();
    let conn1 = connections_to_port(etcd_port);
    let etcd_rss1 = status_kib(&pid, "VmRSS").unwrap_or(0);
    let connected = stores.iter().filter(|s| s.status().connected).count();
    let (cpu_stores, etcd_stores) = idle_cpu(etcd_pid, settings.idle_window);

    #[allow(clippy::cast_precision_loss)]
    let per = |v: f64| v / settings.stores.max(1) as f64;
    #[allow(clippy::cast_precision_loss)]
    let kib_delta = |a: u64, b: u64| b as f64 - a as f64;
    #[allow(clippy::cast_precision_loss)]
    let conn_delta = conn1 as f64 - conn0 as f64;
    let idle_stores = (cpu_stores - cpu_no_stores).max(0.0);
    Ok((
        Cost {
            stores: settings.stores,
            connect_seconds,
            rss_before_kib: rss0,
            rss_after_kib: rss1,
            rss_per_store_kib: per(kib_delta(rss0, rss1)),
            connections_before: conn0,
            connections_after: conn1,
            connections_per_store: per(conn_delta),
            stores_connected: connected,
            baseline_window_s: settings.baseline_window.as_secs_f64(),
            process_cpu_no_stores_pct: cpu_no_stores,
            idle_window_s: settings.idle_window.as_secs_f64(),
            process_cpu_with_stores_pct: cpu_stores,
            idle_cpu_stores_pct: idle_stores,
            idle_cpu_per_store_pct: per(idle_stores),
            etcd_cpu_no_stores_pct: etcd_no_stores,
            etcd_cpu_with_stores_pct: etcd_stores,
            etcd_rss_before_kib: etcd_rss0,
            etcd_rss_after_kib: etcd_rss1,
            etcd_rss_per_store_kib: per(kib_delta(etcd_rss0, etcd_rss1)),
        },
        stores,
    ))
}
