//! The loop, live: a directive put into a real etcd reaches two instances'
//! stores, each instance's recorder records only the targeted tenant's
//! requests onto its own tape and exports them to a real OTLP/HTTP
//! receiver, stamped with the directive and the etcd revision; no request
//! value that was not declared safe appears anywhere; once the directive
//! expires, nothing more is recorded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use osproxy_core::{Clock, SystemClock};
use osproxy_etcd::{EtcdDirectiveStore, Layout};
use osproxy_test_support::{attr_int, attr_str, unique_key, wait_until, EtcdCluster, OtlpReceiver};
use osproxy_tracing::{OtlpConfig, OtlpExport, Recorder};
use tracing_subscriber::prelude::*;

const SECRETS: [&str; 4] = ["s3cr3t-token", "hunter2", "4111111111111111", "987654321"];

fn request(tenant: &str, id: &str) {
    let span = tracing::info_span!(
        "request",
        tenant = tenant,
        index = "logs",
        principal = "alice",
        endpoint = "Search",
        request_id = id,
        authorization = "Bearer s3cr3t-token",
        query = "password=hunter2",
    );
    let _in = span.enter();
    tracing::info!(status = 200u64, card = "4111111111111111", "served");
    let child = tracing::info_span!("upstream", user_id = 987_654_321u64);
    let _c = child.enter();
}

struct Instance {
    _store: EtcdDirectiveStore,
    recorder: Recorder,
}

async fn instance(cluster: &EtcdCluster, key: &str, receiver: &OtlpReceiver) -> Instance {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = EtcdDirectiveStore::builder(&cluster.endpoints(), Layout::Key(key.into()), clock)
        .connect()
        .await
        .unwrap();
    let recorder = Recorder::builder(store.shared().clone())
        .safe_fields(["status"])
        .refresh_every(Some(Duration::from_millis(20)))
        .otlp(OtlpExport::start(OtlpConfig::new(receiver.traces_url())).unwrap())
        .build();
    Instance {
        _store: store,
        recorder,
    }
}

fn traffic(recorder: &Recorder, prefix: &str) {
    let subscriber = tracing_subscriber::registry().with(recorder.layer());
    tracing::subscriber::with_default(subscriber, || {
        for i in 0..3 {
            request("acme", &format!("{prefix}-acme-{i}"));
            request("globex", &format!("{prefix}-globex-{i}"));
            request("initech", &format!("{prefix}-initech-{i}"));
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directive_in_etcd_records_acme_only_everywhere_until_it_expires() {
    let cluster = tokio::task::spawn_blocking(EtcdCluster::single)
        .await
        .unwrap();
    let key = unique_key("recorder-live");
    let receiver = OtlpReceiver::start();
    let a = instance(&cluster, &key, &receiver).await;
    let b = instance(&cluster, &key, &receiver).await;
    assert!(!a.recorder.is_active() && !b.recorder.is_active());

    cluster.put(
        &key,
        r#"{"directives":[{"id":"acme-tape","level":"ShapeTiming","tenant":"acme",
            "sample_per_mille":1000,"ttl_secs":3,"ring_buffer":true}]}"#,
    );
    wait_until(Duration::from_secs(10), "both instances on", || {
        a.recorder.is_active() && b.recorder.is_active()
    });
    let revision = cluster_revision(&a);
    traffic(&a.recorder, "a");
    traffic(&b.recorder, "b");

    for (name, inst) in [("a", &a), ("b", &b)] {
        let tape = inst.recorder.tape().snapshot();
        assert_eq!(tape.len(), 3, "{name}: acme's three requests only");
        for doc in &tape {
            assert_eq!(doc["tenant"], "acme");
            assert_eq!(doc["osproxy.directive.id"], "acme-tape");
            assert_eq!(doc["osproxy.directive.revision"], revision);
            let text = doc.to_string();
            for s in SECRETS {
                assert!(!text.contains(s), "{name}'s tape leaks {s}: {text}");
            }
        }
    }
    wait_until(Duration::from_secs(10), "12 spans at the receiver", || {
        receiver.spans().len() >= 12
    });
    let spans = receiver.spans();
    assert_eq!(spans.len(), 12, "2 instances × 3 acme requests × 2 spans");
    for span in &spans {
        assert_eq!(
            attr_str(&span.attributes, "osproxy.directive.id"),
            Some("acme-tape")
        );
        assert_eq!(
            attr_int(&span.attributes, "osproxy.directive.revision"),
            revision.as_i64()
        );
        let text = format!("{span:?}");
        for s in SECRETS {
            assert!(!text.contains(s), "an exported span leaks {s}: {text}");
        }
    }

    // The directive expires (3 s after it was applied): both recorders
    // switch off on their own, and nothing more is recorded or exported.
    wait_until(
        Duration::from_secs(15),
        "both instances off after expiry",
        || !a.recorder.is_active() && !b.recorder.is_active(),
    );
    traffic(&a.recorder, "a-late");
    traffic(&b.recorder, "b-late");
    assert_eq!(a.recorder.tape().len(), 3);
    assert_eq!(b.recorder.tape().len(), 3);
    assert_eq!(a.recorder.stats().recorded + b.recorder.stats().recorded, 6);
    drop(a);
    drop(b);
    assert_eq!(receiver.spans().len(), 12, "nothing exported after expiry");
}

/// The revision stamped on the first tape entry (the etcd revision of the
/// put), as JSON.
fn cluster_revision(inst: &Instance) -> serde_json::Value {
    // Decide once outside a span: the decision names the set's revision.
    let keys = osproxy_observe::RequestKeys {
        tenant: Some("acme"),
        index: "logs",
        principal: "alice",
        endpoint: osproxy_core::EndpointKind::Search,
    };
    let d = inst.recorder.decide(&keys, "probe");
    serde_json::json!(d.revision.expect("an etcd revision"))
}
