//! A program written only against the **published** 1.0.2 documentation of
//! `osproxy-core` and `osproxy-observe` (docs.rs) compiles and runs unchanged
//! against ours (SPEC §4).
//!
//! Rules for this file: every item, field, method, derive and impl used here is
//! one the seed's docs show; nothing of our richer API is named. Signatures are
//! pinned by coercing to fn pointers, derives by generic bounds, field types by
//! struct literals. The etcd half (`EtcdDirectiveStore::connect`, `EtcdError`)
//! lives in `crates/osproxy-etcd/tests/seed_api.rs`, because this crate has no
//! dependency on `osproxy-etcd`.
//!
//! This very file also compiles and passes, unchanged, against the seed's own
//! 1.0.2 source (tag `v1.0.2` of the crates' repository, `osproxy-core` and
//! `osproxy-observe` built on their own), which is how we know it names
//! nothing the seed lacks. Two seed behaviours differ on purpose and are not
//! asserted: `InMemoryDirectiveStore::publish` returns the new revision
//! (`u64`, the seed's returns `()`; calling it as a statement compiles
//! either way), and `ManualClock`'s wall clock starts at 2024-01-01 (the
//! seed's at 0).
//!
//! The `osproxy-core` half (module paths, signatures, derives, the docs'
//! behaviour of clocks, ids and `EndpointKind`) is `seed_api_core.rs`.
// `NoVerifier::default()` is on purpose: it pins the seed's `Default` derive.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::default_constructed_unit_structs
)]

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use osproxy_core::{
    Clock, EndpointKind, IndexName, Instant, ManualClock, PartitionId, PrincipalId, RequestId,
    SystemClock,
};
use osproxy_observe::{
    decode_directive_set, DiagLevel, DiagnosticsDirective, DirectiveMatch, DirectiveSet,
    DirectiveStore, DirectiveVerifier, InMemoryDirectiveStore, NoVerifier, RequestAttrs,
};

// --------------------------------------------------------------------------
// Helpers written the way a seed user writes them.
// --------------------------------------------------------------------------

const BODY: &[u8] = br#"{"directives":[
    {"id":"acme-timing","level":"ShapeTiming","tenant":"acme","ttl_secs":600},
    {"id":"bulk","level":"Shape","endpoint":"IngestBulk","ring_buffer":true,"capture":false,
     "sample_per_mille":1000,"ttl_secs":60}
]}"#;

/// A directive built by struct literal: exactly the seven public fields the
/// seed's docs list, with the seed's field names and types.
fn directive(
    id: &str,
    match_: DirectiveMatch,
    level: DiagLevel,
    sample_per_mille: u16,
    expires_at: Instant,
) -> DiagnosticsDirective {
    DiagnosticsDirective {
        id: id.to_owned(),
        match_,
        level,
        sample_per_mille,
        expires_at,
        ring_buffer: false,
        capture: false,
    }
}

/// Request attributes built by struct literal, as the seed's own tests do.
fn attrs<'a>(
    tenant: Option<&'a PartitionId>,
    index: &'a str,
    principal: &'a PrincipalId,
    endpoint: EndpointKind,
) -> RequestAttrs<'a> {
    RequestAttrs {
        tenant,
        index,
        principal,
        endpoint,
    }
}

/// The level a request gets from any store (the seed's `store_tests` shape).
fn level_at(store: &impl DirectiveStore, tenant: Option<&PartitionId>, now: Instant) -> DiagLevel {
    let principal = PrincipalId::from("svc");
    store.load().evaluate(
        &attrs(tenant, "logical", &principal, EndpointKind::Search),
        now,
        &RequestId::from("r"),
    )
}

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

/// A store implementing only the seed's one required method.
struct FixedStore(Arc<DirectiveSet>);

impl DirectiveStore for FixedStore {
    fn load(&self) -> Arc<DirectiveSet> {
        Arc::clone(&self.0)
    }
}

/// A single-request verifier implemented against the seed's seam.
struct AcceptsOk {
    expires_at: Instant,
}

impl DirectiveVerifier for AcceptsOk {
    fn verify(&self, header_value: &str) -> Option<DiagnosticsDirective> {
        (header_value == "ok").then(|| {
            directive(
                "hdr",
                DirectiveMatch::all(),
                DiagLevel::ShapeRewriteDiff,
                1000,
                self.expires_at,
            )
        })
    }
}

