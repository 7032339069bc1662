//! `Publisher::history`, `set_at`, `diff` and `rollback` against a real etcd,
//! in both layouts: notes (author, reason, time) read back per revision,
//! changes per revision, rollback keeping absolute expiries and dropping
//! expired directives, a CAS conflict during rollback, and compaction.

// Test helpers below: a failure fails the test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use osproxy_core::{Clock, ManualClock};
use osproxy_etcd::config::ConnectionConfig;
use osproxy_etcd::{Layout, PublishError, Publisher, RecordedNote};
use osproxy_observe::{decode_directive_set, DirectiveSet, PublishNote};

fn layouts(name: &str) -> [Layout; 2] {
    [
        Layout::Key(unique_key(name)),
        Layout::Prefix(format!("{}/", unique_key(name))),
    ]
}

async fn publisher(cluster: &EtcdCluster, layout: Layout, clock: Arc<dyn Clock>) -> Publisher {
    Publisher::connect(ConnectionConfig::new(&cluster.endpoints()), layout, clock)
        .await
        .expect("connect")
}

fn note(author: &str, reason: &str) -> PublishNote {
    PublishNote::new()
        .with_author(author)
        .unwrap()
        .with_reason(reason)
        .unwrap()
}

/// A set of `(id, seconds to live)` with absolute expiries on `clock`.
fn set_on(clock: &ManualClock, ids: &[(&str, u64)]) -> DirectiveSet {
    let list: Vec<String> = ids
        .iter()
        .map(|(id, ttl)| format!(r#"{{"id":"{id}","level":"Shape","ttl_secs":{ttl}}}"#))
        .collect();
    let body = format!(r#"{{"directives":[{}]}}"#, list.join(","));
    decode_directive_set(body.as_bytes(), clock).unwrap()
}

fn sorted_ids(set: &DirectiveSet) -> Vec<String> {
    let mut ids: Vec<String> = set.directives().iter().map(|d| d.id.clone()).collect();
    ids.sort();
    ids
}

fn expiry(set: &DirectiveSet, id: &str) -> Option<u64> {
    set.directives()
        .iter()
        .find(|d| d.id == id)
        .and_then(|d| d.expires_at_unix_nanos)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_lists_each_revision_with_its_note_and_changes_in_both_layouts() {
    let cluster = tokio::task::spawn_blocking(shared_cluster).await.unwrap();
    for layout in layouts("hist-list") {
        let clock = Arc::new(ManualClock::new());
        let p = publisher(cluster, layout.clone(), clock.clone()).await;
        let empty = p.history(10).await.unwrap();
        assert_eq!(empty.live_revision, 0);
        assert!(empty.entries.is_empty() && !empty.more && empty.compacted.is_none());

        let r1 = p
            .publish_noted(
                &set_on(&clock, &[("a", 600), ("b", 600)]),
                Some(0),
                &note("alice", "first look"),
            )
            .await
            .unwrap();
        let added = set_on(&clock, &[("c", 600)]).directives()[0].clone();
        let r2 = p
            .add_noted(added, &note("bob", "more detail"))
            .await
            .unwrap()
            .revision;
        let r3 = p
            .remove_noted("a", &PublishNote::new().with_author("carol").unwrap())
            .await
            .unwrap()
            .revision;
        // Another tool writes: a revision without a note.
        let foreign = match &layout {
            Layout::Key(k) => {
                cluster.put(k, &set_body(&["b", "c", "x"], 600));
                k.clone()
            }
            Layout::Prefix(prefix) => {
                let key = format!("{prefix}x");
                cluster.put(&key, &directive_body("x", 600));
                key
            }
        };
        let r4 = mod_revision(cluster, &foreign);

        let h = p.history(10).await.unwrap();
        assert_eq!(h.live_revision, r4, "{layout:?}");
        let revisions: Vec<i64> = h.entries.iter().map(|e| e.revision).collect();
        assert_eq!(revisions, [r4, r3, r2, r1], "{layout:?}");
        assert!(!h.more && h.compacted.is_none());
        let [e4, e3, e2, e1] = &h.entries[..] else {
            unreachable!()
        };
        assert_eq!(
            e4.note,
            RecordedNote::Unknown,
            "a foreign write has no note"
        );
        assert_eq!(e3.note.author(), Some("carol"));
        assert_eq!(e3.note.reason(), None);
        assert_eq!(e2.note.author(), Some("bob"));
        assert_eq!(e2.note.reason(), Some("more detail"));
        assert_eq!(e1.note.author(), Some("alice"));
        assert_eq!(e1.note.reason(), Some("first look"));
        assert_eq!(
            e1.note.published_at_unix_nanos(),
            Some(clock.unix_nanos()),
            "the time of the write, on the publisher's clock"
        );
        let changes = |e: &osproxy_etcd::HistoryEntry| e.changes.clone().unwrap();
        assert_eq!(changes(e1).added, ["a", "b"]);
        assert_eq!(changes(e2).added, ["c"]);
        assert_eq!(changes(e3).removed, ["a"]);
        assert!(changes(e3).added.is_empty() && changes(e3).changed.is_empty());
        assert_eq!(changes(e4).added, ["x"]);
        assert_eq!(sorted_ids(&e3.state.set), ["b", "c"]);
        assert_eq!(sorted_ids(&e1.state.set), ["a", "b"]);

        let cut = p.history(2).await.unwrap();
        assert_eq!(cut.entries.len(), 2);
        assert!(cut.more, "older revisions remain");

        let (live, live_note) = p.live_noted().await.unwrap();
        assert_eq!(live.revision, r4);
        assert_eq!(live_note, RecordedNote::Unknown);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_and_set_at_read_past_revisions_in_both_layouts() {
    let cluster = tokio::task::spawn_blocking(shared_cluster).await.unwrap();
    for layout in layouts("hist-diff") {
        let clock = Arc::new(ManualClock::new());
        let p = publisher(cluster, layout.clone(), clock.clone()).await;
        let r1 = p
            .publish(&set_on(&clock, &[("a", 600), ("b", 600)]), Some(0))
            .await
            .unwrap();
        let r2 = p
            .publish(&set_on(&clock, &[("b", 900), ("c", 600)]), None)
            .await
            .unwrap();

        let at = p.set_at(r1).await.unwrap();
        assert_eq!(sorted_ids(&at.state.set), ["a", "b"], "{layout:?}");
        assert_eq!(at.state.revision, r1);
        let between = p.set_at(r2 - 1).await.unwrap();
        assert_eq!(between.state.revision, r1, "the last change at or before");

        let d = p.diff(r1, Some(r2)).await.unwrap();
        assert_eq!(d.changes.added, ["c"]);
        assert_eq!(d.changes.removed, ["a"]);
        assert_eq!(d.changes.changed, ["b"]);
        let to_live = p.diff(r1, None).await.unwrap();
        assert_eq!(to_live.changes, d.changes);
        assert_eq!(to_live.to.state.revision, r2);

        for bad in [0, cluster.revision() + 1000] {
            match p.set_at(bad).await {
                Err(e @ PublishError::NoSuchRevision { .. }) => {
                    assert_eq!(e.slug(), "no_such_revision");
                }
                other => panic!("revision {bad}: expected no_such_revision, got {other:?}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_keeps_expiries_drops_expired_and_records_its_note_in_both_layouts() {
    let cluster = tokio::task::spawn_blocking(shared_cluster).await.unwrap();
    for layout in layouts("hist-rollback") {
        let clock = Arc::new(ManualClock::new());
        let p = publisher(cluster, layout.clone(), clock.clone()).await;
        let old = set_on(&clock, &[("keep", 600), ("short", 5)]);
        let r1 = p.publish(&old, Some(0)).await.unwrap();
        let r2 = p
            .publish(&set_on(&clock, &[("other", 600)]), None)
            .await
            .unwrap();
        clock.advance(Duration::from_secs(10));

        let plan = p
            .rollback(r1, None, &PublishNote::new(), true)
            .await
            .unwrap();
        assert_eq!(plan.revision, None, "a dry run writes nothing");
        assert_eq!(p.revision().await.unwrap(), r2);
        assert_eq!(plan.expired, ["short"]);
        assert_eq!(sorted_ids(&plan.set), ["keep"]);
        assert_eq!(plan.changes.added, ["keep"]);
        assert_eq!(plan.changes.removed, ["other"]);

        let done = p
            .rollback(r1, Some(r2), &note("dave", "noisy"), false)
            .await
            .unwrap();
        let written = done.revision.unwrap();
        assert!(written > r2, "{layout:?}");
        let (live, live_note) = p.live_noted().await.unwrap();
        assert_eq!(live.revision, written);
        assert_eq!(sorted_ids(&live.set), ["keep"]);
        assert_eq!(
            expiry(&live.set, "keep"),
            expiry(&old, "keep"),
            "the absolute expiry is kept, never extended"
        );
        assert_eq!(live_note.author(), Some("dave"));
        assert_eq!(
            live_note.reason(),
            Some(format!("rollback to {r1}: noisy").as_str())
        );

        let again = p
            .rollback(r1, None, &PublishNote::new(), false)
            .await
            .unwrap();
        assert_eq!(again.revision, Some(written), "nothing left to change");
        assert!(again.changes.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_during_rollback_is_a_conflict_and_nothing_is_written_in_both_layouts() {
    let cluster = tokio::task::spawn_blocking(shared_cluster).await.unwrap();
    for layout in layouts("hist-cas") {
        let clock = Arc::new(ManualClock::new());
        let p = publisher(cluster, layout.clone(), clock.clone()).await;
        let r1 = p
            .publish(&set_on(&clock, &[("a", 600)]), Some(0))
            .await
            .unwrap();
        let r2 = p
            .publish(&set_on(&clock, &[("b", 600)]), None)
            .await
            .unwrap();
        // The operator looks at revision r2 and decides; someone else writes.
        let plan = p
            .rollback(r1, None, &PublishNote::new(), true)
            .await
            .unwrap();
        assert_eq!(plan.base, r2);
        let other = publisher(cluster, layout.clone(), clock.clone()).await;
        let r3 = other
            .publish(&set_on(&clock, &[("c", 600)]), None)
            .await
            .unwrap();
        match p
            .rollback(r1, Some(plan.base), &PublishNote::new(), false)
            .await
        {
            Err(e @ PublishError::Conflict { .. }) => {
                assert_eq!(e.slug(), "conflict");
                let PublishError::Conflict { expected, actual } = e else {
                    unreachable!()
                };
                assert_eq!((expected, actual), (r2, r3), "{layout:?}");
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        let (live, revision) = p.current().await.unwrap();
        assert_eq!((sorted_ids(&live), revision), (vec!["c".to_owned()], r3));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_revision_names_the_oldest_available_in_both_layouts() {
    // Its own cluster: compaction would cut the history of other tests.
    let cluster = tokio::task::spawn_blocking(EtcdCluster::single)
        .await
        .unwrap();
    for layout in layouts("hist-compact") {
        let clock = Arc::new(ManualClock::new());
        let p = publisher(&cluster, layout.clone(), clock.clone()).await;
        let r1 = p
            .publish(&set_on(&clock, &[("a", 600)]), Some(0))
            .await
            .unwrap();
        let r2 = p
            .publish(&set_on(&clock, &[("b", 600)]), None)
            .await
            .unwrap();
        let r3 = p
            .publish(&set_on(&clock, &[("c", 600)]), None)
            .await
            .unwrap();
        cluster.compact(r3);

        for result in [
            p.set_at(r1).await.map(|_| ()),
            p.diff(r2, None).await.map(|_| ()),
            p.rollback(r1, None, &PublishNote::new(), true)
                .await
                .map(|_| ()),
        ] {
            match result {
                Err(e @ PublishError::Compacted { .. }) => {
                    assert_eq!(e.slug(), "compacted");
                    assert!(e.to_string().contains(&r3.to_string()), "{e}");
                    let PublishError::Compacted { oldest, .. } = e else {
                        unreachable!()
                    };
                    assert_eq!(oldest, r3, "{layout:?}");
                }
                other => panic!("expected compacted, got {other:?}"),
            }
        }
        let h = p.history(10).await.unwrap();
        let revisions: Vec<i64> = h.entries.iter().map(|e| e.revision).collect();
        assert_eq!(revisions, [r3], "only what etcd still holds");
        assert_eq!(h.compacted, Some(r3));
        assert!(
            h.entries[0].changes.is_none(),
            "the state before is compacted"
        );
        assert_eq!(sorted_ids(&h.entries[0].state.set), ["c"]);
        assert_eq!(sorted_ids(&p.set_at(r3).await.unwrap().state.set), ["c"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_api_runs_on_spawned_tasks_as_an_admin_handler_would() {
    let cluster = tokio::task::spawn_blocking(shared_cluster).await.unwrap();
    let clock = Arc::new(ManualClock::new());
    let p = Arc::new(publisher(cluster, Layout::Key(unique_key("hist-send")), clock.clone()).await);
    let r1 = p
        .publish(&set_on(&clock, &[("a", 600)]), Some(0))
        .await
        .unwrap();
    let task = {
        let p = Arc::clone(&p);
        tokio::spawn(async move {
            let h = p.history(5).await?;
            let d = p.diff(r1, None).await?;
            let plan = p.rollback(r1, None, &PublishNote::new(), true).await?;
            Ok::<_, PublishError>((h.entries.len(), d.changes.is_empty(), plan.revision))
        })
    };
    assert_eq!(task.await.unwrap().unwrap(), (1, true, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_page_is_bounded_by_bytes_and_continues() {
    let cluster = EtcdCluster::single();
    let clock = Arc::new(ManualClock::new());
    for layout in layouts("history-page") {
        let p = publisher(&cluster, layout.clone(), clock.clone()).await;
        let mut written = Vec::new();
        for ids in [&[("a", 600)][..], &[("a", 600), ("b", 600)], &[("c", 600)]] {
            let r = p
                .publish_noted(&set_on(&clock, ids), None, &note("ops", "step"))
                .await
                .unwrap();
            written.push(r);
        }
        // One byte: every page holds exactly one entry, whatever the limit.
        let mut before = None;
        let mut seen = Vec::new();
        for _ in 0..10 {
            let page = p.history_page(before, 50, 1).await.unwrap();
            assert!(page.entries.len() <= 1, "{layout:?}: {page:?}");
            seen.extend(page.entries.iter().map(|e| e.revision));
            if !page.more {
                break;
            }
            before = page.next_before;
        }
        written.reverse();
        assert_eq!(seen, written, "{layout:?}");
        // No bound: the same walk in one page.
        let whole = p.history(50).await.unwrap();
        let all: Vec<i64> = whole.entries.iter().map(|e| e.revision).collect();
        assert_eq!(all, written, "{layout:?}");
        assert!(!whole.more && whole.next_before.is_none());
    }
}
