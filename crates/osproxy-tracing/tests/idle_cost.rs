//! While the recorder is on but a request is decided `Off`, nothing of the
//! request beyond its own span reaches the recorder or a layer whose filter
//! refuses it. With `Recorder::layer` (per-layer filter only) the registry
//! still builds the child spans nobody wants; with
//! `Recorder::layer_with_baseline` it does not build them at all.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use osproxy_core::ManualClock;
use osproxy_observe::{decode_directive_set, InMemoryDirectiveStore};
use osproxy_tracing::Recorder;
use tracing::Subscriber;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::Context;
use tracing_subscriber::prelude::*;
use tracing_subscriber::Layer;

#[derive(Clone, Default)]
struct Count {
    spans: Arc<AtomicU64>,
    events: Arc<AtomicU64>,
}

impl<S: Subscriber> Layer<S> for Count {
    fn on_new_span(
        &self,
        _: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: Context<'_, S>,
    ) {
        self.spans.fetch_add(1, Ordering::Relaxed);
    }
    fn on_event(&self, _: &tracing::Event<'_>, _: Context<'_, S>) {
        self.events.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn an_off_request_creates_only_its_own_span() {
    let clock = ManualClock::new();
    let store = InMemoryDirectiveStore::new();
    let body = r#"{"directives":[{"id":"other","level":"ShapeTiming","tenant":"other",
        "sample_per_mille":1000,"ttl_secs":600}]}"#;
    store.publish(decode_directive_set(body.as_bytes(), &clock).unwrap());
    let recorder = Recorder::builder(store.shared().clone())
        .clock(Arc::new(clock))
        .refresh_every(None)
        .build();
    let count = Count::default();
    let subscriber = tracing_subscriber::registry()
        .with(count.clone().with_filter(LevelFilter::WARN))
        .with(recorder.layer());
    tracing::subscriber::with_default(subscriber, || {
        for i in 0..10 {
            let span = tracing::info_span!(
                "request",
                tenant = "acme",
                index = "logs",
                principal = "alice",
                endpoint = "search",
                request_id = i
            );
            let _in = span.enter();
            for step in 0..10u64 {
                let child = tracing::info_span!("step", n = step);
                let _c = child.enter();
                tracing::debug!(k = step, "first");
            }
        }
    });
    assert_eq!(recorder.stats().decided, 10);
    assert_eq!(count.spans.load(Ordering::Relaxed), 0);
    assert_eq!(count.events.load(Ordering::Relaxed), 0);
    assert!(recorder.tape().is_empty());
}

#[test]
fn with_the_baseline_an_off_request_builds_no_child_span() {
    let clock = ManualClock::new();
    let store = InMemoryDirectiveStore::new();
    let body = r#"{"directives":[{"id":"other","level":"ShapeRewriteDiff","tenant":"other",
        "sample_per_mille":1000,"ttl_secs":600,"ring_buffer":true}]}"#;
    store.publish(decode_directive_set(body.as_bytes(), &clock).unwrap());
    let recorder = Recorder::builder(store.shared().clone())
        .clock(Arc::new(clock))
        .refresh_every(None)
        .build();
    let count = Count::default();
    let subscriber = tracing_subscriber::registry()
        .with(count.clone().with_filter(LevelFilter::WARN))
        .with(recorder.layer_with_baseline(LevelFilter::WARN));
    let request = |tenant: &str| {
        let span = tracing::info_span!(
            "request",
            tenant = tenant,
            index = "logs",
            principal = "alice",
            endpoint = "search",
            request_id = "r"
        );
        let _in = span.enter();
        let child = tracing::info_span!("step", n = 1u64);
        let _c = child.enter();
        tracing::debug!(k = 1u64, "first");
        tracing::warn!("the service's own");
        (span.is_disabled(), child.is_disabled())
    };
    tracing::subscriber::with_default(subscriber, || {
        assert_eq!(
            request("acme"),
            (false, true),
            "decided Off: no child built"
        );
        assert_eq!(
            request("other"),
            (false, false),
            "recorded: the child is built"
        );
    });
    assert_eq!(recorder.stats().decided, 2);
    assert_eq!(recorder.tape().len(), 1);
    let doc = &recorder.tape().snapshot()[0];
    assert_eq!(doc["tenant"], "other");
    // The baseline's own warn events reach its layer either way; nothing else.
    assert_eq!(count.events.load(Ordering::Relaxed), 2);
    assert_eq!(count.spans.load(Ordering::Relaxed), 0);
}

/// Debug callsites are wanted only while a live directive can record them
/// (`ShapeRewriteDiff`); raising a directive to it rebuilds the interest so
/// the next request's debug events are recorded.
#[test]
fn debug_interest_follows_the_live_sets_top_level() {
    let clock = Arc::new(ManualClock::new());
    let store = InMemoryDirectiveStore::new();
    let set = |level: &str| {
        let body = format!(
            r#"{{"directives":[{{"id":"acme","level":"{level}","tenant":"acme","ttl_secs":600,"ring_buffer":true}}]}}"#
        );
        decode_directive_set(body.as_bytes(), clock.as_ref()).unwrap()
    };
    store.publish(set("ShapeTiming"));
    let recorder = Recorder::builder(store.shared().clone())
        .clock(clock.clone())
        .refresh_every(None)
        .build();
    let count = Count::default();
    let subscriber = tracing_subscriber::registry()
        .with(count.clone().with_filter(LevelFilter::WARN))
        .with(recorder.layer_with_baseline(LevelFilter::WARN));
    let request = || {
        let span = tracing::info_span!(
            "request",
            tenant = "acme",
            index = "logs",
            principal = "alice",
            endpoint = "search",
            request_id = "r"
        );
        let _in = span.enter();
        tracing::debug!(k = 1u64, "deep");
        tracing::info!(k = 2u64, "shallow");
    };
    let events = |doc: &serde_json::Value| doc["request"]["events"].as_array().unwrap().len();
    tracing::subscriber::with_default(subscriber, || {
        request();
        assert_eq!(events(&recorder.tape().snapshot()[0]), 1, "info only");
        store.publish(set("ShapeRewriteDiff"));
        assert!(recorder.refresh());
        request();
        assert_eq!(events(&recorder.tape().snapshot()[1]), 2, "debug too");
        store.publish(set("Shape"));
        recorder.refresh();
        request();
        assert_eq!(events(&recorder.tape().snapshot()[2]), 1, "info only again");
    });
}
