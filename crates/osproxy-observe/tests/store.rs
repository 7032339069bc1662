//! The store seam: `InMemoryDirectiveStore` publishes whole snapshots that
//! every read path (`load`, `snapshot`, `reader`) sees the same way.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};

use common::*;
use osproxy_core::{EndpointKind, ManualClock};
use osproxy_observe::{
    DiagLevel, DirectiveSet, DirectiveStore, InMemoryDirectiveStore, RequestAttrs,
    RevisionConflict, SharedDirectiveSet,
};

/// A set of `n` wildcard directives (`d0` … `d{n-1}`): its length tells which
/// publish a reader saw.
fn set_of_len(n: usize, clock: &ManualClock) -> DirectiveSet {
    let items: Vec<String> = (0..n).map(|i| valid_directive(&format!("d{i}"))).collect();
    decode_ok(body_of(&items), clock)
}

#[test]
fn a_new_store_is_empty_at_revision_zero() {
    let store = InMemoryDirectiveStore::new();
    assert_eq!(store.revision(), 0);
    assert!(store.load().is_empty());
    assert!(store.snapshot().is_empty());
    assert!(store.reader().current().is_empty());
    let (set, rev) = store.load_with_revision();
    assert!(set.is_empty());
    assert_eq!(rev, 0);
    assert_eq!(store.shared().swaps(), 0);
}

#[test]
fn every_read_path_sees_the_published_set() {
    let clock = ManualClock::new();
    let store = InMemoryDirectiveStore::new();
    let mut reader = store.reader();
    let set = set_of_len(3, &clock);
    assert_eq!(store.publish(set.clone()), 1);

    assert_eq!(*store.load(), set);
    assert_eq!(*store.snapshot(), set);
    assert_eq!(*reader.current(), set);
    assert_eq!(*store.reader().current(), set);
    assert_eq!(*store.shared().load_full(), set);
    assert_eq!(*store.shared().snapshot(), set);
    let (loaded, rev) = store.load_with_revision();
    assert_eq!((&*loaded, rev), (&set, 1));

    // Through the trait object, as a proxy holds it.
    let dyn_store: Arc<dyn DirectiveStore> = Arc::new(store.clone());
    assert_eq!(*dyn_store.load(), set);
    assert_eq!(*dyn_store.snapshot(), set);
    let bare = RequestAttrs::new(EndpointKind::Search);
    assert_eq!(
        dyn_store
            .snapshot()
            .evaluate(&bare, clock_now(&clock), &rid("r")),
        DiagLevel::Shape
    );
}

fn clock_now(clock: &ManualClock) -> osproxy_core::Instant {
    osproxy_core::Clock::now(clock)
}

#[test]
fn a_reader_picks_up_each_new_publish() {
    let clock = ManualClock::new();
    let store = InMemoryDirectiveStore::new();
    let mut reader = store.reader();
    assert_eq!(reader.current().len(), 0);
    for n in 1..=5 {
        store.publish(set_of_len(n, &clock));
        assert_eq!(reader.current().len(), n);
        // Reading again without a publish gives the same set.
        assert_eq!(reader.current().len(), n);
    }
    // Clones of a store share one cell.
    let clone = store.clone();
    clone.publish(DirectiveSet::new());
    assert!(reader.current().is_empty());
    assert!(store.load().is_empty());
    assert_eq!(store.revision(), 6);
    // A cloned reader is independent but sees the same cell.
    let mut other = reader.clone();
    store.publish(set_of_len(2, &clock));
    assert_eq!(other.current().len(), 2);
    assert_eq!(reader.current().len(), 2);
}

#[test]
fn a_snapshot_outlives_a_publish() {
    let clock = ManualClock::new();
    let store = InMemoryDirectiveStore::new();
    store.publish(set_of_len(1, &clock));
    let held = store.snapshot();
    let owned = store.load();
    store.publish(set_of_len(4, &clock));
    assert_eq!(held.len(), 1);
    assert_eq!(owned.len(), 1);
    assert_eq!(store.snapshot().len(), 4);
}

#[test]
fn revisions_count_publishes() {
    let clock = ManualClock::new();
    let store = InMemoryDirectiveStore::new();
    assert_eq!(store.publish(set_of_len(1, &clock)), 1);
    assert_eq!(store.publish(set_of_len(1, &clock)), 2);
    assert_eq!(store.revision(), 2);
    assert_eq!(store.shared().swaps(), 2);
    assert_eq!(store.publish_if(2, set_of_len(2, &clock)), Ok(3));
    assert_eq!(store.revision(), 3);
}

