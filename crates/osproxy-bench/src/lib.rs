//! Synthetic inputs and baselines for the osproxy benchmarks.
//!
//! The benches (`benches/hot_path.rs`) measure the directive hot path — one
//! snapshot read plus one evaluation per request — against the baselines kept
//! here, so that a regression shows up as a ratio, not as a bare number:
//!
//! - [`RwLockStore`]: the obvious store, an `RwLock<Arc<DirectiveSet>>` read
//!   and cloned per request;
//! - [`linear_scan`]: evaluation by scanning every directive
//!   ([`DirectiveSet::decide_by_scan`], the reference semantics);
//! - [`BareAtomic`]: a single atomic load, the floor any shared read costs.
//!
//! The builders make sets of a given size where a fixed request
//! ([`BenchRequest`]) matches exactly one directive or none, each directive
//! targeting a distinct tenant — the shape of a fleet running many narrow
//! directives.
#![deny(missing_docs)]

pub mod hostile;
pub mod parallel;

use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use osproxy_core::{Clock, EndpointKind, IndexName, Instant, PartitionId, PrincipalId, RequestId};
use osproxy_observe::{
    decode_directive_set, DiagLevel, DirectiveSet, DirectiveStore, InMemoryDirectiveStore,
    RequestAttrs,
};
use serde_json::{json, Value};

/// The tenant of [`BenchRequest`]; the one directive a "matching" set
/// targets at it.
pub const REQUEST_TENANT: &str = "tenant-request";

/// The level the matching directive asks for.
pub const MATCHING_LEVEL: DiagLevel = DiagLevel::ShapeTiming;

/// The wire body of a set of `n` directives, each targeting a distinct tenant
/// (`tenant-0`, `tenant-1`, …) with a one-hour `ttl_secs`. When `matching`
/// (and `n > 0`), the middle directive targets [`REQUEST_TENANT`] instead.
pub fn distinct_tenants_body(n: usize, matching: bool) -> Vec<u8> {
    let hit = matching.then_some(n / 2);
    let list: Vec<Value> = (0..n)
        .map(|i| {
            let tenant = if Some(i) == hit {
                REQUEST_TENANT.to_owned()
            } else {
                format!("tenant-{i}")
            };
            json!({
                "id": format!("d-{i}"),
                "level": MATCHING_LEVEL.wire_name(),
                "tenant": tenant,
                "ttl_secs": 3600,
            })
        })
        .collect();
    // Serialising strings and numbers cannot fail.
    serde_json::to_vec(&json!({ "directives": list })).unwrap_or_default()
}

/// The decoded set of [`distinct_tenants_body`], anchored on `clock`.
///
/// # Panics
/// If the body is rejected, which would be a bug in the builder (`n` above
/// the decoder's 10,000-directive limit included).
pub fn directives_for_distinct_tenants(
    n: usize,
    matching: bool,
    clock: &dyn Clock,
) -> DirectiveSet {
    match decode_directive_set(&distinct_tenants_body(n, matching), clock) {
        Ok(set) => set,
        Err(e) => panic!("synthetic set of {n} rejected: {e}"),
    }
}

/// [`directives_for_distinct_tenants`] (`matching`) with every directive
/// given a rate budget of `max_per_sec` (SPEC §8).
///
/// # Panics
/// If `max_per_sec` is 0 or the set is rejected (bugs in the caller or the
/// builder).
pub fn budgeted_for_distinct_tenants(
    n: usize,
    max_per_sec: u32,
    clock: &dyn Clock,
) -> DirectiveSet {
    let max = std::num::NonZeroU32::new(max_per_sec);
    assert!(max.is_some(), "a budget is at least 1 per second");
    let directives = directives_for_distinct_tenants(n, true, clock)
        .directives()
        .iter()
        .map(|d| d.clone().with_max_per_sec(max))
        .collect();
    match DirectiveSet::try_from_directives(directives) {
        Ok(set) => set,
        Err(e) => panic!("budgeted set of {n} rejected: {e}"),
    }
}

/// One request's attributes, owned, so benches can borrow
/// [`RequestAttrs`] from it. It has every attribute set, so evaluation
/// consults every index.
#[derive(Clone, Debug)]
pub struct BenchRequest {
    /// [`REQUEST_TENANT`].
    pub tenant: PartitionId,
    /// An index no directive targets.
    pub index: IndexName,
    /// A principal no directive targets.
    pub principal: PrincipalId,
    /// The endpoint kind.
    pub endpoint: EndpointKind,
    /// The request id (decides sampling).
    pub id: RequestId,
}

impl Default for BenchRequest {
    fn default() -> Self {
        BenchRequest {
            tenant: PartitionId::from(REQUEST_TENANT),
            index: IndexName::from("logs-2024.06"),
            principal: PrincipalId::from("svc-ingest"),
            endpoint: EndpointKind::Search,
            id: RequestId::from("0d5c2b6e-6f1c-4a43-9a8e-3f1f6b1c9d20"),
        }
    }
}

