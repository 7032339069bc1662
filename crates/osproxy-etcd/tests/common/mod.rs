//! Shared helpers for the live etcd store tests.
#![allow(dead_code)]
// Test helpers: a failed step is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use osproxy_core::{Clock, SystemClock};
use osproxy_etcd::{EtcdDirectiveStore, EtcdStoreBuilder, Layout, StoreStatus};
use osproxy_observe::{decode_directive_set, DirectiveSet, DirectiveStore};
#[allow(unused_imports)]
pub use osproxy_test_support::fixtures::{
    directive_body, lease_count, mod_revision, set_body, shared_cluster, unused_endpoint, PROMPTLY,
};
use osproxy_test_support::poll_within;
#[allow(unused_imports)]
pub use osproxy_test_support::{eventually, unique_key, EtcdCluster, EtcdMember, TcpForwarder};

/// The staleness bound the fault tests configure (the default is 15 s).
pub const QUICK_STALE_AFTER: Duration = Duration::from_secs(3);

/// The system clock, shared.
pub fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// [`set_body`]`(ids, ttl)` decoded on the system clock; panics with the
/// slug if it is rejected.
pub fn decoded_set(ids: &[&str], ttl: u64) -> DirectiveSet {
    match decode_directive_set(set_body(ids, ttl).as_bytes(), &SystemClock) {
        Ok(s) => s,
        Err(e) => panic!("test set rejected: {e}"),
    }
}

/// The ids a store currently serves, in order.
pub fn ids(store: &impl DirectiveStore) -> Vec<String> {
    store
        .load()
        .directives()
        .iter()
        .map(|d| d.id.clone())
        .collect()
}

/// Waits until the store serves exactly `want` ids.
pub async fn wait_ids(store: &impl DirectiveStore, want: &[&str]) {
    let what = format!("store serves {want:?}");
    eventually(PROMPTLY, &what, || async { ids(store) == want }).await;
}

/// Like [`wait_ids`] with an explicit bound; the panic message carries the
/// store's status.
pub async fn wait_ids_within(store: &EtcdDirectiveStore, want: &[&str], bound: Duration) {
    let what = format!("store serves {want:?}");
    if !poll_within(bound, || async { ids(store) == want }).await {
        panic!(
            "timed out after {bound:?} waiting until {what}; it serves {:?}; status {:#?}",
            ids(store),
            store.status()
        );
    }
}

/// Waits until `pred` holds for the store's status; the panic message
/// carries the last status seen.
pub async fn wait_status(
    store: &EtcdDirectiveStore,
    what: &str,
    bound: Duration,
    pred: impl Fn(&StoreStatus) -> bool,
) {
    if !poll_within(bound, || async { pred(&store.status()) }).await {
        panic!(
            "timed out after {bound:?} waiting until {what}; status {:#?}",
            store.status()
        );
    }
}

/// A single-key store on `cluster` with quick staleness settings for tests.
pub async fn key_store(cluster: &EtcdCluster, key: &str) -> EtcdDirectiveStore {
    EtcdDirectiveStore::builder(&cluster.endpoints(), Layout::Key(key.to_owned()), clock())
        .connect()
        .await
        .expect("connect")
}

/// `(key, reason)` of every standing rejection.
pub fn rejections(store: &EtcdDirectiveStore) -> Vec<(String, &'static str)> {
    store
        .status()
        .rejected
        .into_iter()
        .map(|r| (r.key, r.reason))
        .collect()
}

/// A builder with the fault tests' quick settings: stale after 3 s, progress
/// requested after 1 s of silence, reconnect backoff 100 ms to 1 s.
pub fn quick(endpoints: &[String], layout: Layout) -> EtcdStoreBuilder {
    EtcdDirectiveStore::builder(endpoints, layout, clock())
        .connect_timeout(Duration::from_secs(5))
        .stale_after(QUICK_STALE_AFTER)
        .progress_interval(Duration::from_secs(1))
        .backoff(Duration::from_millis(100), Duration::from_secs(1))
}

