//! SPEC §9 signed directive sets against a real etcd: with a trust store an
//! instance applies only values signed by a trusted key over exactly the
//! bytes it applies, in both layouts; an unsigned `etcdctl put` is rejected
//! as `unsigned`, a signature made for other bytes (or another key) as
//! `bad_signature`, a foreign key as `unknown_key`, and the last good set
//! keeps serving. Without a trust store a signed value still applies.

// Test helpers below: a failure fails the test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use common::*;
use osproxy_etcd::config::ConnectionConfig;
use osproxy_etcd::{EtcdDirectiveStore, Layout, PublishError, Publisher};
use osproxy_observe::signed::sign_value;
use osproxy_observe::{
    decode_directive, encode_directive_set, DecodeLimits, DirectiveStore, SignerKey, TrustStore,
};

fn signer(id: &str, seed: u8) -> SignerKey {
    SignerKey::from_seed(id, [seed; 32]).unwrap()
}

fn trusting(key: &SignerKey) -> TrustStore {
    let mut t = TrustStore::new();
    t.trust(key).unwrap();
    t
}

async fn signing_publisher(cluster: &EtcdCluster, layout: Layout, key: &SignerKey) -> Publisher {
    Publisher::connect(ConnectionConfig::new(&cluster.endpoints()), layout, clock())
        .await
        .expect("connect")
        .with_signer(key.clone())
}

async fn trusting_store(
    cluster: &EtcdCluster,
    layout: Layout,
    key: &SignerKey,
) -> EtcdDirectiveStore {
    quick(&cluster.endpoints(), layout)
        .trust_store(trusting(key))
        .connect()
        .await
        .expect("connect")
}

