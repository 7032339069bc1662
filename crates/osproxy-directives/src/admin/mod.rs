//! One instance's admin HTTP surface (SPEC §6), built by [`router`] so tests
//! can drive it without binding a port.
//!
//! The routes, who may call them, what they answer and their error slugs are
//! one table, [`routes::ROUTES`] (with [`routes::ERRORS`]): the router mounts
//! it, a wrong method is answered from it, and `docs/reference/http.md` is
//! rendered from it (see [`crate::reference`]). Read that page, not a copy.
//!
//! Before any route, the browser rules of the `guard` module apply (`Host`,
//! same-origin under `/admin`, JSON-only bodies); then, with a token
//! configured, everything under `/admin` (and `/metrics` with
//! `metrics_need_token`) needs `Authorization: Bearer <token>`, compared in
//! constant time. Every error is JSON with a stable slug (`ApiError`; the slugs: `docs/reference/http.md`).
//!
//! Logs never carry a directive's values: publishes are logged with their
//! revision, count and reason slug only.

mod auth;
mod breakglass;
mod error;
mod guard;
mod handlers;
pub(crate) mod metrics;
mod page;
pub mod routes;
pub(crate) mod server;
mod state;

use axum::extract::DefaultBodyLimit;
use axum::{middleware, Router};
use osproxy_observe::decode::MAX_BODY_BYTES;

pub use state::{
    AdminOptions, AdminState, Backend, EtcdBackend, DEFAULT_TOKEN_NAME, UNAUTHENTICATED_AUTHOR,
};

/// The admin router over `state`. Served by `serve` with the
/// server's header, request and connection limits, or call it directly in tests
/// (`tower::ServiceExt::oneshot`).
pub fn router(state: AdminState) -> Router {
    routes::ROUTES
        .iter()
        .fold(Router::new(), |app, r| app.route(r.path, r.method_router()))
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