impl BenchRequest {
    /// The borrowed attributes the evaluator takes.
    #[inline]
    pub fn attrs(&self) -> RequestAttrs<'_> {
        RequestAttrs::new(self.endpoint)
            .with_tenant(&self.tenant)
            .with_index(&self.index)
            .with_principal(&self.principal)
    }
}

/// One thread's request operation for the parallel drivers
/// ([`parallel`]): its own reader of `store` and its own [`BenchRequest`],
/// calling `call` on the current set for every operation (`call` should
/// `black_box` what it computes).
pub fn reader_op<F>(store: &InMemoryDirectiveStore, now: Instant, call: F) -> impl FnMut() + Send
where
    F: Fn(&DirectiveSet, &RequestAttrs<'_>, Instant, &RequestId) + Send,
{
    let mut reader = store.reader();
    let req = BenchRequest::default();
    move || {
        call(
            reader.current(),
            std::hint::black_box(&req.attrs()),
            now,
            &req.id,
        )
    }
}

/// The linear-scan baseline: the effective level by inspecting every
/// directive ([`DirectiveSet::decide_by_scan`]).
#[inline]
pub fn linear_scan(
    set: &DirectiveSet,
    attrs: &RequestAttrs<'_>,
    now: Instant,
    id: &RequestId,
) -> DiagLevel {
    set.decide_by_scan(attrs, now, id).level
}

/// The lock baseline: a store that takes a read lock and clones the `Arc` on
/// every read. Readers write the lock word and the reference count, both
/// shared cache lines.
#[derive(Debug, Default)]
pub struct RwLockStore {
    current: RwLock<Arc<DirectiveSet>>,
}

impl RwLockStore {
    /// A store holding `set`.
    pub fn new(set: DirectiveSet) -> Self {
        RwLockStore {
            current: RwLock::new(Arc::new(set)),
        }
    }

    /// Replaces the set.
    pub fn publish(&self, set: DirectiveSet) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(set);
    }
}

impl DirectiveStore for RwLockStore {
    #[inline]
    fn load(&self) -> Arc<DirectiveSet> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The floor: one atomic load, as a `u64` and as a pointer (without the
/// dereference, which would need `unsafe`). Nothing that reads shared state
/// can be cheaper.
#[derive(Debug)]
pub struct BareAtomic {
    value: AtomicU64,
    ptr: AtomicPtr<DirectiveSet>,
    // Keeps what `ptr` points at alive.
    _target: Arc<DirectiveSet>,
}

impl BareAtomic {
    /// A baseline pointing at `set`.
    pub fn new(set: DirectiveSet) -> Self {
        let target = Arc::new(set);
        BareAtomic {
            value: AtomicU64::new(42),
            ptr: AtomicPtr::new(Arc::as_ptr(&target).cast_mut()),
            _target: target,
        }
    }

    /// An acquire load of a `u64`.
    #[inline]
    pub fn load_u64(&self) -> u64 {
        self.value.load(Ordering::Acquire)
    }

    /// An acquire load of a pointer.
    #[inline]
    pub fn load_ptr(&self) -> *mut DirectiveSet {
        self.ptr.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use osproxy_core::ManualClock;
    use osproxy_observe::InMemoryDirectiveStore;

    #[test]
    fn builders_match_exactly_one_or_none() {
        let clock = ManualClock::new();
        let req = BenchRequest::default();
        let now = clock.now();
        for n in [0, 1, 10, 1000] {
            for matching in [false, true] {
                let set = directives_for_distinct_tenants(n, matching, &clock);
                assert_eq!(set.len(), n);
                let want = if matching && n > 0 {
                    MATCHING_LEVEL
                } else {
                    DiagLevel::Off
                };
                assert_eq!(set.evaluate(&req.attrs(), now, &req.id), want);
                assert_eq!(linear_scan(&set, &req.attrs(), now, &req.id), want);
            }
        }
    }

    #[test]
    fn the_largest_set_fits_the_decoder_limits() {
        let body = distinct_tenants_body(10_000, true);
        assert!(body.len() <= 1024 * 1024);
        let set = directives_for_distinct_tenants(10_000, true, &ManualClock::new());
        assert_eq!(set.len(), 10_000);
    }

    #[test]
    fn baselines_read_what_was_published() {
        let clock = ManualClock::new();
        let rw = RwLockStore::new(DirectiveSet::new());
        assert!(rw.load().is_empty());
        rw.publish(directives_for_distinct_tenants(3, false, &clock));
        assert_eq!(rw.load().len(), 3);
        assert_eq!(rw.snapshot().len(), 3);

        let bare = BareAtomic::new(DirectiveSet::new());
        assert_eq!(bare.load_u64(), 42);
        assert!(!bare.load_ptr().is_null());

        let store = InMemoryDirectiveStore::new();
        store.publish(directives_for_distinct_tenants(3, true, &clock));
        assert_eq!(store.reader().current().len(), 3);
    }
}
