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
        (get("/nope"), StatusCode::NOT_FOUND, "not_found"),
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
async fn the_root_leads_to_the_page() {
    let (app, _) = app(None, Arc::new(ManualClock::new()));
    let resp = app.clone().oneshot(get("/")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()[header::LOCATION], "/ui");
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
    let end = r#"{"op":"end","id":"a","expected_revision":0,"reason":"x"}"#;
    for path in ["/admin/preview", "/admin/edit"] {
        let (s, _) = call(&app, post(path, end)).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}");
    }
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

#[tokio::test]
async fn page_edits_are_previewed_then_written_with_compare_and_swap() {
    let clock = Arc::new(ManualClock::new());
    let (app, store) = app(None, clock.clone());
    let add = |sample: u64, expected: u64, reason: &str, confirmed: bool| {
        serde_json::json!({"op": "add", "directive": {"id": "p", "level": "ShapeRewriteDiff",
            "tenant": "acme", "sample_per_mille": sample}, "lifetime": "10m",
            "expected_revision": expected, "reason": reason, "confirmed": confirmed})
        .to_string()
    };
    // Previews answer the decoder's slug and write nothing.
    let (s, v) = call(&app, post("/admin/preview", &add(1001, 0, "", false))).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("sample_out_of_range"))
    );
    assert!(v.get("directive_index").is_none(), "{v}");
    let (s, v) = call(&app, post("/admin/preview", &add(10, 0, "", false))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["needs_confirmation"],
        serde_json::json!(["ShapeRewriteDiff"])
    );
    assert_eq!(v["changes"]["added"], serde_json::json!(["p"]));
    assert_eq!(v["expires_at"], "2024-01-01T00:10:00Z");
    assert_eq!(store.revision(), 0);
    // A write needs a reason, the confirmation, and the revision shown.
    for (body, slug) in [
        (add(10, 0, " ", true), "reason_required"),
        (add(10, 0, "why", false), "confirmation_required"),
        ("{\"op\":\"delete\"}".to_owned(), "invalid_edit"),
    ] {
        let (s, v) = call(&app, post("/admin/edit", &body)).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some(slug)),
            "{body}"
        );
    }
    let (s, v) = call(&app, post("/admin/edit", &add(10, 0, "why", true))).await;
    assert_eq!(
        (s, v["revision"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{v}"
    );
    assert_eq!(v["author"], "loopback-unauthenticated");
    // Over a revision the set moved after: 409, nothing written.
    let (s, v) = call(&app, post("/admin/edit", &add(20, 0, "why", true))).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::CONFLICT, Some("conflict")),
        "{v}"
    );
    assert_eq!(store.revision(), 1);
    // Extend and end.
    clock.advance(Duration::from_secs(60));
    let extend = r#"{"op":"extend","id":"p","lifetime":"1h","expected_revision":1,"reason":"longer","confirmed":true}"#;
    let (s, v) = call(&app, post("/admin/edit", extend)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["expires_at"], "2024-01-01T01:01:00Z");
    let end = r#"{"op":"end","id":"nope","expected_revision":2,"reason":"done"}"#;
    let (s, v) = call(&app, post("/admin/edit", end)).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("no_such_directive"))
    );
    let end = end.replace("nope", "p");
    let (s, v) = call(&app, post("/admin/edit", &end)).await;
    assert_eq!(
        (s, v["changes"]["removed"].clone()),
        (StatusCode::OK, serde_json::json!(["p"])),
        "{v}"
    );
    assert_eq!(store.load_with_revision().0.len(), 0);
}
