//! The browser as an untrusted client, on a running `serve`: a page on
//! another loopback origin, in real headless Chromium, tries to publish a
//! capture directive (a no-cors `fetch`, an HTML form POST, the page's own
//! authoring routes `/admin/edit` and `/admin/preview`) and to read the
//! history and the break-glass tape (`<img>`); each is refused, counted,
//! and changes nothing. Over plain HTTP: the CSRF reproduction with curl's headers, DNS rebinding
//! (`Host`), and the JSON-only rule.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;
use osproxy_test_support::Browser;
use reqwest::header::{CONTENT_TYPE, HOST, ORIGIN};
use reqwest::StatusCode;
use serde_json::Value;

const CAPTURE: &str = r#"{"directives":[{"id":"drive-by","level":"ShapeRewriteDiff","capture":true,"ttl_secs":600}]}"#;

/// The value of `osproxy_directives_admin_refused_total{reason="<reason>"}`.
async fn refused(serve: &Serve, reason: &str) -> u64 {
    let text = reqwest::get(serve.at("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let needle = format!("osproxy_directives_admin_refused_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&needle))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {needle} in:\n{text}"))
}

async fn applied_ids(serve: &Serve) -> Vec<String> {
    let body = reqwest::get(serve.at("/admin/directives"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    ids_of(&serde_json::from_str::<Value>(&body).unwrap())
}

/// A web server on another loopback port that answers every request with
/// `page`: the attacker's site. Stops when dropped.
struct EvilSite {
    url: String,
    stop: Arc<AtomicBool>,
    port: u16,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EvilSite {
    fn start(page: impl Fn(u16) -> String + Send + 'static) -> EvilSite {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            // Bounded: a test's page loads a handful of times at most.
            for stream in listener.incoming().take(64) {
                if stopping.load(Ordering::Acquire) {
                    break;
                }
                let Ok(mut stream) = stream else { continue };
                // A browser opens sockets it may never use (preconnects):
                // do not wait on one for long.
                let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(1)));
                let mut head = [0u8; 4096];
                let _ = stream.read(&mut head);
                let body = page(port);
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        EvilSite {
            url: format!("http://127.0.0.1:{port}/"),
            stop,
            port,
            thread: Some(thread),
        }
    }
}

impl Drop for EvilSite {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_on_another_origin_cannot_publish_or_read() {
    let serve = Serve::start(&[]);
    let victim = serve.url.clone();
    let before = refused(&serve, "cross_site").await;
    let site = EvilSite::start(move |_| {
        let set = CAPTURE.replace("drive-by", "fetch-drive-by");
        let set = serde_json::to_string(&set).unwrap();
        // The form's one field name and value make a JSON body when the
        // browser joins them with '=' (enctype text/plain).
        format!(
            r#"<!doctype html><title>cat pictures</title>
<iframe name="sink" id="sink"></iframe>
<form id="form" method="POST" action="{victim}/admin/directives" enctype="text/plain" target="sink">
<input name='{{"directives":[{{"id":"form-drive-by","level":"ShapeRewriteDiff","capture":true,"ttl_secs":600,"pad":"' value='"}}]}}'>
</form>
<img id="img" src="{victim}/admin/history">
<img id="tape" src="{victim}/admin/breakglass">
<script>
window.done = {{fetch: false, img: false, form: false, tape: false, edit: false, preview: false}};
fetch("{victim}/admin/directives", {{method: "POST", mode: "no-cors", body: {set}}})
  .then(function () {{ window.done.fetch = true; }}, function () {{ window.done.fetch = true; }});
// The page's authoring routes: an edit that would add a capture directive,
// and its preview.
var edit = JSON.stringify({{op: "add", directive: {{id: "edit-drive-by", level: "ShapeRewriteDiff",
  capture: true, ttl_secs: 600}}, expected_revision: 0, reason: "drive-by", confirmed: true}});
fetch("{victim}/admin/edit", {{method: "POST", mode: "no-cors", body: edit}})
  .then(function () {{ window.done.edit = true; }}, function () {{ window.done.edit = true; }});
fetch("{victim}/admin/preview", {{method: "POST", mode: "no-cors", body: edit}})
  .then(function () {{ window.done.preview = true; }}, function () {{ window.done.preview = true; }});
var img = document.getElementById("img");
img.onload = img.onerror = function () {{ window.done.img = true; }};
var tape = document.getElementById("tape");
tape.onload = tape.onerror = function () {{ window.done.tape = true; }};
document.getElementById("sink").onload = function () {{ window.done.form = true; }};
document.getElementById("form").submit();
</script>"#
        )
    });
    let browser = Browser::launch();
    let tab = browser.open(&site.url);
    tab.wait_for(
        "the page's six requests are answered",
        "window.done && window.done.fetch && window.done.img && window.done.form && window.done.tape \
         && window.done.edit && window.done.preview",
    );
    assert_eq!(
        refused(&serve, "cross_site").await - before,
        6,
        "the publish fetch, the form, the two images (history, break-glass tape) and the \
         authoring fetches (edit, preview) were each refused"
    );
    assert!(
        applied_ids(&serve).await.is_empty(),
        "nothing was applied: {:?}",
        applied_ids(&serve).await
    );
    let metrics = reqwest::get(serve.at("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("osproxy_directives_admin_publishes_total 0"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_curl_reproductions_are_refused_with_slugs() {
    let serve = Serve::start(&[]);
    let http = reqwest::Client::new();
    let directives = serve.at("/admin/directives");
    let post = |content_type: &'static str, origin: Option<&'static str>| {
        let mut req = http
            .post(&directives)
            .header(CONTENT_TYPE, content_type)
            .body(CAPTURE);
        if let Some(o) = origin {
            req = req.header(ORIGIN, o);
        }
        req
    };
    let refusal = |req: reqwest::RequestBuilder| async move {
        let (s, v) = json_answer(req.send().await.unwrap()).await;
        (s, v["error"].as_str().map(str::to_owned))
    };
    let cross_site = (StatusCode::FORBIDDEN, Some("cross_site".to_owned()));
    let not_json = (
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Some("unsupported_media_type".to_owned()),
    );
    // Point 1 as reported: text/plain from another origin; then the same
    // with a JSON content type (still another origin), and `Origin: null`.
    for (t, origin) in [
        ("text/plain", "https://evil.example"),
        ("application/json", "https://evil.example"),
        ("application/json", "null"),
    ] {
        assert_eq!(
            refusal(post(t, Some(origin))).await,
            cross_site,
            "{t} {origin}"
        );
    }
    // No origin (curl), but not JSON: the form-encodable types are refused.
    for t in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        assert_eq!(refusal(post(t, None)).await, not_json, "{t}");
    }
    let rollback = http
        .post(serve.at("/admin/rollback"))
        .header(CONTENT_TYPE, "text/plain")
        .body(r#"{"to":1,"expected_revision":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(rollback.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let edit = r#"{"op":"add","directive":{"id":"drive-by","level":"Shape","capture":true},"lifetime":"1h","expected_revision":0,"reason":"x","confirmed":true}"#;
    for (t, origin) in [
        ("text/plain", None),
        ("application/json", Some("https://evil.example")),
    ] {
        let mut req = http
            .post(serve.at("/admin/edit"))
            .header(CONTENT_TYPE, t)
            .body(edit);
        if let Some(o) = origin {
            req = req.header(ORIGIN, o);
        }
        let expected = if origin.is_some() {
            &cross_site
        } else {
            &not_json
        };
        assert_eq!(&refusal(req).await, expected, "/admin/edit {t}");
    }
    assert!(applied_ids(&serve).await.is_empty(), "nothing applied");
    // The instance's own origin, as the page sends it, is accepted.
    let own = serve.url.clone();
    let own: &'static str = Box::leak(own.into_boxed_str());
    let (s, v) = json_answer(post("application/json", Some(own)).send().await.unwrap()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(applied_ids(&serve).await, ["drive-by"]);
    assert_eq!(refused(&serve, "unsupported_media_type").await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebound_host_name_is_refused_on_every_route() {
    let serve = Serve::start(&["--allowed-host", "ops.example"]);
    let http = reqwest::Client::new();
    for path in osproxy_directives::admin::routes::ROUTES
        .iter()
        .map(|r| r.path)
    {
        let (s, v) = json_answer(
            http.get(serve.at(path))
                .header(HOST, "rebind.evil.example")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (s, v["error"].as_str()),
            (StatusCode::MISDIRECTED_REQUEST, Some("bad_host")),
            "{path}"
        );
    }
    let port = serve.url.rsplit(':').next().unwrap().to_owned();
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("ops.example:{port}"),
    ] {
        let resp = http
            .get(serve.at("/admin/directives"))
            .header(HOST, &host)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{host}");
    }
    assert_eq!(
        refused(&serve, "bad_host").await,
        osproxy_directives::admin::routes::ROUTES.len() as u64
    );
}
