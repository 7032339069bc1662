//! The recorder in one process: a real in-memory store, a manual clock, the
//! real `tracing` registry. What a directive turns on is recorded at its
//! level, stamped with its provenance, only for the requests it targets,
//! shape-only, and nothing once it expires.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use osproxy_core::ManualClock;
use osproxy_observe::{
    decode_directive_set, BreakGlassBuffer, DiagnosticSink, InMemoryDirectiveStore, SpanExporter,
};
use osproxy_tracing::Recorder;
use serde_json::Value;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::prelude::*;

#[derive(Default)]
struct Collect(Mutex<Vec<Value>>);

impl DiagnosticSink for Collect {
    fn emit(&self, doc: Value) {
        self.0.lock().unwrap().push(doc);
    }
}

impl SpanExporter for Collect {
    fn export(&self, payload: Value) {
        self.0.lock().unwrap().push(payload);
    }
}

struct Fixture {
    clock: Arc<ManualClock>,
    store: InMemoryDirectiveStore,
    recorder: Recorder,
    sink: Arc<Collect>,
    exported: Arc<Collect>,
}

fn fixture(directives: &str) -> Fixture {
    let clock = Arc::new(ManualClock::new());
    let store = InMemoryDirectiveStore::new();
    let body = format!(r#"{{"directives":[{directives}]}}"#);
    store.publish(decode_directive_set(body.as_bytes(), &*clock).unwrap());
    let sink = Arc::new(Collect::default());
    let exported = Arc::new(Collect::default());
    let recorder = Recorder::builder(store.shared().clone())
        .clock(clock.clone())
        .safe_fields(["status"])
        .tape(Arc::new(BreakGlassBuffer::new(64)))
        .sink(sink.clone())
        .exporter(exported.clone())
        .refresh_every(None)
        .build();
    Fixture {
        clock,
        store,
        recorder,
        sink,
        exported,
    }
}

/// One request as a service would run it: a request span, two children, a
/// few events, some of them carrying secret-looking values.
fn request(tenant: &str, id: &str) {
    let span = tracing::info_span!(
        "request",
        tenant = tenant,
        index = "logs",
        principal = "alice",
        endpoint = "search",
        request_id = id,
        authorization = "Bearer s3cr3t-token",
    );
    let _in = span.enter();
    tracing::info!(status = 200u64, user_id = 987_654_321u64, "handled");
    {
        let child = tracing::info_span!("parse", query = "password=hunter2");
        let _c = child.enter();
        tracing::debug!(card = "4111111111111111", "parsed body");
        let grandchild = tracing::debug_span!("rewrite", rule = "secret-rule");
        let _g = grandchild.enter();
    }
    let upstream = tracing::info_span!("upstream", bytes = 1234u64);
    let _u = upstream.enter();
}

fn in_subscriber(f: &Fixture, run: impl FnOnce()) {
    let subscriber = tracing_subscriber::registry().with(f.recorder.layer());
    tracing::subscriber::with_default(subscriber, run);
}

const SECRETS: [&str; 6] = [
    "s3cr3t",
    "hunter2",
    "4111111111111111",
    "987654321",
    "secret-rule",
    "1234",
];

fn assert_no_secret(what: &str, v: &Value) {
    let text = v.to_string();
    for s in SECRETS {
        assert!(!text.contains(s), "{what} leaks {s}: {text}");
    }
}

/// `tracing`'s callsite interest is process-wide: the union over every live
/// dispatcher. Tests in this binary each install their own, so they run one
/// at a time, as a service (one dispatcher) would.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[test]
fn without_a_live_directive_nothing_is_enabled_or_recorded() {
    let _serial = serial();
    let f = fixture("");
    assert!(!f.recorder.is_active());
    // The filter does not even take a decision: the request span is
    // never enabled for the recorder.
    in_subscriber(&f, || request("acme", "r-1"));
    assert!(f.recorder.tape().is_empty());
    assert_eq!(f.recorder.stats().decided, 0);
}

#[test]
fn a_tenant_directive_records_that_tenant_only_stamped_and_shape_only() {
    let _serial = serial();
    let f = fixture(
        r#"{"id":"acme-shape","level":"Shape","tenant":"acme","sample_per_mille":1000,
            "ttl_secs":600,"ring_buffer":true,"capture":true}"#,
    );
    assert!(f.recorder.is_active());
    in_subscriber(&f, || {
        for i in 0..3 {
            request("acme", &format!("a-{i}"));
            request("globex", &format!("g-{i}"));
        }
    });
    let tape = f.recorder.tape().snapshot();
    assert_eq!(tape.len(), 3, "{tape:?}");
    for doc in &tape {
        assert_eq!(doc["tenant"], "acme");
        assert_eq!(
            doc["endpoint"], "Search",
            "the span's `search`, as the wire name"
        );
        assert_eq!(doc["osproxy.directive.id"], "acme-shape");
        assert_eq!(doc["osproxy.directive.revision"], 1);
        assert!(doc.get("osproxy.directive.key_id").is_none());
        let eval = &doc["feature_flag.evaluation"];
        assert_eq!(eval["feature_flag.key"], "acme-shape");
        assert_eq!(eval["feature_flag.version"], "1");
        assert_eq!(eval["feature_flag.set.id"], "osproxy.directives");
        assert_eq!(eval["feature_flag.result.variant"], "Shape");
        assert_eq!(eval["feature_flag.result.reason"], "targeting_match");
        // Shape: info spans only (parse, upstream), no debug, no timing.
        let names: Vec<_> = doc["spans"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["parse", "upstream"]);
        assert!(doc["request"].get("busy_ns").is_none());
        let events = doc["request"]["events"].as_array().unwrap();
        assert_eq!(events.len(), 1);
        // The declared-safe field keeps its value; the others their size.
        let fields = events[0]["fields"].as_array().unwrap();
        let status = fields.iter().find(|f| f["name"] == "status").unwrap();
        assert_eq!(status["value"], 200);
        let user = fields.iter().find(|f| f["name"] == "user_id").unwrap();
        assert!(user.get("value").is_none());
        assert_eq!(user["size"], 8);
        assert_no_secret("tape", doc);
    }
    let sunk = f.sink.0.lock().unwrap();
    assert_eq!(sunk.len(), 3);
    for doc in sunk.iter() {
        assert_no_secret("sink", doc);
    }
    let exported = f.exported.0.lock().unwrap();
    assert_eq!(exported.len(), 3);
    for payload in exported.iter() {
        assert_no_secret("export", payload);
        let text = payload.to_string();
        assert!(text.contains("osproxy.directive.id"), "{text}");
        assert!(text.contains("acme-shape"));
        assert!(text.contains("feature_flag.evaluation"));
    }
    let stats = f.recorder.stats();
    assert_eq!(stats.decided, 6);
    assert_eq!(stats.recorded, 3);
    assert_eq!(f.store.load_with_revision().0.counts(0).applied, 3);
}

