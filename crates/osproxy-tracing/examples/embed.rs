//! Embedding the request recorder in a service, the smallest complete
//! program (docs/recorder.md walks through it):
//!
//! ```text
//! cargo run -p osproxy-tracing --example embed
//! ```
//!
//! A directive for tenant `acme` with `ring_buffer`; requests for three
//! tenants, each carrying a value the service did not declare safe; the tape
//! then holds acme's requests only, shape-only, stamped with the directive.
#![allow(clippy::print_stdout)]

use osproxy_core::SystemClock;
use osproxy_observe::{decode_directive_set, InMemoryDirectiveStore};
use osproxy_tracing::Recorder;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::prelude::*;

fn handle(tenant: &str, request_id: &str) {
    // One span per request, its identity as fields given at creation.
    let span = tracing::info_span!(
        "request",
        tenant = tenant,
        index = "logs",
        principal = "alice",
        endpoint = "search",
        request_id = request_id,
        // Not declared safe: recorded as its name, type and size only.
        authorization = "Bearer s3cr3t",
    );
    let _in = span.enter();
    let _db = tracing::info_span!("query_db", rows = 3u64).entered();
    tracing::info!(status = 200u64, "served");
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Any store's cell works: `EtcdDirectiveStore::shared()` in a fleet.
    let store = InMemoryDirectiveStore::new();
    let body = br#"{"directives":[{"id":"acme-tape","level":"ShapeTiming","tenant":"acme",
        "ttl_secs":600,"ring_buffer":true}]}"#;
    store.publish(decode_directive_set(body, &SystemClock)?);

    let recorder = Recorder::builder(store.shared().clone())
        .safe_fields(["status"])
        .build();
    // The service's baseline: on its own output layer as a per-layer filter,
    // and handed to the recorder, which then filters for both.
    let baseline = LevelFilter::INFO;
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_filter(baseline))
        .with(recorder.layer_with_baseline(baseline))
        .init();
    recorder.refresh(); // the watcher would notice within 100 ms

    for (i, tenant) in ["acme", "globex", "initech"].iter().enumerate() {
        handle(tenant, &format!("req-{i}"));
    }
    for doc in recorder.tape().snapshot() {
        println!("{}", serde_json::to_string_pretty(&doc)?);
    }
    println!("tape: {} request(s)", recorder.tape().len());
    Ok(())
}
