//! The operator's page: `GET /ui` is server-rendered HTML of what
//! this instance applies and, in fleet mode, what each instance reports; its
//! script (`/ui/app.js`) polls `GET /admin/page` once a second and counts
//! remaining lifetimes down in between, so the page stays live without a
//! reload. In fleet mode it also lists the set's history with diffs and
//! offers a rollback that asks for confirmation and shows the outcome of its
//! compare-and-swap. An operator adds a directive, gives one a new lifetime
//! or ends one there too (see `author`): previewed by the instance first,
//! written with compare-and-swap against the revision the page showed.
//! `GET /` redirects to `/ui`.
//!
//! Its routes are rows of [`crate::admin::routes::ROUTES`] (see
//! `docs/reference/http.md`).
//!
//! **Token.** With an admin token configured, the data is behind it like
//! everything under `/admin`. A browser's navigation to `/ui` carries no
//! bearer token, so `/ui` then answers the shell without any data and a
//! token field; the script keeps the typed token in `sessionStorage` (this
//! tab only, gone when it closes, never a cookie, so no other site can make
//! the browser send it) and sends it as `Authorization: Bearer` on each
//! `/admin` request. A request to `/ui` that presents the token gets the
//! page rendered with data.
//!
//! **Escaping.** Directive ids, targets and instance reports come from etcd:
//! the server escapes every value it renders (`html::escape`) and the
//! script only ever sets `textContent`. Every answer of these routes carries
//! a strict `Content-Security-Policy` (no inline script or style, nothing
//! from elsewhere, no framing, no form posts),
//! `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer` and
//! `Cache-Control: no-store`.

mod author;
mod history;
mod html;
mod model;

use axum::extract::State;
use axum::http::header::{
    HeaderValue, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::auth;
use super::state::AdminState;
use model::PageModel;

/// The page's Content-Security-Policy.
pub(crate) const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const SCRIPT: &str = include_str!("app.js");
const HISTORY_SCRIPT: &str = include_str!("history.js");
const AUTHOR_SCRIPT: &str = include_str!("author.js");
const TAPE_SCRIPT: &str = include_str!("tape.js");
const STYLE: &str = include_str!("app.css");

/// Adds the page's security headers to `response`.
fn secured(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY_VALUE),
    );
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn typed(content_type: &'static str, body: impl IntoResponse) -> Response {
    secured(
        (
            [(CONTENT_TYPE, HeaderValue::from_static(content_type))],
            body,
        )
            .into_response(),
    )
}

pub(crate) use author::{edit, preview};
pub(crate) use history::{history, rollback};

/// `GET /ui`.
pub(crate) async fn page(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    let authorized = state
        .token()
        .is_none_or(|token| auth::presents(&headers, token));
    let body = if authorized {
        state.count_snapshot_read();
        html::render(Some(&PageModel::build(&state).await))
    } else {
        html::render(None)
    };
    typed("text/html; charset=utf-8", body)
}

/// `GET /ui/app.js`.
pub(crate) async fn script() -> Response {
    typed("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /ui/history.js`.
pub(crate) async fn history_script() -> Response {
    typed("text/javascript; charset=utf-8", HISTORY_SCRIPT)
}

/// `GET /ui/author.js`.
pub(crate) async fn author_script() -> Response {
    typed("text/javascript; charset=utf-8", AUTHOR_SCRIPT)
}

/// `GET /`: the page.
pub(crate) async fn root() -> Response {
    secured(axum::response::Redirect::to("/ui").into_response())
}

/// `GET /ui/tape.js`: the break-glass tape panel (`GET /admin/breakglass`).
pub(crate) async fn tape_script() -> Response {
    typed("text/javascript; charset=utf-8", TAPE_SCRIPT)
}

/// `GET /ui/app.css`.
pub(crate) async fn style() -> Response {
    typed("text/css; charset=utf-8", STYLE)
}

/// `GET /admin/page` (behind the token like all of `/admin`).
pub(crate) async fn data(State(state): State<AdminState>) -> Response {
    state.count_snapshot_read();
    secured(Json(PageModel::build(&state).await).into_response())
}
