//! The admin HTTP surface of a running `serve` process, with a real client:
//! every status code, the token, the body limit, concurrency, signals, and
//! fleet mode against a real etcd (compare-and-swap, readiness when etcd
//! goes away).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use reqwest::header::{ALLOW, AUTHORIZATION, CONTENT_TYPE, ETAG, IF_MATCH, WWW_AUTHENTICATE};
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_status_code_of_an_in_memory_instance() {
    let serve = Serve::start(&[]);
    let http = json_client();
    let directives = serve.at("/admin/directives");

    let (s, v) = json_answer(http.get(serve.at("/healthz")).send().await.unwrap()).await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (s, v) = json_answer(http.get(serve.at("/readyz")).send().await.unwrap()).await;
    assert_eq!((s, &v["ready"]), (StatusCode::OK, &Value::Bool(true)));

    let resp = http.get(&directives).send().await.unwrap();
    assert_eq!(resp.headers()[ETAG], "\"0\"");
    let (s, v) = json_answer(resp).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["revision"], 0);
    assert_eq!(v["store"], "in-memory");
    assert_eq!(v["directives"], serde_json::json!([]));

    let (s, v) = json_answer(
        http.post(&directives)
            .body(set_body(&["a", "b"], 600))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["revision"].as_i64(), v["directives"].as_i64()),
        (Some(1), Some(2))
    );

    let (_, v) = json_answer(http.get(&directives).send().await.unwrap()).await;
    assert_eq!(v["revision"], 1);
    assert_eq!(ids_of(&v), ["a", "b"]);
    assert!(
        v["directives"][0]["expires_at"].is_string(),
        "canonical, absolute: {v}"
    );
    let remaining = v["view"][0]["remaining_secs"].as_u64().unwrap();
    assert!((590..=600).contains(&remaining), "{v}");

    // 400 with the decoder's slug (and the directive's index).
    let (s, v) = json_answer(
        http.post(&directives)
            .body("{not json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("malformed_json"))
    );
    assert!(v["message"].is_string());
    let body = r#"{"directives":[{"id":"a","level":"Shape","ttl_secs":5},{"id":"b","level":"Shape","tennant":"x","ttl_secs":5}]}"#;
    let (s, v) = json_answer(http.post(&directives).body(body).send().await.unwrap()).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unknown_field"))
    );
    assert_eq!(v["directive_index"], 1);

    // If-Match: compare-and-swap on the revision.
    let stale = http
        .post(&directives)
        .header(IF_MATCH, "0")
        .body(set_body(&["c"], 60));
    let (s, v) = json_answer(stale.send().await.unwrap()).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::PRECONDITION_FAILED, Some("conflict"))
    );
    let current = http
        .post(&directives)
        .header(IF_MATCH, "\"1\"")
        .body(set_body(&["c"], 60));
    let (s, v) = json_answer(current.send().await.unwrap()).await;
    assert_eq!((s, v["revision"].as_i64()), (StatusCode::OK, Some(2)));
    let garbage = http
        .post(&directives)
        .header(IF_MATCH, "latest")
        .body(set_body(&["c"], 60));
    let (s, v) = json_answer(garbage.send().await.unwrap()).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_if_match"))
    );

    // 404 and 405, as JSON.
    let (s, v) = json_answer(http.get(serve.at("/nope")).send().await.unwrap()).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let resp = http.delete(&directives).send().await.unwrap();
    assert_eq!(resp.headers()[ALLOW], "GET, HEAD, POST");
    let (s, v) = json_answer(resp).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed"))
    );
    let (s, _) = json_answer(http.post(serve.at("/healthz")).send().await.unwrap()).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);

    // 413 just above 1 MiB; exactly 1 MiB is accepted.
    let mut exact = br#"{"directives":[]}"#.to_vec();
    exact.resize(1024 * 1024, b' ');
    let (s, v) = json_answer(http.post(&directives).body(exact).send().await.unwrap()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let mut over = br#"{"directives":[]}"#.to_vec();
    over.resize(1024 * 1024 + 1, b' ');
    let (s, v) = json_answer(http.post(&directives).body(over).send().await.unwrap()).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("too_large"))
    );

    // Metrics count all of it, in the Prometheus text format.
    let resp = http.get(serve.at("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = resp.text().await.unwrap();
    for line in [
        "osproxy_directives_applied_revision 3",
        "osproxy_directives_active 0",
        "osproxy_directives_admin_publishes_total 3",
        "osproxy_directives_rejected_total{source=\"admin\",reason=\"malformed_json\"} 1",
        "osproxy_directives_rejected_total{source=\"admin\",reason=\"unknown_field\"} 1",
        "osproxy_directives_rejected_total{source=\"admin\",reason=\"conflict\"} 1",
        "osproxy_directives_rejected_total{source=\"admin\",reason=\"too_large\"} 1",
        "osproxy_directives_snapshot_reads_total 2",
        "# TYPE osproxy_directives_applied_revision gauge",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_guards_everything_under_admin_and_nothing_else() {
    let serve = Serve::start_with_env(
        &["serve", "--listen", "127.0.0.1:0"],
        &[("OSPROXY_ADMIN_TOKEN", "s3cret-token-of-at-least-32-chars")],
    );
    let http = json_client();
    let directives = serve.at("/admin/directives");
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Bearer s3cret-token-of-at-least-32-char"),
        Some("Bearer s3cret-token-of-at-least-32-chars-x"),
        Some("Basic s3cret-token-of-at-least-32-chars"),
    ] {
        let mut req = http.get(&directives);
        if let Some(a) = auth {
            req = req.header(AUTHORIZATION, a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.headers()[WWW_AUTHENTICATE], "Bearer");
        let (s, v) = json_answer(resp).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("unauthorized")),
            "{auth:?}"
        );
    }
    let refused = http
        .post(&directives)
        .body(set_body(&["a"], 60))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let unknown = http.get(serve.at("/admin/anything")).send().await.unwrap();
    assert_eq!(
        unknown.status(),
        StatusCode::UNAUTHORIZED,
        "no route probing without the token"
    );

    let ok = http
        .post(&directives)
        .bearer_auth("s3cret-token-of-at-least-32-chars")
        .body(set_body(&["a"], 60))
        .send()
        .await
        .unwrap();
    let (s, v) = json_answer(ok).await;
    assert_eq!(
        (s, v["revision"].as_i64()),
        (StatusCode::OK, Some(1)),
        "the refused POST applied nothing"
    );
    let (s, v) = json_answer(
        http.get(&directives)
            .bearer_auth("s3cret-token-of-at-least-32-chars")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, ids_of(&v)), (StatusCode::OK, vec!["a".to_owned()]));

    for open in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(
            http.get(serve.at(open)).send().await.unwrap().status(),
            StatusCode::OK,
            "{open}"
        );
    }
    let metrics = http
        .get(serve.at("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("osproxy_directives_admin_unauthorized_total 7"),
        "{metrics}"
    );
}

