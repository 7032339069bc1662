//! SPEC §8 through the admin router (no socket): `GET /admin/explain` agrees
//! with `decide`, and `/metrics` carries per-directive decision counters and
//! budgets that pass `promtool check metrics` and vanish with their
//! directive.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::http::{Request, StatusCode};
use axum::Router;
use osproxy_core::{Clock, EndpointKind, ManualClock, PartitionId, RequestId};
use osproxy_directives::admin::{router, AdminOptions, AdminState, Backend};
use osproxy_observe::{DiagLevel, DirectiveStore, InMemoryDirectiveStore, RequestAttrs};
use serde_json::Value;
use tower::ServiceExt;

fn app(clock: Arc<ManualClock>) -> (Router, InMemoryDirectiveStore) {
    let store = InMemoryDirectiveStore::new();
    let state = AdminState::new(Backend::InMemory(store.clone()), AdminOptions::new(clock));
    (router(state), store)
}

async fn call(app: &Router, req: Request<Body>) -> (StatusCode, String) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

fn post_set(body: &'static str) -> Request<Body> {
    Request::post("/admin/directives")
        .header(axum::http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap()
}

const SET: &str = r#"{"directives":[
  {"id":"acme-timing","level":"ShapeTiming","tenant":"acme","ttl_secs":60,"max_per_sec":2},
  {"id":"acme-half","level":"Shape","tenant":"acme","sample_per_mille":500,"ttl_secs":60},
  {"id":"search-diff","level":"ShapeRewriteDiff","endpoint":"Search","ttl_secs":60}]}"#;

#[tokio::test]
async fn explain_names_the_winner_and_why_the_others_did_not_apply() {
    let clock = Arc::new(ManualClock::new());
    let (app, store) = app(clock.clone());
    let (s, _) = call(&app, post_set(SET)).await;
    assert_eq!(s, StatusCode::OK);
    let (s, body) = call(
        &app,
        get("/admin/explain?tenant=acme&endpoint=Count&request_id=r-42"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["decision"]["level"], "ShapeTiming");
    assert_eq!(doc["decision"]["directive"], "acme-timing");
    assert_eq!(doc["decision"]["revision"], 1);
    let diff = &doc["directives"][2];
    assert_eq!(diff["why_not"], "targets");
    assert_eq!(diff["targets"]["endpoint"], "mismatch");
    assert_eq!(diff["targets"]["tenant"], "any");
    assert_eq!(doc["directives"][0]["budget"]["max_per_sec"], 2);

    // What explain says is what decide then does.
    let tenant = PartitionId::from("acme");
    let attrs = RequestAttrs::new(EndpointKind::Count).with_tenant(&tenant);
    let set = store.load();
    let d = set.decide(&attrs, clock.now(), &RequestId::from("r-42"));
    assert_eq!(d.level, DiagLevel::ShapeTiming);
    assert_eq!(set.winner(&d).map(|w| w.id.as_str()), Some("acme-timing"));
    assert_eq!(d.revision, Some(1));
    // Two more use up the budget of 2: explain now says over_budget.
    set.decide(&attrs, clock.now(), &RequestId::from("r-43"));
    let (_, body) = call(
        &app,
        get("/admin/explain?tenant=acme&endpoint=Count&request_id=r-44"),
    )
    .await;
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["directives"][0]["why_not"], "over_budget");
    assert_eq!(doc["directives"][0]["budget"]["exhausted"], true);

    for (query, slug) in [
        ("tennant=acme", "unknown_parameter"),
        ("tenant=a&tenant=b", "duplicate_parameter"),
        ("endpoint=Nope", "invalid_endpoint"),
        ("index=", "invalid_target"),
    ] {
        let (s, body) = call(&app, get(&format!("/admin/explain?{query}"))).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{query}");
        assert!(body.contains(slug), "{query}: {body}");
    }
}

/// `promtool check metrics` on `text`: its complaints, empty when clean.
fn promtool(text: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/install-deps.sh installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let complaints = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        String::new()
    } else {
        complaints
    }
}

