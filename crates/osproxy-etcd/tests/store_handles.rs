//! SPEC §5.8 no leaks: one etcd connection per store however many clones
//! (instance reporting rides on it too), none left behind by reconnects, and
//! dropping the last handle stops the background task and closes the
//! connection; etcd's watcher count returns to its baseline (§7).
//!
//! Connections are counted at a [`TcpForwarder`] every store connects
//! through; watches with etcd's `etcd_debugging_mvcc_watcher_total` gauge.

mod common;

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use osproxy_etcd::{EtcdDirectiveStore, InstanceReport, InstanceStatus, Layout};
use tokio::time::Instant;

const WATCHERS: &str = "etcd_debugging_mvcc_watcher_total";

async fn wait_connections(proxy: &TcpForwarder, want: usize) {
    let what = format!("{want} connections through the forwarder");
    eventually(PROMPTLY, &what, || async {
        proxy.connection_count() == want
    })
    .await;
}

async fn wait_watchers(member: &EtcdMember, want: f64) {
    let what = format!("etcd counts {want} watchers");
    eventually(PROMPTLY, &what, || async {
        metric(member, WATCHERS) == want
    })
    .await;
}

/// Asserts the forwarder holds exactly `want` connections for a while (no
/// extra connection shows up late).
async fn hold_connections(proxy: &TcpForwarder, want: usize) {
    let since = Instant::now();
    while since.elapsed() < Duration::from_secs(1) {
        assert_eq!(proxy.connection_count(), want);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_stores_hold_five_connections_also_after_reconnects_and_none_after_drop() {
    let cluster = EtcdCluster::single();
    let member = cluster.member(0);
    let proxy = TcpForwarder::start(member.client_addr());
    let key = unique_key("handles-five");
    cluster.put(&key, &set_body(&["a"], 600));
    let baseline = metric(member, WATCHERS);

    let mut stores = Vec::new();
    for _ in 0..5 {
        stores.push(
            quick(&[proxy.endpoint()], Layout::Key(key.clone()))
                .connect()
                .await
                .expect("connect"),
        );
    }
    wait_connections(&proxy, 5).await;
    hold_connections(&proxy, 5).await;
    wait_watchers(member, baseline + 5.0).await;

    // Every connection is cut: each store reconnects once, and the old
    // connections and watches are gone, not piled up.
    proxy.cut();
    for store in &stores {
        wait_status(store, "the store reconnected", PROMPTLY, |s| {
            s.connected && s.reconnects >= 1
        })
        .await;
    }
    wait_connections(&proxy, 5).await;
    hold_connections(&proxy, 5).await;
    wait_watchers(member, baseline + 5.0).await;
    cluster.put(&key, &set_body(&["b"], 600));
    for store in &stores {
        wait_ids(store, &["b"]).await;
    }

    drop(stores);
    wait_connections(&proxy, 0).await;
    wait_watchers(member, baseline).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clones_share_one_connection_until_the_last_one_drops() {
    let cluster = EtcdCluster::single();
    let member = cluster.member(0);
    let proxy = TcpForwarder::start(member.client_addr());
    let key = unique_key("handles-clones");
    let baseline = metric(member, WATCHERS);
    let store = quick(&[proxy.endpoint()], Layout::Key(key.clone()))
        .connect()
        .await
        .expect("connect");
    let clones: Vec<EtcdDirectiveStore> = (0..10).map(|_| store.clone()).collect();
    wait_connections(&proxy, 1).await;
    hold_connections(&proxy, 1).await;
    wait_watchers(member, baseline + 1.0).await;

    // Dropping the original keeps the clones served.
    drop(store);
    cluster.put(&key, &set_body(&["a"], 600));
    for clone in &clones {
        wait_ids(clone, &["a"]).await;
    }
    assert_eq!(proxy.connection_count(), 1);

    let mut clones = clones;
    let last = clones.pop().expect("a clone");
    drop(clones);
    cluster.put(&key, &set_body(&["b"], 600));
    wait_ids(&last, &["b"]).await;
    assert_eq!(proxy.connection_count(), 1);

    drop(last);
    wait_connections(&proxy, 0).await;
    wait_watchers(member, baseline).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_reporting_rides_on_the_stores_one_connection() {
    let cluster = EtcdCluster::single();
    let proxy = TcpForwarder::start(cluster.member(0).client_addr());
    let key = unique_key("handles-report");
    cluster.put(&key, &set_body(&["a"], 600));
    let report = InstanceReport {
        status_prefix: format!("{}/", unique_key("status")),
        lease_ttl: Duration::from_secs(2),
        ..InstanceReport::new("instance-1")
    };
    let status_key = report.key();
    let store = quick(&[proxy.endpoint()], Layout::Key(key.clone()))
        .instance(report)
        .connect()
        .await
        .expect("connect");

    let revision = mod_revision(&cluster, &key);
    let read_report = || {
        cluster
            .get(&status_key)
            .map(|v| serde_json::from_str::<InstanceStatus>(&v).expect("report json"))
    };
    eventually(PROMPTLY, "the instance reports its revision", || async {
        read_report().is_some_and(|r| r.applied_revision == revision && r.directives == 1)
    })
    .await;
    cluster.put(&key, "not json");
    let bad = mod_revision(&cluster, &key);
    eventually(PROMPTLY, "the instance reports the rejection", || async {
        read_report().is_some_and(|r| {
            r.rejected_revision == Some(bad)
                && r.rejected_reason.as_deref() == Some("malformed_json")
        })
    })
    .await;
    let report = read_report().expect("report");
    assert_eq!(report.instance, "instance-1");
    // The rejected revision counts as processed (the fleet status tells
    // "rejecting" from "lagging" that way); the last good set still serves.
    assert_eq!(report.applied_revision, bad);
    assert_eq!(report.directives, 1, "last good still applies");
    assert_eq!(ids(&store), ["a"]);
    hold_connections(&proxy, 1).await;

    // Dropping the store closes its connection; the lease then runs out and
    // the report disappears.
    drop(store);
    wait_connections(&proxy, 0).await;
    eventually(
        PROMPTLY,
        "the report of the dead instance expires",
        || async { read_report().is_none() },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_dropped_while_etcd_is_unreachable_stops_retrying() {
    let cluster = EtcdCluster::single();
    let proxy = TcpForwarder::start(cluster.member(0).client_addr());
    let key = unique_key("handles-retrying");
    let store = quick(&[proxy.endpoint()], Layout::Key(key.clone()))
        .connect()
        .await
        .expect("connect");

    // From now on the forwarder sends every connection to a listener that
    // accepts and closes at once, counting the store's attempts.
    let refuser = TcpListener::bind("127.0.0.1:0").expect("bind");
    refuser.set_nonblocking(true).expect("nonblocking");
    let refuser_addr = refuser.local_addr().expect("addr");
    let attempts = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let counter = {
        let attempts = Arc::clone(&attempts);
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match refuser.accept() {
                    Ok((socket, _)) => {
                        attempts.fetch_add(1, Ordering::SeqCst);
                        drop(socket);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        })
    };
    proxy.set_target(refuser_addr);
    proxy.cut();
    eventually(PROMPTLY, "the store keeps retrying", || async {
        attempts.load(Ordering::SeqCst) >= 3
    })
    .await;
    assert!(!store.status().connected);

    drop(store);
    // Let an attempt already in flight finish, then nothing more may come:
    // a live task would retry at least every second (backoff max 1 s).
    let settle = Instant::now() + Duration::from_secs(1);
    tokio::time::sleep_until(settle).await;
    let after_drop = attempts.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        after_drop,
        "the background task kept reconnecting after the last handle dropped"
    );
    stop.store(true, Ordering::SeqCst);
    counter.join().expect("counter thread");
}
