//! Authoring on the operator's page: add a directive, give one a new
//! lifetime (`extend`), or end one now, each previewed before it is written.
//!
//! Both routes take the same JSON body:
//!
//! ```text
//! {"op": "add",    "directive": {<wire fields, no lifetime>}, "lifetime": "10m", …}
//! {"op": "extend", "id": "<id>", "lifetime": "2h", …}
//! {"op": "end",    "id": "<id>", …}
//! … "expected_revision": <the revision the page showed>, "reason": "<why>", "confirmed": false
//! ```
//!
//! * `POST /admin/preview` computes the set the edit would write from the
//!   live set (etcd's, in fleet mode, not this instance's applied copy) and
//!   checks its exact canonical bytes with the fleet's decoder and this
//!   instance's limits; nothing is written. The answer names the changes and
//!   which of `capture`, `ring_buffer`, `ShapeRewriteDiff` the write must be
//!   confirmed for; a rejection is the decoder's slug.
//! * `POST /admin/edit` does the same, then writes it with compare-and-swap
//!   against `expected_revision`, the note carrying the required `reason`
//!   and the author bound to the token. In memory through
//!   `AdminState::publish` (as `POST /admin/directives` with `If-Match`);
//!   in etcd through the publisher's single-directive edits, the CLI's `add`
//!   and `remove` (`Publisher::add_noted_since`, `remove_noted_since`): per
//!   key in the prefix layout (the edited directive's key must be as it was
//!   at that revision; edits of other directives meanwhile do not matter),
//!   over the whole set in the key layout and with signed format v2. A
//!   failed compare is 409 `conflict` and nothing is written.
//!
//! The edits are the publisher's own (`with_added`, `without`): expired
//! directives are dropped, an added id replaces a live one. A set the edit
//! would rewrite whole but cannot rewrite faithfully is refused like the
//! CLI's edits: 422 `foreign_relative_lifetime` (another tool's `ttl_secs`
//! would restart) or `malformed` (a key the fleet rejects would be dropped).

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use osproxy_core::Revision;
use osproxy_etcd::publisher::{with_added, without};
use osproxy_etcd::{PublishError, SetChanges};
use osproxy_observe::encode::directive_value;
use osproxy_observe::{
    decode_directive, decode_directive_set_with, encode_directive_set, format_rfc3339, DiagLevel,
    DirectiveSet, PublishNote, TimedDirective,
};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tracing::info;

use super::secured;
use crate::admin::error::ApiError;
use crate::admin::server::PeerAddr;
use crate::admin::state::{AdminState, Backend};
use crate::duration::parse_duration;

/// What an edit does.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Op {
    Add,
    Extend,
    End,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Add => "add",
            Op::Extend => "extend",
            Op::End => "end",
        }
    }
}

/// The body of both routes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EditRequest {
    op: Op,
    /// `add`: the directive's wire fields; a lifetime in it is replaced by
    /// `lifetime`.
    #[serde(default)]
    directive: Option<Map<String, Value>>,
    /// `extend`, `end`: the directive's id.
    #[serde(default)]
    id: Option<String>,
    /// `add`, `extend`: the lifetime from now (`30s`, `10m`, `2h`, `1d`).
    #[serde(default)]
    lifetime: Option<String>,
    /// The revision the page showed: the compare-and-swap base.
    #[serde(default)]
    expected_revision: Option<u64>,
    /// Why (required to write).
    #[serde(default)]
    reason: Option<String>,
    /// The operator confirmed a directive that records more than shapes.
    #[serde(default)]
    confirmed: bool,
}

/// An edit computed against the live set.
struct Plan {
    op: Op,
    id: String,
    /// The live revision the edit was computed from.
    base_revision: u64,
    /// The set to write, as the fleet's decoder reads its bytes.
    next: DirectiveSet,
    changes: SetChanges,
    replaced: bool,
    /// The new or extended directive.
    edited: Option<TimedDirective>,
    /// Its expiry.
    expires_at: Option<String>,
    /// What the operator must confirm before it is written.
    needs_confirmation: Vec<&'static str>,
}