#[test]
fn non_loopback_addresses_need_a_token() {
    let r = run(&["serve", "--listen", "0.0.0.0:0"]);
    r.expect_code(2);
    assert!(
        r.stderr
            .contains("refusing to listen on non-loopback address 0.0.0.0:0 without a token"),
        "{r:?}"
    );
    run(&["serve", "--token", ""]).expect_code(2);
    run(&["serve", "--listen", "localhost"]).expect_code(2);
    let weak = run(&["serve", "--listen", "0.0.0.0:0", "--token", "t"]);
    weak.expect_code(2);
    assert!(weak.stderr.contains("at least 32 characters"), "{weak:?}");
    let token = "0123456789abcdef0123456789abcdef";
    let clear = run(&["serve", "--listen", "0.0.0.0:0", "--token", token]);
    clear.expect_code(2);
    assert!(clear.stderr.contains("in clear"), "{clear:?}");
    let serve = Serve::start_exact(&[
        "serve",
        "--listen",
        "0.0.0.0:0",
        "--token",
        token,
        "--insecure-http",
    ]);
    assert!(serve.url.starts_with("http://0.0.0.0:"), "{}", serve.url);
}

/// Sends `signal` to `serve` and asserts it exits 0 promptly (`context`
/// names the case in the failure, with the process's stderr).
#[allow(clippy::unwrap_used)] // a test helper: a failed kill fails the test
fn signal_exits_cleanly(serve: &mut Serve, signal: nix::sys::signal::Signal, context: &str) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(serve.proc.pid()).unwrap());
    nix::sys::signal::kill(pid, signal).unwrap();
    assert_eq!(
        serve.proc.wait_exit(PROMPTLY),
        Some(0),
        "{context}, {signal}: {}",
        serve.proc.stderr()
    );
}

