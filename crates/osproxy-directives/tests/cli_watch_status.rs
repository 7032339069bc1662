//! `watch` (one line per change, with revisions, rejections shown) and
//! `status` (the fleet from the instances' leased reports: two `serve --etcd`
//! processes, one of which rejects a value written with etcdctl).

mod common;

use std::time::Duration;

use common::*;

#[test]
fn watch_prints_one_line_per_change_and_stops_after_count() {
    let cluster = shared_cluster();
    let key = unique_key("watch");
    let endpoints = endpoints_arg(cluster);
    let mut watch = Proc::spawn(&[
        "watch",
        "--count",
        "4",
        "--endpoints",
        &endpoints,
        "--key",
        &key,
    ]);
    watch.wait_stderr("watching");
    assert!(
        watch.stderr().contains("at revision 0: no directives"),
        "{}",
        watch.stderr()
    );

    run_on(
        cluster,
        &key,
        &["add", "--id", "a", "--level", "Shape", "--ttl", "10m"],
    )
    .expect_code(0);
    let line = watch.next_line(PROMPTLY);
    assert!(
        line.starts_with("revision ") && line.contains("1 directive; added a"),
        "{line}"
    );

    run_on(
        cluster,
        &key,
        &["add", "--id", "a", "--level", "ShapeTiming", "--ttl", "10m"],
    )
    .expect_code(0);
    let line = watch.next_line(PROMPTLY);
    assert!(line.contains("changed a"), "{line}");

    // A value another tool wrote that the fleet rejects: the last good set
    // keeps serving, and the line says why.
    cluster.put(
        &key,
        r#"{"directives":[{"id":"b","level":"Shape","tennant":"x","ttl_secs":60}]}"#,
    );
    let line = watch.next_line(PROMPTLY);
    assert!(line.contains("rejected unknown_field"), "{line}");
    assert!(line.contains("(directive 0)"), "{line}");
    assert!(line.contains("1 directive; no change"), "{line}");

    cluster.etcdctl(&["del", &key]);
    let line = watch.next_line(PROMPTLY);
    assert!(line.contains("no directives; removed a"), "{line}");
    let revision: i64 = line
        .strip_prefix("revision ")
        .and_then(|r| r.split(':').next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no revision in {line}"));
    assert!(revision > 0);
    assert_eq!(
        watch.wait_exit(PROMPTLY),
        Some(0),
        "--count 4 stops after 4 changes"
    );
}

#[test]
fn watch_json_lines_carry_revision_and_diff() {
    let cluster = shared_cluster();
    let key = unique_key("watch-json");
    let endpoints = endpoints_arg(cluster);
    let mut watch = Proc::spawn(&[
        "watch",
        "--json",
        "--count",
        "1",
        "--endpoints",
        &endpoints,
        "--key",
        &key,
    ]);
    watch.wait_stderr("watching");
    let r = run_on(
        cluster,
        &key,
        &[
            "add", "--id", "a", "--level", "Shape", "--ttl", "1m", "--json",
        ],
    );
    r.expect_code(0);
    let written = r.json()["revision"].as_i64().unwrap();
    let line = watch.next_line(PROMPTLY);
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["revision"], written);
    assert_eq!(v["added"], serde_json::json!(["a"]));
    assert_eq!(v["directives"], 1);
    assert_eq!(watch.wait_exit(PROMPTLY), Some(0));
}

