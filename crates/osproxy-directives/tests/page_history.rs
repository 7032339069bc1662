//! The page's history and rollback endpoints over HTTP on a running
//! `serve --etcd` (prefix layout here; the browser test covers the single
//! key): `GET /admin/history` with diffs, `POST /admin/rollback` with
//! compare-and-swap (409 on a moved live revision), 410 `compacted` naming
//! the oldest revision, and the stable errors for bad requests and for the
//! in-memory store.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::Value;

fn json_of(code_body: (u16, String)) -> (u16, Value) {
    let (code, body) = code_body;
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    (code, v)
}

fn rollback(serve: &Serve, body: &str) -> (u16, Value) {
    json_of(http_post(
        &serve.at("/admin/rollback"),
        body.as_bytes().to_vec(),
        None,
    ))
}

fn publish(serve: &Serve, ids: &[&str]) -> i64 {
    let (code, v) = json_of(http_post(
        &serve.at("/admin/directives"),
        set_body(ids, 600).into_bytes(),
        None,
    ));
    assert_eq!(code, 200, "{v}");
    v["revision"].as_i64().unwrap()
}

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn history_rollback_conflict_and_compaction_in_the_prefix_layout() {
    let cluster = EtcdCluster::single();
    let prefix = format!("{}/", unique_key("page-history"));
    let endpoints = endpoints_arg(&cluster);
    let serve = Serve::start(&["--etcd", "--endpoints", &endpoints, "--prefix", &prefix]);
    let r1 = publish(&serve, &["a", "b"]);
    wait_until(PROMPTLY, "the instance applies r1", || {
        let (_, v) = json_of(http_get(&serve.at("/admin/page")));
        v["revision"].as_i64() >= Some(r1)
    });
    let r2 = publish(&serve, &["b", "c"]);

    let (code, h) = json_of(http_get(&serve.at("/admin/history")));
    assert_eq!(code, 200, "{h}");
    assert_eq!(h["live_revision"], r2);
    let entries = h["entries"].as_array().unwrap();
    assert_eq!(entries[0]["revision"], r2, "{h}");
    assert_eq!(ids(&entries[0]["directives"]), ["b", "c"]);
    assert_eq!(ids(&entries[0]["changes"]["added"]), ["c"]);
    assert_eq!(ids(&entries[0]["changes"]["removed"]), ["a"]);
    assert_eq!(entries[1]["revision"], r1);
    assert_eq!(entries[0]["note"], "recorded");
    assert!(entries[0]["published_at"].is_string(), "{h}");

    // A stale expected revision: 409, nothing written.
    let (code, v) = rollback(
        &serve,
        &format!(r#"{{"to":{r1},"expected_revision":{r1}}}"#),
    );
    assert_eq!((code, v["error"].as_str()), (409, Some("conflict")), "{v}");
    let (_, h) = json_of(http_get(&serve.at("/admin/history?limit=1")));
    assert_eq!(h["live_revision"], r2, "nothing was written");
    // An expected revision above the live one, to a set equal to the live
    // one: still a conflict, not a silent "rolled back".
    let (code, v) = rollback(
        &serve,
        &format!(r#"{{"to":{r2},"expected_revision":{}}}"#, r2 + 5),
    );
    assert_eq!((code, v["error"].as_str()), (409, Some("conflict")), "{v}");
    // Paged: one entry at a time, `next_before` continues.
    let (_, page1) = json_of(http_get(&serve.at("/admin/history?limit=1")));
    assert_eq!(page1["entries"][0]["revision"], r2, "{page1}");
    assert_eq!(page1["more"], true, "{page1}");
    let next = page1["next_before"].as_i64().unwrap();
    let (_, page2) = json_of(http_get(
        &serve.at(&format!("/admin/history?limit=1&before={next}")),
    ));
    assert_eq!(page2["entries"][0]["revision"], r1, "{page2}");

    // Over the live revision: the set as of r1 is back.
    let (code, v) = rollback(
        &serve,
        &format!(r#"{{"to":{r1},"expected_revision":{r2}}}"#),
    );
    assert_eq!(
        (code, v["outcome"].as_str()),
        (200, Some("rolled_back")),
        "{v}"
    );
    let r3 = v["revision"].as_i64().unwrap();
    assert!(r3 > r2);
    assert_eq!(ids(&v["changes"]["added"]), ["a"]);
    assert_eq!(ids(&v["changes"]["removed"]), ["c"]);
    wait_until(PROMPTLY, "the instance applies the rollback", || {
        let (_, v) = json_of(http_get(&serve.at("/admin/page")));
        v["directives"]
            .as_array()
            .is_some_and(|d| d.iter().map(|d| d["id"].clone()).collect::<Vec<_>>() == ["a", "b"])
    });
    let (_, h) = json_of(http_get(&serve.at("/admin/history?limit=1")));
    assert_eq!(h["entries"][0]["author"], "loopback-unauthenticated", "{h}");
    assert_eq!(
        h["entries"][0]["reason"],
        Value::String(format!("rollback to {r1}"))
    );
    assert_eq!(h["more"], true);

    // Compacted: 410 naming the oldest revision still there.
    cluster.compact(r3);
    let (code, v) = rollback(
        &serve,
        &format!(r#"{{"to":{r1},"expected_revision":{r3}}}"#),
    );
    assert_eq!((code, v["error"].as_str()), (410, Some("compacted")), "{v}");
    assert_eq!(v["oldest"], r3, "{v}");
    let (code, h) = json_of(http_get(&serve.at("/admin/history")));
    assert_eq!(code, 200, "{h}");
    assert_eq!(h["compacted"], r3, "{h}");

    // Bad requests.
    for body in [
        "",
        "{}",
        r#"{"to":1}"#,
        r#"{"to":1,"expected_revision":2,"extra":true}"#,
        r#"{"to":"1","expected_revision":2}"#,
    ] {
        let (code, v) = rollback(&serve, body);
        assert_eq!(
            (code, v["error"].as_str()),
            (400, Some("invalid_rollback")),
            "{body}"
        );
    }
    let (code, v) = rollback(
        &serve,
        r#"{"to":1,"expected_revision":2,"reason":"a\u0001b"}"#,
    );
    assert_eq!(
        (code, v["error"].as_str()),
        (400, Some("invalid_reason")),
        "{v}"
    );
    let (code, v) = rollback(
        &serve,
        &format!(r#"{{"to":{},"expected_revision":{r3}}}"#, r3 + 1000),
    );
    assert_eq!(
        (code, v["error"].as_str()),
        (404, Some("no_such_revision")),
        "{v}"
    );
    for limit in ["0", "x", "201"] {
        let (code, v) = json_of(http_get(
            &serve.at(&format!("/admin/history?limit={limit}")),
        ));
        assert_eq!(
            (code, v["error"].as_str()),
            (400, Some("invalid_limit")),
            "{limit}"
        );
    }
}

#[test]
fn the_in_memory_store_has_no_history() {
    let serve = Serve::start(&[]);
    let (code, v) = json_of(http_get(&serve.at("/admin/history")));
    assert_eq!(
        (code, v["error"].as_str()),
        (404, Some("no_history")),
        "{v}"
    );
    let (code, v) = rollback(&serve, r#"{"to":1,"expected_revision":1}"#);
    assert_eq!(
        (code, v["error"].as_str()),
        (404, Some("no_history")),
        "{v}"
    );
}