#[test]
fn sigterm_and_sigint_stop_the_server_cleanly() {
    use nix::sys::signal::Signal;
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        let mut serve = Serve::start(&[]);
        let (status, _) = http_get(&serve.at("/healthz"));
        assert_eq!(status, 200);
        signal_exits_cleanly(&mut serve, signal, "after a request");
        serve.proc.wait_stderr("stopped");
    }
}

/// A signal sent the moment `listening on` is printed, before any request,
/// still shuts down gracefully: the handlers exist before the line does.
#[test]
fn a_signal_right_after_the_listening_line_still_stops_cleanly() {
    use nix::sys::signal::Signal;
    for round in 0..5 {
        for signal in [Signal::SIGTERM, Signal::SIGINT] {
            let mut serve = Serve::start(&[]);
            signal_exits_cleanly(&mut serve, signal, &format!("round {round}"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_publishes_and_reads_lose_no_write_and_the_last_wins() {
    let serve = Serve::start(&[]);
    let http = json_client();
    let url = serve.at("/admin/directives");
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (http, url) = (http.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let publish = http
                .post(&url)
                .body(set_body(&[&format!("w{i}")], 600))
                .send();
            let (s, v) = json_answer(publish.await.unwrap()).await;
            assert_eq!(s, StatusCode::OK, "{v}");
            let read = http.get(&url).send();
            let (s, seen) = json_answer(read.await.unwrap()).await;
            assert_eq!(s, StatusCode::OK);
            (i, v["revision"].as_i64().unwrap(), seen)
        }));
    }
    let mut by_revision = BTreeMap::new();
    let mut reads = Vec::new();
    for t in tasks {
        let (i, revision, seen) = t.await.unwrap();
        assert!(
            by_revision.insert(revision, format!("w{i}")).is_none(),
            "revision {revision} twice"
        );
        reads.push(seen);
    }
    let revisions: Vec<i64> = by_revision.keys().copied().collect();
    assert_eq!(
        revisions,
        (1..=200).collect::<Vec<_>>(),
        "every publish got its own revision"
    );
    // Every read saw a consistent pair: the set published at its revision.
    for seen in &reads {
        let revision = seen["revision"].as_i64().unwrap();
        assert_eq!(ids_of(seen), [by_revision[&revision].clone()], "{seen}");
    }
    let (_, last) = json_answer(http.get(&url).send().await.unwrap()).await;
    assert_eq!(last["revision"], 200);
    assert_eq!(
        ids_of(&last),
        [by_revision[&200].clone()],
        "the last write wins"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directive_values_never_reach_the_logs() {
    let serve = Serve::start_with_env(
        &["serve", "--listen", "127.0.0.1:0"],
        &[("RUST_LOG", "debug")],
    );
    let http = json_client();
    let url = serve.at("/admin/directives");
    let good = r#"{"directives":[{"id":"d1","level":"Shape","tenant":"tenant-secret-1","principal":"principal-secret-2","ttl_secs":60}]}"#;
    assert_eq!(
        http.post(&url).body(good).send().await.unwrap().status(),
        StatusCode::OK
    );
    let bad =
        r#"{"directives":[{"id":"d2","level":"Shape","tennant":"tenant-secret-3","ttl_secs":60}]}"#;
    assert_eq!(
        http.post(&url).body(bad).send().await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
    http.get(&url).send().await.unwrap();
    serve.proc.wait_stderr("admin publish rejected");
    let logs = serve.proc.stderr();
    assert!(logs.contains("admin publish accepted"), "{logs}");
    for secret in ["tenant-secret-1", "principal-secret-2", "tenant-secret-3"] {
        assert!(
            !logs.contains(secret),
            "{secret} leaked into the logs:\n{logs}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_mode_publishes_into_etcd_and_reports_staleness() {
    let cluster = tokio::task::spawn_blocking(EtcdCluster::single)
        .await
        .unwrap();
    let key = unique_key("http-fleet");
    let endpoints = endpoints_arg(&cluster);
    let serve = Serve::start(&[
        "--etcd",
        "--endpoints",
        &endpoints,
        "--key",
        &key,
        "--stale-after",
        "2s",
        "--progress-interval",
        "1s",
        "--request-timeout",
        "2s",
        "--connect-timeout",
        "2s",
    ]);
    assert!(serve.url.starts_with("http://127.0.0.1:"));
    let http = json_client();
    let url = serve.at("/admin/directives");

    let (s, v) = json_answer(
        http.post(&url)
            .body(set_body(&["a"], 600))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let revision = v["revision"].as_i64().unwrap();
    assert_eq!(mod_revision(&cluster, &key), revision, "written to etcd");
    assert!(cluster.get(&key).unwrap().contains("expires_at"));
    eventually(PROMPTLY, "the instance applies its own publish", || async {
        let (_, v) = json_answer(http.get(&url).send().await.unwrap()).await;
        v["revision"] == revision && ids_of(&v) == ["a"]
    })
    .await;

    // Compare-and-swap against etcd's revision.
    let stale = http
        .post(&url)
        .header(IF_MATCH, "1")
        .body(set_body(&["b"], 600));
    let (s, v) = json_answer(stale.send().await.unwrap()).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::PRECONDITION_FAILED, Some("conflict"))
    );
    let current = http
        .post(&url)
        .header(IF_MATCH, revision.to_string())
        .body(set_body(&["b"], 600));
    let (s, v) = json_answer(current.send().await.unwrap()).await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // A value another tool wrote is counted as rejected by the store.
    cluster.put(&key, "not json");
    eventually(
        PROMPTLY,
        "the store's rejection shows in the metrics",
        || async {
            let text = http
                .get(serve.at("/metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            text.contains(
                "osproxy_directives_rejected_total{source=\"etcd\",reason=\"malformed_json\"} 1",
            )
        },
    )
    .await;
    assert_eq!(
        http.get(serve.at("/readyz")).send().await.unwrap().status(),
        StatusCode::OK
    );

    // etcd goes away: not ready once staleness passes the bound; the last
    // good set keeps serving; publishes fail with 503.
    let member = cluster.member(0);
    tokio::task::block_in_place(|| member.kill());
    eventually(PROMPTLY, "/readyz answers 503", || async {
        http.get(serve.at("/readyz")).send().await.unwrap().status()
            == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    let (s, v) = json_answer(http.get(serve.at("/readyz")).send().await.unwrap()).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("not_ready"))
    );
    let (s, v) = json_answer(http.get(&url).send().await.unwrap()).await;
    assert_eq!(
        (s, ids_of(&v)),
        (StatusCode::OK, vec!["b".to_owned()]),
        "last good set serves"
    );
    let (s, v) = json_answer(
        http.post(&url)
            .body(set_body(&["c"], 60))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("etcd_unavailable"))
    );
    let metrics = http
        .get(serve.at("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("osproxy_directives_ready 0"), "{metrics}");

    // And ready again once etcd is back.
    tokio::task::block_in_place(|| member.restart());
    eventually(
        Duration::from_secs(30),
        "/readyz answers 200 again",
        || async { http.get(serve.at("/readyz")).send().await.unwrap().status() == StatusCode::OK },
    )
    .await;
    let (s, _) = json_answer(
        http.post(&url)
            .body(set_body(&["c"], 60))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "the publisher reconnects");
}

#[test]
fn serve_fails_fast_when_etcd_is_unreachable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("127.0.0.1:{port}");
    let r = run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--etcd",
        "--endpoints",
        &endpoint,
        "--connect-timeout",
        "1s",
    ]);
    r.expect_code(1);
    assert!(r.stderr.contains("cannot start the etcd store"), "{r:?}");
    assert!(r.stderr.contains(&endpoint), "{r:?}");
    let r = run(&[
        "serve",
        "--etcd",
        "--endpoints",
        "127.0.0.1:2379",
        "--stale-after",
        "1s",
        "--progress-interval",
        "2s",
    ]);
    r.expect_code(2);
    assert!(r.stderr.contains("progress interval"), "{r:?}");
    run(&["serve", "--instance-id", "x"]).expect_code(2);
}
