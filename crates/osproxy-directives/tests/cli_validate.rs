//! `validate`: the fleet's decoder on a file or stdin; every rejection exits 2
//! with the reason slug and the offending directive's index.

mod common;

use common::*;

const ONE: &str = r#"{"id":"a","level":"Shape","ttl_secs":60}"#;

fn set_of(items: &[&str]) -> String {
    format!(r#"{{"directives":[{}]}}"#, items.join(","))
}

#[test]
fn a_valid_file_and_stdin_exit_0() {
    let body = set_of(&[
        ONE,
        r#"{"id":"b","level":"ShapeTiming","tenant":"acme","expires_at":"2099-01-01T00:00:00Z"}"#,
    ]);
    let file = temp_file(body.as_bytes());
    let path = file.path().to_str().unwrap();
    // 2099 is beyond the 7-day cap: allow it for this check.
    let run_file = run(&["validate", "--max-lifetime", "36500d", path]);
    run_file.expect_code(0);
    assert!(
        run_file.stdout.contains("valid: 2 directives"),
        "{run_file:?}"
    );

    let stdin = run_with_stdin(
        &["validate", "-", "--json"],
        Some(set_of(&[ONE]).as_bytes()),
    );
    stdin.expect_code(0);
    let v = stdin.json();
    assert_eq!(v["valid"], true);
    assert_eq!(v["directives"], 1);
}

#[test]
fn every_rejection_exits_2_with_slug_and_index() {
    let long_id = "x".repeat(129);
    let long_target = "t".repeat(257);
    let invalid_id = format!(r#"{{"id":"{long_id}","level":"Shape","ttl_secs":1}}"#);
    let invalid_target =
        format!(r#"{{"id":"a","level":"Shape","tenant":"{long_target}","ttl_secs":1}}"#);
    // (body, slug, directive index)
    let cases: Vec<(String, &str, Option<usize>)> = vec![
        ("not json".into(), "malformed_json", None),
        (r#"{"directives":[]"#.into(), "malformed_json", None),
        (r#"[]"#.into(), "wrong_type", None),
        (
            r#"{"directives":[],"extra":1}"#.into(),
            "unknown_field",
            None,
        ),
        (r#"{}"#.into(), "missing_field", None),
        (
            r#"{"directives":[],"directives":[]}"#.into(),
            "duplicate_key",
            None,
        ),
        (
            set_of(&[
                ONE,
                r#"{"id":"b","level":"Shape","tennant":"acme","ttl_secs":60}"#,
            ]),
            "unknown_field",
            Some(1),
        ),
        // Found while parsing, before directives are told apart: no index.
        (
            set_of(&[r#"{"id":"a","id":"b","level":"Shape","ttl_secs":60}"#]),
            "duplicate_key",
            None,
        ),
        (
            set_of(&[r#"{"level":"Shape","ttl_secs":60}"#]),
            "missing_field",
            Some(0),
        ),
        (
            set_of(&[r#"{"id":"a","level":"Shape","ttl_secs":"60"}"#]),
            "wrong_type",
            Some(0),
        ),
        (set_of(&[&invalid_id]), "invalid_id", Some(0)),
        (set_of(&[ONE, ONE]), "duplicate_id", Some(1)),
        (
            set_of(&[r#"{"id":"a","level":"Loud","ttl_secs":60}"#]),
            "invalid_level",
            Some(0),
        ),
        (
            set_of(&[r#"{"id":"a","level":"Shape","endpoint":"Nope","ttl_secs":60}"#]),
            "invalid_endpoint",
            Some(0),
        ),
        (set_of(&[&invalid_target]), "invalid_target", Some(0)),
        (
            set_of(&[r#"{"id":"a","level":"Shape","sample_per_mille":1001,"ttl_secs":60}"#]),
            "sample_out_of_range",
            Some(0),
        ),
        (
            set_of(&[ONE, r#"{"id":"b","level":"Shape","ttl_secs":0}"#]),
            "zero_ttl",
            Some(1),
        ),
        (
            set_of(&[r#"{"id":"a","level":"Shape","ttl_secs":-5}"#]),
            "invalid_ttl",
            Some(0),
        ),
        (
            set_of(&[r#"{"id":"a","level":"Shape"}"#]),
            "missing_expiry",
            Some(0),
        ),
        (
            set_of(&[
                r#"{"id":"a","level":"Shape","ttl_secs":5,"expires_at":"2099-01-01T00:00:00Z"}"#,
            ]),
            "conflicting_expiry",
            Some(0),
        ),
        (
            set_of(&[r#"{"id":"a","level":"Shape","expires_at":"tomorrow"}"#]),
            "invalid_expires_at",
            Some(0),
        ),
        (
            set_of(&[r#"{"id":"a","level":"Shape","ttl_secs":691201}"#]),
            "lifetime_too_long",
            Some(0),
        ),
    ];
    for (body, slug, index) in &cases {
        let file = temp_file(body.as_bytes());
        let path = file.path().to_str().unwrap();
        let human = run(&["validate", path]);
        assert_eq!(human.code, 2, "{slug}: {human:?}");
        assert!(human.stderr.contains(slug), "{slug}: {human:?}");
        if let Some(i) = index {
            assert!(
                human.stderr.contains(&format!("(directive {i})")),
                "{slug}: {human:?}"
            );
        }
        let machine = run(&["validate", "--json", path]);
        assert_eq!(machine.code, 2, "{slug}: {machine:?}");
        let v = machine.json();
        assert_eq!(v["error"], *slug, "{v}");
        match index {
            Some(i) => assert_eq!(v["directive_index"], *i, "{v}"),
            None => assert!(v.get("directive_index").is_none(), "{v}"),
        }
    }
}

#[test]
fn body_limits_and_encoding_are_enforced() {
    let oversized = format!(r#"{{"directives":[],"pad":"{}"}}"#, "x".repeat(1024 * 1024));
    let r = run_with_stdin(&["validate", "-", "--json"], Some(oversized.as_bytes()));
    r.expect_code(2);
    assert_eq!(r.json()["error"], "too_large");

    let r = run_with_stdin(
        &["validate", "-", "--json"],
        Some(b"{\"directives\":[\xff]}"),
    );
    r.expect_code(2);
    assert_eq!(r.json()["error"], "invalid_utf8");

    let many: Vec<String> = (0..10_001)
        .map(|i| format!(r#"{{"id":"d{i}","level":"Shape","ttl_secs":60}}"#))
        .collect();
    let r = run_with_stdin(
        &["validate", "-", "--json"],
        Some(set_of(&many.iter().map(String::as_str).collect::<Vec<_>>()).as_bytes()),
    );
    r.expect_code(2);
    assert_eq!(r.json()["error"], "too_many_directives");
}

#[test]
fn the_lifetime_cap_is_configurable() {
    let body = set_of(&[r#"{"id":"a","level":"Shape","ttl_secs":7200}"#]);
    run_with_stdin(&["validate", "-"], Some(body.as_bytes())).expect_code(0);
    let r = run_with_stdin(
        &["validate", "-", "--max-lifetime", "1h", "--json"],
        Some(body.as_bytes()),
    );
    r.expect_code(2);
    assert_eq!(r.json()["error"], "lifetime_too_long");
}

#[test]
fn unreadable_input_and_bad_usage_exit_2() {
    let r = run(&["validate", "/nonexistent/directives.json"]);
    r.expect_code(2);
    assert!(
        r.stderr
            .contains("cannot read /nonexistent/directives.json"),
        "{r:?}"
    );
    run(&["validate"]).expect_code(2);
    run(&["validate", "--max-lifetime", "10", "-"]).expect_code(2);
    run(&["no-such-command"]).expect_code(2);
}

#[test]
fn help_has_examples_and_env_fallbacks() {
    for sub in [
        "serve", "validate", "publish", "get", "add", "remove", "watch", "status", "demo",
    ] {
        let r = run(&[sub, "--help"]);
        r.expect_code(0);
        assert!(r.stdout.contains("Examples:"), "{sub}: {r:?}");
    }
    let r = run(&["publish", "--help"]);
    for env in [
        "OSPROXY_ETCD_ENDPOINTS",
        "OSPROXY_ETCD_CA",
        "OSPROXY_ETCD_CERT",
        "OSPROXY_ETCD_KEY",
        "OSPROXY_ETCD_USER",
        "OSPROXY_ETCD_PASSWORD",
    ] {
        assert!(r.stdout.contains(env), "{env} missing from publish --help");
    }
}
