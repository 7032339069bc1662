//! The route handlers; [`crate::admin::routes::ROUTES`] (rendered as
//! `docs/reference/http.md`) states the contract of each.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::header::{HeaderValue, CONTENT_TYPE, ETAG, IF_MATCH};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use osproxy_core::Revision;
use osproxy_etcd::offload::decode_work;
use osproxy_etcd::{ClampedDirective, StoreStatus};
use osproxy_observe::encode::to_value;
use osproxy_observe::{decode_directive_set_with, format_rfc3339, PublishNote};
use serde_json::{json, Value};
use tracing::info;

use super::error::ApiError;
use super::metrics;
use super::server::PeerAddr;
use super::state::{AdminState, Backend};

/// `GET /admin/directives`.
pub(crate) async fn get_directives(State(state): State<AdminState>) -> Response {
    state.count_snapshot_read();
    let (set, revision) = state.applied();
    let mut canonical = to_value(&set);
    let status = store_status(&state);
    let mut view = serde_json::to_value(set.view(state.clock())).unwrap_or_default();
    if let (Some(status), Some(entries)) = (&status, view.as_array_mut()) {
        mark_clamped(entries, &status.clamped);
    }
    let mut body = json!({
        "revision": revision.get(),
        "store": state.store_name(),
        "directives": canonical["directives"].take(),
        "view": view,
    });
    if let Some(status) = &status {
        body["failsafe"] = failsafe(status);
        body["clamped"] = json!(status.clamped);
    }
    let mut response = Json(body).into_response();
    if let Ok(tag) = HeaderValue::from_str(&format!("\"{revision}\"")) {
        response.headers_mut().insert(ETAG, tag);
    }
    response
}

/// The etcd store's status; `None` for the in-memory store.
fn store_status(state: &AdminState) -> Option<StoreStatus> {
    match state.backend() {
        Backend::InMemory(_) => None,
        Backend::Etcd(b) => Some(b.store().status()),
    }
}

/// Adds `"clamped": [<ceiling slug>, …]` to each view entry the ceilings
/// clamped (SPEC §8).
fn mark_clamped(entries: &mut [Value], clamped: &[ClampedDirective]) {
    for entry in entries {
        let Some(id) = entry.get("id").and_then(Value::as_str) else {
            continue;
        };
        if let Some(c) = clamped.iter().find(|c| c.id == id) {
            entry["clamped"] = json!(c.clamps);
        }
    }
}

/// The fail-safe's state: `{"engaged", "since_unix_nanos", "since", "withheld"}`.
fn failsafe(status: &StoreStatus) -> Value {
    let since = status.failsafe_since_unix_nanos;
    json!({
        "engaged": status.failsafe,
        "since_unix_nanos": since,
        "since": since.map(format_rfc3339),
        "withheld": status.failsafe_withheld,
    })
}

/// `GET /admin/explain?tenant=&index=&principal=&endpoint=&request_id=`:
/// how the applied set decides that request now, directive by directive
/// (see [`crate::explain`]). Looks only: no budget is used, nothing counted.
pub(crate) async fn get_explain(
    State(state): State<AdminState>,
    query: Result<
        axum::extract::Query<Vec<(String, String)>>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Result<Json<Value>, ApiError> {
    let bad = |slug: &'static str| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            slug,
            "the request to explain is invalid",
        )
    };
    let axum::extract::Query(pairs) = query.map_err(|_| bad("malformed_query"))?;
    let req = crate::explain::ExplainRequest::from_pairs(
        pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )
    .map_err(bad)?;
    let (set, _) = state.applied();
    let clamped = store_status(&state).map(|s| s.clamped).unwrap_or_default();
    let now = state.clock().now();
    let mut doc = crate::explain::explain_json(&set, &req, now, &clamped);
    let options = state.options();
    crate::explain::explain_header(
        &mut doc,
        &set,
        &req,
        now,
        options.header_verifier.as_deref(),
        &options.header_ceilings,
    );
    Ok(Json(doc))
}

