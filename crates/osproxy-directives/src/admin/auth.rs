//! The bearer-token check for `/admin`, with a constant-time comparison so
//! the response time does not reveal how much of a guess was right.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::state::AdminState;

/// Whether `a == b`, in time that depends only on the lengths, never on the
/// position of the first differing byte.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let len = a.len().max(b.len());
    let mut diff = 0u8;
    for i in 0..len {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    let same_len = a.len() == b.len();
    // Non-short-circuiting `&`: both parts are always evaluated.
    (std::hint::black_box(diff) == 0) & same_len
}

/// Whether the request carries `Authorization: Bearer <token>`.
pub(crate) fn presents(headers: &HeaderMap, token: &str) -> bool {
    let Some(value) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some((scheme, presented)) = value.trim().split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer")
        && constant_time_eq(presented.trim().as_bytes(), token.as_bytes())
}

/// Middleware: with a token configured, everything under `/admin` needs it,
/// and `/metrics` too when the operator asked for that.
pub(crate) async fn require_token(
    State(state): State<AdminState>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let guarded = path == "/admin"
        || path.starts_with("/admin/")
        || (path == "/metrics" && state.options().metrics_need_token);
    if guarded {
        if let Some(token) = state.token() {
            if !presents(request.headers(), token) {
                state.count_unauthorized();
                return ApiError::unauthorized().into_response();
            }
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn compares_whole_values_only() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"s3cret", b"s3creT"));
        assert!(!constant_time_eq(b"s3cret", b"s3cret!"));
        assert!(!constant_time_eq(b"s3cret", b"s3cre"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(!constant_time_eq(b"a\0", b"a"), "padding is not equality");
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_required() {
        let mut h = HeaderMap::new();
        assert!(!presents(&h, "t"));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        assert!(presents(&h, "t"));
        h.insert(AUTHORIZATION, HeaderValue::from_static("bearer  t "));
        assert!(presents(&h, "t"));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Basic t"));
        assert!(!presents(&h, "t"));
        h.insert(AUTHORIZATION, HeaderValue::from_static("t"));
        assert!(!presents(&h, "t"));
    }
}
