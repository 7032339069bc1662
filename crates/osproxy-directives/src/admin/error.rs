//! [`ApiError`]: every admin error as `{"error": "<slug>", "message": "..."}`
//! with its status code. Messages are value-free.

use axum::http::header::{HeaderValue, ALLOW, WWW_AUTHENTICATE};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use osproxy_observe::DecodeError;
use serde_json::json;

/// An admin error response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// The status code.
    pub status: StatusCode,
    /// Stable slug.
    pub slug: &'static str,
    /// One value-free line for humans.
    pub message: String,
    /// The offending directive, for decoder rejections.
    pub directive_index: Option<usize>,
    /// The `Allow` header of a 405.
    pub allow: Option<&'static str>,
    /// After an unknown outcome (504): the live revision before the write.
    pub revision_before: Option<i64>,
    /// With 410 `compacted`: the oldest revision etcd still holds.
    pub oldest: Option<i64>,
}

impl ApiError {
    /// An error with this status, slug and message.
    pub fn new(status: StatusCode, slug: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            slug,
            message: message.into(),
            directive_index: None,
            allow: None,
            revision_before: None,
            oldest: None,
        }
    }

    /// 404: no such route.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such route")
    }

    /// 405: the route exists, the method does not.
    pub fn method_not_allowed(allow: &'static str) -> Self {
        let mut e = Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("method not allowed; allowed: {allow}"),
        );
        e.allow = Some(allow);
        e
    }

    /// 401: missing or wrong bearer token.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required",
        )
    }

    /// 413: the body is over the limit.
    pub fn too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "the request body exceeds 1 MiB",
        )
    }

    /// 400 (413 for `too_large`): the decoder rejected the set, or the
    /// exact bytes that would be written.
    pub fn rejected(e: DecodeError) -> Self {
        let status = if e.reason == osproxy_observe::RejectReason::TooLarge {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::BAD_REQUEST
        };
        let mut err = Self::new(status, e.slug(), e.to_string());
        err.directive_index = e.directive_index;
        err
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": self.slug, "message": self.message});
        if let Some(i) = self.directive_index {
            body["directive_index"] = i.into();
        }
        if let Some(r) = self.revision_before {
            body["revision_before"] = r.into();
        }
        if let Some(r) = self.oldest {
            body["oldest"] = r.into();
        }
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(allow) = self.allow {
            headers.insert(ALLOW, HeaderValue::from_static(allow));
        }
        response
    }
}
