//! `publish` against a real etcd: validation first, absolute expiries,
//! compare-and-swap (stale revision → conflict, exit 1), dry-run diffs, a
//! rejected live value replaced whole, and both layouts.

mod common;

use common::*;

#[allow(clippy::unwrap_used)] // a test helper: a failure fails the test
fn publish_file(cluster: &EtcdCluster, key: &str, body: &str, extra: &[&str]) -> Run {
    let file = temp_file(body.as_bytes());
    let mut args = vec!["publish", file.path().to_str().unwrap()];
    args.extend_from_slice(extra);
    run_on(cluster, key, &args)
}

#[test]
fn publish_writes_the_canonical_form_with_absolute_expiries() {
    let cluster = shared_cluster();
    let key = unique_key("publish");
    let r = publish_file(cluster, &key, &set_body(&["a", "b"], 600), &["--json"]);
    r.expect_code(0);
    let v = r.json();
    assert_eq!(v["added"], serde_json::json!(["a", "b"]));
    assert_eq!(v["previous_revision"], 0);
    let revision = v["revision"].as_i64().unwrap();
    assert!(revision > 0);

    let stored = cluster.get(&key).expect("the key is written");
    assert!(stored.contains("expires_at"), "{stored}");
    assert!(
        !stored.contains("ttl_secs"),
        "ttl converted to an absolute expiry: {stored}"
    );

    // `get --json` prints exactly what is stored, and it re-publishes verbatim.
    let got = run_on(cluster, &key, &["get", "--json"]);
    got.expect_code(0);
    assert_eq!(got.stdout.trim(), stored.trim());
    assert!(
        got.stderr.contains(&format!("revision {revision}")),
        "{got:?}"
    );
    let again = publish_file(cluster, &key, got.stdout.trim(), &["--json"]);
    again.expect_code(0);
    let v = again.json();
    assert_eq!(v["unchanged"], 2, "re-publishing extends nothing: {v}");
    assert_eq!(cluster.get(&key).unwrap().trim(), stored.trim());
}

#[test]
fn a_stale_expected_revision_is_a_conflict_and_writes_nothing() {
    let cluster = shared_cluster();
    let key = unique_key("conflict");
    publish_file(cluster, &key, &set_body(&["a"], 600), &[]).expect_code(0);
    let before = cluster.get(&key);

    let r = publish_file(
        cluster,
        &key,
        &set_body(&["b"], 600),
        &["--expect-revision", "1"],
    );
    r.expect_code(1);
    assert!(r.stderr.contains("revision conflict"), "{r:?}");
    assert_eq!(cluster.get(&key), before, "nothing written");

    // Someone else wrote in between: the revision an operator saw is stale.
    let seen = run_on(cluster, &key, &["get", "--json"]);
    let seen_revision = seen
        .stderr
        .trim()
        .strip_prefix("revision ")
        .unwrap()
        .to_owned();
    cluster.put(&key, &set_body(&["other"], 600));
    let r = publish_file(
        cluster,
        &key,
        &set_body(&["b"], 600),
        &["--expect-revision", &seen_revision, "--json"],
    );
    r.expect_code(1);
    let v = r.json();
    assert_eq!(v["error"], "conflict", "{v}");
    assert!(cluster.get(&key).unwrap().contains("other"));

    // Expect-revision 0: only when nothing is published yet.
    let r = publish_file(
        cluster,
        &key,
        &set_body(&["b"], 600),
        &["--expect-revision", "0"],
    );
    r.expect_code(1);
    let fresh = unique_key("conflict-fresh");
    publish_file(
        cluster,
        &fresh,
        &set_body(&["b"], 600),
        &["--expect-revision", "0"],
    )
    .expect_code(0);
}

#[test]
fn dry_run_shows_the_diff_and_writes_nothing() {
    let cluster = shared_cluster();
    let key = unique_key("dry-run");
    publish_file(
        cluster,
        &key,
        &set_body(&["keep", "change", "drop"], 600),
        &[],
    )
    .expect_code(0);
    let before = cluster.get(&key);
    let next = r#"{"directives":[
        {"id":"keep","level":"ShapeTiming","tenant":"t-keep","expires_at":"2099-01-01T00:00:00Z"},
        {"id":"change","level":"Shape","tenant":"t-change","ttl_secs":600},
        {"id":"new","level":"Shape","ttl_secs":600}]}"#;
    let r = publish_file(
        cluster,
        &key,
        next,
        &["--dry-run", "--max-lifetime", "36500d"],
    );
    r.expect_code(0);
    assert!(r.stdout.contains("dry run"), "{r:?}");
    assert!(r.stdout.contains("added new"), "{r:?}");
    assert!(r.stdout.contains("changed change, keep"), "{r:?}");
    assert!(r.stdout.contains("removed drop"), "{r:?}");
    assert_eq!(cluster.get(&key), before, "a dry run writes nothing");
}

