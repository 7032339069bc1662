//! One instance's admin HTTP surface (SPEC §6), built by [`router`] so tests
//! can drive it without binding a port.
//!
//! | route | method | token | answer |
//! |---|---|---|---|
//! | `/admin/directives` | GET | yes | the applied set: `revision`, canonical `directives` (re-publishable), `view` with remaining lifetimes; `ETag: "<revision>"`; in fleet mode also `failsafe` (`engaged`, `since`, `since_unix_nanos`, `withheld`), `clamped` (`[{id, clamps}]`) and, on each clamped `view` entry, `clamped: [<ceiling slug>]` (SPEC §8) |
//! | `/admin/directives` | POST | yes | publish a directive set (body ≤ 1 MiB, `Content-Type: application/json`) into the in-memory store, or into etcd with compare-and-swap in fleet mode; `If-Match: <revision>` to publish only over that revision; `X-Osproxy-Reason` recorded as the note's reason, the token's name as its author |
//! | `/admin/explain` | GET | yes | `?tenant=&index=&principal=&endpoint=&request_id=`: the decision for that request now (level, flags, winning `directive`, `revision`), its sample `bucket`, and per directive its targets (`any`/`match`/`mismatch`), sample, expiry, budget, clamps, counters and `why_not` (`expired`, `targets`, `sampled_out`, `over_budget`); 400 `unknown_parameter`, `duplicate_parameter`, `invalid_endpoint`, `invalid_target` (SPEC §8) |
//! | `/admin/breakglass` | GET | yes | the instance's break-glass tape, newest first (`entries`, each a shape-only request record naming its `osproxy.directive.id` and `osproxy.directive.revision`, with `explain`: the `/admin/explain` query for that request), `capacity`, `enabled` (`false` when no recorder fills a tape here) |
//! | `/ui` | GET | the data only with it (the shell asks for it; see the `page` module) | the operator's page: live directives with a ticking remaining lifetime, the fleet's instances and their state |
//! | `/ui/app.js`, `/ui/app.css` | GET | no | the page's script and style |
//! | `/ui/history.js` | GET | no | the page's history panel |
//! | `/ui/tape.js` | GET | no | the page's break-glass tape panel (polls `/admin/breakglass`) |
//! | `/admin/page` | GET | yes | the page's data (JSON), polled by the page |
//! | `/admin/history` | GET | yes | fleet mode: the set's revisions still in etcd's history, newest first, with author, reason, time and ids added/removed/changed (`?limit=N&before=R`, paged by entries and bytes read: `next_before`) |
//! | `/admin/rollback` | POST | yes | fleet mode: `{"to": R, "expected_revision": L}` republishes the set as of R with compare-and-swap on L (409 `conflict` when it moved; 410 `compacted` with `oldest`) |
//! | `/healthz` | GET | no | 200 while the process serves |
//! | `/readyz` | GET | no | 200 once the initial read is done and, with etcd, while the last confirmation from etcd is within the staleness bound; 503 otherwise; with etcd both bodies carry `failsafe` |
//! | `/metrics` | GET | only with `metrics_need_token` | Prometheus text: applied revision, staleness, reconnects, rejected publishes by reason, directives active, snapshot reads, fail-safe and clamps |
//!
//! With a token configured, everything under `/admin` (and `/metrics` with
//! `metrics_need_token`) needs `Authorization: Bearer <token>`, compared in
//! constant time. Before that, every route applies the browser rules of
//! the `guard` module: `Host` must be an IP, `localhost` or an allowed name
//! (421 `bad_host`), `/admin` refuses cross-site requests (403 `cross_site`)
//! and takes JSON bodies only (415 `unsupported_media_type`).
//!
//! Every error is JSON, `{"error": "<slug>", "message": "..."}`: 400 (the
//! decoder's reason slug, plus `directive_index` when one directive is at
//! fault, or `invalid_if_match`), 401 `unauthorized`, 404 `not_found`, 405
//! `method_not_allowed`, 408 `request_timeout` (see [`server`]), 409 `conflict` (someone else published between this
//! instance's read and write), 412 `conflict` (`If-Match` did not match), 413
//! `too_large`, 503 `not_ready` or `etcd_unavailable`.
//!
//! Logs never carry a directive's values: publishes are logged with their
//! revision, count and reason slug only.

mod auth;
mod breakglass;
mod error;
mod guard;
mod handlers;
mod metrics;
mod page;
pub mod server;
mod state;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::{middleware, Router};
use osproxy_observe::decode::MAX_BODY_BYTES;

pub use auth::constant_time_eq;
pub use error::ApiError;
pub use state::{
    AdminOptions, AdminState, Backend, EtcdBackend, DEFAULT_TOKEN_NAME, UNAUTHENTICATED_AUTHOR,
};

/// The admin router over `state`. Serve it with [`server::serve`] (header,
/// request and connection limits), or call it directly in tests
/// (`tower::ServiceExt::oneshot`).
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route(
            "/admin/directives",
            get(handlers::get_directives)
                .post(handlers::post_directives)
                .fallback(handlers::only_get_post),
        )
        .route("/ui", get(page::page).fallback(handlers::only_get))
        .route("/ui/app.js", get(page::script).fallback(handlers::only_get))
        .route("/ui/app.css", get(page::style).fallback(handlers::only_get))
        .route(
            "/ui/history.js",
            get(page::history_script).fallback(handlers::only_get),
        )
        .route(
            "/ui/tape.js",
            get(page::tape_script).fallback(handlers::only_get),
        )
        .route("/admin/page", get(page::data).fallback(handlers::only_get))
        .route(
            "/admin/history",
            get(page::history).fallback(handlers::only_get),
        )
        .route(
            "/admin/rollback",
            post(page::rollback).fallback(handlers::only_post),
        )
        .route(
            "/admin/breakglass",
            get(breakglass::get_breakglass).fallback(handlers::only_get),
        )
        .route(
            "/admin/explain",
            get(handlers::get_explain).fallback(handlers::only_get),
        )
        .route(
            "/healthz",
            get(handlers::healthz).fallback(handlers::only_get),
        )
        .route(
            "/readyz",
            get(handlers::readyz).fallback(handlers::only_get),
        )
        .route(
            "/metrics",
            get(handlers::metrics).fallback(handlers::only_get),
        )
        .fallback(handlers::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            guard::browser_rules,
        ))
        .with_state(state)
}
