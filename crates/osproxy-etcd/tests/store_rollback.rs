//! Anti-rollback (signed format v2) against a real etcd, as an attacker
//! with etcd write access and no key would try it: an old signed value put
//! back with a raw put is refused (`replayed`) and the newer set keeps
//! serving, in the single-key layout; in the prefix layout a deleted signed
//! key put back or an old signed key mixed in is refused
//! (`not_in_manifest`), and an old manifest is `replayed`; with a state
//! directory the refusal survives a restart; a fresh instance refuses a
//! value signed longer ago than the longest lifetime (`stale_signature`);
//! a trust store requiring v2 refuses v1 (`legacy_signature`); and key
//! rotation keeps working.

// Test helpers below: a failure fails the test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use common::*;
use osproxy_core::{Clock, ManualClock};
use osproxy_etcd::config::ConnectionConfig;
use osproxy_etcd::{EtcdDirectiveStore, EtcdStoreBuilder, Layout, Publisher};
use osproxy_observe::{
    decode_directive, DecodeLimits, DiagLevel, DirectiveSet, DirectiveStore, SignedFormat,
    SignerKey, TimedDirective, TrustStore,
};

fn signer(id: &str, seed: u8) -> SignerKey {
    SignerKey::from_seed(id, [seed; 32]).unwrap()
}

fn trusting(keys: &[&SignerKey]) -> TrustStore {
    let mut t = TrustStore::new();
    for k in keys {
        t.trust(k).unwrap();
    }
    t
}

async fn v2_publisher(cluster: &EtcdCluster, layout: Layout, key: &SignerKey) -> Publisher {
    Publisher::connect(ConnectionConfig::new(&cluster.endpoints()), layout, clock())
        .await
        .expect("connect")
        .with_signer(key.clone())
        .with_signed_format(SignedFormat::V2)
}

fn store_builder(cluster: &EtcdCluster, layout: Layout, trust: TrustStore) -> EtcdStoreBuilder {
    quick(&cluster.endpoints(), layout).trust_store(trust)
}

/// A fresh, empty state directory for one test.
fn state_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "osproxy-state-{}-{name}-{}",
        std::process::id(),
        unique_key("s").replace('/', "_")
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
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