fn bad(slug: &'static str, message: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, slug, message)
}

/// `POST /admin/preview`: the edit checked, nothing written.
pub(crate) async fn preview(
    State(state): State<AdminState>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request = parse(&body)?;
    let plan = plan(&state, &request).await?;
    if let Some(expected) = request.expected_revision.filter(|_| !per_key(&state)) {
        stale_check(&plan, expected)?;
    }
    Ok(secured(
        Json(json!({
            "outcome": "valid",
            "op": plan.op.as_str(),
            "id": plan.id,
            "base_revision": plan.base_revision,
            "directives": plan.next.len(),
            "replaced": plan.replaced,
            "expires_at": plan.expires_at,
            "changes": changes(&plan.changes),
            "needs_confirmation": plan.needs_confirmation,
            "compare": if per_key(&state) { "key" } else { "set" },
        }))
        .into_response(),
    ))
}

/// `POST /admin/edit`: the edit checked, then written with compare-and-swap.
pub(crate) async fn edit(
    State(state): State<AdminState>,
    peer: Option<Extension<PeerAddr>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let peer = peer.map(|Extension(p)| p.to_string()).unwrap_or_default();
    let request = parse(&body)?;
    let reason = request
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| bad("reason_required", "a write from the page needs a reason"))?;
    let expected = request.expected_revision.ok_or_else(|| {
        bad(
            "expected_revision_required",
            "a write from the page needs the revision it showed (expected_revision)",
        )
    })?;
    let note_error =
        |slug: &'static str| bad(slug, "the write's note is invalid; nothing was written");
    let note = PublishNote::new()
        .with_author(state.options().author())
        .map_err(|e| note_error(e.slug()))?
        .with_reason(reason)
        .map_err(|e| note_error(e.slug()))?;
    let plan = plan(&state, &request).await.inspect_err(|e| {
        // Counted like a rejected publish; a preview's rejection is not one.
        if osproxy_observe::RejectReason::from_slug(e.slug).is_some() {
            state.count_rejected(e.slug);
        }
    })?;
    if !plan.needs_confirmation.is_empty() && !request.confirmed {
        return Err(bad(
            "confirmation_required",
            "this directive records more than shapes (capture, ring buffer or ShapeRewriteDiff): confirm it",
        ));
    }
    let revision = match state.backend() {
        Backend::InMemory(_) => {
            stale_check(&plan, expected).inspect_err(|_| state.count_rejected("conflict"))?;
            let next = plan.next.clone();
            state
                .publish(next, Some(Revision::new(expected)), &note)
                .await
                .map_err(|e| {
                    if e.slug == "conflict" {
                        conflict(expected)
                    } else {
                        e
                    }
                })?
                .get()
        }
        Backend::Etcd(_) => write_to_etcd(&state, &plan, expected, &note).await?,
    };
    info!(
        op = plan.op.as_str(),
        revision,
        author = note.author().unwrap_or_default(),
        %peer,
        "admin page edit"
    );
    Ok(secured(
        Json(json!({
            "outcome": "written",
            "op": plan.op.as_str(),
            "id": plan.id,
            "revision": revision,
            "replaced": plan.replaced,
            "expires_at": plan.expires_at,
            "author": note.author(),
            "changes": changes(&plan.changes),
        }))
        .into_response(),
    ))
}

fn parse(body: &[u8]) -> Result<EditRequest, ApiError> {
    serde_json::from_slice(body).map_err(|_| {
        bad(
            "invalid_edit",
            r#"the body must be {"op": "add"|"extend"|"end", …} as the page sends it"#,
        )
    })
}

/// 409 `conflict`: the directive (prefix layout) or the set moved after the
/// revision the page showed.
fn conflict(expected: u64) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "conflict",
        format!(
            "the directive or the live set changed after revision {expected}, the one the page showed; nothing was written: review it and preview again"
        ),
    )
}

