//! The loop, live, through the reference service: a directive put into a
//! real etcd reaches two reference-service instances (each an etcd-fed
//! store, its recorder, its admin surface, all over HTTP on loopback); each
//! records only the targeted tenant's requests onto its tape
//! (`GET /admin/breakglass`), hands them to its sink and exports them to a
//! real OTLP/HTTP receiver, stamped with the directive and the etcd
//! revision; no request value that was not declared safe (headers, query,
//! body fields, numeric ids) appears in any of them; once the directive
//! expires nothing more is recorded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use osproxy_core::{Clock, SystemClock};
use osproxy_directives::admin::{Backend, EtcdBackend};
use osproxy_directives::reference_service::{ReferenceOptions, ReferenceService};
use osproxy_etcd::{EtcdDirectiveStore, Layout};
use osproxy_observe::DiagnosticSink;
use osproxy_test_support::{attr_int, attr_str, eventually, unique_key, EtcdCluster, OtlpReceiver};
use serde_json::Value;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";
/// Values a request carries that must never be recorded.
const SECRETS: [&str; 6] = [
    "s3cr3t-token",
    "AKIA-api-key-77",
    "hunter2",
    "4111111111111111",
    "123-45-6789",
    "987654321",
];

#[derive(Default)]
struct Collect(Mutex<Vec<Value>>);

impl DiagnosticSink for Collect {
    fn emit(&self, doc: Value) {
        self.0.lock().unwrap().push(doc);
    }
}

struct Instance {
    service: ReferenceService,
    base: String,
    admin: String,
    sink: Arc<Collect>,
}

async fn instance(cluster: &EtcdCluster, key: &str, receiver: &OtlpReceiver) -> Instance {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let layout = Layout::Key(key.into());
    let store = EtcdDirectiveStore::builder(&cluster.endpoints(), layout, clock.clone())
        .connect()
        .await
        .unwrap();
    let backend = Backend::Etcd(Box::new(EtcdBackend::new(store)));
    let sink = Arc::new(Collect::default());
    let mut options = ReferenceOptions::new(clock);
    options.otlp = Some(receiver.traces_url());
    options.sink = sink.clone();
    options.log = false;
    options.refresh_every = Duration::from_millis(20);
    options.admin.token = Some(TOKEN.into());
    let service = ReferenceService::new(backend, options).unwrap();
    let serve = |router: axum::Router| async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        format!("http://{addr}")
    };
    let base = serve(service.service()).await;
    let admin = serve(service.admin()).await;
    Instance {
        service,
        base,
        admin,
        sink,
    }
}

