//! SPEC §5.6 polite retries: with etcd down, reconnects back off
//! exponentially with jitter (default 100 ms to 10 s) and cost no measurable
//! CPU; the backoff resets after a success, so a later failure is retried
//! quickly again. §5.3: the last good set serves throughout.
//!
//! One test in this file on purpose: it measures this process's CPU time, so
//! nothing else may run in the process meanwhile.

mod common;

use std::time::Duration;

use common::*;
use osproxy_etcd::WatchPhase;
use tokio::time::Instant;

/// The measurement window with etcd down.
const WINDOW: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_etcd_is_retried_with_backoff_at_no_cpu_cost_and_recovered() {
    let cluster = EtcdCluster::single();
    let key = unique_key("polite");
    cluster.put(&key, &set_body(&["a"], 600));
    // Every option at its default: backoff 100 ms to 10 s.
    let store = key_store(&cluster, &key).await;
    wait_status(&store, "the watch is established", PROMPTLY, |s| {
        s.connected
    })
    .await;

    cluster.member(0).kill();
    wait_status(&store, "the store notices etcd is gone", PROMPTLY, |s| {
        !s.connected && s.reconnects >= 1
    })
    .await;
    let reconnects_before = store.status().reconnects;
    let cpu_before = process_cpu_time();
    let started = Instant::now();
    // The window itself: nothing runs in this process but the store.
    tokio::time::sleep(WINDOW).await;
    let cpu = process_cpu_time().saturating_sub(cpu_before);
    let elapsed = started.elapsed();
    let status = store.status();
    let attempts = status.reconnects - reconnects_before;
    eprintln!("etcd down for {elapsed:?}: {attempts} reconnect attempts, {cpu:?} CPU");

    // 2 % of one core over the window.
    let budget = elapsed / 50;
    assert!(
        cpu < budget,
        "a dead etcd cost {cpu:?} of CPU in {elapsed:?} (budget {budget:?})"
    );
    // Delays of 100, 200, 400, … ms (each jittered down to half), capped at
    // 10 s: 6 or 7 attempts fit in 10 s. A fixed 100 ms retry would make
    // about 100, a hot loop thousands; allow slack for a loaded machine.
    assert!(
        (3..=10).contains(&attempts),
        "{attempts} reconnect attempts in {elapsed:?}: not an exponential backoff"
    );
    assert!(!status.connected, "{status:?}");
    assert!(
        matches!(status.phase, WatchPhase::Backoff | WatchPhase::Connecting),
        "{status:?}"
    );
    assert!(status.last_error.is_some(), "{status:?}");
    assert_eq!(ids(&store), ["a"], "the last good set serves");

    // etcd comes back: the store reconnects within its current delay (at
    // most 10 s) and follows publishes again.
    cluster.member(0).start();
    cluster.wait_healthy();
    cluster.put(&key, &set_body(&["b"], 600));
    wait_ids_within(&store, &["b"], Duration::from_secs(10) + PROMPTLY).await;
    wait_status(&store, "the store is connected", PROMPTLY, |s| {
        s.connected && s.last_error.is_none()
    })
    .await;

    // The success reset the backoff: a new failure is retried within
    // 100 ms, 200 ms, 400 ms … again, not after ~10 s.
    let before = store.status().reconnects;
    cluster.member(0).kill();
    wait_status(
        &store,
        "quick retries after the backoff reset",
        Duration::from_secs(4),
        |s| s.reconnects >= before + 4,
    )
    .await;
}
