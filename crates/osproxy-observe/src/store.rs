//! The store seam: how a proxy's request path reads the current
//! [`DirectiveSet`], and the single-instance [`InMemoryDirectiveStore`].
//!
//! Snapshots are swapped whole: a writer builds the next set (index included)
//! off to the side and publishes it with one atomic pointer swap; readers never
//! block. Three read paths, cheapest last:
//!
//! - [`DirectiveStore::load`] — the seed's API, an owned `Arc`. Bumps the shared
//!   reference count, which on many cores becomes a contended cache line.
//! - [`DirectiveStore::snapshot`] — a short-lived guard; no reference count is
//!   written in the common case (arc-swap's per-thread debt slots).
//! - [`DirectiveReader::current`] — an owned per-thread reader that caches the
//!   `Arc` and only re-checks one pointer: the hot-loop path.

use std::fmt;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};

use crate::set::DirectiveSet;

/// Where a proxy reads its directives from. Implemented by the in-memory store
/// and the etcd store.
pub trait DirectiveStore: Send + Sync {
    /// The current set, owned.
    fn load(&self) -> Arc<DirectiveSet>;

    /// The current set behind a cheap guard: prefer this on request paths.
    /// Hold it for one request, not across awaits.
    fn snapshot(&self) -> Snapshot {
        Snapshot(Guard::from_inner(self.load()))
    }
}

/// A fixed set is a store (the seed's default store): its directives never
/// change for this process.
impl DirectiveStore for Arc<DirectiveSet> {
    fn load(&self) -> Arc<DirectiveSet> {
        Arc::clone(self)
    }
}

/// A guard over one snapshot of the set; derefs to [`DirectiveSet`].
pub struct Snapshot(Guard<Arc<DirectiveSet>>);

impl Deref for Snapshot {
    type Target = DirectiveSet;
    #[inline]
    fn deref(&self) -> &DirectiveSet {
        &self.0
    }
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Snapshot").field(&**self).finish()
    }
}

/// The cell both stores publish into: an atomically swapped set plus a
/// version counter that moves on every swap.
#[derive(Clone)]
pub struct SharedDirectiveSet {
    inner: Arc<Cell>,
}

struct Cell {
    current: ArcSwap<DirectiveSet>,
    swaps: AtomicU64,
}

impl Default for SharedDirectiveSet {
    fn default() -> Self {
        SharedDirectiveSet::new(DirectiveSet::new())
    }
}

impl fmt::Debug for SharedDirectiveSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedDirectiveSet")
            .field("directives", &self.load_full().len())
            .field("swaps", &self.swaps())
            .finish()
    }
}

impl SharedDirectiveSet {
    /// A cell holding `initial`.
    pub fn new(initial: DirectiveSet) -> Self {
        SharedDirectiveSet {
            inner: Arc::new(Cell {
                current: ArcSwap::from_pointee(initial),
                swaps: AtomicU64::new(0),
            }),
        }
    }

    /// Publishes `set` in one atomic swap.
    pub fn store(&self, set: Arc<DirectiveSet>) {
        self.inner.current.store(set);
        self.inner.swaps.fetch_add(1, Ordering::Release);
    }

    /// The current set, owned.
    pub fn load_full(&self) -> Arc<DirectiveSet> {
        self.inner.current.load_full()
    }

    /// The current set behind a guard.
    #[inline]
    pub fn snapshot(&self) -> Snapshot {
        Snapshot(self.inner.current.load())
    }

    /// A per-thread reader for hot loops.
    pub fn reader(&self) -> DirectiveReader {
        let seen = self.inner.swaps.load(Ordering::Acquire);
        DirectiveReader {
            current: self.inner.current.load_full(),
            seen,
            cell: Arc::clone(&self.inner),
        }
    }

    /// How many times a set was published into this cell.
    pub fn swaps(&self) -> u64 {
        self.inner.swaps.load(Ordering::Acquire)
    }
}

/// An owned, per-thread reader: keeps the current `Arc` and re-checks one
/// counter per call, so a read writes no shared memory and scales with cores.
///
/// Give each worker thread (or each connection task) its own reader; `current`
/// takes `&mut self`.
///
/// Why a counter: the writer bumps `swaps` (release) after each swap, so a
/// reader that sees an unchanged count holds the newest set it could have seen,
/// and one that sees a new count reloads a set at least that new. A reader
/// therefore never goes back to an older set, and the common path is a single
/// acquire load and a compare.
///
/// ```
/// use osproxy_core::{Clock, EndpointKind, ManualClock, RequestId};
/// use osproxy_observe::{decode_directive_set, DiagLevel, InMemoryDirectiveStore, RequestAttrs};
///
/// let clock = ManualClock::new();
/// let store = InMemoryDirectiveStore::new();
/// let mut reader = store.reader(); // one per worker thread
/// let attrs = RequestAttrs::new(EndpointKind::Search);
/// assert_eq!(reader.current().decide(&attrs, clock.now(), &RequestId::from("r-1")).level, DiagLevel::Off);
///
/// // A publish is seen by the reader's next call, without any lock.
/// store.publish(decode_directive_set(
///     br#"{"directives":[{"id":"all","level":"Shape","ttl_secs":60}]}"#, &clock)?);
/// assert_eq!(reader.current().decide(&attrs, clock.now(), &RequestId::from("r-2")).level, DiagLevel::Shape);
/// # Ok::<(), &'static str>(())
/// ```
#[derive(Clone)]
pub struct DirectiveReader {
    current: Arc<DirectiveSet>,
    seen: u64,
    cell: Arc<Cell>,
}