/// Whether a write compares per key (the etcd prefix layout) rather than
/// over the whole set.
fn per_key(state: &AdminState) -> bool {
    matches!(state.backend(), Backend::Etcd(b) if b.layout().is_prefix())
}

/// Writes `plan` to etcd through the publisher's edits, with
/// compare-and-swap against `expected`: per key in the prefix layout (the
/// edited directive's key must be as it was at `expected`; the CLI's
/// `remove` deletes the same way), over the whole set in the key layout.
async fn write_to_etcd(
    state: &AdminState,
    plan: &Plan,
    expected: u64,
    note: &PublishNote,
) -> Result<u64, ApiError> {
    let since = i64::try_from(expected).map_err(|_| conflict(expected))?;
    let publisher = state.shared_publisher().await?;
    let written = match (plan.op, &plan.edited) {
        (Op::End, _) => publisher.remove_noted_since(&plan.id, since, note).await,
        (Op::Add | Op::Extend, Some(d)) => publisher.add_noted_since(d.clone(), since, note).await,
        (Op::Add | Op::Extend, None) => return Err(no_such_directive()),
    };
    match written {
        Ok(w) => {
            state.count_publish();
            Ok(u64::try_from(w.revision).unwrap_or(0))
        }
        Err(PublishError::Conflict { .. }) => {
            state.count_rejected("conflict");
            Err(conflict(expected))
        }
        Err(PublishError::NotFound { .. }) => Err(no_such_directive()),
        Err(e) => {
            if e.fault() == osproxy_etcd::PublishFault::Caller {
                state.count_rejected(e.slug());
            }
            Err(state.etcd_failure(&publisher, e).await)
        }
    }
}

/// A plan computed from a live set newer than the revision the page showed
/// would write over changes the operator never saw.
fn stale_check(plan: &Plan, expected: u64) -> Result<(), ApiError> {
    if plan.base_revision > expected {
        return Err(conflict(expected));
    }
    Ok(())
}

/// The live set and its revision: the in-memory store's, or etcd's as the
/// publisher reads it (refused when a rewrite would not be faithful).
async fn live(state: &AdminState) -> Result<(DirectiveSet, u64), ApiError> {
    match state.backend() {
        Backend::InMemory(store) => {
            let (set, revision) = store.load_with_revision();
            Ok((DirectiveSet::clone(&set), revision))
        }
        Backend::Etcd(_) => {
            let publisher = state.shared_publisher().await?;
            let live = match publisher.live().await {
                Ok(live) => live,
                Err(e) => return Err(state.etcd_failure(&publisher, e).await),
            };
            let unfaithful = |slug: &'static str, what: &str| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    slug,
                    format!(
                        "{what}; nothing was written: use the CLI's publish to replace the set"
                    ),
                )
            };
            // A per-key write (prefix layout) rewrites no other key.
            let whole_set = !per_key(state);
            if whole_set && !live.relative.is_empty() {
                return Err(unfaithful(
                    "foreign_relative_lifetime",
                    "the live set holds ttl_secs lifetimes written by another tool, which a rewrite would restart",
                ));
            }
            if whole_set && !live.rejected.is_empty() {
                return Err(unfaithful(
                    "malformed",
                    "a live key holds a value the fleet rejects, which a rewrite would drop",
                ));
            }
            Ok((live.set, u64::try_from(live.revision).unwrap_or(0)))
        }
    }
}

