//! The admin router without a socket (`tower::ServiceExt::oneshot`): routes,
//! error bodies, the token check and expiry as seen through the view, on a
//! manual clock.

// Test helpers below: a failure fails the test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use osproxy_core::ManualClock;
use osproxy_directives::admin::{router, AdminOptions, AdminState, Backend};
use osproxy_observe::InMemoryDirectiveStore;
use serde_json::Value;
use tower::ServiceExt;

fn app(token: Option<&str>, clock: Arc<ManualClock>) -> (Router, InMemoryDirectiveStore) {
    let store = InMemoryDirectiveStore::new();
    let mut options = AdminOptions::new(clock);
    options.token = token.map(str::to_owned);
    let state = AdminState::new(Backend::InMemory(store.clone()), options);
    (router(state), store)
}

async fn call(app: &Router, req: Request<Body>) -> (StatusCode, Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, v)
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

fn post(path: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

const ONE: &str =
    r#"{"directives":[{"id":"a","level":"ShapeTiming","tenant":"acme","ttl_secs":60}]}"#;

#[tokio::test]
async fn publish_then_read_and_watch_it_expire_on_the_clock() {
    let clock = Arc::new(ManualClock::new());
    let (app, store) = app(None, clock.clone());
    let (s, v) = call(&app, post("/admin/directives", ONE)).await;
    assert_eq!((s, v["revision"].as_i64()), (StatusCode::OK, Some(1)));
    assert_eq!(store.revision(), 1);

    let (_, v) = call(&app, get("/admin/directives")).await;
    assert_eq!(v["directives"][0]["expires_at"], "2024-01-01T00:01:00Z");
    assert_eq!(v["view"][0]["remaining_secs"], 60);
    assert_eq!(v["view"][0]["expired"], false);

    clock.advance(Duration::from_secs(45));
    let (_, v) = call(&app, get("/admin/directives")).await;
    assert_eq!(v["view"][0]["remaining_secs"], 15);

    clock.advance(Duration::from_secs(15));
    let (_, v) = call(&app, get("/admin/directives")).await;
    assert_eq!(v["view"][0]["expired"], true);
    let resp = app.clone().oneshot(get("/metrics")).await.unwrap();
    let text = String::from_utf8(
        to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert!(text.contains("osproxy_directives_active 0\n"), "{text}");
    assert!(text.contains("osproxy_directives_loaded 1\n"), "{text}");
}

#[tokio::test]
async fn errors_are_json_with_stable_slugs() {
    let (app, _) = app(None, Arc::new(ManualClock::new()));
    let cases = [
        (get("/"), StatusCode::NOT_FOUND, "not_found"),
        (get("/admin"), StatusCode::NOT_FOUND, "not_found"),
        (
            post("/metrics", ""),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            Request::builder()
                .method(Method::PUT)
                .uri("/admin/directives")
                .body(Body::empty())
                .unwrap(),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            post("/admin/directives", "[]"),
            StatusCode::BAD_REQUEST,
            "wrong_type",
        ),
        (
            post(
                "/admin/directives",
                r#"{"directives":[{"id":"a","level":"Shape","ttl_secs":0}]}"#,
            ),
            StatusCode::BAD_REQUEST,
            "zero_ttl",
        ),
        (
            Request::post("/admin/directives")
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::IF_MATCH, "5")
                .body(Body::from(ONE))
                .unwrap(),
            StatusCode::PRECONDITION_FAILED,
            "conflict",
        ),
        (
            Request::post("/admin/directives")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(vec![b' '; 1024 * 1024 + 1]))
                .unwrap(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        ),
    ];
    for (req, status, slug) in cases {
        let what = format!("{} {}", req.method(), req.uri());
        let (s, v) = call(&app, req).await;
        assert_eq!(s, status, "{what}: {v}");
        assert_eq!(v["error"], slug, "{what}: {v}");
        assert!(
            v["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {v}"
        );
    }
}

#[tokio::test]
async fn the_token_is_checked_before_routing_under_admin_only() {
    let (app, store) = app(Some("t0ken"), Arc::new(ManualClock::new()));
    let (s, v) = call(&app, post("/admin/directives", ONE)).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
    assert_eq!(store.revision(), 0, "nothing published");
    let (s, _) = call(&app, get("/admin/nope")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let authorized = Request::post("/admin/directives")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, "Bearer t0ken")
        .body(Body::from(ONE))
        .unwrap();
    let (s, _) = call(&app, authorized).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = call(&app, get("/healthz")).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn per_directive_series_are_capped_and_the_rest_folded() {
    let (app, _) = app(None, Arc::new(ManualClock::new()));
    let list: Vec<String> = (0..150)
        .map(|i| format!(r#"{{"id":"d{i:03}","level":"Shape","ttl_secs":60,"max_per_sec":5}}"#))
        .collect();
    let body = format!(r#"{{"directives":[{}]}}"#, list.join(","));
    let (s, v) = call(&app, post("/admin/directives", &body)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let resp = app.clone().oneshot(get("/metrics")).await.unwrap();
    let text = String::from_utf8(
        to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    let decisions = |label: &str| {
        text.lines()
            .filter(|l| {
                l.starts_with("osproxy_directives_directive_decisions_total{") && l.contains(label)
            })
            .count()
    };
    assert_eq!(decisions("directive=\"d"), 100 * 3, "{text}");
    assert_eq!(decisions("directive=\"(folded)\""), 3, "{text}");
    assert!(
        text.contains("osproxy_directives_directive_series_folded 50"),
        "{text}"
    );
    let budgets = text
        .lines()
        .filter(|l| l.starts_with("osproxy_directives_directive_budget_per_second{"))
        .count();
    assert_eq!(budgets, 100);
    assert!(
        !text.contains("d149"),
        "a folded id has no series of its own"
    );
}
