//! Rollouts an operator can trust, against a real etcd and real
//! `serve` instances: a write whose answer is lost is reported as an unknown
//! outcome and nothing is cleaned up; `status` sees an instance that missed
//! a delete; `status --wait` / `publish --wait` gate on convergence with exit
//! codes 0, 1 and 3 in bounded time; the admin ETag survives deletes; `watch`
//! resumes after its connection is cut and after compaction.

mod common;

use std::time::Duration;

use common::*;
use osproxy_core::{Clock, SystemClock};
use osproxy_test_support::TcpForwarder;

/// `serve --etcd` on the prefix layout, reporting as `id`.
fn instance(id: &str, endpoints: &str, prefix: &str, status: &str, extra: &[&str]) -> Serve {
    let mut args = vec![
        "--etcd",
        "--instance-id",
        id,
        "--status-prefix",
        status,
        "--status-lease-ttl",
        "60s",
        "--endpoints",
        endpoints,
        "--prefix",
        prefix,
    ];
    args.extend_from_slice(extra);
    Serve::start(&args)
}

fn has_key(cluster: &EtcdCluster, key: &str) -> bool {
    !cluster
        .etcdctl(&["get", key, "--keys-only"])
        .trim()
        .is_empty()
}

#[test]
fn a_publish_whose_answer_is_lost_is_an_unknown_outcome_and_keeps_its_keys() {
    let cluster = shared_cluster();
    let prefix = format!("{}/", unique_key("gate-unknown"));
    let direct = endpoints_arg(cluster);
    let old = temp_file(set_body(&["old"], 600).as_bytes());
    run_prefix(&direct, &prefix, &["publish", old.path().to_str().unwrap()]).expect_code(0);
    let before = revision_from_get(&run_prefix(&direct, &prefix, &["get", "--json"]));

    // The publish's transaction reaches etcd; its answer never comes back.
    let forwarder = TcpForwarder::start(cluster.member(0).client_addr());
    forwarder.hold_replies_after(b"cut-me-1");
    let new = temp_file(set_body(&["cut-me-1"], 600).as_bytes());
    let endpoint = forwarder.endpoint();
    let mut publish = Proc::spawn(&[
        "publish",
        "--json",
        "--request-timeout",
        "30s",
        "--endpoints",
        &endpoint,
        "--prefix",
        &prefix,
        new.path().to_str().unwrap(),
    ]);
    let written = format!("{prefix}cut-me-1");
    wait_until(PROMPTLY, "etcd committed the transaction", || {
        has_key(cluster, &written)
    });
    assert!(forwarder.replies_held());
    forwarder.cut();
    assert_eq!(publish.wait_exit(PROMPTLY), Some(4), "{}", publish.stderr());
    let line = publish.next_line(PROMPTLY);
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["error"], "outcome_unknown", "{v}");
    assert_eq!(v["revision_before"], before, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("outcome unknown"),
        "{v}"
    );
    forwarder.release_replies();

    // Nothing was cleaned up: the new key and its lease are in place.
    assert!(has_key(cluster, &written), "the published key survives");
    let got = run_prefix(&direct, &prefix, &["get", "--json"]);
    assert_eq!(ids_of(&got.json()), ["cut-me-1"]);
    assert!(revision_from_get(&got) > before);

    // The admin POST answers 504 with the same information.
    let prefix2 = format!("{}/", unique_key("gate-unknown-http"));
    let forwarder2 = TcpForwarder::start(cluster.member(0).client_addr());
    let endpoint2 = forwarder2.endpoint();
    let serve = Serve::start(&["--etcd", "--endpoints", &endpoint2, "--prefix", &prefix2]);
    forwarder2.hold_replies_after(b"cut-me-2");
    let url = serve.at("/admin/directives");
    let post = std::thread::spawn(move || {
        http_post(&url, set_body(&["cut-me-2"], 600).into_bytes(), None)
    });
    let written2 = format!("{prefix2}cut-me-2");
    wait_until(PROMPTLY, "etcd committed the admin publish", || {
        has_key(cluster, &written2)
    });
    forwarder2.cut();
    let (status, body) = post.join().unwrap();
    assert_eq!(status, 504, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"], "outcome_unknown", "{v}");
    assert_eq!(v["revision_before"], 0, "{v}");
    forwarder2.release_replies();
    assert!(has_key(cluster, &written2));
}

