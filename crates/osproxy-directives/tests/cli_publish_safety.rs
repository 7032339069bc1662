//! Publishing never destroys and never lies, against a real etcd:
//! the exact bytes are checked before writing, key-layout edits never revive
//! another tool's `ttl_secs` directive, a CAS from an older `get` fails after
//! another operator's delete, leases are not left behind, one bad prefix key
//! does not hide the others, and long id lists are summarized.

mod common;

use common::*;

/// A body of `n` directives with `ttl_secs`, each with a tenant target
/// (about 95 bytes each; about 30 more each once canonical).
fn ttl_body(n: usize, ttl: u64) -> String {
    let list: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"id":"d{i:05}","level":"Shape","tenant":"tenant-of-the-fleet-{i:015}","ttl_secs":{ttl}}}"#
            )
        })
        .collect();
    format!(r#"{{"directives":[{}]}}"#, list.join(","))
}

#[test]
fn a_set_the_fleet_would_reject_once_canonical_is_refused_before_writing() {
    let cluster = shared_cluster();
    let key = unique_key("safety-large");
    // 9,000 directives with ttl_secs: under 1 MiB as given, over it once
    // every ttl_secs becomes a longer absolute expires_at.
    let body = ttl_body(9_000, 600);
    assert!(
        (800_000..1024 * 1024).contains(&body.len()),
        "{}",
        body.len()
    );
    let file = temp_file(body.as_bytes());
    let path = file.path().to_str().unwrap();
    // `validate` checks the form it would be published in, too.
    let v = run(&["validate", "--json", path]);
    v.expect_code(2);
    assert_eq!(v.json()["error"], "too_large", "{v:?}");

    for args in [
        &["publish", "--json", path][..],
        &["publish", "--dry-run", "--json", path],
    ] {
        let r = run_on(cluster, &key, args);
        r.expect_code(2);
        assert_eq!(r.json()["error"], "too_large", "{r:?}");
    }
    assert_eq!(mod_revision(cluster, &key), 0, "nothing was written");

    // The admin POST of a fleet-mode instance refuses it the same way.
    let endpoints = endpoints_arg(cluster);
    let serve = Serve::start(&["--etcd", "--endpoints", &endpoints, "--key", &key]);
    let (status, answer) = http_post(
        &serve.at("/admin/directives"),
        body.clone().into_bytes(),
        None,
    );
    assert_eq!(status, 413, "{answer}");
    assert!(answer.contains("\"too_large\""), "{answer}");
    assert_eq!(mod_revision(cluster, &key), 0, "nothing was written");

    // A large set that fits is published, and its 2,000 ids are summarized.
    let fits = temp_file(ttl_body(2_000, 600).as_bytes());
    let r = run_on(cluster, &key, &["publish", fits.path().to_str().unwrap()]);
    r.expect_code(0);
    assert!(
        r.stdout
            .contains("added d00000, d00001, d00002, d00003, d00004 and 1995 more"),
        "{r:?}"
    );
    assert!(r.stdout.len() < 300, "one short line: {r:?}");
}

#[test]
fn a_prefix_publish_over_the_txn_limit_is_a_permanent_error_and_writes_nothing() {
    let cluster = shared_cluster();
    let prefix = format!("{}/", unique_key("safety-ops"));
    let endpoints = endpoints_arg(cluster);
    // etcd allows 128 operations per transaction by default.
    let file = temp_file(ttl_body(200, 600).as_bytes());
    let r = run_prefix(
        &endpoints,
        &prefix,
        &["publish", "--json", file.path().to_str().unwrap()],
    );
    r.expect_code(2);
    assert_eq!(r.json()["error"], "etcd_too_many_ops", "{r:?}");
    let listed = cluster.etcdctl(&["get", "--prefix", &prefix, "--keys-only"]);
    assert!(listed.trim().is_empty(), "nothing written: {listed}");
}

