//! SPEC §9 from the command line: `keygen` → `sign-header` → `verify-header`
//! (the single-request flow, with its refusal slugs), and a fleet instance
//! with `serve --trust-store` against a real etcd: a signed publish applies,
//! an unsigned `etcdctl put` and a signature made for other bytes are
//! rejected with their slugs, `status` shows it, the last good set keeps
//! serving, and an admin POST signed with the server-side key applies.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::*;

/// The admin token of the signing instance (at least 32 characters).
const TOKEN: &str = "cli-trust-admin-token-0123456789abcdef";

fn keygen(dir: &Path, id: &str) -> (PathBuf, String) {
    let key = dir.join(format!("{id}.key"));
    let r = run(&["keygen", "--key-id", id, "--out", key.to_str().unwrap()]);
    r.expect_code(0);
    (key, r.stdout)
}

fn trust_file(dir: &Path, name: &str, lines: &[&str]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, lines.concat()).unwrap();
    path
}

fn verify(trust: &Path, value: &str, request: Option<&str>) -> serde_json::Value {
    let mut args = vec![
        "verify-header",
        "--json",
        "--trust-store",
        trust.to_str().unwrap(),
    ];
    if let Some(r) = request {
        args.extend(["--request-id", r]);
    }
    args.push(value);
    let r = run(&args);
    let v = r.json();
    let code = if v["accepted"] == true { 0 } else { 2 };
    r.expect_code(code);
    v
}

#[test]
fn keygen_sign_header_and_verify_header() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path(), "ops-1");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the private key is owner-only");
    assert!(
        public.starts_with("osproxy-ed25519-public ops-1 "),
        "{public}"
    );
    let private = std::fs::read_to_string(&key).unwrap();
    assert!(!public.contains(private.split(' ').nth(2).unwrap().trim()));
    // Never overwritten.
    let again = run(&[
        "keygen",
        "--json",
        "--key-id",
        "ops-1",
        "--out",
        key.to_str().unwrap(),
    ]);
    again.expect_code(2);
    assert_eq!(again.json()["error"], "file_exists", "{again:?}");

    let trust = trust_file(dir.path(), "fleet.trust", &[&public]);
    let header = run(&[
        "sign-header",
        "--sign-key",
        key.to_str().unwrap(),
        "--level",
        "ShapeTiming",
        "--request-id",
        "req-42",
        "--ttl",
        "2m",
    ]);
    header.expect_code(0);
    let value = header.stdout.trim();
    assert!(value.starts_with("v1.ops-1."), "{value}");

    let ok = verify(&trust, value, Some("req-42"));
    assert_eq!(ok["verdict"], "accepted", "{ok}");
    assert_eq!(ok["directive"]["level"], "ShapeTiming", "{ok}");
    assert_eq!(ok["request_id"], "req-42", "{ok}");
    assert_eq!(
        verify(&trust, value, Some("req-43"))["verdict"],
        "wrong_request"
    );
    assert_eq!(verify(&trust, value, None)["verdict"], "request_unchecked");
    let mut tampered = value.to_owned();
    tampered.push('A');
    assert_ne!(
        verify(&trust, &tampered, Some("req-42"))["verdict"],
        "accepted"
    );
    assert_eq!(verify(&trust, "garbage", None)["verdict"], "malformed");

    // Another key's trust store does not know ops-1.
    let (_, other_public) = keygen(dir.path(), "ops-2");
    let other = trust_file(dir.path(), "other.trust", &[&other_public]);
    assert_eq!(
        verify(&other, value, Some("req-42"))["verdict"],
        "unknown_key"
    );
    // Rotation: both trusted, each accepted.
    let both = trust_file(dir.path(), "both.trust", &[&public, &other_public]);
    assert_eq!(verify(&both, value, Some("req-42"))["verdict"], "accepted");

    // The human line names the reason; stdin works too.
    let human = run_with_stdin(
        &[
            "verify-header",
            "--trust-store",
            other.to_str().unwrap(),
            "-",
        ],
        Some(value.as_bytes()),
    );
    human.expect_code(2);
    assert!(
        human.stdout.starts_with("refused: unknown_key; key ops-1"),
        "{human:?}"
    );

    // Over the maximum lifetime: refused before signing.
    let long = run(&[
        "sign-header",
        "--sign-key",
        key.to_str().unwrap(),
        "--level",
        "Shape",
        "--ttl",
        "1h",
    ]);
    long.expect_code(2);
    assert!(long.stderr.contains("lifetime_too_long"), "{long:?}");
}