impl DirectiveReader {
    /// The current set.
    #[inline]
    pub fn current(&mut self) -> &DirectiveSet {
        let swaps = self.cell.swaps.load(Ordering::Acquire);
        if swaps != self.seen {
            self.reload(swaps);
        }
        &self.current
    }

    #[cold]
    #[inline(never)]
    fn reload(&mut self, swaps: u64) {
        self.seen = swaps;
        self.current = self.cell.current.load_full();
    }
}

impl fmt::Debug for DirectiveReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DirectiveReader")
    }
}

/// The single-instance store, fed by the admin endpoint or by code. The
/// embedded default: it needs nothing else running.
///
/// Each publish gets the next revision number (starting at 1; 0 means nothing
/// was ever published), so operators and compare-and-swap callers can refer to
/// what they saw.
///
/// ```
/// use osproxy_core::ManualClock;
/// use osproxy_observe::{decode_directive_set, DirectiveStore, InMemoryDirectiveStore};
///
/// let clock = ManualClock::new();
/// let set = |body: &[u8]| decode_directive_set(body, &clock);
/// let store = InMemoryDirectiveStore::new();
/// assert_eq!(store.revision(), 0);
/// let rev = store.publish(set(br#"{"directives":[{"id":"a","level":"Shape","ttl_secs":60}]}"#)?);
/// assert_eq!(store.snapshot().len(), 1);
///
/// // Compare-and-swap: only if nobody published after `rev`.
/// let next = set(br#"{"directives":[]}"#)?;
/// assert!(store.publish_if(rev, next).is_ok());
/// let stale = set(br#"{"directives":[]}"#)?;
/// assert_eq!(store.publish_if(rev, stale).map_err(|c| c.actual), Err(rev + 1));
/// # Ok::<(), &'static str>(())
/// ```
#[derive(Clone, Default)]
pub struct InMemoryDirectiveStore {
    shared: SharedDirectiveSet,
    revision: Arc<std::sync::Mutex<u64>>,
}

impl fmt::Debug for InMemoryDirectiveStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InMemoryDirectiveStore")
            .field("revision", &self.revision())
            .field("directives", &self.shared.load_full().len())
            .finish()
    }
}

/// A compare-and-swap publish found another revision than expected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("revision conflict: expected {expected}, found {actual}")]
pub struct RevisionConflict {
    /// The revision the caller expected.
    pub expected: u64,
    /// The revision the store holds.
    pub actual: u64,
}

impl InMemoryDirectiveStore {
    /// An empty store at revision 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// The store with `set` published into it (builder style; the seed's
    /// way to seed a store). The revision is then 1 higher.
    #[must_use]
    pub fn with_directives(self, set: DirectiveSet) -> Self {
        self.publish(set);
        self
    }

    /// Replaces the set; returns the new revision. (The seed's `publish`
    /// returns `()`; a seed program calling it as a statement compiles.)
    pub fn publish(&self, set: DirectiveSet) -> u64 {
        let mut rev = self.lock_revision();
        *rev += 1;
        self.shared.store(Arc::new(set.with_revision(*rev)));
        *rev
    }

    /// Replaces the set only if the store is still at `expected`; returns the
    /// new revision.
    ///
    /// # Errors
    /// [`RevisionConflict`] when someone published in between.
    pub fn publish_if(&self, expected: u64, set: DirectiveSet) -> Result<u64, RevisionConflict> {
        let mut rev = self.lock_revision();
        if *rev != expected {
            return Err(RevisionConflict {
                expected,
                actual: *rev,
            });
        }
        *rev += 1;
        self.shared.store(Arc::new(set.with_revision(*rev)));
        Ok(*rev)
    }

    /// The current set with its revision, read consistently.
    pub fn load_with_revision(&self) -> (Arc<DirectiveSet>, u64) {
        let rev = self.lock_revision();
        (self.shared.load_full(), *rev)
    }

    /// The revision of the current set.
    pub fn revision(&self) -> u64 {
        *self.lock_revision()
    }

    /// A per-thread reader for hot loops.
    pub fn reader(&self) -> DirectiveReader {
        self.shared.reader()
    }

    /// The cell this store publishes into.
    pub fn shared(&self) -> &SharedDirectiveSet {
        &self.shared
    }

    fn lock_revision(&self) -> std::sync::MutexGuard<'_, u64> {
        // A poisoned lock only means a publisher panicked between two plain
        // stores; the counter itself is always consistent.
        self.revision
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl DirectiveStore for InMemoryDirectiveStore {
    fn load(&self) -> Arc<DirectiveSet> {
        self.shared.load_full()
    }

    #[inline]
    fn snapshot(&self) -> Snapshot {
        self.shared.snapshot()
    }
}