#[test]
fn status_shows_who_runs_the_latest_revision_and_who_rejects_it() {
    let cluster = shared_cluster();
    let key = unique_key("status");
    let status_prefix = format!("{}/", unique_key("status-reports"));
    let endpoints = endpoints_arg(cluster);
    let serve = |id: &str, extra: &[&str]| {
        let mut args = vec![
            "--etcd",
            "--instance-id",
            id,
            "--status-prefix",
            &status_prefix,
            "--endpoints",
            &endpoints,
            "--key",
            &key,
        ];
        args.extend_from_slice(extra);
        Serve::start(&args)
    };
    // Decode limits are per instance: "b" caps lifetimes at one hour.
    let a = serve("a", &[]);
    let b = serve("b", &["--max-lifetime", "1h"]);

    // Another tool writes a set whose lifetime is two hours.
    cluster.put(&key, &set_body(&["two-hours"], 7_200));
    let latest = mod_revision(cluster, &key);
    let status = || {
        let r = run(&[
            "status",
            "--json",
            "--status-prefix",
            &status_prefix,
            "--endpoints",
            &endpoints,
            "--key",
            &key,
        ]);
        // 0 converged, 1 lagging, 3 rejecting: the exit code says it too.
        assert!([0, 1, 3].contains(&r.code), "{r:?}");
        let mut v = r.json();
        v["exit_code"] = r.code.into();
        v
    };
    let mut last = serde_json::Value::Null;
    wait_until(
        PROMPTLY,
        "both instances report the latest revision",
        || {
            last = status();
            last["total"] == 2
                && last["instances"].as_array().is_some_and(|a| {
                    a.iter()
                        .all(|i| i["applied_revision"].as_i64() >= Some(latest))
                })
        },
    );
    let v = last;
    assert_eq!(v["latest_revision"], latest, "{v}");
    assert_eq!(v["exit_code"], 3, "an instance rejects: {v}");
    assert_eq!(v["current"], 1, "{v}");
    assert_eq!(v["rejecting"], 1, "{v}");
    let instance = |id: &str| {
        v["instances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["instance"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} missing: {v}"))
    };
    assert_eq!(instance("a")["state"], "current");
    assert_eq!(instance("a")["directives"], 1);
    assert_eq!(instance("b")["state"], "rejecting");
    assert_eq!(instance("b")["rejected_reason"], "lifetime_too_long");
    assert_eq!(instance("b")["rejected_revision"], latest);

    let human = run(&[
        "status",
        "--status-prefix",
        &status_prefix,
        "--endpoints",
        &endpoints,
        "--key",
        &key,
    ]);
    human.expect_code(3);
    assert!(
        human
            .stderr
            .contains(&format!("1 instance(s) reject revision {latest}: b")),
        "{human:?}"
    );
    assert!(
        human.stdout.contains(&format!(
            "2 instances: 1 on revision {latest}, 0 lagging, 1 rejecting"
        )),
        "{human:?}"
    );
    let b_row = human.stdout.lines().find(|l| l.starts_with("b ")).unwrap();
    assert!(
        b_row.contains("rejecting") && b_row.contains("lifetime_too_long"),
        "{b_row}"
    );

    // The instance admin endpoints agree: "a" applies it, "b" keeps the empty set.
    let (_, on_a) = http_get(&a.at("/admin/directives"));
    let (_, on_b) = http_get(&b.at("/admin/directives"));
    assert!(on_a.contains("two-hours"), "{on_a}");
    assert!(!on_b.contains("two-hours"), "{on_b}");

    // A stopped instance disappears from the fleet once its lease ends.
    drop(b);
    wait_until(Duration::from_secs(30), "b's leased report expires", || {
        let v = status();
        v["total"] == 1 && v["exit_code"] == 0
    });
}

/// etcd's contents are untrusted: a target carrying terminal escapes and
/// forged instance reports (another instance's name, an escape sequence as
/// an id, a fake reason) reach no terminal raw; invalid reports are
/// ignored and listed as unreadable.
#[test]
fn values_from_etcd_reach_the_terminal_escaped_and_forged_reports_are_ignored() {
    let cluster = shared_cluster();
    let key = unique_key("hostile-terminal");
    let status_prefix = format!("{}/", unique_key("hostile-reports"));
    let hostile = "acme\u{1b}[2J\u{1b}[32mALL GOOD\u{202e}";
    let body = serde_json::json!({"directives": [
        {"id": "x", "level": "Shape", "tenant": hostile, "ttl_secs": 600}
    ]});
    cluster.put(&key, &body.to_string());
    let forged = |instance: &str, reason: &str| {
        serde_json::json!({
            "instance": instance, "applied_revision": 1, "directives": 1,
            "rejected_revision": 1, "rejected_reason": reason,
            "updated_unix_nanos": 1u64,
        })
        .to_string()
    };
    // Named after another instance; an escape as its id; a fake reason.
    cluster.put(&format!("{status_prefix}b"), &forged("a", "unsigned"));
    cluster.put(
        &format!("{status_prefix}c"),
        &forged("\u{1b}[2Jc", "unsigned"),
    );
    cluster.put(
        &format!("{status_prefix}d"),
        &forged("d", "\u{1b}[2JALL GOOD"),
    );
    let get = run_on(cluster, &key, &["get"]);
    get.expect_code(0);
    assert!(!get.stdout.contains('\u{1b}'), "{:?}", get.stdout);
    assert!(get.stdout.contains("\\u{1b}[2J"), "{:?}", get.stdout);
    assert!(!get.stdout.contains('\u{202e}'), "{:?}", get.stdout);
    let status = run_on(
        cluster,
        &key,
        &["status", "--status-prefix", &status_prefix],
    );
    assert!(!status.stdout.contains('\u{1b}'), "{status:?}");
    assert!(!status.stderr.contains('\u{1b}'), "{status:?}");
    assert!(status.stdout.contains("0 instances"), "{status:?}");
    let json = run_on(
        cluster,
        &key,
        &["status", "--json", "--status-prefix", &status_prefix],
    )
    .json();
    assert_eq!(json["total"], 0, "{json}");
    assert_eq!(
        json["unreadable"].as_array().map(Vec::len),
        Some(3),
        "{json}"
    );
}

