//! Anti-rollback and boundaries from the command line, against a real etcd:
//! `publish --signed-format v2` twice, then the first value's bytes put back
//! with etcdctl: `serve --trust-store --state-dir` refuses it (`replayed`),
//! `status` says so and the newer set keeps serving; `history
//! --trust-store` shows the signed notes; `serve --require-signed-v2`
//! refuses a v1 publish (`legacy_signature`); a prefix without its `/` is a
//! usage error (exit 2) on every command.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::*;

fn keygen(dir: &Path, id: &str) -> (PathBuf, String) {
    let key = dir.join(format!("{id}.key"));
    let r = run(&["keygen", "--key-id", id, "--out", key.to_str().unwrap()]);
    r.expect_code(0);
    (key, r.stdout)
}

#[test]
fn a_replayed_v2_set_is_refused_and_v1_once_v2_is_required() {
    let cluster = shared_cluster();
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path(), "ops-1");
    let trust = dir.path().join("fleet.trust");
    std::fs::write(&trust, &public).unwrap();
    let key_name = unique_key("cli-rollback");
    let status_prefix = format!("{}/", unique_key("cli-rollback-reports"));
    let endpoints = endpoints_arg(cluster);
    let serve = Serve::start(&[
        "--etcd",
        "--instance-id",
        "a",
        "--status-prefix",
        &status_prefix,
        "--endpoints",
        &endpoints,
        "--key",
        &key_name,
        "--trust-store",
        trust.to_str().unwrap(),
        "--state-dir",
        state.path().to_str().unwrap(),
    ]);
    let fleet = |extra: &[&str]| {
        let mut args: Vec<&str> = extra.to_vec();
        args.extend(["--endpoints", &endpoints, "--key", &key_name]);
        run(&args)
    };
    let instance = || {
        let r = fleet(&["status", "--json", "--status-prefix", &status_prefix]);
        assert!([0, 1, 3].contains(&r.code), "{r:?}");
        r.json()["instances"][0].clone()
    };
    let publish_v2 = |ids: &[&str], reason: &str| {
        let set = temp_file(set_body(ids, 600).as_bytes());
        fleet(&[
            "publish",
            "--sign-key",
            key.to_str().unwrap(),
            "--signed-format",
            "v2",
            "--author",
            "alice",
            "--reason",
            reason,
            set.path().to_str().unwrap(),
        ])
        .expect_code(0);
    };

    publish_v2(&["capture"], "INC-1 capture");
    let old = cluster.get(&key_name).unwrap();
    assert!(old.starts_with("osproxy-signed v2 ops-1 "), "{old}");
    publish_v2(&[], "INC-1 done");
    wait_until(PROMPTLY, "the empty set applies", || {
        let a = instance();
        a["state"] == "current" && a["directives"] == 0
    });

    // The replay: refused, reported, the empty set keeps serving.
    cluster.put(&key_name, &old);
    wait_until(PROMPTLY, "status shows replayed", || {
        let a = instance();
        a["state"] == "rejecting" && a["rejected_reason"] == "replayed"
    });
    let (_, served) = http_get(&serve.at("/admin/directives"));
    assert!(!served.contains("capture"), "{served}");

    // History with the trust store shows the signed notes.
    let history = fleet(&[
        "history",
        "--trust-store",
        trust.to_str().unwrap(),
        "--limit",
        "3",
    ]);
    history.expect_code(0);
    assert!(
        history.stdout.contains("by alice") && history.stdout.contains("(signed"),
        "{history:?}"
    );
    drop(serve);

    // Requiring v2: a v1 publish is refused by the instance.
    let strict = Serve::start(&[
        "--etcd",
        "--endpoints",
        &endpoints,
        "--key",
        &key_name,
        "--trust-store",
        trust.to_str().unwrap(),
        "--require-signed-v2",
    ]);
    let set = temp_file(set_body(&["v1-set"], 600).as_bytes());
    fleet(&[
        "publish",
        "--sign-key",
        key.to_str().unwrap(),
        set.path().to_str().unwrap(),
    ])
    .expect_code(0);
    assert!(cluster
        .get(&key_name)
        .unwrap()
        .starts_with("osproxy-signed v1 "));
    wait_until(PROMPTLY, "the v1 value is refused", || {
        let (_, body) = http_get(&strict.at("/metrics"));
        body.contains("reason=\"legacy_signature\"")
    });
    let (_, served) = http_get(&strict.at("/admin/directives"));
    assert!(!served.contains("v1-set"), "{served}");
}

#[test]
fn a_prefix_without_its_slash_is_a_usage_error_everywhere() {
    for args in [
        vec!["get", "--prefix", "/env/prod", "--endpoints", "127.0.0.1:1"],
        vec![
            "serve",
            "--etcd",
            "--prefix",
            "/env/prod",
            "--endpoints",
            "127.0.0.1:1",
        ],
        vec![
            "history",
            "--prefix",
            "/env/prod",
            "--endpoints",
            "127.0.0.1:1",
        ],
    ] {
        let r = run(&args);
        r.expect_code(2);
        assert!(r.stderr.contains("must end in '/'"), "{args:?}: {r:?}");
    }
}
