//! [`SharedDecodes`]: one decode per key revision per process, for every
//! store that shares a clock.
//!
//! Why: a process that runs several stores on the same key (an embedding
//! proxy with one store per worker or per tenant group, the propagation
//! harness with a thousand) would otherwise decode, validate and index the
//! same bytes once per store on every publish: the decode is the store's
//! largest cost per change, and on a busy host it is what delays the last
//! store. The first store to see a key revision decodes it; the others get
//! the same `Arc<DirectiveSet>` (and the same memory).
//!
//! What makes sharing exact, not approximate:
//! - the slot is keyed by everything the decoder's answer depends on: the
//!   layout, the [`DecodeLimits`], the etcd key, its modification and
//!   creation revisions, and the **exact value bytes** (compared in full);
//! - and by the clock: decoded expiries are instants on the clock's
//!   monotonic timeline, so only stores on one timeline share
//!   ([`SharedDecodes::for_clock`]): every store whose clock is a
//!   [`SystemClock`](osproxy_core::SystemClock) (`Clock::is_system`), and
//!   otherwise the stores holding the *same* `Arc<dyn Clock>`; a store with
//!   its own test clock (a `ManualClock`) gets its own cache;
//! - a `ttl_secs` value is anchored once, by the first store that sees the
//!   revision, which is what SPEC §2 asks of one instance anyway.
//!
//! Bounded: at most [`MAX_SLOTS`] decodes and [`MAX_BYTES`] of value bytes
//! are kept, oldest first out; a miss only costs the decode the store would
//! have done anyway.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};

use osproxy_core::Clock;
use osproxy_observe::{DecodeError, DecodeLimits, DirectiveSet};

/// Most decodes kept per clock.
pub(crate) const MAX_SLOTS: usize = 64;
/// Most value bytes kept per clock (the decodes' own memory comes on top).
pub(crate) const MAX_BYTES: usize = 8 * 1024 * 1024;

/// What a decode's answer depends on, besides the clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DecodeInput<'a> {
    pub(crate) prefix_layout: bool,
    pub(crate) limits: DecodeLimits,
    pub(crate) key: &'a [u8],
    pub(crate) mod_revision: i64,
    pub(crate) create_revision: i64,
    pub(crate) value: &'a [u8],
}

/// A decode's answer, as every store keeps it.
pub(crate) type Decoded = Result<Arc<DirectiveSet>, DecodeError>;

#[derive(Debug)]
struct Slot {
    prefix_layout: bool,
    limits: DecodeLimits,
    key: Vec<u8>,
    mod_revision: i64,
    create_revision: i64,
    value: Vec<u8>,
    decoded: Decoded,
}

impl Slot {
    fn is(&self, input: &DecodeInput<'_>) -> bool {
        self.mod_revision == input.mod_revision
            && self.create_revision == input.create_revision
            && self.prefix_layout == input.prefix_layout
            && self.limits == input.limits
            && self.key == input.key
            && self.value == input.value
    }
}

#[derive(Debug, Default)]
struct Slots {
    slots: VecDeque<Slot>,
    bytes: usize,
}

/// The decodes shared by the stores of one clock.
#[derive(Debug, Default)]
pub(crate) struct SharedDecodes {
    inner: Mutex<Slots>,
}

/// Every live clock's cache. A `Weak` to the clock keeps its allocation
/// (hence its address) from being reused while the entry exists, so a new
/// clock can never be mistaken for a dropped one.
type Registry = Vec<(Weak<dyn Clock>, Arc<SharedDecodes>)>;