#[tokio::test]
async fn per_directive_counters_pass_promtool_and_vanish_with_their_directive() {
    let clock = Arc::new(ManualClock::new());
    let (app, store) = app(clock.clone());
    call(&app, post_set(SET)).await;
    let tenant = PartitionId::from("acme");
    let attrs = RequestAttrs::new(EndpointKind::Search).with_tenant(&tenant);
    let set = store.load();
    for i in 0..10 {
        set.decide(
            &attrs,
            clock.now(),
            &RequestId::from(format!("r-{i}").as_str()),
        );
    }
    let (s, text) = call(&app, get("/metrics")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(promtool(&text), "", "promtool check metrics:\n{text}");
    let line = |id: &str, outcome: &str| {
        let prefix = format!(
            "osproxy_directives_directive_decisions_total{{directive=\"{id}\",outcome=\"{outcome}\"}} "
        );
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.parse::<u64>().ok())
    };
    // The budget of 2 admits 2 of the 10 (one clock second), the rest are
    // over budget; every request is on Search, so search-diff applies to all.
    assert_eq!(line("acme-timing", "applied"), Some(2));
    assert_eq!(line("acme-timing", "over_budget"), Some(8));
    assert_eq!(line("search-diff", "applied"), Some(10));
    let half = line("acme-half", "applied").unwrap() + line("acme-half", "sampled_out").unwrap();
    assert_eq!(half, 10);
    assert!(text
        .contains("osproxy_directives_directive_budget_per_second{directive=\"acme-timing\"} 2"));

    // A set without acme-timing: its series are gone.
    let rest = r#"{"directives":[{"id":"search-diff","level":"Shape","endpoint":"Search","ttl_secs":60}]}"#;
    call(&app, post_set(rest)).await;
    let (_, text) = call(&app, get("/metrics")).await;
    assert_eq!(promtool(&text), "", "promtool check metrics:\n{text}");
    assert!(!text.contains("acme-timing"), "{text}");
    assert!(text.contains("directive=\"search-diff\""));
}

/// With a header trust store, explain judges a signed single-request header
/// and shows the decision it raises to, clamped to the instance's ceilings;
/// a tampered header is refused with its slug; without a store the answer
/// is `no_trust_store`.
#[tokio::test]
async fn explain_judges_a_signed_header_and_shows_the_raised_decision() {
    use osproxy_observe::token::sign_token;
    use osproxy_observe::{decode_directive, DecodeLimits, SignerKey, TrustStore};

    let clock = Arc::new(ManualClock::new());
    let signer = SignerKey::from_seed("ops-1", [3; 32]).unwrap();
    let mut trust = TrustStore::new();
    trust.trust(&signer).unwrap();
    let store = InMemoryDirectiveStore::new();
    let mut options = AdminOptions::new(clock.clone());
    options.header_verifier = Some(Arc::new(osproxy_observe::TokenVerifier::new(
        trust,
        clock.clone(),
    )));
    options.header_ceilings.max_level = Some(DiagLevel::ShapeTiming);
    let app = router(AdminState::new(Backend::InMemory(store.clone()), options));
    call(&app, post_set(SET)).await;

    let body = r#"{"id":"trace-r42","level":"ShapeRewriteDiff","tenant":"acme","ttl_secs":300}"#;
    let d = decode_directive(body.as_bytes(), clock.as_ref(), &DecodeLimits::default()).unwrap();
    let token = sign_token(&signer, &d, Some(&RequestId::from("r-42"))).unwrap();
    let q = |token: &str, id: &str| {
        format!("/admin/explain?tenant=acme&endpoint=Count&request_id={id}&header={token}")
    };
    let (s, text) = call(&app, get(&q(&token, "r-42"))).await;
    assert_eq!(s, StatusCode::OK, "{text}");
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["header"]["verdict"], "accepted");
    assert_eq!(doc["header"]["key_id"], "ops-1");
    // The set alone says ShapeTiming (acme-timing); the header asks for
    // ShapeRewriteDiff, which this instance's ceiling clamps to ShapeTiming.
    assert_eq!(doc["decision"]["level"], "ShapeTiming");
    assert_eq!(doc["raised"]["level"], "ShapeTiming");
    assert_eq!(doc["raised"]["clamped"][0], "level");

    // Bound to r-42: for another request it is refused.
    let (_, text) = call(&app, get(&q(&token, "r-43"))).await;
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["header"]["verdict"], "wrong_request");
    assert!(doc.get("raised").is_none());
    // One signature byte changed: refused.
    let mut tampered = token.clone().into_bytes();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let (_, text) = call(&app, get(&q(&tampered, "r-42"))).await;
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["header"]["accepted"], false, "{text}");

    // No header trust store on this instance.
    let (plain, _) = self::app(clock.clone());
    let (_, text) = call(&plain, get(&q(&token, "r-42"))).await;
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["header"]["verdict"], "no_trust_store");
}