/// Runs `etcdctl <args>` against `member` until it succeeds (e.g. while a new
/// leader is elected), bounded by [`PROMPTLY`]; returns stdout.
pub async fn etcdctl_retry(member: &EtcdMember, args: &[&str]) -> String {
    let mut out = String::new();
    let what = format!("etcdctl {args:?} succeeds on {}", member.name());
    eventually(PROMPTLY, &what, || {
        let result = member.try_etcdctl(args);
        let ok = result.status.success();
        if ok {
            out = String::from_utf8_lossy(&result.stdout).into_owned();
        }
        async move { ok }
    })
    .await;
    out
}

/// `put key value` through `member`, retried until it succeeds.
pub async fn put_via(member: &EtcdMember, key: &str, value: &str) {
    etcdctl_retry(member, &["put", key, value]).await;
}

/// Grants an etcd lease of `ttl_secs` and returns its id (hex, as etcdctl
/// prints and accepts it).
pub fn lease_grant(cluster: &EtcdCluster, ttl_secs: u64) -> String {
    // "lease 694d77aa9e38260f granted with TTL(2s)"
    let out = cluster.etcdctl(&["lease", "grant", &ttl_secs.to_string()]);
    out.split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("unexpected `lease grant` output: {out}"))
        .to_owned()
}

/// The value of the Prometheus sample `name` (no labels) on `member`'s
/// metrics URL.
pub fn metric(member: &EtcdMember, name: &str) -> f64 {
    let url = member.metrics_url();
    let addr = url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).expect("connect to the metrics URL");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    let request = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    stream.write_all(request.as_bytes()).expect("send request");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    text.lines()
        .find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix(' ')?;
            rest.trim().parse::<f64>().ok()
        })
        .unwrap_or_else(|| panic!("no sample {name} in {url}/metrics"))
}

/// CPU time (user + system) this process has used so far.
pub fn process_cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat");
    // The command name may contain spaces: fields start after the last ')'.
    // Field 3 (state) is the first; utime and stime are fields 14 and 15.
    let after = &stat[stat.rfind(')').expect("stat format") + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    let per_sec = clock_ticks_per_second();
    Duration::from_nanos(ticks * 1_000_000_000 / per_sec)
}

fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .filter(|t| *t > 0)
        .unwrap_or(100)
}

/// Index of the member whose client endpoint `endpoint` (normalised, as
/// `status().endpoint` shows it) names.
pub fn member_index(cluster: &EtcdCluster, endpoint: &str) -> Option<usize> {
    cluster
        .members()
        .iter()
        .position(|m| endpoint.ends_with(&format!(":{}", m.client_addr().port())))
}

/// Compacts the history up to the current revision; a revision compacted
/// already (nothing written since the last compaction) is fine.
pub fn compact_now(cluster: &EtcdCluster) {
    let revision = cluster.revision().to_string();
    let out = cluster.try_etcdctl(&["compact", &revision, "--physical"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() || stderr.contains("required revision has been compacted"),
        "etcdctl compact {revision} failed: {stderr}"
    );
}

/// A [`quick`] store on `cluster`, returned once its watch is established.
pub async fn connected_quick_store(cluster: &EtcdCluster, layout: Layout) -> EtcdDirectiveStore {
    connect_watching(quick(&cluster.endpoints(), layout)).await
}

/// Connects `builder`'s store and returns it once its watch is established.
pub async fn connect_watching(builder: EtcdStoreBuilder) -> EtcdDirectiveStore {
    let store = builder.connect().await.expect("connect");
    eventually(PROMPTLY, "the watch is established", || async {
        store.status().connected
    })
    .await;
    store
}

/// The index of the member `store` is connected to.
pub fn member_in_use(cluster: &EtcdCluster, store: &EtcdDirectiveStore) -> usize {
    let endpoint = store.status().endpoint.expect("an endpoint in use");
    member_index(cluster, &endpoint).expect("a member's endpoint")
}