#[test]
fn a_foreign_ttl_directive_that_expired_stays_expired_after_add() {
    let cluster = shared_cluster();
    let key = unique_key("safety-foreign");
    let endpoints = endpoints_arg(cluster);
    let serve = Serve::start(&["--etcd", "--endpoints", &endpoints, "--key", &key]);
    // Another tool writes a 1 s relative lifetime.
    let foreign = r#"{"directives":[{"id":"x","level":"Shape","capture":true,"ttl_secs":1}]}"#;
    cluster.put(&key, foreign);
    wait_until(PROMPTLY, "the instance applies x, then x expires", || {
        let (_, body) = http_get(&serve.at("/admin/directives"));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v["view"][0]["id"] == "x" && v["view"][0]["expired"] == true
    });

    // `get` does not invent an expiry counted from its own read.
    let got = run_on(cluster, &key, &["get"]);
    got.expect_code(0);
    let row = got.stdout.lines().find(|l| l.starts_with("x ")).unwrap();
    assert!(
        row.contains("ttl 1s, relative") && row.contains("unknown"),
        "{got:?}"
    );
    assert!(got.stdout.contains("relative lifetime"), "{got:?}");
    let json = run_on(cluster, &key, &["get", "--json"]);
    json.expect_code(0);
    assert_eq!(json.json()["directives"][0]["ttl_secs"], 1, "{json:?}");
    assert!(json.stderr.contains("warning:"), "{json:?}");

    // An edit would re-anchor it (every instance would count 1 s again):
    // refused, and nothing is written.
    let before = mod_revision(cluster, &key);
    let r = run_on(
        cluster,
        &key,
        &[
            "add", "--json", "--id", "y", "--level", "Shape", "--ttl", "1m",
        ],
    );
    r.expect_code(1);
    assert_eq!(r.json()["error"], "foreign_relative_lifetime", "{r:?}");
    run_on(cluster, &key, &["remove", "x"]).expect_code(1);
    assert_eq!(mod_revision(cluster, &key), before);
    assert_eq!(cluster.get(&key).as_deref(), Some(foreign));
    let (_, body) = http_get(&serve.at("/admin/directives"));
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["view"][0]["expired"], true, "still expired: {v}");
}

#[test]
fn key_layout_edits_drop_expired_directives() {
    let cluster = shared_cluster();
    let key = unique_key("safety-prune");
    let add = |id: &str, ttl: &str| {
        run_on(
            cluster,
            &key,
            &["add", "--id", id, "--level", "Shape", "--ttl", ttl],
        )
        .expect_code(0);
    };
    add("short", "1s");
    add("long", "10m");
    wait_until(PROMPTLY, "short expires", || {
        let r = run_on(cluster, &key, &["get"]);
        r.stdout
            .lines()
            .any(|l| l.starts_with("short ") && l.ends_with("expired"))
    });
    add("next", "10m");
    let got = run_on(cluster, &key, &["get", "--json"]);
    assert_eq!(ids_of(&got.json()), ["long", "next"], "{got:?}");
}

#[test]
fn a_cas_from_an_older_get_fails_after_another_operators_remove() {
    let cluster = shared_cluster();
    let prefix = format!("{}/", unique_key("safety-cas"));
    let endpoints = endpoints_arg(cluster);
    for id in ["a", "b"] {
        run_prefix(
            &endpoints,
            &prefix,
            &["add", "--id", id, "--level", "Shape", "--ttl", "10m"],
        )
        .expect_code(0);
    }
    // Operator A reads; operator B removes the *older* key.
    let got = run_prefix(&endpoints, &prefix, &["get", "--json"]);
    got.expect_code(0);
    let seen = revision_from_get(&got);
    let removed = run_prefix(&endpoints, &prefix, &["remove", "--json", "a"]);
    removed.expect_code(0);
    let removed_at = removed.json()["revision"].as_i64().unwrap();
    assert!(removed_at > seen);

    // A's edit of what it saw (a and b) must not undo B's remove.
    let file = temp_file(got.stdout.as_bytes());
    let path = file.path().to_str().unwrap();
    let seen_text = seen.to_string();
    let r = run_prefix(
        &endpoints,
        &prefix,
        &["publish", "--json", "--expect-revision", &seen_text, path],
    );
    r.expect_code(1);
    assert_eq!(r.json()["error"], "conflict", "{r:?}");
    let now = run_prefix(&endpoints, &prefix, &["get", "--json"]);
    assert_eq!(ids_of(&now.json()), ["b"]);
    // The live revision moved with the delete, and CAS against it works.
    assert_eq!(revision_from_get(&now), removed_at);
    let current = removed_at.to_string();
    run_prefix(
        &endpoints,
        &prefix,
        &["publish", "--expect-revision", &current, path],
    )
    .expect_code(0);
}