/// `watch` through two endpoints, the first an etcd grpc-proxy whose
/// upstream connection then freezes: the proxy's own transport stays healthy
/// (HTTP/2 keepalive cannot tell), its watch falls silent and its reads
/// hang. The change feed must give it up for the second endpoint and report
/// a change written afterwards within its staleness bound, one backoff and
/// one request (its own settings: `stale_after` and `backoff_max` at the
/// library's defaults, `--request-timeout` below).
#[test]
fn watch_moves_past_a_grpc_proxy_whose_upstream_froze() {
    use osproxy_etcd::backoff::DEFAULT_BACKOFF_MAX;
    use osproxy_etcd::config::DEFAULT_STALE_AFTER;
    use osproxy_test_support::{EtcdProxy, TcpForwarder};

    let cluster = shared_cluster();
    let key = unique_key("watch-proxy-frozen");
    let upstream = TcpForwarder::start(cluster.member(0).client_addr());
    let proxy = EtcdProxy::start_for(vec![upstream.endpoint()]);
    let request_timeout = Duration::from_secs(2);
    let endpoints = format!("{},{}", proxy.endpoint(), endpoints_arg(cluster));
    let mut watch = Proc::spawn(&[
        "watch",
        "--count",
        "2",
        "--request-timeout",
        "2s",
        "--endpoints",
        &endpoints,
        "--key",
        &key,
    ]);
    watch.wait_stderr("watching");
    // Through the proxy while it is healthy.
    run_on(
        cluster,
        &key,
        &["add", "--id", "a", "--level", "Shape", "--ttl", "10m"],
    )
    .expect_code(0);
    let line = watch.next_line(PROMPTLY);
    assert!(line.contains("added a"), "{line}");

    upstream.freeze();
    run_on(
        cluster,
        &key,
        &["add", "--id", "b", "--level", "Shape", "--ttl", "10m"],
    )
    .expect_code(0);
    let bound = DEFAULT_STALE_AFTER + DEFAULT_BACKOFF_MAX + request_timeout;
    let line = watch.next_line(bound);
    assert!(line.contains("added b"), "{line}");
    // The frozen path cannot have carried it: the feed moved on.
    assert!(upstream.is_frozen());
    assert!(watch.stderr().contains("interrupted"), "{}", watch.stderr());
    upstream.thaw();
}

/// `publish --wait` gates on an instance whose first endpoint is a
/// grpc-proxy whose upstream connection then freezes: the instance's store
/// gives the proxy up for the second endpoint and reports the change written
/// afterwards within its staleness bound, one backoff and one request (the
/// instance's settings below), which is the publish's `--timeout`.
#[test]
fn publish_wait_sees_an_instance_move_past_a_grpc_proxy_whose_upstream_froze() {
    use osproxy_test_support::{EtcdProxy, TcpForwarder};

    let cluster = shared_cluster();
    let key = unique_key("wait-proxy-frozen");
    let status_prefix = format!("{}/", unique_key("wait-proxy-reports"));
    let upstream = TcpForwarder::start(cluster.member(0).client_addr());
    let proxy = EtcdProxy::start_for(vec![upstream.endpoint()]);
    let endpoints = format!("{},{}", proxy.endpoint(), endpoints_arg(cluster));
    let (stale_after, backoff_max, request_timeout) = (4, 2, 2);
    let _serve = Serve::start(&[
        "--etcd",
        "--instance-id",
        "behind-proxy",
        "--status-prefix",
        &status_prefix,
        "--endpoints",
        &endpoints,
        "--key",
        &key,
        "--stale-after",
        &format!("{stale_after}s"),
        "--progress-interval",
        "1s",
        "--backoff-max",
        &format!("{backoff_max}s"),
        "--request-timeout",
        &format!("{request_timeout}s"),
    ]);
    let status = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--status-prefix", &status_prefix]);
        run_on(cluster, &key, &all)
    };
    wait_until(PROMPTLY, "the instance reports through the proxy", || {
        status(&["status", "--json"]).json()["total"] == 1
    });

    upstream.freeze();
    let set = temp_file(set_body(&["after-freeze"], 600).as_bytes());
    let bound = format!("{}s", stale_after + backoff_max + request_timeout);
    let r = status(&[
        "publish",
        "--wait",
        "--timeout",
        &bound,
        set.path().to_str().unwrap(),
    ]);
    r.expect_code(0);
    assert!(upstream.is_frozen(), "the frozen path carried nothing");
    upstream.thaw();
}