#[test]
fn timing_adds_busy_and_idle_and_rewrite_diff_adds_debug() {
    let _serial = serial();
    let f = fixture(
        r#"{"id":"t","level":"ShapeTiming","tenant":"acme","sample_per_mille":1000,
            "ttl_secs":600,"ring_buffer":true},
           {"id":"d","level":"ShapeRewriteDiff","tenant":"globex","sample_per_mille":1000,
            "ttl_secs":600,"ring_buffer":true}"#,
    );
    in_subscriber(&f, || {
        request("acme", "a");
        request("globex", "g");
    });
    let tape = f.recorder.tape().snapshot();
    assert_eq!(tape.len(), 2);
    let (timing, diff) = (&tape[0], &tape[1]);
    assert_eq!(timing["osproxy.directive.id"], "t");
    assert!(timing["request"].get("busy_ns").is_some());
    assert!(timing["request"].get("idle_ns").is_some());
    assert_eq!(timing["spans"].as_array().unwrap().len(), 2);
    assert_eq!(diff["osproxy.directive.id"], "d");
    let names: Vec<_> = diff["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["rewrite", "parse", "upstream"]);
    let parse = &diff["spans"][1];
    assert_eq!(parse["events"].as_array().unwrap().len(), 1, "{parse}");
    assert_eq!(
        diff["spans"][0]["parent_span_id"], parse["span_id"],
        "rewrite is parse's child"
    );
    for doc in &tape {
        assert_no_secret("tape", doc);
    }
}