#[test]
fn a_trusting_instance_applies_signed_values_only_and_status_shows_rejections() {
    let cluster = shared_cluster();
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path(), "ops-1");
    let trust = trust_file(dir.path(), "fleet.trust", &[&public]);
    let key_name = unique_key("cli-trust");
    let status_prefix = format!("{}/", unique_key("cli-trust-reports"));
    let endpoints = endpoints_arg(cluster);
    // A signing instance needs a token; without one (or without --etcd) it
    // refuses to start: it would sign for anyone who reaches it.
    let no_token = run(&[
        "serve",
        "--etcd",
        "--endpoints",
        &endpoints,
        "--sign-key",
        key.to_str().unwrap(),
    ]);
    no_token.expect_code(2);
    assert!(
        no_token.stderr.contains("needs an admin token"),
        "{no_token:?}"
    );
    run(&["serve", "--sign-key", key.to_str().unwrap()]).expect_code(2);
    // A private key others can read is refused, as ssh does.
    let shared_key = dir.path().join("shared.key");
    std::fs::copy(&key, &shared_key).unwrap();
    std::fs::set_permissions(&shared_key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let exposed = run(&[
        "serve",
        "--etcd",
        "--endpoints",
        &endpoints,
        "--token-file",
        token_file.to_str().unwrap(),
        "--sign-key",
        shared_key.to_str().unwrap(),
    ]);
    exposed.expect_code(2);
    assert!(
        exposed.stderr.contains("accessible by group or others"),
        "{exposed:?}"
    );
    let serve = Serve::start(&[
        "--token-file",
        token_file.to_str().unwrap(),
        "--token-name",
        "ops-alice",
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
        "--sign-key",
        key.to_str().unwrap(),
    ]);
    let fleet = |extra: &[&str]| {
        let mut args: Vec<&str> = extra.to_vec();
        args.extend(["--endpoints", &endpoints, "--key", &key_name]);
        run(&args)
    };
    let status = || {
        let r = fleet(&["status", "--json", "--status-prefix", &status_prefix]);
        assert!([0, 1, 3].contains(&r.code), "{r:?}");
        r.json()
    };
    let instance_state = |want: &str, reason: Option<&str>| {
        let v = status();
        let a = &v["instances"][0];
        v["total"] == 1 && a["state"] == want && reason.is_none_or(|r| a["rejected_reason"] == r)
    };

    // A signed publish applies.
    let set = temp_file(set_body(&["good"], 600).as_bytes());
    fleet(&[
        "publish",
        "--sign-key",
        key.to_str().unwrap(),
        set.path().to_str().unwrap(),
    ])
    .expect_code(0);
    wait_until(PROMPTLY, "the signed set applies", || {
        instance_state("current", None)
    });
    let signed = cluster.get(&key_name).unwrap();
    assert!(signed.starts_with("osproxy-signed v1 ops-1 "), "{signed}");

    // An unsigned etcdctl put: rejected as unsigned; the good set serves on.
    cluster.put(&key_name, &set_body(&["evil"], 600));
    wait_until(PROMPTLY, "status shows unsigned", || {
        instance_state("rejecting", Some("unsigned"))
    });
    let human = fleet(&["status", "--status-prefix", &status_prefix]);
    human.expect_code(3);
    let row = human.stdout.lines().find(|l| l.starts_with("a ")).unwrap();
    assert!(
        row.contains("rejecting") && row.contains("unsigned"),
        "{row}"
    );
    let (_, served) = http_get_with_token(&serve.at("/admin/directives"), TOKEN);
    assert!(
        served.contains("good") && !served.contains("evil"),
        "{served}"
    );

    // A signature made for other bytes.
    let (header, _) = signed.split_once('\n').unwrap();
    cluster.put(
        &key_name,
        &format!("{header}\n{}", set_body(&["evil"], 600)),
    );
    wait_until(PROMPTLY, "status shows bad_signature", || {
        instance_state("rejecting", Some("bad_signature"))
    });
    let (_, served) = http_get_with_token(&serve.at("/admin/directives"), TOKEN);
    assert!(
        served.contains("good") && !served.contains("evil"),
        "{served}"
    );

    // Without the token, even a JSON POST is refused: nothing is signed.
    let body = set_body(&["posted"], 600).into_bytes();
    let (code, answer) = http_post(&serve.at("/admin/directives"), body.clone(), None);
    assert_eq!(code, 401, "{answer}");
    // With it, the admin POST is signed with the server-side key, applies,
    // and records the token's name as its author.
    let (code, answer) = http_post_with_token(&serve.at("/admin/directives"), body, TOKEN);
    assert_eq!(code, 200, "{answer}");
    wait_until(PROMPTLY, "the posted set applies", || {
        instance_state("current", None)
    });
    let (_, served) = http_get_with_token(&serve.at("/admin/directives"), TOKEN);
    assert!(served.contains("posted"), "{served}");
    assert!(cluster
        .get(&key_name)
        .unwrap()
        .starts_with("osproxy-signed v1 ops-1 "));
    let history = fleet(&["history", "--json", "--limit", "1"]);
    history.expect_code(0);
    assert_eq!(
        history.json()["entries"][0]["note"]["author"],
        "ops-alice",
        "{history:?}"
    );
}