/// Computes `request` against the live set and checks the result's bytes.
async fn plan(state: &AdminState, request: &EditRequest) -> Result<Plan, ApiError> {
    let id_of = |request: &EditRequest| {
        request
            .id
            .clone()
            .ok_or_else(|| bad("invalid_edit", "extend and end need the directive's id"))
    };
    // Checked before the live set is read: a bad form costs no etcd read.
    let added = match request.op {
        Op::Add => {
            let Some(fields) = &request.directive else {
                return Err(bad("invalid_edit", "add needs the directive's fields"));
            };
            Some(with_lifetime(state, fields.clone(), request)?)
        }
        Op::Extend | Op::End => None,
    };
    let (live, base_revision) = live(state).await?;
    let now = state.clock().now();
    let (id, edited, edit) = match (request.op, added) {
        (Op::Add, Some(d)) => {
            let edit = with_added(&live, &d, now);
            (d.id.clone(), Some(d), edit)
        }
        (Op::Extend, _) => {
            let id = id_of(request)?;
            let Some(current) = live.get(&id).filter(|d| d.is_live(now)) else {
                return Err(no_such_directive());
            };
            let Value::Object(fields) = directive_value(current) else {
                return Err(no_such_directive());
            };
            let d = with_lifetime(state, fields, request)?;
            let edit = with_added(&live, &d, now);
            (id, Some(d), edit)
        }
        (Op::End | Op::Add, _) => {
            let id = id_of(request)?;
            let edit = without(&live, &id, now);
            (id, None, edit)
        }
    };
    let (next, replaced) = edit.map_err(edit_error)?;
    // The exact bytes the write path checks again, read as instances will.
    let bytes = encode_directive_set(&next);
    let next = decode_directive_set_with(&bytes, state.clock(), state.limits())
        .map_err(ApiError::rejected)?;
    let changes = SetChanges::between(&live, &next);
    Ok(Plan {
        op: request.op,
        id,
        base_revision,
        replaced: replaced && request.op == Op::Add,
        expires_at: edited
            .as_ref()
            .and_then(|d| d.expires_at_unix_nanos)
            .map(format_rfc3339),
        needs_confirmation: edited.as_ref().map(confirmations).unwrap_or_default(),
        edited,
        next,
        changes,
    })
}

/// The directive `fields` describe, with `request.lifetime` from now,
/// through the fleet's decoder and this instance's limits.
fn with_lifetime(
    state: &AdminState,
    mut fields: Map<String, Value>,
    request: &EditRequest,
) -> Result<TimedDirective, ApiError> {
    let invalid = || {
        bad(
            "invalid_lifetime",
            "the lifetime must be a whole number of seconds or more, such as 30s, 10m, 2h, 1d or 1h30m",
        )
    };
    let lifetime = request
        .lifetime
        .as_deref()
        .ok_or_else(invalid)
        .and_then(|text| parse_duration(text).map_err(|_| invalid()))?;
    if lifetime.subsec_nanos() != 0 || lifetime < Duration::from_secs(1) {
        return Err(invalid());
    }
    fields.remove("expires_at");
    fields.insert("ttl_secs".into(), lifetime.as_secs().into());
    let bytes = serde_json::to_vec(&Value::Object(fields)).unwrap_or_default();
    decode_directive(&bytes, state.clock(), state.limits()).map_err(|mut e| {
        // One directive: no position to name.
        e.directive_index = None;
        ApiError::rejected(e)
    })
}

/// What recording more than shapes `d` asks the operator to confirm.
fn confirmations(d: &TimedDirective) -> Vec<&'static str> {
    let mut out = Vec::new();
    if d.capture {
        out.push("capture");
    }
    if d.ring_buffer {
        out.push("ring_buffer");
    }
    if d.level == DiagLevel::ShapeRewriteDiff {
        out.push("ShapeRewriteDiff");
    }
    out
}

fn no_such_directive() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_such_directive",
        "no live directive has this id",
    )
}

fn edit_error(e: PublishError) -> ApiError {
    match e {
        PublishError::NotFound { .. } => no_such_directive(),
        PublishError::Invalid(d) => ApiError::rejected(d),
        other => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the edit failed: {other}"),
        ),
    }
}

fn changes(c: &SetChanges) -> Value {
    json!({"added": c.added, "removed": c.removed, "changed": c.changed})
}
