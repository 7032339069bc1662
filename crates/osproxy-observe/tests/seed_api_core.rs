//! The `osproxy-core` half of the seed-API check (the `osproxy-observe` half
//! is `seed_api.rs`): a program written only against the **published** 1.0.2
//! documentation of `osproxy-core` compiles and runs unchanged against ours
//! (SPEC §4).
//!
//! Same rules as `seed_api.rs`: every item, method, derive and impl used here
//! is one the seed's docs show. Signatures are pinned by coercing to fn
//! pointers, derives by generic bounds. Like `seed_api.rs`, this file compiles
//! and passes unchanged against the seed's own 1.0.2 source.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::{Debug, Display};
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use osproxy_core::{
    Clock, EndpointKind, IndexName, Instant, ManualClock, PartitionId, PrincipalId, RequestId,
    SystemClock,
};

/// A clock implemented against the seed's trait, whose only supertraits are
/// `Send + Sync`: deliberately **no** `Debug`.
struct Frozen {
    mono: Instant,
    wall: u64,
}

impl Clock for Frozen {
    fn now(&self) -> Instant {
        self.mono
    }
    fn unix_nanos(&self) -> u64 {
        self.wall
    }
}

/// The module paths the seed's docs use for these items
/// (`osproxy_core/time/trait.Clock.html`, `osproxy_core/endpoint/enum.EndpointKind.html`,
/// `osproxy_core/ids/…`) name the same types as the root re-exports.
#[test]
fn core_module_paths() {
    let clock: osproxy_core::time::ManualClock = ManualClock::new();
    let _: &dyn osproxy_core::time::Clock = &clock;
    let _: osproxy_core::time::Instant = clock.now();
    let _: osproxy_core::time::SystemClock = SystemClock;
    let _: osproxy_core::ids::PartitionId = PartitionId::from("t");
    let _: osproxy_core::ids::IndexName = IndexName::from("i");
    let _: osproxy_core::ids::PrincipalId = PrincipalId::from("p");
    let _: osproxy_core::ids::RequestId = RequestId::from("r");
    let _: osproxy_core::endpoint::EndpointKind = EndpointKind::Search;
}

#[test]
fn core_signatures() {
    let _: fn() -> ManualClock = ManualClock::new;
    let _: fn(&ManualClock, Duration) = ManualClock::advance;
    let _: fn(&ManualClock) -> Instant = <ManualClock as Clock>::now;
    let _: fn(&ManualClock) -> u64 = <ManualClock as Clock>::unix_nanos;
    let _: fn(&SystemClock) -> Instant = <SystemClock as Clock>::now;
    let _: fn(&SystemClock) -> u64 = <SystemClock as Clock>::unix_nanos;
    let _: fn(Instant, Instant) -> Duration = Instant::saturating_duration_since;
    let _: fn(Instant, Duration) -> Instant = Instant::saturating_add;

    let _: fn(&PartitionId) -> &str = PartitionId::as_str;
    let _: fn(PartitionId) -> String = PartitionId::into_string;
    let _: fn(&IndexName) -> &str = IndexName::as_str;
    let _: fn(IndexName) -> String = IndexName::into_string;
    let _: fn(&PrincipalId) -> &str = PrincipalId::as_str;
    let _: fn(PrincipalId) -> String = PrincipalId::into_string;
    let _: fn(&RequestId) -> &str = RequestId::as_str;
    let _: fn(RequestId) -> String = RequestId::into_string;

    let _: fn(EndpointKind) -> &'static str = EndpointKind::as_str;
    let _: fn(&str) -> Option<EndpointKind> = EndpointKind::from_name;
    let _: fn(EndpointKind) -> bool = EndpointKind::is_tenancy_aware;
    let _: fn(EndpointKind) -> bool = EndpointKind::is_write;
}

