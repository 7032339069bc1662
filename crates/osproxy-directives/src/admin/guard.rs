//! The browser as an untrusted client: what keeps a web page the operator
//! happens to open from reading or driving this instance.
//!
//! A bearer token stops a stranger on the network, but not a page in the
//! operator's own browser: with no token (the loopback default) any site can
//! make the browser send a request to `127.0.0.1`, and with DNS rebinding a
//! site's own name can come to resolve to this instance. Three rules, checked
//! before anything else (the anchor is Go's `net/http`
//! `CrossOriginProtection`, with GETs included because our GETs return the
//! fleet's configuration):
//!
//! | rule | routes | refused with |
//! |---|---|---|
//! | `Host` is an IP literal, `localhost`, or a name given with `--allowed-host` (a request without `Host` is not a browser's and passes) | every route | 421 `bad_host` |
//! | `Sec-Fetch-Site`, when present, is `same-origin` or `none`; an `Origin`, when present, is exactly this request's own `scheme://Host` (`Origin: null` never is) | `/admin/*` | 403 `cross_site` |
//! | a body is `Content-Type: application/json` (parameters allowed) | `POST /admin/*` (the only method with a body the routes take) | 415 `unsupported_media_type` |
//!
//! A non-browser client (curl, the CLI, a probe) sends neither fetch
//! metadata nor `Origin`, so it passes the second rule; the first needs it
//! to address the instance by IP, `localhost` or an allowed name. Each
//! refusal is counted per reason (`osproxy_admin_refused_total`).

use axum::extract::{Request, State};
use axum::http::header::{CONTENT_TYPE, HOST, ORIGIN};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::state::AdminState;

/// Why the guard refused a request: its slug.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `Host` names a DNS name that is not allowed (rebinding).
    BadHost,
    /// The request comes from another site's page.
    CrossSite,
    /// A mutation whose body is not declared JSON.
    UnsupportedMediaType,
}

impl Refusal {
    /// Every reason, for the metrics.
    pub(crate) const ALL: [Refusal; 3] = [
        Refusal::BadHost,
        Refusal::CrossSite,
        Refusal::UnsupportedMediaType,
    ];

    /// The stable slug.
    pub(crate) fn slug(self) -> &'static str {
        match self {
            Refusal::BadHost => "bad_host",
            Refusal::CrossSite => "cross_site",
            Refusal::UnsupportedMediaType => "unsupported_media_type",
        }
    }

    fn error(self) -> ApiError {
        let (status, message) = match self {
            Refusal::BadHost => (
                StatusCode::MISDIRECTED_REQUEST,
                "the Host header names a host this instance does not answer for; use its IP address, localhost, or a name given with --allowed-host",
            ),
            Refusal::CrossSite => (
                StatusCode::FORBIDDEN,
                "cross-site requests are refused: open the page from this instance itself",
            ),
            Refusal::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the body must be sent with Content-Type: application/json",
            ),
        };
        ApiError::new(status, self.slug(), message)
    }
}

/// The browser rules, for one request. `scheme` is this listener's
/// (`http` or `https`); `allowed` the extra host names.
pub(crate) fn check(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    scheme: &str,
    allowed: &[String],
) -> Result<(), Refusal> {
    // No `Host` at all is not a browser (every browser sends one).
    let host = match headers.get(HOST).map(|h| h.to_str()) {
        None => None,
        Some(Ok(h)) if host_allowed(h, allowed) => Some(h),
        Some(_) => return Err(Refusal::BadHost),
    };
    let admin = path == "/admin" || path.starts_with("/admin/");
    if !admin {
        return Ok(());
    }
    if let Some(site) = headers.get("sec-fetch-site") {
        if !matches!(site.to_str(), Ok("same-origin" | "none")) {
            return Err(Refusal::CrossSite);
        }
    }
    if let Some(origin) = headers.get(ORIGIN) {
        let own = host.map(|h| format!("{scheme}://{h}"));
        let same = match (origin.to_str(), own) {
            (Ok(o), Some(own)) => o.eq_ignore_ascii_case(&own),
            _ => false,
        };
        if !same {
            return Err(Refusal::CrossSite);
        }
    }
    // POST is the one method with a body the admin routes take; any other
    // is answered 405 by the router.
    if *method == Method::POST && !is_json(headers) {
        return Err(Refusal::UnsupportedMediaType);
    }
    Ok(())
}

/// Whether the declared body type is `application/json` (any parameters,
/// any case), the one type a page cannot send cross-site without asking.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

