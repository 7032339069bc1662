//! SPEC §5.7 (and §2, §7): expiry is never extended. A `ttl_secs` directive
//! is anchored when the store first sees that key revision; neither a
//! reconnect after an etcd restart nor a re-read of the same revision
//! re-anchors it, and a re-read that changes nothing does not re-swap the
//! snapshot. An absolute `expires_at` means the same moment in every store,
//! also one that connects later.
//!
//! The stores here run on a [`ManualClock`] that is moved forward between the
//! steps, so a re-anchored expiry would differ by exactly that much.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use osproxy_core::{Clock, ManualClock, SystemClock};
use osproxy_etcd::{EtcdDirectiveStore, Layout};
use osproxy_observe::{format_rfc3339, DirectiveStore};

const TTL: u64 = 600;
const SECOND: u64 = 1_000_000_000;

/// `(id, expires_at_unix_nanos)` of everything the store serves (decoded, so
/// every wall-clock expiry is known; 0 would stand for a missing one and fail
/// the comparisons).
fn expiries(store: &EtcdDirectiveStore) -> Vec<(String, u64)> {
    store
        .load()
        .directives()
        .iter()
        .map(|d| (d.id.clone(), d.expires_at_unix_nanos.unwrap_or(0)))
        .collect()
}

fn manual_store(
    endpoints: &[String],
    layout: Layout,
    clock: &Arc<ManualClock>,
) -> osproxy_etcd::EtcdStoreBuilder {
    let clock: Arc<dyn Clock> = Arc::clone(clock) as Arc<dyn Clock>;
    EtcdDirectiveStore::builder(endpoints, layout, clock)
        .stale_after(QUICK_STALE_AFTER)
        .progress_interval(Duration::from_secs(1))
        .backoff(Duration::from_millis(100), Duration::from_secs(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_restart_neither_re_arms_a_ttl_directive_nor_re_swaps() {
    let cluster = EtcdCluster::single();
    let key = unique_key("expiry-restart");
    cluster.put(&key, &set_body(&["a", "b"], TTL));
    let manual = Arc::new(ManualClock::new());
    let published_at = manual.unix_nanos();
    let store = manual_store(&cluster.endpoints(), Layout::Key(key.clone()), &manual)
        .connect()
        .await
        .expect("connect");
    let before = expiries(&store);
    assert_eq!(
        before,
        [
            ("a".to_owned(), published_at + TTL * SECOND),
            ("b".to_owned(), published_at + TTL * SECOND)
        ],
        "anchored when first seen"
    );
    eventually(PROMPTLY, "the watch is established", || async {
        store.status().connected
    })
    .await;
    let swaps = store.swaps();
    let last_update = store.status().last_update_unix_nanos;
    assert_eq!(
        last_update,
        Some(published_at),
        "status: time of the last swap"
    );

    manual.advance(Duration::from_secs(120));
    cluster.member(0).restart();
    wait_status(&store, "the store reconnected", PROMPTLY, |s| {
        s.connected && s.reconnects >= 1
    })
    .await;
    assert_eq!(expiries(&store), before, "the reconnect re-anchored");
    assert_eq!(store.swaps(), swaps, "the reconnect re-swapped");
    let status = store.status();
    assert_eq!(status.last_update_unix_nanos, last_update, "{status:?}");
    assert!(
        status
            .last_confirmed_unix_nanos
            .is_some_and(|t| t >= published_at + 120 * SECOND),
        "the new watch confirmed the store after the restart: {status:?}"
    );

    // The control: a new publication of the same body is a new revision and
    // is anchored anew, so the comparison above could have failed.
    cluster.put(&key, &set_body(&["a", "b"], TTL));
    // That put is a new publication of the same body: it is anchored anew.
    let republished_at = manual.unix_nanos();
    eventually(PROMPTLY, "the republish is applied", || async {
        store.status().applied_revision == mod_revision(&cluster, &key)
    })
    .await;
    assert_eq!(
        expiries(&store),
        [
            ("a".to_owned(), republished_at + TTL * SECOND),
            ("b".to_owned(), republished_at + TTL * SECOND)
        ]
    );
    assert_eq!(store.swaps(), swaps + 1, "only the republish swapped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_read_of_the_same_revisions_changes_no_expiry_and_swaps_nothing() {
    // Cut off while the store's resume revision is compacted: it must take a
    // fresh read, which finds every key at the revision it already has.
    let cluster = EtcdCluster::single();
    let proxy = TcpForwarder::start(cluster.member(0).client_addr());
    let prefix = format!("{}/", unique_key("expiry-reread"));
    cluster.put(&format!("{prefix}a"), &directive_body("a", TTL));
    cluster.put(&format!("{prefix}b"), &directive_body("b", TTL));
    let manual = Arc::new(ManualClock::new());
    let store = manual_store(&[proxy.endpoint()], Layout::Prefix(prefix.clone()), &manual)
        .connect()
        .await
        .expect("connect");
    eventually(PROMPTLY, "the watch is established", || async {
        store.status().connected
    })
    .await;
    let before = expiries(&store);
    assert_eq!(before.len(), 2);
    let swaps = store.swaps();

    proxy.freeze();
    wait_status(&store, "the store is cut off", PROMPTLY, |s| {
        !s.connected && s.reconnects >= 1
    })
    .await;
    manual.advance(Duration::from_secs(120));
    let other = unique_key("expiry-reread-other");
    for i in 0..10 {
        cluster.put(&other, &i.to_string());
    }
    let compacted = cluster.revision();
    cluster.compact(compacted);
    proxy.thaw();
    // Only a fresh read confirms a revision past the prefix's own changes.
    wait_status(&store, "the store re-read", PROMPTLY, |s| {
        s.connected && s.confirmed_revision >= compacted
    })
    .await;
    assert_eq!(expiries(&store), before, "the re-read re-anchored");
    assert_eq!(store.swaps(), swaps, "the re-read re-swapped");
    assert!(store.status().rejected.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absolute_expiry_is_the_same_moment_in_a_store_that_connects_later() {
    let cluster = EtcdCluster::single();
    let key = unique_key("expiry-absolute");
    let expires = (SystemClock.unix_nanos() / SECOND + 3600) * SECOND;
    let body = format!(
        r#"{{"directives":[{{"id":"abs","level":"Shape","expires_at":"{}"}}]}}"#,
        format_rfc3339(expires)
    );
    cluster.put(&key, &body);

    let early = key_store(&cluster, &key).await;
    // A store that starts ten minutes later (its clock says so).
    let later_clock = Arc::new(ManualClock::at_unix_nanos(
        SystemClock.unix_nanos() + 600 * SECOND,
    ));
    let late = manual_store(&cluster.endpoints(), Layout::Key(key.clone()), &later_clock)
        .connect()
        .await
        .expect("connect");
    assert_eq!(expiries(&early), [("abs".to_owned(), expires)]);
    assert_eq!(expiries(&late), [("abs".to_owned(), expires)]);
    // On each store's own monotonic timeline it ends that far from its now.
    let left_late = late.load().directives()[0]
        .expires_at
        .saturating_duration_since(later_clock.now());
    assert_eq!(
        left_late,
        Duration::from_nanos(expires - later_clock.unix_nanos())
    );
}