#[test]
fn publish_if_refuses_a_stale_revision() {
    let clock = ManualClock::new();
    let store = InMemoryDirectiveStore::new();
    assert_eq!(store.publish_if(0, set_of_len(1, &clock)), Ok(1));
    let err = store.publish_if(0, set_of_len(7, &clock)).unwrap_err();
    assert_eq!(
        err,
        RevisionConflict {
            expected: 0,
            actual: 1
        }
    );
    assert_eq!(err.to_string(), "revision conflict: expected 0, found 1");
    // Nothing changed.
    assert_eq!(store.load().len(), 1);
    assert_eq!(store.revision(), 1);
    assert_eq!(store.shared().swaps(), 1);
    // A future revision conflicts too.
    assert!(store.publish_if(9, DirectiveSet::new()).is_err());
    assert_eq!(store.publish_if(1, DirectiveSet::new()), Ok(2));
}

#[test]
fn only_one_of_racing_compare_and_swaps_wins() {
    let store = InMemoryDirectiveStore::new();
    let start = Barrier::new(4);
    let wins: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    store.publish_if(0, DirectiveSet::new()).is_ok()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| usize::from(h.join().unwrap()))
            .sum()
    });
    assert_eq!(wins, 1);
    assert_eq!(store.revision(), 1);
}

#[test]
fn shared_directive_set_is_a_plain_cell() {
    let clock = ManualClock::new();
    let cell = SharedDirectiveSet::default();
    assert!(cell.snapshot().is_empty());
    let mut reader = cell.reader();
    cell.store(Arc::new(set_of_len(2, &clock)));
    assert_eq!(cell.swaps(), 1);
    assert_eq!(reader.current().len(), 2);
    assert_eq!(cell.clone().load_full().len(), 2);
    let seeded = SharedDirectiveSet::new(set_of_len(3, &clock));
    assert_eq!(seeded.snapshot().len(), 3);
    assert_eq!(seeded.swaps(), 0);
}

/// Readers on several threads, one publisher: every reader sees publishes in
/// order (never an older set after a newer one), every set it sees is whole,
/// and every reader eventually sees the last one. No sleeps: readers spin
/// until they observe the final publish.
#[test]
fn concurrent_readers_see_publishes_in_order() {
    const PUBLISHES: usize = 200;
    const READERS: usize = 3;
    let clock = ManualClock::new();
    let sets: Vec<DirectiveSet> = (0..=PUBLISHES).map(|n| set_of_len(n, &clock)).collect();
    // Lengths strictly increase with the publish number.
    let lens: Vec<usize> = sets.iter().map(DirectiveSet::len).collect();
    assert!(lens.windows(2).all(|w| w[0] < w[1]));
    let last = lens[PUBLISHES];

    let store = InMemoryDirectiveStore::new();
    let start = Barrier::new(READERS + 1);
    let done = AtomicBool::new(false);
    let bare = RequestAttrs::new(EndpointKind::Search);
    let now = clock_now(&clock);

    std::thread::scope(|s| {
        let readers: Vec<_> = (0..READERS)
            .map(|r| {
                let store = &store;
                let (start, done, bare) = (&start, &done, &bare);
                s.spawn(move || {
                    let mut reader = store.reader();
                    let id = rid(&format!("reader-{r}"));
                    let (mut seen_reader, mut seen_snapshot, mut seen_load) = (0, 0, 0);
                    let mut reads = 0u64;
                    start.wait();
                    loop {
                        let set = reader.current();
                        let n = set.len();
                        assert!(
                            n >= seen_reader,
                            "reader went back from {seen_reader} to {n}"
                        );
                        // A set is never seen half-built.
                        assert_eq!(
                            set.directives().last().map(|d| d.id.clone()),
                            n.checked_sub(1).map(|i| format!("d{i}"))
                        );
                        let level = set.evaluate(bare, now, &id);
                        assert_eq!(
                            level,
                            if n == 0 {
                                DiagLevel::Off
                            } else {
                                DiagLevel::Shape
                            }
                        );
                        seen_reader = n;

                        let snap = store.snapshot().len();
                        assert!(snap >= seen_snapshot.max(seen_reader));
                        seen_snapshot = snap;
                        let loaded = store.load().len();
                        assert!(loaded >= seen_load.max(seen_snapshot));
                        seen_load = loaded;

                        reads += 1;
                        if seen_reader == last && done.load(Ordering::Acquire) {
                            break;
                        }
                        std::thread::yield_now();
                    }
                    reads
                })
            })
            .collect();

        start.wait();
        for (rev, set) in sets.iter().enumerate().skip(1) {
            assert_eq!(store.publish(set.clone()), rev as u64);
        }
        done.store(true, Ordering::Release);
        for r in readers {
            assert!(r.join().unwrap() > 0);
        }
    });
    assert_eq!(store.revision(), PUBLISHES as u64);
    assert_eq!(store.load().len(), last);
}