#[test]
fn status_sees_a_missed_delete_and_wait_gates_on_convergence_and_rejection() {
    let cluster = shared_cluster();
    let prefix = format!("{}/", unique_key("gate-status"));
    let status_prefix = format!("{}/", unique_key("gate-status-reports"));
    let direct = endpoints_arg(cluster);
    let forwarder = TcpForwarder::start(cluster.member(0).client_addr());
    let a = instance(
        "a",
        &direct,
        &prefix,
        &status_prefix,
        &["--max-lifetime", "1h"],
    );
    let _b = instance("b", &forwarder.endpoint(), &prefix, &status_prefix, &[]);
    let fleet = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--status-prefix", &status_prefix]);
        run_prefix(&direct, &prefix, &all)
    };
    wait_until(PROMPTLY, "both instances report", || {
        fleet(&["status", "--json"]).json()["total"] == 2
    });

    // A rollout gated on convergence.
    let set = temp_file(set_body(&["one", "two"], 600).as_bytes());
    let path = set.path().to_str().unwrap();
    let r = fleet(&["publish", "--wait", "--timeout", "20s", path]);
    r.expect_code(0);
    assert!(r.stdout.contains("2 instances: 2 on revision"), "{r:?}");

    // b misses a delete.
    forwarder.freeze();
    let removed = run_prefix(&direct, &prefix, &["remove", "--json", "one"]);
    removed.expect_code(0);
    let removed_at = removed.json()["revision"].as_i64().unwrap();
    wait_until(PROMPTLY, "a applied the delete", || {
        let r = fleet(&["status", "--json"]);
        r.json()["current"] == 1
    });
    let r = fleet(&["status", "--json"]);
    r.expect_code(1);
    let v = r.json();
    assert_eq!(v["latest_revision"], removed_at, "{v}");
    let state = |v: &serde_json::Value, id: &str| {
        v["instances"]
            .as_array()
            .and_then(|a| a.iter().find(|i| i["instance"] == id))
            .map(|i| i["state"].clone())
            .unwrap_or_default()
    };
    assert_eq!(state(&v, "a"), "current", "{v}");
    assert_eq!(state(&v, "b"), "lagging", "{v}");
    let started = SystemClock.now();
    let r = fleet(&["status", "--wait", "--timeout", "1s"]);
    r.expect_code(1);
    assert!(SystemClock.now().saturating_duration_since(started) < Duration::from_secs(10));
    assert!(
        r.stderr.contains("not current as of revision") && r.stderr.contains(": b"),
        "{r:?}"
    );

    // Once b catches up, the wait ends with 0.
    forwarder.thaw();
    fleet(&["status", "--wait", "--timeout", "30s"]).expect_code(0);
    // An instance that starts after the delete (it reads, it sees no delete
    // event) is current too.
    let _c = instance("c", &direct, &prefix, &status_prefix, &[]);
    wait_until(PROMPTLY, "c reports", || {
        fleet(&["status", "--json"]).json()["total"] == 3
    });
    let r = fleet(&["status", "--wait", "--timeout", "30s"]);
    r.expect_code(0);
    assert!(r.stdout.contains("3 instances: 3 on revision"), "{r:?}");

    // The ETag of an instance survives the delete: If-Match on it works,
    // an ETag from before the delete does not.
    let (_, etag, _) = http_get_etag(&a.at("/admin/directives"));
    let etag = etag.expect("an ETag");
    assert_eq!(
        etag.trim_matches('"')
            .parse::<i64>()
            .ok()
            .map(|e| e >= removed_at),
        Some(true)
    );
    let stale = (removed_at - 1).to_string();
    let body = set_body(&["three"], 600).into_bytes();
    let (code, answer) = http_post(&a.at("/admin/directives"), body.clone(), Some(&stale));
    assert_eq!(code, 412, "{answer}");
    let (code, answer) = http_post(&a.at("/admin/directives"), body, Some(&etag));
    assert_eq!(code, 200, "{answer}");

    // A set that a rejects ends the wait with 3, naming it.
    let long = temp_file(set_body(&["two-hours"], 7_200).as_bytes());
    let started = SystemClock.now();
    let r = fleet(&[
        "publish",
        "--wait",
        "--timeout",
        "30s",
        long.path().to_str().unwrap(),
    ]);
    r.expect_code(3);
    assert!(SystemClock.now().saturating_duration_since(started) < Duration::from_secs(30));
    assert!(
        r.stderr.contains("reject revision") && r.stderr.contains(": a"),
        "{r:?}"
    );
    fleet(&["status"]).expect_code(3);
    // With --json, one object: the write (ttl_secs anchored anew) and the verdict.
    let r = fleet(&[
        "publish",
        "--wait",
        "--json",
        "--timeout",
        "30s",
        long.path().to_str().unwrap(),
    ]);
    r.expect_code(3);
    let v = r.json();
    assert_eq!(v["written"], true, "{v}");
    assert_eq!(v["wait"]["verdict"], "rejecting", "{v}");
    assert_eq!(v["wait"]["rejecting"], serde_json::json!(["a"]), "{v}");
}

#[test]
fn watch_resumes_after_a_cut_and_after_compaction() {
    // Its own etcd: this test compacts.
    let cluster = EtcdCluster::single();
    let prefix = format!("{}/", unique_key("gate-watch"));
    let direct = endpoints_arg(&cluster);
    let forwarder = TcpForwarder::start(cluster.member(0).client_addr());
    let mut watch = Proc::spawn(&[
        "watch",
        "--endpoints",
        &forwarder.endpoint(),
        "--prefix",
        &prefix,
    ]);
    watch.wait_stderr("watching");
    let add = |id: &str| {
        run_prefix(
            &direct,
            &prefix,
            &["add", "--id", id, "--level", "Shape", "--ttl", "10m"],
        )
        .expect_code(0);
    };
    add("x");
    assert!(watch.next_line(PROMPTLY).contains("added x"));

    // The stream ends: the watch resumes from the next revision.
    forwarder.cut();
    add("y");
    let line = watch.next_line(PROMPTLY);
    assert!(line.contains("added y"), "{line}");

    // Missed changes compacted away: a fresh read reports them.
    forwarder.freeze();
    add("z");
    cluster.compact(cluster.revision());
    forwarder.cut();
    forwarder.thaw();
    let line = watch.next_line(PROMPTLY);
    assert!(line.contains("added z"), "{line}");
    assert!(
        watch.stderr().contains("watch resumed"),
        "{}",
        watch.stderr()
    );
    add("w");
    assert!(watch.next_line(PROMPTLY).contains("added w"));
}
