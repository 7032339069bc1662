//! `osproxy_etcd::Publisher` against a real etcd: compare-and-swap semantics
//! in both layouts, read-modify-write retries under contention (no lost
//! update), the change feed, fleet status and connect errors.

// Test helpers below: a failure fails the test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use osproxy_core::SystemClock;
use osproxy_etcd::config::ConnectionConfig;
use osproxy_etcd::{ConfigError, Layout, PublishError, Publisher};
use osproxy_observe::{decode_directive, DecodeLimits, DirectiveSet, TimedDirective};

async fn publisher(cluster: &EtcdCluster, layout: Layout) -> Publisher {
    Publisher::connect(ConnectionConfig::new(&cluster.endpoints()), layout, clock())
        .await
        .expect("connect")
}

fn directive(id: &str) -> TimedDirective {
    let body = format!(r#"{{"id":"{id}","level":"Shape","ttl_secs":600}}"#);
    decode_directive(body.as_bytes(), &SystemClock, &DecodeLimits::default()).unwrap()
}

async fn next(changes: &mut osproxy_etcd::Changes) -> osproxy_etcd::Change {
    tokio::time::timeout(PROMPTLY, changes.next_change())
        .await
        .expect("a change arrives promptly")
        .expect("the watch stays open")
}

/// The ids of `set`, sorted.
fn sorted_ids(set: &DirectiveSet) -> Vec<String> {
    let mut ids: Vec<String> = set.directives().iter().map(|d| d.id.clone()).collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_layout_compare_and_swap() {
    let cluster = tokio::task::spawn_blocking(shared_cluster).await.unwrap();
    let key = unique_key("pub-key");
    let p = publisher(cluster, Layout::Key(key.clone())).await;
    assert_eq!(p.current().await.unwrap().1, 0);

    let r1 = p.publish(&decoded_set(&["a"], 600), Some(0)).await.unwrap();
    assert_eq!(mod_revision(cluster, &key), r1);
    match p.publish(&decoded_set(&["b"], 600), Some(0)).await {
        Err(PublishError::Conflict {
            expected: 0,
            actual,
        }) => assert_eq!(actual, r1),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let r2 = p.publish(&decoded_set(&["b"], 600), None).await.unwrap();
    assert!(r2 > r1);
    let (live, revision) = p.current().await.unwrap();
    assert_eq!((sorted_ids(&live), revision), (vec!["b".to_owned()], r2));
    assert_eq!(p.revision().await.unwrap(), r2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_adds_and_removes_lose_no_update() {
    let cluster = tokio::task::spawn_blocking(shared_cluster).await.unwrap();
    let key = unique_key("pub-contention");
    let p = Arc::new(publisher(cluster, Layout::Key(key.clone())).await);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let p = Arc::clone(&p);
        tasks.push(tokio::spawn(async move {
            p.add(directive(&format!("d{i}"))).await
        }));
    }
    let mut revisions = Vec::new();
    for t in tasks {
        // Each add either wins at once or retries after losing a race; with
        // 8 writers some may exhaust their attempts, which is reported.
        match t.await.unwrap() {
            Ok(w) => revisions.push(w.revision),
            Err(PublishError::Contended { attempts }) => {
                assert_eq!(attempts, osproxy_etcd::publisher::MAX_ATTEMPTS)
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    let (live, _) = p.current().await.unwrap();
    assert_eq!(
        live.len(),
        revisions.len(),
        "every successful add is in the set"
    );
    revisions.sort();
    revisions.dedup();
    assert_eq!(revisions.len(), live.len(), "each add has its own revision");

    let removed = p.remove(&live.directives()[0].id.clone()).await.unwrap();
    assert!(removed.replaced);
    assert!(matches!(
        p.remove("absent").await,
        Err(PublishError::NotFound { .. })
    ));
    assert_eq!(p.current().await.unwrap().0.len(), live.len() - 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_layout_swaps_the_whole_prefix_and_feeds_changes() {
    let cluster = tokio::task::spawn_blocking(shared_cluster).await.unwrap();
    let prefix = format!("{}/", unique_key("pub-prefix"));
    let p = publisher(cluster, Layout::Prefix(prefix.clone())).await;
    let (first, mut changes) = p.changes().await.unwrap();
    assert_eq!((first.revision, first.set.len()), (0, 0));

    let r1 = p
        .publish(&decoded_set(&["a", "b", "c"], 600), Some(0))
        .await
        .unwrap();
    let change = next(&mut changes).await;
    assert_eq!(change.revision, r1, "one transaction, one change");
    assert_eq!(sorted_ids(&change.set), ["a", "b", "c"]);

    // Another writer touches one key: a swap against the old revision fails.
    cluster.put(
        &format!("{prefix}b"),
        r#"{"id":"b","level":"Off","ttl_secs":60}"#,
    );
    let actual = mod_revision(cluster, &format!("{prefix}b"));
    match p.publish(&decoded_set(&["x"], 600), Some(r1)).await {
        Err(PublishError::Conflict {
            expected,
            actual: a,
        }) => assert_eq!((expected, a), (r1, actual)),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let change = next(&mut changes).await;
    assert_eq!(change.revision, actual);

    let w = p.add(directive("d")).await.unwrap();
    assert!(!w.replaced);
    assert!(p.add(directive("d")).await.unwrap().replaced);
    let removed = p.remove("a").await.unwrap();
    let (live, revision) = p.current().await.unwrap();
    assert_eq!(sorted_ids(&live), ["b", "c", "d"]);
    // The live revision is the remove's, although no key carries it.
    assert_eq!(revision, removed.revision);
    assert!(mod_revision(cluster, &format!("{prefix}d")) < revision);
    assert_eq!(p.revision().await.unwrap(), revision);
    // A swap against the revision before the remove fails; one against the
    // live revision holds, and a set equal to the live one writes nothing.
    match p.publish(&live, Some(removed.revision - 1)).await {
        Err(PublishError::Conflict { actual, .. }) => assert_eq!(actual, revision),
        other => panic!("expected a conflict, got {other:?}"),
    }
    // (b, written by another tool with ttl_secs, is rewritten canonically.)
    let normalized = p.publish(&live, Some(revision)).await.unwrap();
    assert!(normalized > revision);
    assert_eq!(p.publish(&live, None).await.unwrap(), normalized);
    let revision = normalized;
    // A revision beyond the cluster's is no promise of anything.
    assert!(matches!(
        p.publish(&live, Some(revision + 1_000_000)).await,
        Err(PublishError::Conflict { .. })
    ));

    // A second key carrying a taken id: the live set is rejected, named by
    // key (the key must name its directive, so it is `key_id_mismatch`).
    cluster.put(
        &format!("{prefix}zz"),
        r#"{"id":"c","level":"Shape","ttl_secs":60}"#,
    );
    match p.current().await {
        Err(PublishError::Malformed { source, key, .. }) => {
            assert_eq!(source.slug(), "key_id_mismatch");
            assert_eq!(key, format!("{prefix}zz"));
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_status_lists_reports_and_unreadable_keys() {
    let cluster = tokio::task::spawn_blocking(shared_cluster).await.unwrap();
    let key = unique_key("pub-fleet");
    let status_prefix = format!("{}/", unique_key("pub-fleet-status"));
    cluster.put(&key, &set_body(&["a"], 60));
    cluster.put(
        &format!("{status_prefix}i1"),
        r#"{"instance":"i1","applied_revision":7,"directives":1,"updated_unix_nanos":1}"#,
    );
    cluster.put(&format!("{status_prefix}junk"), "junk");
    let p = publisher(cluster, Layout::Key(key.clone())).await;
    let fleet = p.fleet_status(&status_prefix).await.unwrap();
    assert_eq!(fleet.latest_revision, mod_revision(cluster, &key));
    assert_eq!(fleet.instances.len(), 1);
    assert_eq!(fleet.instances[0].applied_revision, 7);
    assert_eq!(fleet.unreadable, [format!("{status_prefix}junk")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_errors_are_typed() {
    let endpoint = unused_endpoint();
    let mut c = ConnectionConfig::new(std::slice::from_ref(&endpoint));
    c.connect_timeout = Duration::from_secs(1);
    let err = Publisher::connect(c, Layout::Key("/k".into()), clock())
        .await
        .unwrap_err();
    assert!(matches!(err, PublishError::Connect(_)), "{err:?}");
    assert!(err.is_retryable());
    let source = std::error::Error::source(&err)
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(source.contains(&endpoint), "names the endpoint: {source}");

    let c = ConnectionConfig::new(&["127.0.0.1:2379".to_owned()]);
    let err = Publisher::connect(c, Layout::Key(String::new()), clock())
        .await
        .unwrap_err();
    assert!(
        matches!(err, PublishError::Config(ConfigError::EmptyKey)),
        "{err:?}"
    );
    assert!(!err.is_retryable());
}

/// The edits over a revision a caller showed: per key in the prefix layout
/// (another key's change does not matter, this key's does, and a key that
/// appeared meanwhile is not overwritten), over the whole set in the key
/// layout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_since_a_shown_revision_compare_per_key_in_the_prefix_layout() {
    use osproxy_observe::PublishNote;
    let cluster = tokio::task::spawn_blocking(shared_cluster).await.unwrap();
    let note = PublishNote::new().with_reason("shown").unwrap();
    let conflict = |r: Result<osproxy_etcd::Written, PublishError>| {
        assert!(matches!(r, Err(PublishError::Conflict { .. })), "{r:?}");
    };

    let prefix = format!("{}/", unique_key("pub-since"));
    let p = publisher(cluster, Layout::Prefix(prefix.clone())).await;
    let shown = p
        .publish(&decoded_set(&["a", "b"], 600), Some(0))
        .await
        .unwrap();
    // Someone else changes b and creates c after the caller saw `shown`.
    let mut b = directive("b");
    b.directive.sample_per_mille = 10;
    p.add_noted(b, &note).await.unwrap();
    p.add_noted(directive("c"), &note).await.unwrap();
    conflict(p.remove_noted_since("b", shown, &note).await);
    conflict(p.add_noted_since(directive("b"), shown, &note).await);
    conflict(p.add_noted_since(directive("c"), shown, &note).await);
    // a is as it was: ended and re-added over the same shown revision.
    let w = p.remove_noted_since("a", shown, &note).await.unwrap();
    assert!(w.revision > shown);
    let w = p
        .add_noted_since(directive("d"), shown, &note)
        .await
        .unwrap();
    assert!(!w.replaced);
    let (live, _) = p.current().await.unwrap();
    assert_eq!(sorted_ids(&live), ["b", "c", "d"]);
    assert!(matches!(
        p.remove_noted_since("a", w.revision, &note).await,
        Err(PublishError::NotFound { .. })
    ));

    let key = unique_key("pub-since-key");
    let p = publisher(cluster, Layout::Key(key)).await;
    let shown = p
        .publish(&decoded_set(&["a", "b"], 600), Some(0))
        .await
        .unwrap();
    p.add_noted(directive("c"), &note).await.unwrap();
    conflict(p.remove_noted_since("a", shown, &note).await);
    let (_, live) = p.current().await.unwrap();
    let w = p.remove_noted_since("a", live, &note).await.unwrap();
    let w = p
        .add_noted_since(directive("e"), w.revision, &note)
        .await
        .unwrap();
    let (live, revision) = p.current().await.unwrap();
    assert_eq!(
        (sorted_ids(&live), revision),
        (
            vec!["b".to_owned(), "c".to_owned(), "e".to_owned()],
            w.revision
        )
    );
}
