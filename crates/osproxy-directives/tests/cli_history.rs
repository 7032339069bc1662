//! `history`, `diff` and `rollback`, and `--author`/`--reason`, against a
//! real etcd in both layouts: notes shown per revision, changes, a rollback
//! that keeps expiries and drops expired directives, a CAS conflict during
//! rollback, and a compacted revision.

// Test helpers below: a failure fails the test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::process::Stdio;

use common::*;
use serde_json::Value;

/// The layout flags of a fresh key or prefix.
fn layouts(name: &str) -> [[String; 2]; 2] {
    [
        ["--key".into(), unique_key(name)],
        ["--prefix".into(), format!("{}/", unique_key(name))],
    ]
}

/// Runs `args` with `--endpoints` and the layout flags, in an environment
/// whose user is `ci-user`.
fn cli(cluster: &EtcdCluster, layout: &[String; 2], args: &[&str]) -> Run {
    let mut cmd = command();
    cmd.env("USER", "ci-user").env_remove("LOGNAME");
    cmd.args(args)
        .args(["--endpoints", &endpoints_arg(cluster)])
        .args(layout)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = cmd.output().expect("run the binary");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn revision_of(r: &Run) -> i64 {
    r.json()["revision"].as_i64().unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

fn live_ids(cluster: &EtcdCluster, layout: &[String; 2]) -> Vec<String> {
    let got = cli(cluster, layout, &["get", "--json"]);
    got.expect_code(0);
    ids_of(&got.json())
}

#[test]
fn history_diff_and_rollback_show_authors_changes_and_expiries_in_both_layouts() {
    let cluster = shared_cluster();
    for layout in layouts("cli-hist") {
        let first = temp_file(
            br#"{"directives":[
                {"id":"a","level":"Shape","ttl_secs":600},
                {"id":"gone","level":"Shape","expires_at":"2020-01-01T00:00:00Z"}]}"#,
        );
        let path = first.path().to_str().unwrap();
        let r = cli(
            cluster,
            &layout,
            &[
                "publish",
                "--author",
                "alice",
                "--reason",
                "INC-7: <look> closer",
                "--json",
                path,
            ],
        );
        r.expect_code(0);
        let r1 = revision_of(&r);
        let r = cli(
            cluster,
            &layout,
            &[
                "add", "--id", "c", "--level", "Shape", "--ttl", "10m", "--json",
            ],
        );
        r.expect_code(0);
        let r2 = revision_of(&r);
        let r = cli(
            cluster,
            &layout,
            &["remove", "--reason", "done", "a", "--json"],
        );
        r.expect_code(0);
        let r3 = revision_of(&r);

        let h = cli(cluster, &layout, &["history", "--json"]);
        h.expect_code(0);
        let h = h.json();
        let entries = h["entries"].as_array().unwrap();
        let revisions: Vec<i64> = entries
            .iter()
            .map(|e| e["revision"].as_i64().unwrap())
            .collect();
        assert_eq!(revisions, [r3, r2, r1], "{layout:?}");
        assert_eq!(entries[2]["note"]["author"], "alice");
        assert_eq!(entries[2]["note"]["reason"], "INC-7: <look> closer");
        assert!(entries[2]["note"]["published_at"].is_string());
        assert_eq!(
            entries[1]["note"]["author"], "ci-user",
            "the default author is $USER"
        );
        assert_eq!(entries[0]["note"]["reason"], "done");
        assert_eq!(strings(&entries[2]["changes"]["added"]), ["a", "gone"]);
        assert_eq!(strings(&entries[1]["changes"]["added"]), ["c"]);
        // (Expired `gone` may leave in between: the key layout's edits drop
        // it, the prefix layout's lease ends it.)
        assert!(strings(&entries[0]["changes"]["removed"]).contains(&"a".to_owned()));

        let text = cli(cluster, &layout, &["history", "--limit", "2"]);
        text.expect_code(0);
        assert!(
            text.stdout.contains(&format!("revision {r3}: ")),
            "{text:?}"
        );
        assert!(text.stdout.contains("; by ci-user at "), "{text:?}");
        assert!(text.stdout.contains(": done\n"), "{text:?}");
        assert!(
            !text.stdout.contains(&format!("revision {r1}:")),
            "{text:?}"
        );
        assert!(text.stdout.contains("older revisions remain"), "{text:?}");
        let get = cli(cluster, &layout, &["get"]);
        assert!(
            get.stdout.contains("last change: by ci-user at "),
            "{get:?}"
        );

        let d = cli(cluster, &layout, &["diff", &r1.to_string(), "--json"]);
        d.expect_code(0);
        let d = d.json();
        assert_eq!(d["from"]["revision"], r1);
        assert_eq!(d["to"]["revision"], r3);
        assert_eq!(d["added"][0]["id"], "c");
        let removed: Vec<&str> = d["removed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["id"].as_str().unwrap())
            .collect();
        assert!(removed.contains(&"a"), "{d}");
        let d = cli(
            cluster,
            &layout,
            &["diff", &r1.to_string(), &r2.to_string()],
        );
        d.expect_code(0);
        assert!(d.stdout.contains("): added c"), "{d:?}");
        assert!(d.stdout.contains("+ {"), "{d:?}");

        let plan = cli(
            cluster,
            &layout,
            &["rollback", "--to", &r1.to_string(), "--dry-run", "--json"],
        );
        plan.expect_code(0);
        let plan = plan.json();
        assert_eq!(plan["written"], false);
        assert_eq!(strings(&plan["expired_dropped"]), ["gone"]);
        let live = cli(cluster, &layout, &["get", "--json"]);
        assert_eq!(revision_from_get(&live), r3, "a dry run writes nothing");

        let done = cli(
            cluster,
            &layout,
            &["rollback", "--to", &r1.to_string(), "--author", "ops"],
        );
        done.expect_code(0);
        assert!(
            done.stdout.contains(&format!(
                "rolled back to revision {r1}: published revision "
            )),
            "{done:?}"
        );
        assert!(
            done.stdout.contains("left out, expired since: gone"),
            "{done:?}"
        );
        assert_eq!(live_ids(cluster, &layout), ["a"]);
        let top = cli(cluster, &layout, &["history", "--limit", "1", "--json"]).json();
        let note = &top["entries"][0]["note"];
        assert_eq!(note["author"], "ops");
        assert_eq!(note["reason"], format!("rollback to {r1}"));
        let d = cli(cluster, &layout, &["diff", &r1.to_string(), "--json"]).json();
        assert_eq!(d["unchanged"], 1, "a is back with the expiry it had");
        assert!(d["changed"].as_array().unwrap().is_empty(), "{d}");
    }
}

#[test]
fn a_rollback_over_a_stale_revision_is_a_conflict_and_writes_nothing_in_both_layouts() {
    let cluster = shared_cluster();
    for layout in layouts("cli-hist-cas") {
        let r = cli(
            cluster,
            &layout,
            &[
                "add", "--id", "a", "--level", "Shape", "--ttl", "10m", "--json",
            ],
        );
        let r1 = revision_of(&r);
        let r = cli(
            cluster,
            &layout,
            &[
                "add", "--id", "b", "--level", "Shape", "--ttl", "10m", "--json",
            ],
        );
        let seen = revision_of(&r);
        // Someone else writes after the operator looked at `seen`.
        cli(
            cluster,
            &layout,
            &["add", "--id", "x", "--level", "Shape", "--ttl", "10m"],
        )
        .expect_code(0);
        let r = cli(
            cluster,
            &layout,
            &[
                "rollback",
                "--to",
                &r1.to_string(),
                "--expect-revision",
                &seen.to_string(),
            ],
        );
        r.expect_code(1);
        assert!(r.stderr.contains("revision conflict"), "{r:?}");
        let j = cli(
            cluster,
            &layout,
            &[
                "rollback",
                "--to",
                &r1.to_string(),
                "--expect-revision",
                &seen.to_string(),
                "--json",
            ],
        );
        j.expect_code(1);
        assert_eq!(j.json()["error"], "conflict");
        assert_eq!(
            live_ids(cluster, &layout),
            ["a", "b", "x"],
            "nothing written"
        );
    }
}

#[test]
fn a_compacted_revision_names_the_oldest_available_in_both_layouts() {
    // Its own cluster: compaction would cut the history of other tests.
    let cluster = EtcdCluster::single();
    for layout in layouts("cli-hist-compact") {
        let add = |id: &str| {
            let r = cli(
                &cluster,
                &layout,
                &[
                    "add", "--id", id, "--level", "Shape", "--ttl", "10m", "--json",
                ],
            );
            r.expect_code(0);
            revision_of(&r)
        };
        let r1 = add("a");
        let r2 = add("b");
        cluster.compact(r2);
        let oldest = format!("the oldest available revision is {r2}");

        let d = cli(&cluster, &layout, &["diff", &r1.to_string()]);
        d.expect_code(1);
        assert!(d.stderr.contains(&oldest), "{d:?}");
        let j = cli(
            &cluster,
            &layout,
            &["rollback", "--to", &r1.to_string(), "--json"],
        );
        j.expect_code(1);
        assert_eq!(j.json()["error"], "compacted");
        let h = cli(&cluster, &layout, &["history"]);
        h.expect_code(0);
        assert!(
            h.stdout
                .contains(&format!("revision {r2}: 2 directives; changes unknown")),
            "{h:?}"
        );
        assert!(
            h.stdout
                .contains(&format!("history ends at etcd's compaction: {oldest}")),
            "{h:?}"
        );
        assert_eq!(live_ids(&cluster, &layout), ["a", "b"]);
    }
}

#[test]
fn a_bad_author_or_reason_is_refused_before_anything_is_written() {
    let cluster = shared_cluster();
    let layout = ["--key".to_owned(), unique_key("cli-hist-note")];
    for (flag, value, slug) in [
        ("--author", "a;b", "invalid_author"),
        ("--reason", "two\nlines", "invalid_reason"),
    ] {
        let r = cli(
            cluster,
            &layout,
            &[
                "add", "--id", "a", "--level", "Shape", "--ttl", "1m", flag, value, "--json",
            ],
        );
        r.expect_code(2);
        assert_eq!(r.json()["error"], slug);
        assert!(!r.stdout.contains(value), "value-free: {r:?}");
    }
    let h = cli(cluster, &layout, &["history", "--json"]).json();
    assert_eq!(h["entries"].as_array().unwrap().len(), 0);
}