fn registry() -> MutexGuard<'static, Registry> {
    static REGISTRY: Mutex<Registry> = Mutex::new(Vec::new());
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SharedDecodes {
    /// The cache of every store on `clock`'s timeline: the process's system
    /// timeline, or this very clock.
    pub(crate) fn for_clock(clock: &Arc<dyn Clock>) -> Arc<SharedDecodes> {
        if clock.is_system() {
            static SYSTEM: OnceLock<Arc<SharedDecodes>> = OnceLock::new();
            return Arc::clone(SYSTEM.get_or_init(Arc::default));
        }
        let mut all = registry();
        all.retain(|(c, _)| c.strong_count() > 0);
        if let Some((_, shared)) = all
            .iter()
            .find(|(c, _)| c.upgrade().is_some_and(|c| Arc::ptr_eq(&c, clock)))
        {
            return Arc::clone(shared);
        }
        let shared = Arc::new(SharedDecodes::default());
        all.push((Arc::downgrade(clock), Arc::clone(&shared)));
        shared
    }

    fn lock(&self) -> MutexGuard<'_, Slots> {
        // Every update leaves the slots consistent.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The shared answer for `input`, or `decode()`'s, which is then shared.
    /// The decode runs outside the lock: two stores that miss at once both
    /// decode, and the first answer stays.
    pub(crate) fn get_or_decode(
        &self,
        input: &DecodeInput<'_>,
        decode: impl FnOnce() -> Decoded,
    ) -> Decoded {
        if let Some(hit) = self.lookup(input) {
            return hit;
        }
        let decoded = decode();
        if input.value.len() > MAX_BYTES {
            return decoded;
        }
        let mut slots = self.lock();
        if let Some(hit) = slots.slots.iter().find(|s| s.is(input)) {
            return hit.decoded.clone();
        }
        while slots.slots.len() >= MAX_SLOTS || slots.bytes + input.value.len() > MAX_BYTES {
            match slots.slots.pop_front() {
                Some(old) => slots.bytes -= old.value.len(),
                None => break,
            }
        }
        slots.bytes += input.value.len();
        slots.slots.push_back(Slot {
            prefix_layout: input.prefix_layout,
            limits: input.limits,
            key: input.key.to_vec(),
            mod_revision: input.mod_revision,
            create_revision: input.create_revision,
            value: input.value.to_vec(),
            decoded: decoded.clone(),
        });
        decoded
    }

    fn lookup(&self, input: &DecodeInput<'_>) -> Option<Decoded> {
        self.lock()
            .slots
            .iter()
            .rev()
            .find(|s| s.is(input))
            .map(|s| s.decoded.clone())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().slots.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::cell::Cell;

    use osproxy_core::{ManualClock, SystemClock};
    use osproxy_observe::RejectReason;

    use super::*;

    fn input<'a>(key: &'a [u8], rev: i64, value: &'a [u8]) -> DecodeInput<'a> {
        DecodeInput {
            prefix_layout: false,
            limits: DecodeLimits::default(),
            key,
            mod_revision: rev,
            create_revision: 1,
            value,
        }
    }

    fn decoded() -> Decoded {
        Ok(Arc::new(DirectiveSet::new()))
    }

    #[test]
    fn one_decode_per_revision_and_bytes() {
        let shared = SharedDecodes::default();
        let calls = Cell::new(0);
        let count = || {
            calls.set(calls.get() + 1);
            decoded()
        };
        let a = shared.get_or_decode(&input(b"k", 2, b"v"), count).unwrap();
        let b = shared.get_or_decode(&input(b"k", 2, b"v"), count).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(calls.get(), 1);
        // Any difference decodes afresh: revision, bytes, key, layout, limits.
        shared.get_or_decode(&input(b"k", 3, b"v"), count).unwrap();
        shared.get_or_decode(&input(b"k", 2, b"w"), count).unwrap();
        shared.get_or_decode(&input(b"j", 2, b"v"), count).unwrap();
        let mut prefix = input(b"k", 2, b"v");
        prefix.prefix_layout = true;
        shared.get_or_decode(&prefix, count).unwrap();
        let mut strict = input(b"k", 2, b"v");
        strict.limits.max_directives = 1;
        shared.get_or_decode(&strict, count).unwrap();
        assert_eq!(calls.get(), 6);
    }

    #[test]
    fn rejections_are_shared_too() {
        let shared = SharedDecodes::default();
        let no = || Err(DecodeError::whole(RejectReason::UnknownField));
        assert!(shared.get_or_decode(&input(b"k", 2, b"x"), no).is_err());
        let r = shared.get_or_decode(&input(b"k", 2, b"x"), || panic!("decoded twice"));
        assert_eq!(r.unwrap_err().reason, RejectReason::UnknownField);
    }

    #[test]
    fn bounded_oldest_first() {
        let shared = SharedDecodes::default();
        for rev in 0..(MAX_SLOTS as i64 + 10) {
            shared
                .get_or_decode(&input(b"k", rev, b"v"), decoded)
                .unwrap();
        }
        assert_eq!(shared.len(), MAX_SLOTS);
        let calls = Cell::new(0);
        shared
            .get_or_decode(&input(b"k", 0, b"v"), || {
                calls.set(1);
                decoded()
            })
            .unwrap();
        assert_eq!(calls.get(), 1, "the oldest slot was evicted");
        let big = vec![b' '; MAX_BYTES / 2 + 1];
        shared
            .get_or_decode(&input(b"k", 100, &big), decoded)
            .unwrap();
        shared
            .get_or_decode(&input(b"k", 101, &big), decoded)
            .unwrap();
        assert!(shared.lock().bytes <= MAX_BYTES);
    }

    #[test]
    fn only_one_timeline_shares() {
        // Every system clock is one timeline.
        let system: Arc<dyn Clock> = Arc::new(SystemClock);
        let another_system: Arc<dyn Clock> = Arc::new(SystemClock);
        assert!(Arc::ptr_eq(
            &SharedDecodes::for_clock(&system),
            &SharedDecodes::for_clock(&another_system)
        ));
        // A test clock shares only with itself.
        let one: Arc<dyn Clock> = Arc::new(ManualClock::new());
        let same = Arc::clone(&one);
        let other: Arc<dyn Clock> = Arc::new(ManualClock::new());
        let a = SharedDecodes::for_clock(&one);
        assert!(Arc::ptr_eq(&a, &SharedDecodes::for_clock(&same)));
        assert!(!Arc::ptr_eq(&a, &SharedDecodes::for_clock(&other)));
        assert!(!Arc::ptr_eq(&a, &SharedDecodes::for_clock(&system)));
        drop((one, same));
        // A dropped clock's cache is never handed out again.
        let fresh: Arc<dyn Clock> = Arc::new(ManualClock::new());
        assert!(!Arc::ptr_eq(&a, &SharedDecodes::for_clock(&fresh)));
    }
}
