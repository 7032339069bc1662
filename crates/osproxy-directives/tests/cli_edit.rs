//! `add`, `remove` and `get` against a real etcd, in both layouts: every
//! field flag, replacement by id, lifetimes shown, leases in the prefix
//! layout, and the error paths (bad flags → 2, missing id → 1).

mod common;

use common::*;
use osproxy_core::{Clock, SystemClock};
use osproxy_observe::format_rfc3339;
use serde_json::json;

#[test]
fn add_with_every_field_then_get_and_remove() {
    let cluster = shared_cluster();
    let key = unique_key("edit");
    let r = run_on(
        cluster,
        &key,
        &[
            "add",
            "--id",
            "full",
            "--level",
            "ShapeRewriteDiff",
            "--tenant",
            "acme",
            "--index",
            "logs-1",
            "--principal",
            "svc",
            "--endpoint",
            "Search",
            "--sample-per-mille",
            "250",
            "--ring-buffer",
            "--capture",
            "--ttl",
            "10m",
            "--json",
        ],
    );
    r.expect_code(0);
    let v = r.json();
    assert_eq!(v["id"], "full");
    assert_eq!(v["replaced"], false);
    let first = v["revision"].as_i64().unwrap();

    let got = run_on(cluster, &key, &["get", "--json"]);
    got.expect_code(0);
    let set = got.json();
    let d = &set["directives"][0];
    for (field, want) in [
        ("id", json!("full")),
        ("level", json!("ShapeRewriteDiff")),
        ("tenant", json!("acme")),
        ("index", json!("logs-1")),
        ("principal", json!("svc")),
        ("endpoint", json!("Search")),
        ("sample_per_mille", json!(250)),
        ("ring_buffer", json!(true)),
        ("capture", json!(true)),
    ] {
        assert_eq!(d[field], want, "{field}: {set}");
    }
    assert!(
        d["expires_at"].is_string() && d.get("ttl_secs").is_none(),
        "{set}"
    );

    // A second directive with an absolute expiry, then a replacement by id.
    let tomorrow = format_rfc3339(SystemClock.unix_nanos() + 86_400 * 1_000_000_000);
    run_on(
        cluster,
        &key,
        &[
            "add",
            "--id",
            "second",
            "--level",
            "Shape",
            "--expires-at",
            &tomorrow,
        ],
    )
    .expect_code(0);
    let r = run_on(
        cluster,
        &key,
        &[
            "add", "--id", "full", "--level", "Shape", "--ttl", "30s", "--json",
        ],
    );
    r.expect_code(0);
    assert_eq!(r.json()["replaced"], true);
    assert!(r.json()["revision"].as_i64().unwrap() > first);

    let table = run_on(cluster, &key, &["get"]);
    table.expect_code(0);
    assert!(table.stdout.contains("2 directives"), "{table:?}");
    assert!(table.stdout.contains("REMAINING"), "{table:?}");
    let full_row = table
        .stdout
        .lines()
        .find(|l| l.starts_with("full "))
        .unwrap();
    assert!(
        full_row.ends_with("s"),
        "remaining lifetime shown: {full_row}"
    );

    let r = run_on(cluster, &key, &["remove", "full"]);
    r.expect_code(0);
    assert!(r.stdout.starts_with("removed full at revision"), "{r:?}");
    let got = run_on(cluster, &key, &["get", "--json"]);
    assert_eq!(ids_of(&got.json()), ["second"]);

    let r = run_on(cluster, &key, &["remove", "full", "--json"]);
    r.expect_code(1);
    assert_eq!(r.json()["error"], "not_found");
}