/// One search request of `tenant` carrying secret-looking values in its
/// headers, query and body (a card number, an SSN, a numeric id).
async fn search(http: &reqwest::Client, inst: &Instance, tenant: &str, id: &str) {
    let resp = http
        .post(format!(
            "{}/logs/_search?q=error&password=hunter2",
            inst.base
        ))
        .header("x-tenant", tenant)
        .header("x-principal", "alice")
        .header("x-request-id", id)
        .header("authorization", "Bearer s3cr3t-token")
        .header("x-api-key", "AKIA-api-key-77")
        .header("content-type", "application/json")
        .body(r#"{"card":"4111111111111111","ssn":"123-45-6789","account":987654321}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

async fn traffic(http: &reqwest::Client, inst: &Instance, prefix: &str) {
    for i in 0..3 {
        for tenant in ["acme", "globex", "initech"] {
            search(http, inst, tenant, &format!("{prefix}-{tenant}-{i}")).await;
        }
    }
}

async fn breakglass(http: &reqwest::Client, inst: &Instance) -> Vec<Value> {
    let body: Value = http
        .get(format!("{}/admin/breakglass", inst.admin))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["enabled"], true);
    body["entries"].as_array().cloned().unwrap_or_default()
}

fn assert_no_secret(what: &str, text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "{what} leaks {s}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_directive_in_etcd_records_acme_only_in_the_reference_service_until_it_expires() {
    let cluster = tokio::task::spawn_blocking(EtcdCluster::single)
        .await
        .unwrap();
    let key = unique_key("reference-live");
    let receiver = OtlpReceiver::start();
    let a = instance(&cluster, &key, &receiver).await;
    let b = instance(&cluster, &key, &receiver).await;
    let http = reqwest::Client::new();
    assert!(!a.service.recorder().is_active() && !b.service.recorder().is_active());

    cluster.put(
        &key,
        r#"{"directives":[{"id":"acme-tape","level":"ShapeRewriteDiff","tenant":"acme",
            "sample_per_mille":1000,"ttl_secs":4,"ring_buffer":true,"capture":true}]}"#,
    );
    eventually(Duration::from_secs(10), "both instances on", || async {
        a.service.recorder().is_active() && b.service.recorder().is_active()
    })
    .await;
    // The etcd revision the directive was applied at, from the admin surface.
    let applied: Value = http
        .get(format!("{}/admin/directives", a.admin))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let revision = applied["revision"].as_i64().expect("a revision");
    traffic(&http, &a, "a").await;
    traffic(&http, &b, "b").await;

    for (name, inst) in [("a", &a), ("b", &b)] {
        let tape = breakglass(&http, inst).await;
        assert_eq!(
            tape.len(),
            3,
            "{name}: acme's three requests only: {tape:?}"
        );
        for doc in &tape {
            assert_eq!(doc["tenant"], "acme", "{doc}");
            assert_eq!(doc["osproxy.directive.id"], "acme-tape", "{doc}");
            assert_eq!(doc["osproxy.directive.revision"], revision, "{doc}");
            assert!(
                doc["explain"]
                    .as_str()
                    .is_some_and(|e| e.starts_with("/admin/explain?tenant=acme&")),
                "{doc}"
            );
            let text = doc.to_string();
            assert_no_secret(&format!("{name}'s tape"), &text);
            // Declared safe: its value is there.
            assert!(text.contains("\"status\""), "{text}");
            assert!(text.contains("200"), "{text}");
        }
        let sunk = inst.sink.0.lock().unwrap().clone();
        assert_eq!(sunk.len(), 3, "{name}: the sink got acme's three");
        for doc in &sunk {
            assert_eq!(doc["osproxy.directive.id"], "acme-tape");
            assert_no_secret(&format!("{name}'s sink"), &doc.to_string());
        }
    }
    // 2 instances × 3 acme requests × 3 spans (request, parse, search).
    eventually(
        Duration::from_secs(10),
        "18 spans at the receiver",
        || async { receiver.spans().len() >= 18 },
    )
    .await;
    let spans = receiver.spans();
    assert_eq!(spans.len(), 18);
    for span in &spans {
        assert_eq!(
            attr_str(&span.attributes, "osproxy.directive.id"),
            Some("acme-tape")
        );
        assert_eq!(
            attr_int(&span.attributes, "osproxy.directive.revision"),
            Some(revision)
        );
        assert_no_secret("an exported span", &format!("{span:?}"));
    }

    // The directive expires (4 s after it was applied): both recorders
    // switch off on their own; nothing more is recorded, sunk or exported.
    eventually(
        Duration::from_secs(15),
        "both instances off after expiry",
        || async { !a.service.recorder().is_active() && !b.service.recorder().is_active() },
    )
    .await;
    traffic(&http, &a, "a-late").await;
    traffic(&http, &b, "b-late").await;
    assert_eq!(breakglass(&http, &a).await.len(), 3);
    assert_eq!(breakglass(&http, &b).await.len(), 3);
    assert_eq!(a.sink.0.lock().unwrap().len(), 3);
    let recorded = a.service.recorder().stats().recorded + b.service.recorder().stats().recorded;
    assert_eq!(recorded, 6);
    // /metrics counts what was exported.
    let metrics = http
        .get(format!("{}/metrics", a.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("osproxy_directives_recorder_recorded_total 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("osproxy_directives_recorder_export_dropped_total 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("osproxy_directives_recorder_exported_total 9"),
        "{metrics}"
    );
    drop(a);
    drop(b);
    assert_eq!(receiver.spans().len(), 18, "nothing exported after expiry");
}

/// The instance's ceilings apply to recording exactly as to decisions: a
/// `ShapeRewriteDiff` directive with `capture` on an instance whose
/// ceilings are `Shape` and no capture records at `Shape` (no timing, no
/// debug events) and hands nothing to the sink.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_clamped_directive_records_at_the_clamped_level() {
    let cluster = tokio::task::spawn_blocking(EtcdCluster::single)
        .await
        .unwrap();
    let key = unique_key("reference-clamped");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let layout = Layout::Key(key.clone());
    let ceilings = osproxy_etcd::Ceilings {
        max_level: Some(osproxy_observe::DiagLevel::Shape),
        capture_allowed: false,
        ..osproxy_etcd::Ceilings::NONE
    };
    let store = EtcdDirectiveStore::builder(&cluster.endpoints(), layout, clock.clone())
        .ceilings(ceilings)
        .connect()
        .await
        .unwrap();
    let backend = Backend::Etcd(Box::new(EtcdBackend::new(store)));
    let sink = Arc::new(Collect::default());
    let mut options = ReferenceOptions::new(clock);
    options.sink = sink.clone();
    options.log = false;
    options.refresh_every = Duration::from_millis(20);
    // A collector that is not there (nothing listens on loopback port 1):
    // every export fails, and /metrics counts it.
    options.otlp = Some("http://127.0.0.1:1/v1/traces".into());
    let service = ReferenceService::new(backend, options).unwrap();
    let serve = |router: axum::Router| async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        format!("http://{addr}")
    };
    let inst = Instance {
        base: serve(service.service()).await,
        admin: serve(service.admin()).await,
        service,
        sink,
    };
    cluster.put(
        &key,
        r#"{"directives":[{"id":"acme-diff","level":"ShapeRewriteDiff","tenant":"acme",
            "ttl_secs":600,"ring_buffer":true,"capture":true}]}"#,
    );
    eventually(Duration::from_secs(10), "the instance is on", || async {
        inst.service.recorder().is_active()
    })
    .await;
    let http = reqwest::Client::new();
    search(&http, &inst, "acme", "clamped-1").await;
    let body: Value = http
        .get(format!("{}/admin/breakglass", inst.admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entries = body["entries"].as_array().cloned().unwrap_or_default();
    assert_eq!(entries.len(), 1, "{body}");
    let doc = &entries[0];
    assert_eq!(doc["osproxy.directive.id"], "acme-diff");
    assert_eq!(doc["osproxy.diag.level"], "Shape", "clamped: {doc}");
    assert_eq!(
        doc["feature_flag.evaluation"]["feature_flag.result.variant"],
        "Shape"
    );
    let text = doc.to_string();
    assert!(!text.contains("busy_ns"), "no timing at Shape: {text}");
    assert!(
        !text.contains("\"DEBUG\""),
        "no debug events at Shape: {text}"
    );
    assert!(
        text.contains("\"INFO\""),
        "info events are recorded: {text}"
    );
    assert!(
        inst.sink.0.lock().unwrap().is_empty(),
        "capture was clamped off"
    );
    // The decision itself names the clamped level too.
    let keys = osproxy_observe::RequestKeys {
        tenant: Some("acme"),
        index: "logs",
        principal: "alice",
        endpoint: osproxy_core::EndpointKind::Search,
    };
    let d = inst.service.recorder().decide(&keys, "probe");
    assert_eq!(d.level, osproxy_observe::DiagLevel::Shape);
    assert!(d.ring_buffer && !d.capture);

    // The request's 3 spans could not be exported: counted, never waited for.
    eventually(
        Duration::from_secs(15),
        "the failed export is counted",
        || async { inst.service.recorder().stats().export_failed >= 3 },
    )
    .await;
    let metrics = http
        .get(format!("{}/metrics", inst.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("osproxy_directives_recorder_export_failed_total 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("osproxy_directives_recorder_exported_total 0"),
        "{metrics}"
    );
}