/// Whether `host` (a `Host` value: name or address, optional port) is one
/// this instance answers for: an IP literal (a rebound DNS name never is),
/// `localhost`, or one of `allowed`.
pub(crate) fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let name = match host.strip_prefix('[') {
        // [v6]:port or [v6]
        Some(rest) => match rest.split_once(']') {
            Some((addr, tail)) if tail.is_empty() || valid_port(tail) => {
                return addr.parse::<std::net::Ipv6Addr>().is_ok();
            }
            _ => return false,
        },
        None => match host.rsplit_once(':') {
            Some((name, port)) if valid_port(&format!(":{port}")) => name,
            Some(_) => return false,
            None => host,
        },
    };
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return true;
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    name.eq_ignore_ascii_case("localhost")
        || allowed
            .iter()
            .any(|a| a.strip_suffix('.').unwrap_or(a).eq_ignore_ascii_case(name))
}

fn valid_port(tail: &str) -> bool {
    tail.strip_prefix(':')
        .is_some_and(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Middleware: the browser rules on every route (see the module docs).
pub(crate) async fn browser_rules(
    State(state): State<AdminState>,
    request: Request,
    next: Next,
) -> Response {
    let options = state.options();
    let scheme = if options.tls { "https" } else { "http" };
    if let Err(refusal) = check(
        request.method(),
        request.uri().path(),
        request.headers(),
        scheme,
        &options.allowed_hosts,
    ) {
        state.count_refused(refusal);
        return refusal.error().into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn hosts_by_address_localhost_or_allowed_name() {
        let allowed = vec!["ops.example.".to_owned()];
        for ok in [
            "127.0.0.1",
            "127.0.0.1:9464",
            "10.1.2.3:80",
            "[::1]:9464",
            "[::1]",
            "localhost",
            "LOCALHOST:9464",
            "localhost.:1",
            "ops.example:9464",
            "OPS.example",
        ] {
            assert!(host_allowed(ok, &allowed), "{ok}");
        }
        for bad in [
            "rebind.evil.example",
            "rebind.evil.example:9464",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "[::1]x",
            "[not-v6]:1",
            "localhost:",
            "localhost:99999999",
            "",
            ":80",
        ] {
            assert!(!host_allowed(bad, &allowed), "{bad}");
        }
    }

    #[test]
    fn cross_site_requests_are_refused_on_admin_routes_only() {
        let get = Method::GET;
        let check = |path, h: &HeaderMap| check(&get, path, h, "http", &[]);
        let same = headers(&[
            ("host", "127.0.0.1:9464"),
            ("sec-fetch-site", "same-origin"),
            ("origin", "http://127.0.0.1:9464"),
        ]);
        assert_eq!(check("/admin/directives", &same), Ok(()));
        assert_eq!(check("/admin/directives", &headers(&[])), Ok(()));
        let typed = headers(&[("host", "127.0.0.1:9464"), ("sec-fetch-site", "none")]);
        assert_eq!(check("/admin/page", &typed), Ok(()));
        for (site, origin) in [
            ("cross-site", "http://evil.example"),
            ("same-site", "http://127.0.0.1:8000"),
        ] {
            let mut h = headers(&[("host", "127.0.0.1:9464")]);
            h.insert("sec-fetch-site", HeaderValue::from_static(site));
            assert_eq!(check("/admin/history", &h), Err(Refusal::CrossSite));
            // The page itself may be navigated to from anywhere.
            assert_eq!(check("/ui", &h), Ok(()));
            let mut h = headers(&[("host", "127.0.0.1:9464")]);
            h.insert("origin", HeaderValue::from_static(origin));
            assert_eq!(check("/admin/history", &h), Err(Refusal::CrossSite));
        }
        let null = headers(&[("host", "127.0.0.1:9464"), ("origin", "null")]);
        assert_eq!(check("/admin/directives", &null), Err(Refusal::CrossSite));
        let https = headers(&[
            ("host", "127.0.0.1:9464"),
            ("origin", "https://127.0.0.1:9464"),
        ]);
        assert_eq!(check("/admin/directives", &https), Err(Refusal::CrossSite));
        let rebound = headers(&[("host", "rebind.evil.example")]);
        assert_eq!(check("/healthz", &rebound), Err(Refusal::BadHost));
    }

    #[test]
    fn mutations_take_json_only() {
        let post = Method::POST;
        let check = |h: &HeaderMap| check(&post, "/admin/directives", h, "http", &[]);
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
        ] {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_TYPE, HeaderValue::from_static(ok));
            assert_eq!(check(&h), Ok(()), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonx",
            "",
        ] {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_TYPE, HeaderValue::from_static(bad));
            assert_eq!(check(&h), Err(Refusal::UnsupportedMediaType), "{bad}");
        }
        assert_eq!(check(&HeaderMap::new()), Err(Refusal::UnsupportedMediaType));
    }
}
