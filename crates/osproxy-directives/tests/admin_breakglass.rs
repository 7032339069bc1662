//! `GET /admin/breakglass` over a tape a real recorder filled: newest first,
//! each entry naming its directive and revision, linking to an explain query
//! that answers; under the token and the browser rules like every `/admin`
//! route.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::http::{header, Request, StatusCode};
use axum::Router;
use osproxy_core::ManualClock;
use osproxy_directives::admin::{router, AdminOptions, AdminState, Backend};
use osproxy_observe::{decode_directive_set, BreakGlassBuffer, InMemoryDirectiveStore};
use osproxy_tracing::Recorder;
use serde_json::Value;
use tower::ServiceExt;
use tracing_subscriber::prelude::*;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

fn app(tape: Option<Arc<BreakGlassBuffer>>, store: &InMemoryDirectiveStore) -> Router {
    let mut options = AdminOptions::new(Arc::new(ManualClock::new()));
    options.token = Some(TOKEN.into());
    options.breakglass = tape;
    router(AdminState::new(Backend::InMemory(store.clone()), options))
}

fn get(path: &str) -> axum::http::request::Builder {
    Request::get(path).header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
}

async fn call(app: &Router, req: Request<Body>) -> (StatusCode, Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn record(store: &InMemoryDirectiveStore, clock: ManualClock, tape: Arc<BreakGlassBuffer>) {
    let recorder = Recorder::builder(store.shared().clone())
        .clock(Arc::new(clock))
        .tape(tape)
        .refresh_every(None)
        .build();
    let subscriber = tracing_subscriber::registry().with(recorder.layer());
    tracing::subscriber::with_default(subscriber, || {
        for (tenant, id) in [("acme", "r-1"), ("globex", "r-2"), ("acme", "r-3")] {
            let span = tracing::info_span!(
                "request",
                tenant = tenant,
                index = "logs",
                principal = "alice",
                endpoint = "search",
                request_id = id,
                authorization = "Bearer s3cr3t"
            );
            let _in = span.enter();
            tracing::info!(card = "4111111111111111", "served");
        }
    });
}

#[tokio::test]
async fn the_tape_newest_first_stamped_and_explained() {
    let clock = ManualClock::new();
    let store = InMemoryDirectiveStore::new();
    let body = br#"{"directives":[{"id":"acme-tape","level":"Shape","tenant":"acme",
        "sample_per_mille":1000,"ttl_secs":600,"ring_buffer":true}]}"#;
    store.publish(decode_directive_set(body, &clock).unwrap());
    let tape = Arc::new(BreakGlassBuffer::new(16));
    record(&store, clock, tape.clone());
    let app = app(Some(tape), &store);

    let (s, v) = call(&app, get("/admin/breakglass").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["enabled"], true);
    assert_eq!(v["capacity"], 16);
    let entries = v["entries"].as_array().unwrap();
    let ids: Vec<_> = entries
        .iter()
        .map(|e| e["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["r-3", "r-1"], "acme only, newest first");
    for e in entries {
        assert_eq!(e["osproxy.directive.id"], "acme-tape");
        assert_eq!(e["osproxy.directive.revision"], 1);
    }
    let text = v.to_string();
    assert!(
        !text.contains("s3cr3t") && !text.contains("4111111111111111"),
        "{text}"
    );

    let link = entries[0]["explain"].as_str().unwrap();
    assert_eq!(
        link,
        "/admin/explain?tenant=acme&index=logs&principal=alice&endpoint=Search&request_id=r-3"
    );
    let (s, explained) = call(&app, get(link).body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::OK, "{explained}");
    assert!(explained.to_string().contains("acme-tape"), "{explained}");
}

#[tokio::test]
async fn the_tape_needs_the_token_and_refuses_the_browser() {
    let store = InMemoryDirectiveStore::new();
    let app = app(Some(Arc::new(BreakGlassBuffer::new(4))), &store);
    let (s, _) = call(
        &app,
        Request::get("/admin/breakglass")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, v) = call(
        &app,
        get("/admin/breakglass")
            .header("sec-fetch-site", "cross-site")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("cross_site"))
    );
    let (s, v) = call(
        &app,
        get("/admin/breakglass")
            .header(header::HOST, "evil.example")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::MISDIRECTED_REQUEST, Some("bad_host"))
    );
}

#[tokio::test]
async fn without_a_recorder_the_tape_is_off() {
    let store = InMemoryDirectiveStore::new();
    let app = app(None, &store);
    let (s, v) = call(&app, get("/admin/breakglass").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["enabled"], false);
    assert_eq!(v["entries"].as_array().unwrap().len(), 0);
}