#[test]
fn invalid_input_is_refused_before_connecting() {
    // No etcd listens here: validation must fail first, with exit 2.
    let file =
        temp_file(br#"{"directives":[{"id":"a","level":"Shape","tennant":"x","ttl_secs":5}]}"#);
    let r = run(&[
        "publish",
        file.path().to_str().unwrap(),
        "--endpoints",
        "127.0.0.1:1",
        "--json",
    ]);
    r.expect_code(2);
    let v = r.json();
    assert_eq!(v["error"], "unknown_field");
    assert_eq!(v["directive_index"], 0);
}

#[test]
fn an_unreachable_etcd_is_a_runtime_failure() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("127.0.0.1:{port}");
    let file = temp_file(set_body(&["a"], 60).as_bytes());
    let r = run(&[
        "publish",
        file.path().to_str().unwrap(),
        "--endpoints",
        &endpoint,
        "--connect-timeout",
        "1s",
    ]);
    r.expect_code(1);
    assert!(r.stderr.contains("cannot reach etcd"), "{r:?}");
    assert!(r.stderr.contains(&endpoint), "names the endpoint: {r:?}");
    let bad = run(&[
        "publish",
        file.path().to_str().unwrap(),
        "--endpoints",
        "not an endpoint",
    ]);
    bad.expect_code(2);
    assert!(bad.stderr.contains("invalid etcd settings"), "{bad:?}");
}

#[test]
fn a_rejected_live_value_is_replaced_whole() {
    let cluster = shared_cluster();
    let key = unique_key("malformed");
    cluster.put(
        &key,
        r#"{"directives":[{"id":"x","level":"Shape","tennant":"acme","ttl_secs":60}]}"#,
    );
    let got = run_on(cluster, &key, &["get", "--json"]);
    got.expect_code(1);
    assert_eq!(got.json()["error"], "malformed_live_value");
    let human = run_on(cluster, &key, &["get"]);
    assert!(
        human.stderr.contains("unknown_field"),
        "names the reason: {human:?}"
    );
    assert!(
        !human.stderr.contains("acme"),
        "no value is echoed: {human:?}"
    );

    let r = publish_file(cluster, &key, &set_body(&["a"], 60), &[]);
    r.expect_code(0);
    assert!(r.stdout.contains("rejected (unknown_field)"), "{r:?}");
    run_on(cluster, &key, &["get"]).expect_code(0);
}

#[test]
fn prefix_layout_publish_replaces_the_keys_with_leases() {
    let cluster = shared_cluster();
    let prefix = format!("{}/", unique_key("prefix-publish"));
    let endpoints = endpoints_arg(cluster);
    let publish = |body: &str| {
        let file = temp_file(body.as_bytes());
        run(&[
            "publish",
            file.path().to_str().unwrap(),
            "--prefix",
            &prefix,
            "--endpoints",
            &endpoints,
        ])
    };
    publish(&set_body(&["a", "b"], 600)).expect_code(0);
    let keys = cluster.etcdctl(&["get", "--prefix", "--keys-only", &prefix]);
    assert!(
        keys.contains(&format!("{prefix}a")) && keys.contains(&format!("{prefix}b")),
        "{keys}"
    );
    let value = cluster.get(&format!("{prefix}a")).unwrap();
    assert!(
        value.starts_with('{') && value.contains("expires_at") && !value.contains("directives"),
        "{value}"
    );
    let json = cluster.etcdctl(&["get", &format!("{prefix}a"), "-w", "json"]);
    assert!(json.contains("\"lease\":"), "bound to a lease: {json}");

    publish(&set_body(&["b", "c"], 600)).expect_code(0);
    let keys = cluster.etcdctl(&["get", "--prefix", "--keys-only", &prefix]);
    assert!(
        !keys.contains(&format!("{prefix}a")),
        "a is deleted: {keys}"
    );
    assert!(keys.contains(&format!("{prefix}c")), "{keys}");

    let got = run(&[
        "get",
        "--json",
        "--prefix",
        &prefix,
        "--endpoints",
        &endpoints,
    ]);
    got.expect_code(0);
    assert_eq!(ids_of(&got.json()), ["b", "c"]);
}