#[test]
fn core_derives_and_impls() {
    fn instant_like<T: Clone + Copy + PartialEq + Eq + PartialOrd + Ord + Debug + Hash>() {}
    fn id_like<T>()
    where
        T: Clone + PartialEq + Eq + Hash + PartialOrd + Ord + Debug + Display,
        T: From<String> + for<'a> From<&'a str>,
    {
    }
    fn clock_like<T: Clock + Send + Sync + 'static>() {}
    fn endpoint_like<T: Clone + Copy + PartialEq + Eq + Hash + Debug>() {}

    instant_like::<Instant>();
    id_like::<PartitionId>();
    id_like::<IndexName>();
    id_like::<PrincipalId>();
    id_like::<RequestId>();
    endpoint_like::<EndpointKind>();
    clock_like::<SystemClock>();
    clock_like::<ManualClock>();
    clock_like::<Frozen>();

    fn system_clock_like<T: Clone + Copy + Default + Debug>() {}
    system_clock_like::<SystemClock>();
    fn manual_clock_like<T: Default + Debug>() {}
    manual_clock_like::<ManualClock>();

    // The trait is dyn compatible and needs nothing beyond Send + Sync.
    let system: Arc<dyn Clock> = Arc::new(SystemClock);
    let manual: Arc<dyn Clock> = Arc::new(ManualClock::default());
    let frozen: Arc<dyn Clock> = Arc::new(Frozen {
        mono: ManualClock::new().now(),
        wall: 1_750_000_000_000_000_000,
    });
    let clocks = [system, manual, frozen];
    assert_eq!(clocks.len(), 3);
}

#[test]
fn core_behaviour_the_docs_state() {
    // "A test clock advanced explicitly. Starts at zero; never moves on its own."
    let clock = ManualClock::new();
    let t0 = clock.now();
    assert_eq!(clock.now(), t0);
    clock.advance(Duration::from_millis(250));
    let t1 = clock.now();
    assert_eq!(t1.saturating_duration_since(t0), Duration::from_millis(250));
    // Saturating arithmetic never panics.
    assert_eq!(t0.saturating_duration_since(t1), Duration::ZERO);
    assert_eq!(
        t0.saturating_add(Duration::from_secs(5))
            .saturating_duration_since(t0),
        Duration::from_secs(5)
    );
    assert!(t1 > t0);

    // SystemClock is monotonic.
    let a = SystemClock.now();
    let b = SystemClock.now();
    assert!(b >= a);

    // Ids: From<&str>/From<String>, as_str, into_string, Display, Debug.
    let p = PartitionId::from("tenant-7");
    assert_eq!(p, PartitionId::from("tenant-7".to_owned()));
    assert_eq!(p.as_str(), "tenant-7");
    assert_eq!(p.to_string(), "tenant-7");
    assert_eq!(format!("{:?}", RequestId::from("r1")), r#"RequestId("r1")"#);
    assert_eq!(p.into_string(), "tenant-7");

    // EndpointKind: name round trip and classification.
    for kind in [
        EndpointKind::IngestDoc,
        EndpointKind::IngestBulk,
        EndpointKind::Search,
        EndpointKind::MultiSearch,
        EndpointKind::Count,
        EndpointKind::GetById,
        EndpointKind::MultiGet,
        EndpointKind::DeleteById,
        EndpointKind::DeleteByQuery,
        EndpointKind::Cursor,
        EndpointKind::Admin,
        EndpointKind::Unknown,
    ] {
        assert_eq!(EndpointKind::from_name(kind.as_str()), Some(kind));
    }
    assert_eq!(EndpointKind::from_name("nope"), None);
    assert!(!EndpointKind::Admin.is_tenancy_aware());
    assert!(!EndpointKind::Unknown.is_tenancy_aware());
    assert!(EndpointKind::Search.is_tenancy_aware());
    assert!(EndpointKind::IngestBulk.is_write());
    assert!(!EndpointKind::Search.is_write());

    // The seed's enum is #[non_exhaustive]: a seed program always has a wildcard arm.
    let label = match EndpointKind::Count {
        EndpointKind::Search | EndpointKind::Count => "read",
        _ => "other",
    };
    assert_eq!(label, "read");
}
