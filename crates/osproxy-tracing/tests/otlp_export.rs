//! Export to a real OTLP/HTTP receiver: spans built from the recorder's
//! records, sent by `opentelemetry-otlp` (protobuf) off the request path,
//! decoded by the receiver with the `opentelemetry-proto` types; the seam's
//! OTLP/JSON payload decodes there too. A full queue drops and counts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use osproxy_core::ManualClock;
use osproxy_observe::{decode_directive_set, InMemoryDirectiveStore, SpanExporter};
use osproxy_test_support::{attr_int, attr_str, wait_until, OtlpEncoding, OtlpReceiver};
use osproxy_tracing::{OtlpConfig, OtlpExport, Recorder};
use serde_json::Value;
use tracing_subscriber::prelude::*;

const DIRECTIVES: &str = r#"{"directives":[{"id":"acme-timing","level":"ShapeTiming",
    "tenant":"acme","sample_per_mille":1000,"ttl_secs":600}]}"#;

fn store(clock: &ManualClock) -> InMemoryDirectiveStore {
    let store = InMemoryDirectiveStore::new();
    store.publish(decode_directive_set(DIRECTIVES.as_bytes(), clock).unwrap());
    store
}

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
    let child = tracing::info_span!("upstream", user_id = 987_654_321u64);
    let _c = child.enter();
    tracing::info!(status = 200u64, "sent");
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
fn spans_reach_a_real_receiver_stamped_and_shape_only() {
    let _serial = serial();
    let receiver = OtlpReceiver::start();
    let clock = ManualClock::new();
    let store = store(&clock);
    let otlp = OtlpExport::start(OtlpConfig::new(receiver.traces_url())).unwrap();
    let recorder = Recorder::builder(store.shared().clone())
        .clock(Arc::new(clock))
        .safe_fields(["status"])
        .otlp(otlp)
        .refresh_every(None)
        .build();
    let subscriber = tracing_subscriber::registry().with(recorder.layer());
    tracing::subscriber::with_default(subscriber, || {
        for i in 0..3 {
            request("acme", &format!("a-{i}"));
            request("globex", &format!("g-{i}"));
        }
    });
    wait_until(Duration::from_secs(10), "6 spans at the receiver", || {
        receiver.spans().len() >= 6
    });
    let spans = receiver.spans();
    assert_eq!(spans.len(), 6, "3 acme requests × (request, upstream)");
    assert!(receiver
        .requests()
        .iter()
        .all(|(e, _)| *e == OtlpEncoding::Protobuf));
    for span in &spans {
        assert_eq!(
            attr_str(&span.attributes, "osproxy.directive.id"),
            Some("acme-timing")
        );
        assert_eq!(
            attr_int(&span.attributes, "osproxy.directive.revision"),
            Some(1)
        );
        assert!(attr_int(&span.attributes, "busy_ns").is_some());
        let text = format!("{span:?}");
        for secret in ["s3cr3t", "987654321"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
    }
    let roots: Vec<_> = spans.iter().filter(|s| s.name == "request").collect();
    assert_eq!(roots.len(), 3);
    for root in roots {
        assert_eq!(
            attr_str(&root.attributes, "osproxy.request.tenant"),
            Some("acme")
        );
        let eval = root
            .events
            .iter()
            .find(|e| e.name == "feature_flag.evaluation")
            .expect("the evaluation event");
        assert_eq!(
            attr_str(&eval.attributes, "feature_flag.key"),
            Some("acme-timing")
        );
        assert_eq!(
            attr_str(&eval.attributes, "feature_flag.version"),
            Some("1")
        );
        assert_eq!(
            attr_str(&eval.attributes, "feature_flag.result.variant"),
            Some("ShapeTiming")
        );
    }
    let upstream = spans.iter().find(|s| s.name == "upstream").unwrap();
    let sent = &upstream.events[0];
    assert_eq!(attr_int(&sent.attributes, "field.status"), Some(200));
    assert_eq!(attr_int(&sent.attributes, "field.message.size"), Some(4));
    let stats = recorder.stats();
    assert_eq!(stats.export_queued, 6);
    assert_eq!(stats.export_dropped, 0);
}

#[derive(Default)]
struct Keep(Mutex<Vec<Value>>);

impl SpanExporter for Keep {
    fn export(&self, payload: Value) {
        self.0.lock().unwrap().push(payload);
    }
}

#[test]
fn the_seam_payload_is_otlp_json_a_receiver_decodes() {
    let _serial = serial();
    let receiver = OtlpReceiver::start();
    let clock = ManualClock::new();
    let store = store(&clock);
    let keep = Arc::new(Keep::default());
    let recorder = Recorder::builder(store.shared().clone())
        .clock(Arc::new(clock))
        .exporter(keep.clone())
        .refresh_every(None)
        .build();
    let subscriber = tracing_subscriber::registry().with(recorder.layer());
    tracing::subscriber::with_default(subscriber, || request("acme", "a-1"));
    let payload = keep.0.lock().unwrap().pop().expect("one payload");
    let body = serde_json::to_vec(&payload).unwrap();
    let mut conn = TcpStream::connect(receiver.addr()).unwrap();
    write!(
        conn,
        "POST /v1/traces HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        receiver.addr(),
        body.len()
    )
    .unwrap();
    conn.write_all(&body).unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let (encoding, _) = receiver.requests().pop().unwrap();
    assert_eq!(encoding, OtlpEncoding::Json);
    let spans = receiver.spans();
    assert_eq!(spans.len(), 2);
    assert!(spans
        .iter()
        .all(|s| attr_str(&s.attributes, "osproxy.directive.id") == Some("acme-timing")));
}

#[test]
fn a_stuck_collector_never_blocks_a_request_and_drops_are_counted() {
    let _serial = serial();
    // A collector that accepts connections and never answers.
    let stuck = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1/traces", stuck.local_addr().unwrap());
    let clock = ManualClock::new();
    let store = store(&clock);
    let mut config = OtlpConfig::new(url);
    config.queue_requests = 1;
    config.timeout = Duration::from_millis(500);
    let recorder = Recorder::builder(store.shared().clone())
        .clock(Arc::new(clock))
        .otlp(OtlpExport::start(config).unwrap())
        .refresh_every(None)
        .build();
    let subscriber = tracing_subscriber::registry().with(recorder.layer());
    tracing::subscriber::with_default(subscriber, || {
        for i in 0..20 {
            request("acme", &format!("a-{i}"));
        }
    });
    let stats = recorder.stats();
    assert_eq!(stats.recorded, 20);
    assert_eq!(stats.export_queued + stats.export_dropped, 40);
    assert!(stats.export_dropped >= 36, "{stats:?}");
    drop(stuck);
}
