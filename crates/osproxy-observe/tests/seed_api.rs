//! A program written against the seed's API (SPEC §4) still compiles and
//! runs: nothing here may need more than the seed offered.

use std::sync::Arc;

use osproxy_core::{
    Clock, EndpointKind, IndexName, ManualClock, PartitionId, PrincipalId, RequestId, SystemClock,
};
use osproxy_observe::{
    decode_directive_set, DiagLevel, DiagnosticsDirective, DirectiveMatch, DirectiveSet,
    DirectiveStore, InMemoryDirectiveStore, RequestAttrs,
};

const BODY: &[u8] = br#"{"directives":[
    {"id":"acme-timing","level":"ShapeTiming","tenant":"acme","sample_per_mille":1000,
     "ttl_secs":600},
    {"id":"bulk","level":"Shape","endpoint":"IngestBulk","ring_buffer":true,"capture":false,
     "ttl_secs":60}
]}"#;

/// A store that implements only the seed's one required method.
struct FixedStore(Arc<DirectiveSet>);

impl DirectiveStore for FixedStore {
    fn load(&self) -> Arc<DirectiveSet> {
        Arc::clone(&self.0)
    }
}

fn effective_level(store: &dyn DirectiveStore, clock: &dyn Clock, tenant: &str) -> DiagLevel {
    let tenant = PartitionId::from(tenant);
    let attrs = RequestAttrs::new(EndpointKind::Search).with_tenant(&tenant);
    store
        .load()
        .evaluate(&attrs, clock.now(), &RequestId::from("req-1"))
}

#[test]
fn decode_with_either_clock() {
    let manual = ManualClock::new();
    let set = decode_directive_set(BODY, &manual).unwrap();
    assert_eq!(set.len(), 2);
    assert!(!set.is_empty());

    let system = SystemClock;
    let set = decode_directive_set(BODY, &system).unwrap();
    assert_eq!(set.len(), 2);
    let tenant = PartitionId::from("acme");
    let attrs = RequestAttrs::new(EndpointKind::Search).with_tenant(&tenant);
    assert_eq!(
        set.evaluate(&attrs, system.now(), &RequestId::from("r")),
        DiagLevel::ShapeTiming
    );

    // The clock as a trait object too.
    let dyn_clock: Arc<dyn Clock> = Arc::new(ManualClock::new());
    assert!(decode_directive_set(BODY, dyn_clock.as_ref()).is_ok());
    assert!(decode_directive_set(b"not json", &manual).is_err());
}

#[test]
fn empty_sets() {
    let a = DirectiveSet::new();
    let b = DirectiveSet::default();
    assert_eq!(a.len(), 0);
    assert!(a.is_empty());
    assert!(b.is_empty());
    assert_eq!(a, b);
}

#[test]
fn a_store_with_only_load_gets_the_rest_by_default() {
    let clock = ManualClock::new();
    let store = FixedStore(Arc::new(decode_directive_set(BODY, &clock).unwrap()));
    assert_eq!(
        effective_level(&store, &clock, "acme"),
        DiagLevel::ShapeTiming
    );
    assert_eq!(effective_level(&store, &clock, "other"), DiagLevel::Off);
    // `snapshot` is a provided method.
    assert_eq!(store.snapshot().len(), 2);
    let boxed: Box<dyn DirectiveStore> = Box::new(store);
    assert_eq!(boxed.snapshot().len(), 2);
}

#[test]
fn in_memory_store() {
    let clock = ManualClock::new();
    let store = InMemoryDirectiveStore::new();
    assert!(store.load().is_empty());
    store.publish(decode_directive_set(BODY, &clock).unwrap());
    assert_eq!(store.load().len(), 2);
    assert_eq!(
        effective_level(&store, &clock, "acme"),
        DiagLevel::ShapeTiming
    );

    // The store is shareable across threads as the seed's was.
    fn assert_send_sync<T: Send + Sync + 'static>(_: &T) {}
    assert_send_sync(&store);
    let shared: Arc<dyn DirectiveStore> = Arc::new(store.clone());
    let handle = std::thread::spawn(move || shared.load().len());
    assert_eq!(handle.join().unwrap(), 2);
}

#[test]
fn the_model_types_are_public() {
    let clock = ManualClock::new();
    let set = decode_directive_set(BODY, &clock).unwrap();
    let d: &DiagnosticsDirective = &set.directives()[0];
    let m: &DirectiveMatch = &d.match_;
    assert_eq!(m.tenant.as_ref().map(PartitionId::as_str), Some("acme"));
    assert_eq!(m.index, None::<IndexName>);
    assert_eq!(m.principal, None::<PrincipalId>);
    assert!(!m.is_wildcard());
    assert_eq!(d.level, DiagLevel::ShapeTiming);
    let bulk = &set.directives()[1];
    let attrs = RequestAttrs::new(EndpointKind::IngestBulk);
    assert!(bulk.match_.matches(&attrs));
    assert!(set.wants_ring_buffer(&attrs, clock.now(), &RequestId::from("r")));
    assert!(!set.wants_capture(&attrs, clock.now(), &RequestId::from("r")));
    assert_eq!(set.view(&clock).len(), 2);
    assert!(DiagLevel::Off < DiagLevel::Shape);
}
