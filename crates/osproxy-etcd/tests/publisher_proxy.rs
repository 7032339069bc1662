//! The publisher through etcd's gRPC proxy (SPEC §5.12): compare-and-swap
//! and leases work the same through the proxy tier, and a store watching
//! through the proxy follows what the publisher writes there.

mod common;

use std::time::Duration;

use common::*;
use osproxy_etcd::config::ConnectionConfig;
use osproxy_etcd::{Layout, PublishError, Publisher};
use osproxy_test_support::EtcdProxy;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_swap_through_the_proxy() {
    let cluster = EtcdCluster::single();
    let proxy = EtcdProxy::start(&cluster);
    let key = unique_key("proxy-pub-key");
    let publisher = Publisher::connect(
        ConnectionConfig::new(&[proxy.endpoint()]),
        Layout::Key(key.clone()),
        clock(),
    )
    .await
    .expect("the publisher connects through the proxy");
    let store = quick(&[proxy.endpoint()], Layout::Key(key.clone()))
        .connect()
        .await
        .expect("a store connects through the proxy");

    let first = publisher
        .publish(&decoded_set(&["a"], 600), Some(0))
        .await
        .expect("the first publish over an empty key");
    wait_ids(&store, &["a"]).await;
    // A swap from the revision just read succeeds; one from before it fails.
    let second = publisher
        .publish(&decoded_set(&["b"], 600), Some(first))
        .await
        .expect("a swap from the live revision");
    assert!(second > first);
    match publisher
        .publish(&decoded_set(&["c"], 600), Some(first))
        .await
    {
        Err(PublishError::Conflict { .. }) => {}
        other => panic!("a swap from an older revision must conflict: {other:?}"),
    }
    wait_ids(&store, &["b"]).await;
    assert_eq!(store.status().reconnects, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_through_the_proxy_expire_keys_and_are_tidied() {
    // Its own etcd: the lease list is cluster-wide.
    let cluster = EtcdCluster::single();
    let proxy = EtcdProxy::start(&cluster);
    let prefix = format!("{}/", unique_key("proxy-pub-prefix"));
    let publisher = Publisher::connect(
        ConnectionConfig::new(&[proxy.endpoint()]),
        Layout::Prefix(prefix.clone()),
        clock(),
    )
    .await
    .expect("connect");
    let store = quick(&[proxy.endpoint()], Layout::Prefix(prefix.clone()))
        .connect()
        .await
        .expect("connect");

    for round in 0..3u64 {
        publisher
            .publish(&decoded_set(&["one", "two"], 600 + round * 60), None)
            .await
            .expect("publish through the proxy");
        assert_eq!(lease_count(&cluster), 1, "round {round}: one live lease");
    }
    wait_ids(&store, &["one", "two"]).await;

    // A short-lived directive's key is removed by etcd when its lease ends;
    // the store switches it off by its own expiry first, then the delete
    // arrives through the proxy.
    publisher
        .publish(&decoded_set(&["short"], 2), None)
        .await
        .expect("publish a 2 s directive");
    wait_ids(&store, &["short"]).await;
    eventually(PROMPTLY, "etcd expires the short lease's key", || async {
        cluster
            .etcdctl(&["get", "--prefix", "--keys-only", &prefix])
            .trim()
            .is_empty()
    })
    .await;
    eventually(
        Duration::from_secs(10),
        "the store applies the lease's delete",
        || async { store.status().directives == 0 },
    )
    .await;
    assert_eq!(ids(&store), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_and_a_compacted_revision_through_the_proxy() {
    // Its own etcd: the test compacts it.
    let cluster = EtcdCluster::single();
    let proxy = EtcdProxy::start(&cluster);
    let publisher = Publisher::connect(
        ConnectionConfig::new(&[proxy.endpoint()]),
        Layout::Key(unique_key("proxy-history")),
        clock(),
    )
    .await
    .expect("the publisher connects through the proxy");
    let r1 = publisher
        .publish(&decoded_set(&["a"], 600), Some(0))
        .await
        .expect("publish");
    let r2 = publisher
        .publish(&decoded_set(&["b"], 600), None)
        .await
        .expect("publish");
    let history = publisher.history(10).await.expect("history");
    let revisions: Vec<i64> = history.entries.iter().map(|e| e.revision).collect();
    assert_eq!(revisions, [r2, r1]);
    cluster.compact(r2);
    match publisher.set_at(r1).await {
        Err(PublishError::Compacted { requested, oldest }) => {
            assert_eq!((requested, oldest), (r1, r2));
        }
        other => panic!("expected compacted through the proxy, got {other:?}"),
    }
}