// --------------------------------------------------------------------------
// osproxy-observe: the model
// --------------------------------------------------------------------------

#[test]
fn observe_signatures() {
    let _: fn(&[u8], &dyn Clock) -> Result<DirectiveSet, &'static str> = decode_directive_set;

    let _: fn(DiagLevel) -> &'static str = DiagLevel::as_str;
    let _: fn(&str) -> Option<DiagLevel> = DiagLevel::from_name;

    let _: fn() -> DirectiveMatch = DirectiveMatch::all;
    let _: fn(DirectiveMatch, PartitionId) -> DirectiveMatch = DirectiveMatch::for_tenant;
    let _: fn(DirectiveMatch, IndexName) -> DirectiveMatch = DirectiveMatch::for_index;
    let _: fn(DirectiveMatch, PrincipalId) -> DirectiveMatch = DirectiveMatch::for_principal;
    let _: fn(DirectiveMatch, EndpointKind) -> DirectiveMatch = DirectiveMatch::for_endpoint;
    let _: fn(&DirectiveMatch, &RequestAttrs<'_>) -> bool = DirectiveMatch::matches;

    let _: fn(&DiagnosticsDirective, &RequestAttrs<'_>, Instant, &RequestId) -> Option<DiagLevel> =
        DiagnosticsDirective::level_if_applies;

    let _: fn() -> DirectiveSet = DirectiveSet::new;
    let _: fn(Vec<DiagnosticsDirective>) -> DirectiveSet = DirectiveSet::from_directives;
    let _: fn(&DirectiveSet) -> usize = DirectiveSet::len;
    let _: fn(&DirectiveSet) -> bool = DirectiveSet::is_empty;
    let _: fn(&DirectiveSet, &RequestAttrs<'_>, Instant, &RequestId) -> DiagLevel =
        DirectiveSet::evaluate;
    let _: fn(&DirectiveSet, &RequestAttrs<'_>, Instant, &RequestId) -> bool =
        DirectiveSet::wants_ring_buffer;
    let _: fn(&DirectiveSet, &RequestAttrs<'_>, Instant, &RequestId) -> bool =
        DirectiveSet::wants_capture;
    let _: fn(&DirectiveSet, Instant) -> serde_json::Value = DirectiveSet::introspect;

    let _: fn(&NoVerifier, &str) -> Option<DiagnosticsDirective> =
        <NoVerifier as DirectiveVerifier>::verify;

    let _: fn(&Arc<DirectiveSet>) -> Arc<DirectiveSet> =
        <Arc<DirectiveSet> as DirectiveStore>::load;
    let _: fn(&InMemoryDirectiveStore) -> Arc<DirectiveSet> =
        <InMemoryDirectiveStore as DirectiveStore>::load;
    let _: fn() -> InMemoryDirectiveStore = InMemoryDirectiveStore::new;
    let _: fn(InMemoryDirectiveStore, DirectiveSet) -> InMemoryDirectiveStore =
        InMemoryDirectiveStore::with_directives;
    // The seed's `publish` returns `()`; ours returns the new revision. A seed
    // program calls it as a statement, which compiles either way (see
    // `in_memory_store`), so its signature is not pinned here.
}

#[test]
fn observe_derives_and_impls() {
    fn level_like<T: Clone + Copy + PartialEq + Eq + PartialOrd + Ord + Debug + Default>() {}
    fn match_like<T: Clone + PartialEq + Eq + Debug + Default>() {}
    fn directive_like<T: Clone + PartialEq + Eq + Debug>() {}
    fn attrs_like<T: Clone + Copy + Debug>() {}
    fn set_like<T: Clone + Debug + Default>() {}
    fn store_like<T: DirectiveStore + Debug + Default + Send + Sync + 'static>() {}
    fn verifier_like<T: DirectiveVerifier + Clone + Copy + Debug + Default + Send + Sync>() {}

    level_like::<DiagLevel>();
    match_like::<DirectiveMatch>();
    directive_like::<DiagnosticsDirective>();
    attrs_like::<RequestAttrs<'static>>();
    set_like::<DirectiveSet>();
    store_like::<InMemoryDirectiveStore>();
    verifier_like::<NoVerifier>();

    // Both seams are dyn compatible.
    let _: Box<dyn DirectiveStore> = Box::new(InMemoryDirectiveStore::new());
    let _: Box<dyn DirectiveVerifier> = Box::new(NoVerifier);
}

#[test]
fn struct_literals_have_the_seed_field_types() {
    let tenant = PartitionId::from("acme");
    let principal = PrincipalId::from("svc");
    let a = RequestAttrs {
        tenant: Some(&tenant),
        index: "logs",
        principal: &principal,
        endpoint: EndpointKind::Search,
    };
    let b = a; // Copy
    let _: Option<&PartitionId> = b.tenant;
    let _: &str = b.index;
    let _: &PrincipalId = b.principal;
    let _: EndpointKind = b.endpoint;
    let _ = format!("{a:?}");

    let m = DirectiveMatch {
        tenant: Some(PartitionId::from("acme")),
        index: None::<IndexName>,
        principal: None::<PrincipalId>,
        endpoint: Some(EndpointKind::Search),
    };
    assert_eq!(
        m,
        DirectiveMatch::all()
            .for_tenant(PartitionId::from("acme"))
            .for_endpoint(EndpointKind::Search)
    );
    assert_eq!(DirectiveMatch::default(), DirectiveMatch::all());
    assert!(m.matches(&a));

    let now = ManualClock::new().now();
    let d = DiagnosticsDirective {
        id: "d1".to_owned(),
        match_: m.clone(),
        level: DiagLevel::Shape,
        sample_per_mille: 1000,
        expires_at: now.saturating_add(Duration::from_secs(60)),
        ring_buffer: true,
        capture: false,
    };
    let _: &String = &d.id;
    let _: &DirectiveMatch = &d.match_;
    let _: DiagLevel = d.level;
    let _: u16 = d.sample_per_mille;
    let _: Instant = d.expires_at;
    let _: bool = d.ring_buffer;
    let _: bool = d.capture;
    assert_eq!(d.clone(), d);
}

#[test]
fn diag_level_names_and_order() {
    assert_eq!(DiagLevel::default(), DiagLevel::Off);
    assert!(DiagLevel::Off < DiagLevel::Shape);
    assert!(DiagLevel::Shape < DiagLevel::ShapeTiming);
    assert!(DiagLevel::ShapeTiming < DiagLevel::ShapeRewriteDiff);
    for level in [
        DiagLevel::Off,
        DiagLevel::Shape,
        DiagLevel::ShapeTiming,
        DiagLevel::ShapeRewriteDiff,
    ] {
        assert_eq!(DiagLevel::from_name(level.as_str()), Some(level));
    }
    assert_eq!(DiagLevel::ShapeTiming.as_str(), "ShapeTiming");
    assert_eq!(DiagLevel::from_name("shape"), None);
}

// --------------------------------------------------------------------------
// osproxy-observe: evaluation, as the docs describe it
// --------------------------------------------------------------------------

#[test]
fn evaluation_follows_the_documented_rules() {
    let clock = ManualClock::new();
    let now = clock.now();
    let later = now.saturating_add(Duration::from_secs(100));
    let acme = PartitionId::from("acme");
    let p = PrincipalId::from("svc");
    let rid = RequestId::from("req-1");

    // An empty set is Off.
    let empty = DirectiveSet::new();
    assert!(empty.is_empty());
    assert_eq!(empty.len(), 0);
    let search = attrs(Some(&acme), "orders", &p, EndpointKind::Search);
    assert_eq!(empty.evaluate(&search, now, &rid), DiagLevel::Off);

    // The highest applying level wins; unset targets are wildcards.
    let set = DirectiveSet::from_directives(vec![
        directive("all", DirectiveMatch::all(), DiagLevel::Shape, 1000, later),
        directive(
            "orders",
            DirectiveMatch::all().for_index(IndexName::from("orders")),
            DiagLevel::ShapeRewriteDiff,
            1000,
            later,
        ),
        directive(
            "acme",
            DirectiveMatch::all().for_tenant(PartitionId::from("acme")),
            DiagLevel::ShapeTiming,
            1000,
            later,
        ),
        directive(
            "never",
            DirectiveMatch::all().for_principal(PrincipalId::from("svc")),
            DiagLevel::ShapeRewriteDiff,
            0, // sample 0: never in sample
            later,
        ),
    ]);
    assert_eq!(set.len(), 4);
    assert!(!set.is_empty());
    assert_eq!(
        set.evaluate(&search, now, &rid),
        DiagLevel::ShapeRewriteDiff
    );
    let other_index = attrs(Some(&acme), "invoices", &p, EndpointKind::Search);
    assert_eq!(
        set.evaluate(&other_index, now, &rid),
        DiagLevel::ShapeTiming
    );
    // An unresolved tenant (None) does not match a tenant target.
    let no_tenant = attrs(None, "invoices", &p, EndpointKind::Search);
    assert_eq!(set.evaluate(&no_tenant, now, &rid), DiagLevel::Shape);

    // Expiry: "a request at or after this instant does not match".
    assert_eq!(set.evaluate(&search, later, &rid), DiagLevel::Off);

    // Ring buffer and capture flags.
    let mut rb = directive("rb", DirectiveMatch::all(), DiagLevel::Shape, 1000, later);
    rb.ring_buffer = true;
    let mut cap = directive(
        "cap",
        DirectiveMatch::all().for_endpoint(EndpointKind::IngestBulk),
        DiagLevel::Shape,
        1000,
        later,
    );
    cap.capture = true;
    let flags = DirectiveSet::from_directives(vec![rb, cap]);
    assert!(flags.wants_ring_buffer(&search, now, &rid));
    assert!(!flags.wants_capture(&search, now, &rid));
    let bulk = attrs(None, "logs", &p, EndpointKind::IngestBulk);
    assert!(flags.wants_capture(&bulk, now, &rid));
    assert!(!flags.wants_capture(&bulk, later, &rid));

    // A single directive folds in through level_if_applies.
    let one = directive(
        "x",
        DirectiveMatch::all(),
        DiagLevel::ShapeTiming,
        1000,
        later,
    );
    assert_eq!(
        one.level_if_applies(&search, now, &rid),
        Some(DiagLevel::ShapeTiming)
    );
    assert_eq!(one.level_if_applies(&search, later, &rid), None);

    // Sets are Clone + Default.
    assert_eq!(set.clone().len(), set.len());
    assert!(DirectiveSet::default().is_empty());
}

#[test]
fn introspection_is_shape_only_json() {
    let clock = ManualClock::new();
    let now = clock.now();
    let set = DirectiveSet::from_directives(vec![directive(
        "a",
        DirectiveMatch::all().for_tenant(PartitionId::from("acme")),
        DiagLevel::Shape,
        250,
        now.saturating_add(Duration::from_secs(10)),
    )]);
    let v: serde_json::Value = set.introspect(now);
    let items = v["directives"].as_array().expect("a directives array");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], "a");
    assert_eq!(items[0]["level"], "Shape");
    assert_eq!(items[0]["tenant"], "acme");
    assert_eq!(items[0]["sample_per_mille"], 250);
    assert_eq!(items[0]["expired"], false);
    let later = set.introspect(now.saturating_add(Duration::from_secs(10)));
    assert_eq!(later["directives"][0]["expired"], true);
}

// --------------------------------------------------------------------------
// osproxy-observe: the decoder
// --------------------------------------------------------------------------

#[test]
fn decode_with_any_clock() {
    let manual = ManualClock::new();
    let set = decode_directive_set(BODY, &manual).unwrap();
    assert_eq!(set.len(), 2);

    let acme = PartitionId::from("acme");
    let p = PrincipalId::from("svc");
    let search = attrs(Some(&acme), "logs", &p, EndpointKind::Search);
    assert_eq!(
        set.evaluate(&search, manual.now(), &RequestId::from("r")),
        DiagLevel::ShapeTiming
    );
    // ttl_secs is a lifetime from decode time on the injected clock.
    manual.advance(Duration::from_secs(600));
    assert_eq!(
        set.evaluate(&search, manual.now(), &RequestId::from("r")),
        DiagLevel::Off
    );

    let system = SystemClock;
    assert_eq!(decode_directive_set(BODY, &system).unwrap().len(), 2);
    let dyn_clock: Arc<dyn Clock> = Arc::new(ManualClock::new());
    assert!(decode_directive_set(BODY, dyn_clock.as_ref()).is_ok());
    let frozen = Frozen {
        mono: ManualClock::new().now(),
        wall: 1_750_000_000_000_000_000,
    };
    assert_eq!(decode_directive_set(BODY, &frozen).unwrap().len(), 2);
}

#[test]
fn decode_errors_are_static_slugs() {
    let clock = ManualClock::new();
    // The two slugs the seed's docs name.
    let zero: Result<DirectiveSet, &'static str> = decode_directive_set(
        br#"{"directives":[{"id":"a","level":"Shape","ttl_secs":0}]}"#,
        &clock,
    );
    assert_eq!(zero.unwrap_err(), "zero_ttl");
    let typo = decode_directive_set(
        br#"{"directives":[{"id":"a","level":"Shape","ttl_secs":60,"tennant":"acme"}]}"#,
        &clock,
    );
    assert_eq!(typo.unwrap_err(), "unknown_field");
    // Anything malformed is rejected whole.
    let bad: &'static str = decode_directive_set(b"not json", &clock).unwrap_err();
    assert!(!bad.is_empty());
    assert!(decode_directive_set(br#"{"directives":[{"id":"a"}]}"#, &clock).is_err());
}

// --------------------------------------------------------------------------
// osproxy-observe: the store seam
// --------------------------------------------------------------------------

#[test]
fn a_store_with_only_load() {
    let clock = ManualClock::new();
    let store = FixedStore(Arc::new(decode_directive_set(BODY, &clock).unwrap()));
    let acme = PartitionId::from("acme");
    assert_eq!(
        level_at(&store, Some(&acme), clock.now()),
        DiagLevel::ShapeTiming
    );
    assert_eq!(level_at(&store, None, clock.now()), DiagLevel::Off);

    let as_dyn: &dyn DirectiveStore = &store;
    assert_eq!(as_dyn.load().len(), 2);
    let boxed: Box<dyn DirectiveStore> = Box::new(store);
    assert_eq!(boxed.load().len(), 2);
}

#[test]
fn a_fixed_arc_set_is_a_store() {
    let clock = ManualClock::new();
    let fixed: Arc<DirectiveSet> = Arc::new(decode_directive_set(BODY, &clock).unwrap());
    let acme = PartitionId::from("acme");
    assert_eq!(
        level_at(&fixed, Some(&acme), clock.now()),
        DiagLevel::ShapeTiming
    );
    let loaded = DirectiveStore::load(&fixed);
    assert!(Arc::ptr_eq(&loaded, &fixed));
}

#[test]
fn in_memory_store() {
    let clock = ManualClock::new();
    let acme = PartitionId::from("acme");

    let store = InMemoryDirectiveStore::new();
    assert!(store.load().is_empty());
    assert_eq!(level_at(&store, Some(&acme), clock.now()), DiagLevel::Off);

    store.publish(decode_directive_set(BODY, &clock).unwrap());
    assert_eq!(store.load().len(), 2);
    assert_eq!(
        level_at(&store, Some(&acme), clock.now()),
        DiagLevel::ShapeTiming
    );

    // The fleet flip: the next load sees the new set.
    store.publish(DirectiveSet::new());
    assert!(store.load().is_empty());

    let seeded = InMemoryDirectiveStore::default()
        .with_directives(decode_directive_set(BODY, &clock).unwrap());
    assert_eq!(seeded.load().len(), 2);
    let _ = format!("{seeded:?}");

    // Expiry still applies through the store.
    clock.advance(Duration::from_secs(600));
    assert_eq!(level_at(&seeded, Some(&acme), clock.now()), DiagLevel::Off);

    // Shareable across threads (DirectiveStore: Send + Sync).
    let shared: Arc<dyn DirectiveStore> = Arc::new(seeded);
    let handle = std::thread::spawn(move || shared.load().len());
    assert_eq!(handle.join().unwrap(), 2);
}

// --------------------------------------------------------------------------
// osproxy-observe: the single-request seam
// --------------------------------------------------------------------------

#[test]
fn directive_verifier_seam() {
    assert!(NoVerifier.verify("anything").is_none());
    assert!(NoVerifier::default().verify("").is_none());

    let clock = ManualClock::new();
    let now = clock.now();
    let verifier: Box<dyn DirectiveVerifier> = Box::new(AcceptsOk {
        expires_at: now.saturating_add(Duration::from_secs(30)),
    });
    assert!(verifier.verify("forged").is_none());
    let d = verifier.verify("ok").expect("a valid header");
    let p = PrincipalId::from("svc");
    let a = attrs(None, "logs", &p, EndpointKind::Search);
    assert_eq!(
        d.level_if_applies(&a, now, &RequestId::from("r")),
        Some(DiagLevel::ShapeRewriteDiff)
    );
}
