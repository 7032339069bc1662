//! SPEC §5.12 through etcd's gRPC proxy (`etcd grpc-proxy start`), which
//! coalesces watches and does not answer watch progress requests
//! (etcd-io/etcd#19710): an idle store keeps its one connection (freshness
//! is confirmed by liveness reads instead), the seed scenario and a connect
//! race hold, a frozen or killed proxy and a proxy whose member died are left
//! within the staleness bound, and a store cut off behind the proxy while
//! its revisions are compacted converges on a fresh read.

mod common;

use std::time::Duration;

use common::*;
use osproxy_etcd::{EtcdDirectiveStore, Layout};
use osproxy_observe::DirectiveStore;
use osproxy_test_support::EtcdProxy;
use tokio::time::Instant;

/// Reconnect, re-watch and propagation on a loaded machine, on top of the
/// staleness bound.
const FAILOVER_SLACK: Duration = Duration::from_secs(7);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_store_keeps_one_connection_and_stays_fresh_through_the_proxy() {
    let cluster = EtcdCluster::single();
    let proxy = EtcdProxy::start(&cluster);
    let key = unique_key("proxy-idle");
    cluster.put(&key, &set_body(&["a"], 600));
    let store = quick(&[proxy.endpoint()], Layout::Key(key.clone()))
        .connect()
        .await
        .expect("connect through the proxy");
    assert_eq!(ids(&store), ["a"]);
    eventually(PROMPTLY, "the watch is established", || async {
        store.status().connected
    })
    .await;

    // Four staleness bounds of silence: progress requests go unanswered, the
    // liveness reads confirm, nothing reconnects, freshness never lapses.
    let idle_since = Instant::now();
    let mut confirmations = Vec::new();
    while idle_since.elapsed() < 4 * QUICK_STALE_AFTER {
        let s = store.status();
        assert!(
            s.connected && s.reconnects == 0,
            "an idle, healthy proxy connection was replaced: {s:?}"
        );
        assert!(
            s.staleness.is_some_and(|st| st < QUICK_STALE_AFTER),
            "freshness lapsed behind the proxy: {s:?}"
        );
        if let Some(at) = s.last_confirmed_unix_nanos {
            if confirmations.last() != Some(&at) {
                confirmations.push(at);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The liveness reads did the confirming: several distinct ones.
    assert!(
        confirmations.len() >= 4,
        "only {} confirmations in {:?}",
        confirmations.len(),
        idle_since.elapsed()
    );
    // And the watch still delivers.
    cluster.put(&key, &set_body(&["b"], 600));
    wait_ids(&store, &["b"]).await;
    assert_eq!(store.status().reconnects, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_scenario_holds_through_the_proxy() {
    let cluster = EtcdCluster::single();
    let proxy = EtcdProxy::start(&cluster);
    let key = unique_key("proxy-seed");
    // A missing key is the empty set; a malformed value keeps the last good.
    let store = EtcdDirectiveStore::connect(&[proxy.endpoint()], key.clone(), clock())
        .await
        .expect("the seed constructor connects through the proxy");
    assert!(ids(&store).is_empty());
    cluster.put(&key, &set_body(&["a", "b"], 600));
    wait_ids(&store, &["a", "b"]).await;
    cluster.put(&key, r#"{"directives":[{"id":"x","tennant":"t"}]}"#);
    wait_status(&store, "the malformed publish is reported", PROMPTLY, |s| {
        !s.rejected.is_empty()
    })
    .await;
    assert_eq!(ids(&store), ["a", "b"]);
    cluster.etcdctl(&["del", &key]);
    wait_ids(&store, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_connecting_during_writes_through_the_proxy_converge() {
    let cluster = EtcdCluster::single();
    let proxy = EtcdProxy::start(&cluster);
    let key = unique_key("proxy-race");
    let endpoints = vec![proxy.endpoint()];
    let writer = {
        let key = key.clone();
        let endpoints = cluster.endpoints();
        tokio::spawn(async move {
            let mut client = etcd_client::Client::connect(&endpoints, None)
                .await
                .expect("writer connects");
            for i in 0..60 {
                let id = format!("w{i}");
                client
                    .put(key.as_str(), set_body(&[&id], 600), None)
                    .await
                    .expect("put");
            }
        })
    };
    let mut stores = Vec::new();
    for _ in 0..20 {
        stores.push(
            quick(&endpoints, Layout::Key(key.clone()))
                .connect()
                .await
                .expect("connect during writes"),
        );
    }
    writer.await.expect("writer");
    for store in &stores {
        wait_ids(store, &["w59"]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_proxy_is_left_within_the_staleness_bound() {
    let cluster = EtcdCluster::single();
    let proxy = EtcdProxy::start(&cluster);
    let key = unique_key("proxy-frozen");
    cluster.put(&key, &set_body(&["a"], 600));
    // The proxy first; the member directly as the fail-over.
    let endpoints = vec![proxy.endpoint(), cluster.member(0).endpoint()];
    let store = quick(&endpoints, Layout::Key(key.clone()))
        .connect()
        .await
        .expect("connect");
    assert!(store
        .status()
        .endpoint
        .is_some_and(|e| e.ends_with(&proxy.endpoint())));

    proxy.stop();
    let frozen_at = Instant::now();
    cluster.put(&key, &set_body(&["b"], 600));
    let arrived = tokio::time::timeout(QUICK_STALE_AFTER + FAILOVER_SLACK, async {
        while ids(&store) != ["b"] {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let status = store.status();
    proxy.cont();
    assert!(
        arrived.is_ok(),
        "the publish did not arrive {:?} after the proxy froze: {status:?}",
        frozen_at.elapsed()
    );
    assert!(status.reconnects >= 1, "{status:?}");
    assert!(
        status
            .endpoint
            .as_deref()
            .is_some_and(|e| e.ends_with(&cluster.member(0).endpoint())),
        "moved to the member: {status:?}"
    );
    eprintln!(
        "publish arrived {:?} after the proxy froze",
        frozen_at.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_proxy_fails_over_to_another_proxy() {
    let cluster = EtcdCluster::single();
    let first = EtcdProxy::start(&cluster);
    let second = EtcdProxy::start(&cluster);
    let key = unique_key("proxy-killed");
    cluster.put(&key, &set_body(&["a"], 600));
    let store = quick(
        &[first.endpoint(), second.endpoint()],
        Layout::Key(key.clone()),
    )
    .connect()
    .await
    .expect("connect");
    first.kill();
    cluster.put(&key, &set_body(&["b"], 600));
    wait_ids_within(&store, &["b"], QUICK_STALE_AFTER + FAILOVER_SLACK).await;
    let status = store.status();
    assert!(status.reconnects >= 1, "{status:?}");
    assert!(
        status
            .endpoint
            .as_deref()
            .is_some_and(|e| e.ends_with(&second.endpoint())),
        "{status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_whose_member_died_is_left_for_a_member() {
    let cluster = EtcdCluster::three();
    // A proxy in front of member 0 only; members 1 and 2 as direct fall-backs.
    let proxy = EtcdProxy::start_for(vec![cluster.member(0).endpoint()]);
    let key = unique_key("proxy-member-died");
    cluster.put(&key, &set_body(&["a"], 600));
    let endpoints = vec![
        proxy.endpoint(),
        cluster.member(1).endpoint(),
        cluster.member(2).endpoint(),
    ];
    let store = quick(&endpoints, Layout::Key(key.clone()))
        .connect()
        .await
        .expect("connect");
    assert!(store
        .status()
        .endpoint
        .is_some_and(|e| e.ends_with(&proxy.endpoint())));

    cluster.member(0).kill();
    let killed_at = Instant::now();
    put_via(cluster.member(1), &key, &set_body(&["b"], 600)).await;
    wait_ids_within(&store, &["b"], QUICK_STALE_AFTER + FAILOVER_SLACK).await;
    let status = store.status();
    assert!(status.reconnects >= 1, "{status:?}");
    assert!(
        !status
            .endpoint
            .as_deref()
            .is_some_and(|e| e.ends_with(&proxy.endpoint())),
        "{status:?}"
    );
    eprintln!(
        "publish arrived {:?} after the proxy's member died",
        killed_at.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_cut_off_behind_the_proxy_while_compacted_converges() {
    let cluster = EtcdCluster::single();
    let proxy = EtcdProxy::start(&cluster);
    let forwarder = TcpForwarder::start(proxy.addr());
    let key = unique_key("proxy-compacted");
    cluster.put(&key, &set_body(&["a"], 600));
    let store = quick(&[forwarder.endpoint()], Layout::Prefix(format!("{key}/")))
        .connect()
        .await
        .expect("connect");
    cluster.put(&format!("{key}/one"), &directive_body("one", 600));
    wait_ids(&store, &["one"]).await;

    // Cut off: the connection freezes; meanwhile one key is deleted, another
    // written 50 times, and everything compacted.
    forwarder.freeze();
    cluster.etcdctl(&["del", &format!("{key}/one")]);
    // (A key holds the directive its suffix names: each write of two has
    // its own sampling rate, the last one 49‰.)
    for i in 0..50 {
        cluster.put(
            &format!("{key}/two"),
            &format!(r#"{{"id":"two","level":"Shape","sample_per_mille":{i},"ttl_secs":600}}"#),
        );
    }
    compact_now(&cluster);
    // Where versions differ: when the store's check "may I resume?" (a read
    // at the revision before its resume point) reaches etcd after the
    // compaction, etcd 3.5.1's grpc-proxy refuses it with code Unknown
    // rather than OutOfRange ("mvcc: required revision has been compacted"
    // in the message only); the store must read afresh all the same, not
    // retry the resume forever (it did, in about one run in three).
    forwarder.thaw();
    wait_ids_within(&store, &["two"], QUICK_STALE_AFTER + FAILOVER_SLACK).await;
    eventually(PROMPTLY, "two's last write serves", || async {
        store
            .load()
            .get("two")
            .is_some_and(|d| d.sample_per_mille == 49)
    })
    .await;
}
