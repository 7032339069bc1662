//! The page's history panel and rollback action, over the publisher's
//! history API ([`osproxy_etcd::Publisher::history`],
//! [`osproxy_etcd::Publisher::rollback`]), fleet mode only:
//!
//! * `GET /admin/history?limit=N&before=R` (default [`PAGE_HISTORY_LIMIT`],
//!   at most [`MAX_HISTORY_LIMIT`]): the revisions of the set still in
//!   etcd's history, newest first (before `R` when given), each with
//!   who/why/when (when recorded) and the ids it added, removed and changed;
//!   a page also ends once it has read [`DEFAULT_HISTORY_PAGE_BYTES`] of
//!   stored values, and `next_before` then continues it; `compacted` names
//!   the oldest revision etcd still holds when the walk reached it.
//! * `POST /admin/rollback` with `{"to": R, "expected_revision": L}` (and
//!   optionally `"reason"`): republishes the set as of `R` with
//!   compare-and-swap against the live revision `L` the operator saw,
//!   keeping absolute expiries and dropping expired directives (named in
//!   the answer). The note's author is the one bound to the token (see
//!   [`AdminOptions::author`](crate::admin::AdminOptions::author)). A live
//!   revision other than `L` is 409 `conflict`: nothing is written.
//!
//! Every error is the admin surface's JSON with a slug: 400
//! `invalid_rollback` / `invalid_limit` / the note's slug, 404
//! `no_such_revision` or `no_history` (the in-memory store keeps none), 409
//! `conflict`, 410 `compacted` (with `oldest`), 422 for a set as of `R` that
//! cannot be republished faithfully (`malformed`, `foreign_relative_lifetime`),
//! 503/504 as for a publish.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use osproxy_etcd::{
    HistoryEntry, PublishError, Publisher, RecordedNote, Rollback, SetChanges,
    DEFAULT_HISTORY_PAGE_BYTES, MAX_HISTORY_LIMIT,
};
use osproxy_observe::{format_rfc3339, PublishNote};
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::info;

use super::secured;
use crate::admin::error::ApiError;
use crate::admin::server::PeerAddr;
use crate::admin::state::AdminState;

/// How many revisions the page lists unless told.
pub(crate) const PAGE_HISTORY_LIMIT: usize = 10;

/// `GET /admin/history`.
pub(crate) async fn history(
    State(state): State<AdminState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let before = match query.get("before") {
        None => None,
        Some(text) => Some(
            text.parse::<i64>()
                .ok()
                .filter(|r| *r >= 1)
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_before",
                        "before must be a revision number of at least 1",
                    )
                })?,
        ),
    };
    let limit = match query.get("limit") {
        None => PAGE_HISTORY_LIMIT,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_HISTORY_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_limit",
                    format!("limit must be a number from 1 to {MAX_HISTORY_LIMIT}"),
                )
            })?,
    };
    let publisher = state.shared_publisher().await?;
    let history = match publisher
        .history_page(before, limit, DEFAULT_HISTORY_PAGE_BYTES)
        .await
    {
        Ok(h) => h,
        Err(e) => return Ok(history_error(&state, &publisher, e).await),
    };
    let body = json!({
        "live_revision": history.live_revision,
        "more": history.more,
        "next_before": history.next_before,
        "compacted": history.compacted,
        "entries": history.entries.iter().map(|e| entry(&state, e)).collect::<Vec<_>>(),
    });
    Ok(secured(Json(body).into_response()))
}

/// One history entry as the page shows it.
fn entry(state: &AdminState, e: &HistoryEntry) -> Value {
    let ids: Vec<String> = e
        .state
        .set
        .view(state.clock())
        .into_iter()
        .map(|v| v.id)
        .collect();
    let (note, author, reason, published_at) = match &e.note {
        RecordedNote::Unknown => ("unknown", None, None, None),
        RecordedNote::Recorded(n) => (
            "recorded",
            n.author(),
            n.reason(),
            n.published_at_unix_nanos().map(format_rfc3339),
        ),
        RecordedNote::Rejected(err) => (err.slug(), None, None, None),
    };
    json!({
        "revision": e.revision,
        "note": note,
        "author": author,
        "reason": reason,
        "published_at": published_at,
        "directives": ids,
        "rejected_keys": e.state.rejected.len(),
        "changes": e.changes.as_ref().map(changes),
    })
}

fn changes(c: &SetChanges) -> Value {
    json!({"added": c.added, "removed": c.removed, "changed": c.changed})
}

/// The body of `POST /admin/rollback`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackRequest {
    to: i64,
    expected_revision: i64,
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /admin/rollback`.
pub(crate) async fn rollback(
    State(state): State<AdminState>,
    peer: Option<Extension<PeerAddr>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let peer = peer.map(|Extension(p)| p.to_string()).unwrap_or_default();
    let request: RollbackRequest = serde_json::from_slice(&body).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_rollback",
            r#"the body must be {"to": <revision>, "expected_revision": <live revision>} with an optional "reason""#,
        )
    })?;
    let mut note = PublishNote::new()
        .with_author(state.options().author())
        .map_err(|e| note_error(e.slug()))?;
    if let Some(reason) = &request.reason {
        note = note.with_reason(reason).map_err(|e| note_error(e.slug()))?;
    }
    let publisher = state.shared_publisher().await?;
    let outcome = match publisher
        .rollback(request.to, Some(request.expected_revision), &note, false)
        .await
    {
        Ok(r) => r,
        Err(e) => return Ok(history_error(&state, &publisher, e).await),
    };
    info!(
        to = outcome.to,
        revision = outcome.revision,
        expired = outcome.expired.len(),
        author = note.author().unwrap_or_default(),
        %peer,
        "admin page rollback"
    );
    Ok(secured(Json(outcome_body(&outcome)).into_response()))
}

fn outcome_body(r: &Rollback) -> Value {
    let written = r.revision.filter(|w| *w != r.base);
    json!({
        "outcome": if written.is_some() { "rolled_back" } else { "unchanged" },
        "to": r.to,
        "source_revision": r.source_revision,
        "base": r.base,
        "revision": r.revision,
        "expired": r.expired,
        "changes": changes(&r.changes),
    })
}

fn note_error(slug: &'static str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        slug,
        "the rollback's note is invalid; nothing was written",
    )
}

/// Maps the history API's errors; the rest as for a publish.
async fn history_error(
    state: &AdminState,
    publisher: &Arc<Publisher>,
    e: PublishError,
) -> Response {
    let err = match e {
        PublishError::Conflict { .. } => {
            state.count_rejected("conflict");
            state.etcd_failure(publisher, e).await
        }
        PublishError::InvalidNote(n) => note_error(n.slug()),
        other => state.etcd_failure(publisher, other).await,
    };
    err.into_response()
}
