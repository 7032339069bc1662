//! SPEC §5.5 stale connections are detected: a frozen connection (a TCP
//! forwarder that stops moving bytes but keeps the sockets open, i.e. a
//! half-open connection) or a frozen member (`SIGSTOP`) is noticed within the
//! staleness bound and the store moves to a healthy endpoint. And the
//! converse: an idle but healthy watch is not mistaken for a stale one.

mod common;

use std::time::Duration;

use common::*;
use osproxy_etcd::{EtcdDirectiveStore, Layout};
use tokio::time::Instant;

/// Reconnect, re-watch and propagation on a loaded machine, on top of the
/// staleness bound.
const FAILOVER_SLACK: Duration = Duration::from_secs(7);

/// Forwarders in front of every member of `cluster`.
fn forwarders(cluster: &EtcdCluster) -> Vec<TcpForwarder> {
    cluster
        .members()
        .iter()
        .map(|m| TcpForwarder::start(m.client_addr()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_connection_is_replaced_within_the_staleness_bound() {
    let cluster = EtcdCluster::three();
    let proxies = forwarders(&cluster);
    let endpoints: Vec<String> = proxies.iter().map(TcpForwarder::endpoint).collect();
    let key = unique_key("stale-frozen");
    cluster.put(&key, &set_body(&["a"], 600));
    let store = quick(&endpoints, Layout::Key(key.clone()))
        .connect()
        .await
        .expect("connect");
    eventually(PROMPTLY, "the watch is established", || async {
        store.status().connected
    })
    .await;
    let in_use = store.status().endpoint.expect("endpoint");
    let frozen = proxies
        .iter()
        .position(|p| in_use.ends_with(&p.endpoint()))
        .expect("the store uses one of the forwarders");

    // An idle, healthy watch for twice the staleness bound: progress replies
    // keep it alive, so nothing reconnects.
    let idle_since = Instant::now();
    while idle_since.elapsed() < 2 * QUICK_STALE_AFTER {
        let s = store.status();
        assert!(s.connected && s.reconnects == 0, "idle is not stale: {s:?}");
        assert!(
            s.staleness.is_some_and(|st| st < QUICK_STALE_AFTER),
            "progress replies confirm the idle watch: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Freeze the connection in use; publish through another member.
    proxies[frozen].freeze();
    let frozen_at = Instant::now();
    let writer = cluster.member((frozen + 1) % 3);
    put_via(writer, &key, &set_body(&["a", "b"], 600)).await;
    wait_ids_within(&store, &["a", "b"], QUICK_STALE_AFTER + FAILOVER_SLACK).await;
    let took = frozen_at.elapsed();
    let status = store.status();
    assert!(status.connected, "{status:?}");
    assert!(status.reconnects >= 1, "{status:?}");
    assert_eq!(status.last_error, None, "{status:?}");
    assert!(
        !status
            .endpoint
            .as_deref()
            .is_some_and(|e| e.ends_with(&proxies[frozen].endpoint())),
        "moved off the frozen connection: {status:?}"
    );
    eprintln!("publish arrived {took:?} after the freeze");

    // Thawing the old connection changes nothing: the newest value stays.
    proxies[frozen].thaw();
    put_via(writer, &key, &set_body(&["c"], 600)).await;
    wait_ids_within(&store, &["c"], PROMPTLY).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigstopped_member_is_left_for_a_healthy_one() {
    let cluster = EtcdCluster::three();
    let key = unique_key("stale-sigstop");
    cluster.put(&key, &set_body(&["a"], 600));
    let store = connected_quick_store(&cluster, Layout::Key(key.clone())).await;
    let used = member_in_use(&cluster, &store);

    cluster.member(used).stop();
    let stopped_at = Instant::now();
    // If the frozen member led the cluster, the put waits for a new leader.
    put_via(cluster.member((used + 1) % 3), &key, &set_body(&["b"], 600)).await;
    let result = tokio::time::timeout(
        QUICK_STALE_AFTER + FAILOVER_SLACK + Duration::from_secs(3),
        async {
            while ids(&store) != ["b"] {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        },
    )
    .await;
    let status = store.status();
    cluster.member(used).cont();
    assert!(
        result.is_ok(),
        "the publish did not arrive {:?} after SIGSTOP: {status:?}",
        stopped_at.elapsed()
    );
    assert!(status.reconnects >= 1, "{status:?}");
    assert_ne!(
        status
            .endpoint
            .as_deref()
            .and_then(|e| member_index(&cluster, e)),
        Some(used),
        "{status:?}"
    );
    eprintln!("publish arrived {:?} after SIGSTOP", stopped_at.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_default_settings_a_frozen_connection_is_replaced_within_15s() {
    let cluster = EtcdCluster::three();
    let proxy = TcpForwarder::start(cluster.member(0).client_addr());
    let endpoints = vec![proxy.endpoint(), cluster.member(1).endpoint()];
    let key = unique_key("stale-default");
    cluster.put(&key, &set_body(&["a"], 600));
    let store = EtcdDirectiveStore::builder(&endpoints, Layout::Key(key.clone()), clock())
        .connect()
        .await
        .expect("connect");
    eventually(PROMPTLY, "the watch is established", || async {
        store.status().connected
    })
    .await;
    assert!(
        store
            .status()
            .endpoint
            .is_some_and(|e| e.ends_with(&proxy.endpoint())),
        "connected through the forwarder first"
    );
    proxy.freeze();
    let frozen_at = Instant::now();
    put_via(cluster.member(1), &key, &set_body(&["b"], 600)).await;
    wait_ids_within(&store, &["b"], Duration::from_secs(15) + FAILOVER_SLACK).await;
    eprintln!(
        "default settings: publish arrived {:?} after the freeze",
        frozen_at.elapsed()
    );
    assert!(store.status().reconnects >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_frozen_as_connect_returns_is_replaced() {
    // The connection freezes the moment `connect` returns, before the
    // background task (on a runtime nobody drives yet) has taken a single
    // step: whatever that task is about to do on it must be bounded too.
    let cluster = EtcdCluster::single();
    let proxy = TcpForwarder::start(cluster.member(0).client_addr());
    let endpoints = vec![proxy.endpoint(), cluster.member(0).endpoint()];
    let key = unique_key("stale-first-watch");
    cluster.put(&key, &set_body(&["a"], 600));
    let background = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let store = quick(&endpoints, Layout::Key(key.clone()))
        // Keepalive far beyond the staleness bound: it must not be what
        // rescues the store.
        .keepalive(Duration::from_secs(60), Duration::from_secs(20))
        .runtime(background.handle().clone())
        .connect()
        .await
        .expect("connect");
    assert_eq!(ids(&store), ["a"]);
    proxy.freeze();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let driver = std::thread::spawn(move || {
        background.block_on(async {
            let _ = stopped.await;
        });
    });

    let frozen_at = Instant::now();
    cluster.put(&key, &set_body(&["b"], 600));
    wait_ids_within(&store, &["b"], QUICK_STALE_AFTER + FAILOVER_SLACK).await;
    eprintln!("publish arrived {:?} after the freeze", frozen_at.elapsed());
    let status = store.status();
    assert!(status.reconnects >= 1, "{status:?}");
    drop(store);
    let _ = stop.send(());
    driver.join().expect("driver thread");
}
