//! The seed's scenario against a real etcd: a publish is read at connect, a
//! later publish propagates without restart, a malformed publish keeps the
//! last good set, a delete empties it and a republish after delete works.

mod common;

use common::*;
use osproxy_etcd::{EtcdDirectiveStore, EtcdError};
use osproxy_observe::DirectiveStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_scenario_end_to_end() {
    let cluster = EtcdCluster::single();
    let key = unique_key("seed");
    cluster.put(&key, &set_body(&["a"], 600));

    // Exactly the seed's constructor.
    let store = EtcdDirectiveStore::connect(&cluster.endpoints(), key.clone(), clock())
        .await
        .expect("connect");
    assert_eq!(store.load().len(), 1, "publish is read at connect");

    cluster.put(&key, &set_body(&["a", "b"], 600));
    wait_ids(&store, &["a", "b"]).await;

    cluster.put(
        &key,
        r#"{"directives":[{"id":"x","level":"Shape","tennant":"acme","ttl_secs":60}]}"#,
    );
    let what = "the malformed publish is reported";
    eventually(PROMPTLY, what, || async {
        store
            .status()
            .rejected
            .iter()
            .any(|r| r.reason == "unknown_field")
    })
    .await;
    assert_eq!(ids(&store), ["a", "b"], "last good set keeps serving");
    assert_eq!(store.status().rejected_total.get("unknown_field"), Some(&1));

    cluster.etcdctl(&["del", &key]);
    wait_ids(&store, &[]).await;
    assert!(
        store.status().rejected.is_empty(),
        "a deleted key has no standing rejection"
    );

    cluster.put(&key, &set_body(&["c"], 600));
    wait_ids(&store, &["c"]).await;
    let status = store.status();
    assert!(status.connected);
    assert_eq!(status.reconnects, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_key_at_connect_is_empty_and_malformed_at_connect_is_empty_and_reported() {
    let cluster = EtcdCluster::single();
    let missing = unique_key("missing");
    let store = key_store(&cluster, &missing).await;
    assert!(store.load().is_empty());
    assert!(store.status().rejected.is_empty());

    let bad = unique_key("bad");
    cluster.put(&bad, "not json");
    let store = key_store(&cluster, &bad).await;
    assert!(store.load().is_empty());
    let rejected = store.status().rejected;
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].reason, "malformed_json");
    assert_eq!(rejected[0].key, bad);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_endpoint_fails_within_the_connect_timeout() {
    // A port nobody listens on: refused at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoints = vec![format!("127.0.0.1:{port}")];
    let err = EtcdDirectiveStore::connect(&endpoints, "/k", clock())
        .await
        .expect_err("nothing listens there");
    assert!(matches!(err, EtcdError::Connect(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&endpoints[0]), "names the endpoint: {text}");
}
