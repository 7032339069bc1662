//! The operator's page through the router without a socket: security
//! headers on every page route, server-side escaping, the token rule (the
//! shell carries no data, `/admin/page` needs the token) and the JSON the
//! page polls, on a manual clock.

// Test helpers below: a failure fails the test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::http::{header, Request, StatusCode};
use axum::Router;
use osproxy_core::ManualClock;
use osproxy_directives::admin::{router, AdminOptions, AdminState, Backend};
use osproxy_observe::{decode_directive_set, InMemoryDirectiveStore};
use serde_json::Value;
use tower::ServiceExt;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const HOSTILE: &str = r#"{"directives":[{"id":"acme-timing","level":"ShapeTiming","tenant":"<script>alert(1)</script>","index":"\"quoted\" & 'single'","ttl_secs":600}]}"#;

fn app(token: Option<&str>, clock: Arc<ManualClock>) -> Router {
    let store = InMemoryDirectiveStore::new();
    store.publish(decode_directive_set(HOSTILE.as_bytes(), clock.as_ref()).unwrap());
    let mut options = AdminOptions::new(clock);
    options.token = token.map(str::to_owned);
    router(AdminState::new(Backend::InMemory(store), options))
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn get(app: &Router, path: &str, token: Option<&str>) -> Answer {
    let mut req = Request::get(path);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    Answer {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

fn header(a: &Answer, name: header::HeaderName) -> &str {
    a.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn every_page_route_is_locked_down() {
    let app = app(None, Arc::new(ManualClock::new()));
    for (path, kind) in [
        ("/ui", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/history.js", "text/javascript"),
        ("/ui/author.js", "text/javascript"),
        ("/ui/tape.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
        ("/admin/page", "application/json"),
    ] {
        let a = get(&app, path, None).await;
        assert_eq!(a.status, StatusCode::OK, "{path}");
        assert_eq!(header(&a, header::CONTENT_SECURITY_POLICY), CSP, "{path}");
        assert_eq!(
            header(&a, header::X_CONTENT_TYPE_OPTIONS),
            "nosniff",
            "{path}"
        );
        assert_eq!(header(&a, header::CACHE_CONTROL), "no-store", "{path}");
        assert!(header(&a, header::CONTENT_TYPE).starts_with(kind), "{path}");
    }
}

#[tokio::test]
async fn the_page_escapes_every_value_and_has_no_inline_code() {
    let app = app(None, Arc::new(ManualClock::new()));
    let page = get(&app, "/ui", None).await.body;
    assert!(
        page.contains("tenant=&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{page}"
    );
    assert!(page.contains("index=&quot;quoted&quot; &amp; &#39;single&#39;"));
    assert!(!page.contains("<script>alert"));
    // The only script is the page's own file; no inline handler or style.
    assert_eq!(page.matches("<script").count(), 4);
    assert!(page.contains(r#"<script src="/ui/app.js" defer></script>"#));
    assert!(page.contains(r#"<script src="/ui/history.js" defer></script>"#));
    assert!(page.contains(r#"<script src="/ui/author.js" defer></script>"#));
    assert!(page.contains(r#"<script src="/ui/tape.js" defer></script>"#));
    for inline in [" onclick=", " onerror=", " onload=", " style=", "<style"] {
        assert!(!page.contains(inline), "{inline}");
    }
    for path in ["/ui/app.js", "/ui/history.js", "/ui/author.js"] {
        let script = get(&app, path, None).await.body;
        assert!(
            !script.contains("innerHTML"),
            "{path} sets textContent only"
        );
    }
}

#[tokio::test]
async fn the_json_counts_down_on_the_clock() {
    let clock = Arc::new(ManualClock::new());
    let app = app(None, clock.clone());
    let v: Value = serde_json::from_str(&get(&app, "/admin/page", None).await.body).unwrap();
    assert_eq!(v["store"], "in-memory");
    assert_eq!(v["revision"], 1);
    assert!(v["fleet"].is_null(), "no fleet without etcd");
    let d = &v["directives"][0];
    assert_eq!(d["id"], "acme-timing");
    assert_eq!(
        d["targets"],
        "tenant=<script>alert(1)</script>, index=\"quoted\" & 'single'"
    );
    assert_eq!(
        (d["remaining_secs"].as_u64(), d["remaining"].as_str()),
        (Some(600), Some("10m"))
    );
    clock.advance(Duration::from_secs(16));
    let v: Value = serde_json::from_str(&get(&app, "/admin/page", None).await.body).unwrap();
    assert_eq!(v["directives"][0]["remaining"], "9m44s");
    clock.advance(Duration::from_secs(600));
    let v: Value = serde_json::from_str(&get(&app, "/admin/page", None).await.body).unwrap();
    assert_eq!(v["directives"][0]["remaining"], "expired");
}

#[tokio::test]
async fn with_a_token_the_shell_has_no_data_and_the_data_needs_the_token() {
    let app = app(
        Some("s3cret-page-token-0123456789abcdef"),
        Arc::new(ManualClock::new()),
    );
    let shell = get(&app, "/ui", None).await;
    assert_eq!(shell.status, StatusCode::OK);
    assert!(
        !shell.body.contains("acme-timing"),
        "no data without the token"
    );
    assert!(shell.body.contains(r#"id="token""#));
    assert_eq!(header(&shell, header::CONTENT_SECURITY_POLICY), CSP);
    let with = get(&app, "/ui", Some("s3cret-page-token-0123456789abcdef")).await;
    assert!(
        with.body.contains("acme-timing"),
        "the token shows the data"
    );
    assert_eq!(
        get(&app, "/admin/page", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(&app, "/admin/page", Some("wrong")).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(
            &app,
            "/admin/page",
            Some("s3cret-page-token-0123456789abcdef")
        )
        .await
        .status,
        StatusCode::OK
    );
    // The static files carry no data and need nothing.
    assert_eq!(get(&app, "/ui/app.js", None).await.status, StatusCode::OK);
}