fn directive(id: &str, level: &str) -> TimedDirective {
    let body = format!(r#"{{"id":"{id}","level":"{level}","capture":true,"ttl_secs":600}}"#);
    decode_directive(body.as_bytes(), clock().as_ref(), &DecodeLimits::default()).unwrap()
}

/// The replay attack, single key: publish a signed capture set, then an
/// empty one, then put the capture set's bytes back with a raw put.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_signed_set_put_back_is_refused_as_replayed() {
    let cluster = tokio::task::spawn_blocking(shared_cluster).await.unwrap();
    let key = unique_key("rollback-key");
    let layout = Layout::Key(key.clone());
    let ops = signer("ops-1", 1);
    let dir = state_dir("key");
    let publisher = v2_publisher(cluster, layout.clone(), &ops).await;
    let capture =
        DirectiveSet::try_from_directives(vec![directive("capture", "ShapeRewriteDiff")]).unwrap();
    publisher.publish(&capture, None).await.unwrap();
    let old = cluster.get(&key).unwrap();
    assert!(old.starts_with("osproxy-signed v2 ops-1 "), "{old}");

    let store = store_builder(cluster, layout.clone(), trusting(&[&ops]))
        .state_dir(&dir)
        .connect()
        .await
        .unwrap();
    assert_eq!(ids(&store), ["capture"]);
    publisher.publish(&DirectiveSet::new(), None).await.unwrap();
    wait_ids(&store, &[]).await;

    // The replay: refused, the empty set keeps serving, status and the
    // counters say so.
    cluster.put(&key, &old);
    wait_rejected(&store, &[(&key, "replayed")]).await;
    assert!(store.load().is_empty());
    assert_eq!(store.status().rejected_total.get("replayed"), Some(&1));

    // A restart with the state directory still refuses it.
    drop(store);
    let again = store_builder(cluster, layout.clone(), trusting(&[&ops]))
        .state_dir(&dir)
        .connect()
        .await
        .unwrap();
    assert!(again.load().is_empty());
    assert_eq!(rejections(&again), [(key.clone(), "replayed")]);
    // (Without one, a fresh instance cannot tell: the value is recent and
    // validly signed. This is what the state directory is for.)
    let fresh = store_builder(cluster, layout.clone(), trusting(&[&ops]))
        .connect()
        .await
        .unwrap();
    assert_eq!(ids(&fresh), ["capture"]);

    // A rollback re-signs with a new sequence: it applies everywhere.
    let live = publisher.live().await.unwrap();
    assert!(live.rejected.is_empty(), "the publisher only checks keys");
    publisher.publish(&capture, None).await.unwrap();
    wait_ids(&again, &["capture"]).await;
    wait_status(&again, "the replay is cleared", PROMPTLY, |s| {
        s.rejected.is_empty()
    })
    .await;
    // Each write signed a higher sequence than the one before.
    let seq_then = osproxy_observe::signed::signed_meta(old.as_bytes())
        .unwrap()
        .seq;
    let seq_now = osproxy_observe::signed::signed_meta(cluster.get(&key).unwrap().as_bytes())
        .unwrap()
        .seq;
    assert!(seq_now > seq_then + 1, "{seq_then} -> {seq_now}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The replay attack, prefix layout: a deleted signed key put back, an
/// old signed key mixed in, an old manifest put back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_keys_outside_the_signed_manifest_are_refused() {
    let cluster = tokio::task::spawn_blocking(shared_cluster).await.unwrap();
    let prefix = format!("{}/", unique_key("rollback-prefix"));
    let layout = Layout::Prefix(prefix.clone());
    let ops = signer("ops-1", 1);
    let dir = state_dir("prefix");
    let publisher = v2_publisher(cluster, layout.clone(), &ops).await;
    let store = store_builder(cluster, layout.clone(), trusting(&[&ops]))
        .state_dir(&dir)
        .connect()
        .await
        .unwrap();
    let (a, b) = (format!("{prefix}a"), format!("{prefix}b"));
    publisher.add(directive("a", "Shape")).await.unwrap();
    publisher
        .add(directive("b", "ShapeRewriteDiff"))
        .await
        .unwrap();
    wait_ids(&store, &["a", "b"]).await;
    assert!(store.status().rejected.is_empty());
    let manifest = cluster.get(&prefix).unwrap();
    assert!(
        manifest.starts_with("osproxy-signed v2 ops-1 "),
        "{manifest}"
    );
    let old_a = cluster.get(&a).unwrap();
    let old_b = cluster.get(&b).unwrap();

    // The operator removes b and changes a.
    publisher.remove("b").await.unwrap();
    publisher.add(directive("a", "ShapeTiming")).await.unwrap();
    let level = |s: &EtcdDirectiveStore| s.load().get("a").map(|d| d.level);
    eventually(PROMPTLY, "a is changed and b gone", || async {
        ids(&store) == ["a"] && level(&store) == Some(DiagLevel::ShapeTiming)
    })
    .await;
    // Four legitimate writes, each keys and manifest in one transaction:
    // never judged half applied, so never counted as a rejection.
    assert!(
        store.status().rejected_total.is_empty(),
        "{:?}",
        store.status().rejected_total
    );

    // A deleted key put back: refused alone.
    cluster.put(&b, &old_b);
    wait_rejected(&store, &[(&b, "not_in_manifest")]).await;
    assert_eq!(ids(&store), ["a"]);
    // An old key mixed in: refused, the current a keeps serving.
    cluster.put(&a, &old_a);
    wait_rejected(&store, &[(&a, "not_in_manifest"), (&b, "not_in_manifest")]).await;
    assert_eq!(level(&store), Some(DiagLevel::ShapeTiming));
    // And the old manifest that listed them: replayed.
    cluster.put(&prefix, &manifest);
    wait_rejected(
        &store,
        &[
            (&prefix, "replayed"),
            (&a, "not_in_manifest"),
            (&b, "not_in_manifest"),
        ],
    )
    .await;
    assert_eq!(ids(&store), ["a"]);
    assert_eq!(level(&store), Some(DiagLevel::ShapeTiming));
    let totals = store.status().rejected_total;
    assert_eq!(totals.get("replayed"), Some(&1));
    assert_eq!(totals.get("not_in_manifest"), Some(&2));

    // A restart with the state directory: everything above still refused,
    // and nothing serves that the last manifest did not list.
    drop(store);
    let again = store_builder(cluster, layout.clone(), trusting(&[&ops]))
        .state_dir(&dir)
        .connect()
        .await
        .unwrap();
    assert!(ids(&again).is_empty(), "{:?}", ids(&again));
    let refused: Vec<&str> = again.status().rejected.iter().map(|r| r.reason).collect();
    assert!(refused.contains(&"replayed"), "{refused:?}");

    // A publish replaces the lot, re-signed: served everywhere again.
    publisher
        .publish(
            &DirectiveSet::try_from_directives(vec![directive("c", "Shape")]).unwrap(),
            None,
        )
        .await
        .unwrap();
    wait_ids(&again, &["c"]).await;
    wait_status(&again, "no rejection", PROMPTLY, |s| s.rejected.is_empty()).await;
    assert_eq!(
        cluster.get(&a),
        None,
        "keys outside the manifest are deleted"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A fresh instance refuses a v2 value signed longer ago than the longest
/// lifetime (nothing it holds could still be live); a store requiring v2
/// refuses v1; rotation works with v2 values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_signatures_legacy_values_and_rotation() {
    let cluster = tokio::task::spawn_blocking(shared_cluster).await.unwrap();
    let key = unique_key("rollback-stale");
    let layout = Layout::Key(key.clone());
    let ops = signer("ops-1", 1);
    let week_ago = clock()
        .unix_nanos()
        .saturating_sub(8 * 24 * 3600 * 1_000_000_000);
    let past: Arc<dyn Clock> = Arc::new(ManualClock::at_unix_nanos(week_ago));
    let old_publisher = Publisher::connect(
        ConnectionConfig::new(&cluster.endpoints()),
        layout.clone(),
        past,
    )
    .await
    .unwrap()
    .with_signer(ops.clone())
    .with_signed_format(SignedFormat::V2);
    old_publisher
        .publish(&DirectiveSet::new(), None)
        .await
        .unwrap();
    let store = store_builder(cluster, layout.clone(), trusting(&[&ops]))
        .connect()
        .await
        .unwrap();
    assert_eq!(rejections(&store), [(key.clone(), "stale_signature")]);
    assert!(store.load().is_empty());

    // v1 from a publisher not yet moved: accepted, unless v2 is required.
    let v1 = Publisher::connect(
        ConnectionConfig::new(&cluster.endpoints()),
        layout.clone(),
        clock(),
    )
    .await
    .unwrap()
    .with_signer(ops.clone());
    v1.publish(
        &DirectiveSet::try_from_directives(vec![directive("v1", "Shape")]).unwrap(),
        None,
    )
    .await
    .unwrap();
    wait_ids(&store, &["v1"]).await;
    let strict = store_builder(
        cluster,
        layout.clone(),
        trusting(&[&ops]).requiring_signed_v2(),
    )
    .connect()
    .await
    .unwrap();
    assert_eq!(rejections(&strict), [(key.clone(), "legacy_signature")]);
    assert!(strict.load().is_empty());

    // Rotation: trust both, switch the publisher to the new key, drop the
    // old one from the trust store; v2 throughout.
    let new = signer("ops-2", 2);
    let both = store_builder(cluster, layout.clone(), trusting(&[&ops, &new]))
        .connect()
        .await
        .unwrap();
    let rotated = v2_publisher(cluster, layout.clone(), &new).await;
    // The live value is signed by the old key: the new publisher is told
    // to trust both while rotating.
    let rotated = rotated.with_trust_store(trusting(&[&ops, &new]));
    rotated
        .publish(
            &DirectiveSet::try_from_directives(vec![directive("rotated", "Shape")]).unwrap(),
            None,
        )
        .await
        .unwrap();
    wait_ids(&both, &["rotated"]).await;
    let only_new = store_builder(cluster, layout.clone(), trusting(&[&new]))
        .connect()
        .await
        .unwrap();
    assert_eq!(ids(&only_new), ["rotated"]);
}

/// The revision marker's note is unsigned: with a trust store, history
/// reports the note signed into a v2 value and flags a marker written
/// around the signers that says otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_prefers_the_signed_note_and_flags_a_forged_marker() {
    use etcd_client::{Client, Txn, TxnOp};
    use osproxy_etcd::SignedNote;
    use osproxy_observe::PublishNote;

    let cluster = tokio::task::spawn_blocking(shared_cluster).await.unwrap();
    let key = unique_key("rollback-note");
    let layout = Layout::Key(key.clone());
    let ops = signer("ops-1", 1);
    let publisher = v2_publisher(cluster, layout.clone(), &ops).await;
    let alice = PublishNote::new()
        .with_author("alice")
        .unwrap()
        .with_reason("INC-1: trace acme")
        .unwrap();
    let capture = DirectiveSet::try_from_directives(vec![directive("capture", "Shape")]).unwrap();
    publisher
        .publish_noted(&capture, None, &alice)
        .await
        .unwrap();
    let history = publisher.history(5).await.unwrap();
    let newest = &history.entries[0];
    assert_eq!(newest.note.author(), Some("alice"));
    assert!(
        matches!(&newest.signed_note, SignedNote::Signed { marker_agrees: true, note } if note.reason() == Some("INC-1: trace acme")),
        "{:?}",
        newest.signed_note
    );

    // Around the signers: the same signed bytes again, with a forged
    // marker note, in one transaction (one revision).
    let signed = cluster.get(&key).unwrap();
    let mut raw = Client::connect(cluster.endpoints(), None).await.unwrap();
    let forged = br#"{"author":"mallory","reason":"approved by CAB"}"#.to_vec();
    raw.txn(Txn::new().and_then([
        TxnOp::put(key.as_str(), signed.as_bytes(), None),
        TxnOp::put(layout.revision_key(), forged, None),
    ]))
    .await
    .unwrap();
    let history = publisher.history(5).await.unwrap();
    let newest = &history.entries[0];
    assert_eq!(newest.note.author(), Some("alice"), "the signed note wins");
    assert!(
        matches!(
            &newest.signed_note,
            SignedNote::Signed {
                marker_agrees: false,
                ..
            }
        ),
        "{:?}",
        newest.signed_note
    );
    // Without a trust store nothing can be verified: the marker is shown.
    let unchecked =
        Publisher::connect(ConnectionConfig::new(&cluster.endpoints()), layout, clock())
            .await
            .unwrap();
    let history = unchecked.history(1).await.unwrap();
    assert_eq!(history.entries[0].note.author(), Some("mallory"));
    assert_eq!(history.entries[0].signed_note, SignedNote::Absent);
}

/// Rotation in the prefix layout: a publisher with only the new key refuses
/// to edit over a manifest it cannot verify (rather than dropping every
/// key); told to trust both, it re-signs every key and the manifest with
/// the new key, so instances trusting only the new key serve them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_rotation_resigns_every_key_and_never_drops_them() {
    use osproxy_etcd::PublishError;

    let cluster = tokio::task::spawn_blocking(shared_cluster).await.unwrap();
    let prefix = format!("{}/", unique_key("rollback-rotate"));
    let layout = Layout::Prefix(prefix.clone());
    let (old, new) = (signer("ops-1", 1), signer("ops-2", 2));
    let first = v2_publisher(cluster, layout.clone(), &old).await;
    first.add(directive("a", "Shape")).await.unwrap();
    let both = store_builder(cluster, layout.clone(), trusting(&[&old, &new]))
        .connect()
        .await
        .unwrap();
    assert_eq!(ids(&both), ["a"]);

    let second = v2_publisher(cluster, layout.clone(), &new).await;
    match second.add(directive("b", "Shape")).await {
        Err(PublishError::Malformed { key, source, .. }) => {
            assert_eq!(key, prefix);
            assert_eq!(source.slug(), "unknown_key");
        }
        other => panic!("expected the manifest refused, got {other:?}"),
    }
    assert!(
        cluster.get(&format!("{prefix}a")).is_some(),
        "nothing dropped"
    );
    let second = second.with_trust_store(trusting(&[&old, &new]));
    second.add(directive("b", "Shape")).await.unwrap();
    wait_ids(&both, &["a", "b"]).await;
    for k in [prefix.clone(), format!("{prefix}a"), format!("{prefix}b")] {
        let v = cluster.get(&k).unwrap();
        assert!(v.starts_with("osproxy-signed v2 ops-2 "), "{k}: {v}");
    }
    let only_new = store_builder(cluster, layout, trusting(&[&new]))
        .connect()
        .await
        .unwrap();
    assert_eq!(ids(&only_new), ["a", "b"]);
    assert!(only_new.status().rejected.is_empty());
}