#[test]
fn ten_prefix_publishes_in_a_row_leave_no_lease_behind() {
    // Its own etcd: the lease list is cluster-wide.
    let cluster = EtcdCluster::single();
    let prefix = format!("{}/", unique_key("safety-leases"));
    let endpoints = endpoints_arg(&cluster);
    assert_eq!(lease_count(&cluster), 0);
    for round in 0..10u64 {
        // Each round changes every directive (a new lifetime), so each key
        // is rewritten under a new lease.
        let body = set_body(&["one", "two"], 600 + round * 60);
        let file = temp_file(body.as_bytes());
        run_prefix(
            &endpoints,
            &prefix,
            &["publish", file.path().to_str().unwrap()],
        )
        .expect_code(0);
        assert_eq!(
            lease_count(&cluster),
            1,
            "round {round}: only the lease of the live keys remains"
        );
    }
    // add and remove tidy the leases they replace too.
    run_prefix(
        &endpoints,
        &prefix,
        &["add", "--id", "one", "--level", "Shape", "--ttl", "2h"],
    )
    .expect_code(0);
    assert_eq!(lease_count(&cluster), 2, "one's new lease and two's");
    run_prefix(&endpoints, &prefix, &["remove", "two"]).expect_code(0);
    assert_eq!(lease_count(&cluster), 1, "two's lease went with it");
}

#[test]
fn one_malformed_prefix_key_does_not_hide_the_others() {
    let cluster = shared_cluster();
    let prefix = format!("{}/", unique_key("safety-bad-key"));
    let endpoints = endpoints_arg(cluster);
    run_prefix(
        &endpoints,
        &prefix,
        &["add", "--id", "good", "--level", "Shape", "--ttl", "10m"],
    )
    .expect_code(0);
    let bad = format!("{prefix}bad");
    cluster.put(
        &bad,
        r#"{"id":"bad","level":"Shape","tennant":"x","ttl_secs":60}"#,
    );
    let r = run_prefix(&endpoints, &prefix, &["get"]);
    r.expect_code(0);
    assert!(r.stdout.contains("1 directive"), "{r:?}");
    assert!(r.stdout.lines().any(|l| l.starts_with("good ")), "{r:?}");
    assert!(
        r.stdout.contains(&format!("key {bad} ")) && r.stdout.contains("(unknown_field)"),
        "{r:?}"
    );
    let json = run_prefix(&endpoints, &prefix, &["get", "--json"]);
    json.expect_code(0);
    assert_eq!(ids_of(&json.json()), ["good"]);
    assert!(json.stderr.contains("unknown_field"), "{json:?}");
}

#[test]
fn a_value_etcd_refuses_as_too_large_is_a_permanent_error_and_writes_nothing() {
    let etcd = SmallEtcd::start(64 * 1024);
    let key = unique_key("safety-etcd-large");
    // About 110 KiB once canonical: fine for the fleet, too large for etcd.
    let file = temp_file(ttl_body(1_000, 600).as_bytes());
    let r = run(&[
        "publish",
        "--json",
        "--endpoints",
        &etcd.endpoint,
        "--key",
        &key,
        file.path().to_str().unwrap(),
    ]);
    r.expect_code(2);
    assert_eq!(r.json()["error"], "etcd_value_too_large", "{r:?}");
    let got = run(&[
        "get",
        "--json",
        "--endpoints",
        &etcd.endpoint,
        "--key",
        &key,
    ]);
    got.expect_code(0);
    assert_eq!(revision_from_get(&got), 0, "nothing was written: {got:?}");
}