#[test]
fn after_expiry_nothing_more_is_recorded() {
    let _serial = serial();
    let f = fixture(
        r#"{"id":"acme","level":"Shape","tenant":"acme","sample_per_mille":1000,
            "ttl_secs":60,"ring_buffer":true}"#,
    );
    in_subscriber(&f, || request("acme", "before"));
    assert_eq!(f.recorder.tape().len(), 1);
    let decided = f.recorder.stats().decided;
    f.clock.advance(Duration::from_secs(61));
    assert!(!f.recorder.refresh(), "expired: the recorder switches off");
    in_subscriber(&f, || request("acme", "after"));
    assert_eq!(
        f.recorder.stats().decided,
        decided,
        "no decision after expiry"
    );
    assert_eq!(f.recorder.tape().len(), 1);
    assert_eq!(f.recorder.tape().snapshot()[0]["request_id"], "before");
}

#[test]
fn removing_the_directive_stops_recording() {
    let _serial = serial();
    let f = fixture(
        r#"{"id":"acme","level":"Shape","tenant":"acme","sample_per_mille":1000,
            "ttl_secs":600,"ring_buffer":true}"#,
    );
    f.store
        .publish(decode_directive_set(br#"{"directives":[]}"#, &*f.clock).unwrap());
    assert!(!f.recorder.refresh());
    in_subscriber(&f, || request("acme", "after"));
    assert!(f.recorder.tape().is_empty());
}

#[test]
fn the_services_baseline_output_is_untouched_by_the_recorder() {
    let _serial = serial();
    use std::io::Write;
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let f = fixture(
        r#"{"id":"d","level":"ShapeRewriteDiff","tenant":"acme","sample_per_mille":1000,
            "ttl_secs":600,"ring_buffer":true}"#,
    );
    let out = Buf::default();
    let writer = out.clone();
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_filter(LevelFilter::INFO);
    let subscriber = tracing_subscriber::registry()
        .with(fmt)
        .with(f.recorder.layer());
    tracing::subscriber::with_default(subscriber, || request("acme", "a"));
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("handled"), "{text}");
    assert!(
        !text.contains("parsed body"),
        "debug stays out of the baseline: {text}"
    );
    let tape = f.recorder.tape().snapshot();
    assert_eq!(tape.len(), 1);
    assert_eq!(tape[0]["spans"][1]["events"][0]["level"], "DEBUG");
}

#[test]
fn a_signed_set_stamps_its_key_id() {
    let _serial = serial();
    let clock = ManualClock::new();
    let store = InMemoryDirectiveStore::new();
    let body = br#"{"directives":[{"id":"k","level":"Shape","sample_per_mille":1000,
        "ttl_secs":600,"ring_buffer":true}]}"#;
    store.publish(
        decode_directive_set(body, &clock)
            .unwrap()
            .with_key_id("ops-2026"),
    );
    let recorder = Recorder::builder(store.shared().clone())
        .clock(Arc::new(clock))
        .refresh_every(None)
        .build();
    let subscriber = tracing_subscriber::registry().with(recorder.layer());
    tracing::subscriber::with_default(subscriber, || request("any", "r"));
    let tape = recorder.tape().snapshot();
    assert_eq!(tape[0]["osproxy.directive.key_id"], "ops-2026");
}