#[test]
fn bad_flags_are_usage_errors_and_write_nothing() {
    let cluster = shared_cluster();
    let key = unique_key("edit-bad");
    let cases: [(&[&str], &str); 8] = [
        (
            &["--id", "a", "--level", "Loud", "--ttl", "1m"],
            "invalid_level",
        ),
        (
            &["--id", "a b", "--level", "Shape", "--ttl", "1m"],
            "invalid_id",
        ),
        (
            &[
                "--id",
                "a",
                "--level",
                "Shape",
                "--endpoint",
                "Nope",
                "--ttl",
                "1m",
            ],
            "invalid_endpoint",
        ),
        (
            &[
                "--id",
                "a",
                "--level",
                "Shape",
                "--sample-per-mille",
                "1001",
                "--ttl",
                "1m",
            ],
            "sample_out_of_range",
        ),
        (
            &["--id", "a", "--level", "Shape", "--ttl", "8d"],
            "lifetime_too_long",
        ),
        (
            &["--id", "a", "--level", "Shape", "--ttl", "1500ms"],
            "invalid_ttl",
        ),
        (
            &[
                "--id",
                "a",
                "--level",
                "Shape",
                "--expires-at",
                "2001-01-01T00:00:00Z",
            ],
            "already_expired",
        ),
        (
            &["--id", "a", "--level", "Shape", "--expires-at", "soon"],
            "invalid_expires_at",
        ),
    ];
    for (flags, slug) in cases {
        let mut args = vec!["add"];
        args.extend_from_slice(flags);
        args.push("--json");
        let r = run_on(cluster, &key, &args);
        assert_eq!(r.code, 2, "{slug}: {r:?}");
        assert_eq!(r.json()["error"], slug, "{r:?}");
    }
    // Clap-level usage errors: no lifetime, both lifetimes, bad duration.
    for flags in [
        &["--id", "a", "--level", "Shape"][..],
        &[
            "--id",
            "a",
            "--level",
            "Shape",
            "--ttl",
            "1m",
            "--expires-at",
            "2099-01-01T00:00:00Z",
        ],
        &["--id", "a", "--level", "Shape", "--ttl", "10"],
    ] {
        let mut args = vec!["add"];
        args.extend_from_slice(flags);
        run_on(cluster, &key, &args).expect_code(2);
    }
    assert_eq!(cluster.get(&key), None, "nothing was written");
}

#[test]
fn a_live_value_that_does_not_decode_is_not_edited() {
    let cluster = shared_cluster();
    let key = unique_key("edit-malformed");
    cluster.put(&key, "not json");
    let r = run_on(
        cluster,
        &key,
        &[
            "add", "--id", "a", "--level", "Shape", "--ttl", "1m", "--json",
        ],
    );
    r.expect_code(1);
    assert_eq!(r.json()["error"], "malformed_live_value");
    run_on(cluster, &key, &["remove", "a"]).expect_code(1);
    assert_eq!(cluster.get(&key).as_deref(), Some("not json"));
}

#[test]
fn prefix_layout_binds_each_directive_to_a_lease_of_its_lifetime() {
    let cluster = shared_cluster();
    let prefix = format!("{}/", unique_key("edit-prefix"));
    let endpoints = endpoints_arg(cluster);
    let on_prefix = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--prefix", &prefix, "--endpoints", &endpoints]);
        run(&all)
    };
    on_prefix(&[
        "add", "--id", "short", "--level", "Shape", "--tenant", "acme", "--ttl", "2s",
    ])
    .expect_code(0);
    on_prefix(&["add", "--id", "long", "--level", "Shape", "--ttl", "10m"]).expect_code(0);

    let info = cluster.etcdctl(&["get", &format!("{prefix}long"), "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(info.trim()).unwrap();
    let lease = v["kvs"][0]["lease"].as_i64().expect("the key has a lease");
    let ttl = cluster.etcdctl(&["lease", "timetolive", &format!("{lease:x}")]);
    let granted: i64 = ttl
        .split("granted with TTL(")
        .nth(1)
        .and_then(|s| s.split('s').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("unexpected timetolive output: {ttl}"));
    assert!(
        (590..=600).contains(&granted),
        "lease ≈ remaining lifetime: {ttl}"
    );

    let got = on_prefix(&["get", "--json"]);
    got.expect_code(0);
    let mut ids = ids_of(&got.json());
    ids.sort();
    assert_eq!(ids, ["long", "short"]);

    // etcd removes the expired directive's key by itself (lease expiry is not
    // precise: allow generously).
    wait_until(PROMPTLY, "etcd deletes the expired directive's key", || {
        cluster.get(&format!("{prefix}short")).is_none()
    });

    on_prefix(&["remove", "long"]).expect_code(0);
    assert!(cluster.get(&format!("{prefix}long")).is_none());
    on_prefix(&["remove", "long"]).expect_code(1);
    let got = on_prefix(&["get", "--json"]);
    assert!(ids_of(&got.json()).is_empty());
}

#[test]
fn prefix_remove_finds_a_directive_stored_under_another_key_name() {
    let cluster = shared_cluster();
    let prefix = format!("{}/", unique_key("edit-foreign"));
    let endpoints = endpoints_arg(cluster);
    cluster.put(
        &format!("{prefix}written-by-another-tool"),
        r#"{"id":"foreign","level":"Shape","ttl_secs":600}"#,
    );
    run(&[
        "remove",
        "foreign",
        "--prefix",
        &prefix,
        "--endpoints",
        &endpoints,
    ])
    .expect_code(0);
    assert!(cluster
        .get(&format!("{prefix}written-by-another-tool"))
        .is_none());
}