async fn wait_rejected(store: &EtcdDirectiveStore, want: &[(&str, &str)]) {
    let want: Vec<(String, &str)> = want.iter().map(|(k, r)| ((*k).to_owned(), *r)).collect();
    wait_status(store, &format!("rejections {want:?}"), PROMPTLY, |s| {
        let got: Vec<(String, &str)> = s
            .rejected
            .iter()
            .map(|r| (r.key.clone(), r.reason))
            .collect();
        got == want
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_layout_applies_signed_values_only() {
    let cluster = tokio::task::spawn_blocking(shared_cluster).await.unwrap();
    let key = unique_key("trust-key");
    let ops = signer("ops-1", 1);
    let publisher = signing_publisher(cluster, Layout::Key(key.clone()), &ops).await;
    publisher
        .publish(&decoded_set(&["a"], 600), None)
        .await
        .unwrap();
    let store = trusting_store(cluster, Layout::Key(key.clone()), &ops).await;
    assert_eq!(ids(&store), ["a"], "a signed publish applies at connect");
    assert!(store.status().rejected.is_empty());
    assert_eq!(
        store.snapshot().key_id(),
        Some("ops-1"),
        "the verified key is stamped on the applied set"
    );
    let signed = cluster.get(&key).unwrap();
    assert!(signed.starts_with("osproxy-signed v1 ops-1 "), "{signed}");

    // An unsigned etcdctl put: rejected, the last good set keeps serving.
    cluster.put(&key, &set_body(&["evil"], 600));
    wait_rejected(&store, &[(&key, "unsigned")]).await;
    assert_eq!(ids(&store), ["a"]);

    // A signature made for other bytes: a valid header over another payload.
    let (header, _) = signed.split_once('\n').unwrap();
    cluster.put(&key, &format!("{header}\n{}", set_body(&["evil"], 600)));
    wait_rejected(&store, &[(&key, "bad_signature")]).await;
    assert_eq!(ids(&store), ["a"]);

    // Signed by a key this instance does not trust.
    let stranger = signer("stranger", 2);
    let absolute = encode_directive_set(&decoded_set(&["evil"], 600));
    let foreign = sign_value(&stranger, key.as_bytes(), &absolute);
    cluster.put(&key, std::str::from_utf8(&foreign).unwrap());
    wait_rejected(&store, &[(&key, "unknown_key")]).await;
    assert_eq!(ids(&store), ["a"]);

    // An instance without a trust store applies a signed value's payload
    // (signing is rolled out before it is enforced).
    let plain = quick(&cluster.endpoints(), Layout::Key(key.clone()))
        .connect()
        .await
        .unwrap();
    assert_eq!(ids(&plain), ["evil"]);
    assert_eq!(
        plain.snapshot().key_id(),
        None,
        "nothing verified, nothing stamped"
    );

    // A signed publish applies again and clears the rejection. The live
    // value is not trusted, so an edit refuses to re-sign it; a whole-set
    // publish replaces it.
    match publisher
        .add(decoded_set(&["b"], 600).directives()[0].clone())
        .await
    {
        Err(PublishError::Malformed { source, .. }) => assert_eq!(source.slug(), "unknown_key"),
        other => panic!("expected the live value refused, got {other:?}"),
    }
    publisher
        .publish(&decoded_set(&["a", "c"], 600), None)
        .await
        .unwrap();
    wait_ids(&store, &["a", "c"]).await;
    wait_ids(&plain, &["a", "c"]).await;
    assert!(store.status().rejected.is_empty());
    // Signed edits keep it signed.
    publisher.remove("a").await.unwrap();
    wait_ids(&store, &["c"]).await;
    assert!(store.status().rejected.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_layout_signs_each_key_and_binds_it_to_its_key() {
    let cluster = tokio::task::spawn_blocking(shared_cluster).await.unwrap();
    let prefix = format!("{}/", unique_key("trust-prefix"));
    let ops = signer("ops-1", 1);
    let layout = Layout::Prefix(prefix.clone());
    let publisher = signing_publisher(cluster, layout.clone(), &ops).await;
    let store = trusting_store(cluster, layout.clone(), &ops).await;
    let d = |id: &str| {
        let body = format!(r#"{{"id":"{id}","level":"Shape","ttl_secs":600}}"#);
        decode_directive(body.as_bytes(), clock().as_ref(), &DecodeLimits::default()).unwrap()
    };
    publisher.add(d("a")).await.unwrap();
    publisher.add(d("b")).await.unwrap();
    wait_ids(&store, &["a", "b"]).await;

    // An unsigned key is rejected alone; the others apply.
    let x = format!("{prefix}x");
    cluster.put(&x, &directive_body("x", 600));
    wait_rejected(&store, &[(&x, "unsigned")]).await;
    assert_eq!(ids(&store), ["a", "b"]);

    // A signed value copied to another key: the key is covered, refused.
    let copied = cluster.get(&format!("{prefix}a")).unwrap();
    let y = format!("{prefix}y");
    cluster.put(&y, &copied);
    wait_rejected(&store, &[(&x, "unsigned"), (&y, "bad_signature")]).await;

    // A signed key updated with other bytes keeps its last good directive.
    let a = format!("{prefix}a");
    let (header, _) = copied.split_once('\n').unwrap();
    cluster.put(
        &a,
        &format!(
            "{header}\n{}",
            r#"{"id":"a","level":"ShapeRewriteDiff","ttl_secs":600}"#
        ),
    );
    wait_rejected(
        &store,
        &[
            (&a, "bad_signature"),
            (&x, "unsigned"),
            (&y, "bad_signature"),
        ],
    )
    .await;
    assert_eq!(ids(&store), ["a", "b"]);
    assert_eq!(
        store.load().get("a").unwrap().level,
        osproxy_observe::DiagLevel::Shape
    );

    // A whole signed publish replaces everything, all keys signed.
    publisher
        .publish(&decoded_set(&["c"], 600), None)
        .await
        .unwrap();
    wait_ids(&store, &["c"]).await;
    assert!(rejections(&store).is_empty(), "{:?}", rejections(&store));
}