/// `POST /admin/directives`.
///
/// In fleet mode, besides the decoder's 400/413: the exact bytes it would
/// write are checked with the same limits (413 `too_large` once `ttl_secs`
/// became longer `expires_at`), etcd's permanent refusals are 413
/// `etcd_value_too_large` / 400 `etcd_too_many_ops`, and a write whose answer
/// was lost is 504 `outcome_unknown` with `revision_before` (nothing is
/// cleaned up). `If-Match: N` publishes only if nothing changed after
/// revision N (deletes included): the `ETag` of `GET` is such a revision.
pub(crate) async fn post_directives(
    State(state): State<AdminState>,
    peer: Option<Extension<PeerAddr>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let peer = peer.map(|Extension(p)| p.to_string()).unwrap_or_default();
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            state.count_rejected("too_large");
            ApiError::too_large()
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "unreadable_body",
                "the request body could not be read",
            )
        }
    })?;
    let expected = if_match(&headers)?;
    let note = write_note(&state, &headers)?;
    let set = decode_work(body.len(), || {
        decode_directive_set_with(&body, state.clock(), state.limits())
    })
    .map_err(|e| {
        state.count_rejected(e.slug());
        info!(reason = e.slug(), %peer, "admin publish rejected");
        ApiError::rejected(e)
    })?;
    let directives = set.len();
    let revision = state.publish(set, expected, &note).await?;
    info!(
        revision = revision.get(),
        directives,
        author = note.author().unwrap_or_default(),
        %peer,
        "admin publish accepted"
    );
    Ok(Json(
        json!({"revision": revision.get(), "directives": directives}),
    ))
}

/// The header that carries a write's reason (optional; any text without
/// control characters, as a note's reason).
pub(crate) const REASON_HEADER: &str = "x-osproxy-reason";

/// The note of a write through this surface: the author bound to the token
/// (see [`crate::admin::AdminOptions::author`]) and the reason given in
/// [`REASON_HEADER`], if any.
pub(crate) fn write_note(state: &AdminState, headers: &HeaderMap) -> Result<PublishNote, ApiError> {
    let invalid = |slug: &'static str| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            slug,
            "the write's note is invalid; nothing was written",
        )
    };
    let mut note = PublishNote::new()
        .with_author(state.options().author())
        .map_err(|e| invalid(e.slug()))?;
    if let Some(reason) = headers.get(REASON_HEADER) {
        let reason =
            std::str::from_utf8(reason.as_bytes()).map_err(|_| invalid("invalid_reason"))?;
        note = note.with_reason(reason).map_err(|e| invalid(e.slug()))?;
    }
    Ok(note)
}

/// The revision in `If-Match`: a number, optionally quoted as an entity tag.
fn if_match(headers: &HeaderMap) -> Result<Option<Revision>, ApiError> {
    let Some(value) = headers.get(IF_MATCH) else {
        return Ok(None);
    };
    let invalid = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_if_match",
            "If-Match must be a revision number, e.g. If-Match: 42",
        )
    };
    let text = value.to_str().map_err(|_| invalid())?.trim();
    let text = text.strip_prefix("W/").unwrap_or(text);
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    text.parse::<u64>()
        .map(|n| Some(Revision::new(n)))
        .map_err(|_| invalid())
}

/// `GET /healthz`.
pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`.
///
/// In fleet mode both answers carry `failsafe` (see [`failsafe`]); a 503 is
/// the `not_ready` error body with it.
pub(crate) async fn readyz(State(state): State<AdminState>) -> Response {
    let status = store_status(&state);
    let staleness = status
        .as_ref()
        .and_then(|s| s.staleness)
        .map(|d| d.as_secs_f64());
    if state.is_ready() {
        let mut body = json!({
            "ready": true,
            "store": state.store_name(),
            "staleness_seconds": staleness,
        });
        if let Some(status) = &status {
            body["failsafe"] = failsafe(status);
        }
        return Json(body).into_response();
    }
    let message = match &status {
        Some(s) if s.failsafe => "no confirmation from etcd within the staleness bound; fail-safe engaged: serving the last good set without the directives it withholds",
        _ => "no confirmation from etcd within the staleness bound; serving the last good set",
    };
    let mut body =
        json!({"error": "not_ready", "message": message, "staleness_seconds": staleness});
    if let Some(status) = &status {
        body["failsafe"] = failsafe(status);
    }
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

/// `GET /metrics`.
pub(crate) async fn metrics(State(state): State<AdminState>) -> Response {
    (
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        metrics::render(&state),
    )
        .into_response()
}

/// Any unknown route.
pub(crate) async fn not_found() -> ApiError {
    ApiError::not_found()
}

/// A method the route does not answer; `allow` names those it does.
pub(crate) async fn method_not_allowed(allow: &'static str) -> ApiError {
    ApiError::method_not_allowed(allow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_takes_numbers_and_entity_tags() {
        let mut h = HeaderMap::new();
        assert_eq!(if_match(&h), Ok(None));
        for (value, want) in [("7", 7), ("\"7\"", 7), ("W/\"0\"", 0), (" 12 ", 12)] {
            h.insert(IF_MATCH, HeaderValue::from_static(value));
            assert_eq!(if_match(&h), Ok(Some(Revision::new(want))), "{value}");
        }
        for bad in ["*", "-1", "x", "\"\"", "1.5"] {
            h.insert(IF_MATCH, HeaderValue::from_static(bad));
            assert_eq!(if_match(&h).unwrap_err().slug, "invalid_if_match", "{bad}");
        }
    }
}
