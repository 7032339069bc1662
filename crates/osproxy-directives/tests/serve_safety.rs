//! `serve --etcd`'s capture safety end to end (SPEC §8): `--failsafe-after`
//! withholds a capture directive while etcd is gone, and `/readyz`,
//! `/metrics` and the admin view say so; `--max-level` clamps a published
//! `ShapeRewriteDiff`, and the admin view, `/metrics` and `status` show it.

mod common;

use common::*;
use serde_json::Value;

/// A plain `Shape` directive and a capture one.
const BODY: &str = r#"{"directives":[
  {"id":"shape","level":"Shape","tenant":"acme","ttl_secs":600},
  {"id":"cap","level":"Shape","tenant":"acme","capture":true,"ttl_secs":600}
]}"#;

fn get_json(url: &str) -> (u16, Value) {
    let (code, body) = http_get(url);
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: not JSON ({e}): {body}"));
    (code, v)
}

/// The admin view's entries by id.
fn view(serve: &Serve) -> Vec<Value> {
    let (_, v) = get_json(&serve.at("/admin/directives"));
    v["view"].as_array().cloned().unwrap_or_default()
}

fn view_ids(serve: &Serve) -> Vec<String> {
    view(serve)
        .iter()
        .filter_map(|d| d["id"].as_str().map(str::to_owned))
        .collect()
}

/// The value of the unlabelled sample `name` in `/metrics`.
fn metric(serve: &Serve, name: &str) -> Option<String> {
    let (_, text) = http_get(&serve.at("/metrics"));
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ').map(str::to_owned))
}

#[test]
fn failsafe_withholds_a_capture_while_etcd_is_gone_and_says_so() {
    let cluster = EtcdCluster::single();
    let key = unique_key("serve-failsafe");
    cluster.put(&key, BODY);
    let endpoints = endpoints_arg(&cluster);
    let serve = Serve::start(&[
        "--etcd",
        "--endpoints",
        &endpoints,
        "--key",
        &key,
        "--stale-after",
        "3s",
        "--progress-interval",
        "1s",
        "--backoff-max",
        "1s",
        "--failsafe-after",
        "2s",
    ]);
    wait_until(PROMPTLY, "both directives apply", || {
        view_ids(&serve) == ["shape", "cap"]
    });
    let expiry = |serve: &Serve| {
        view(serve)
            .into_iter()
            .find(|d| d["id"] == "cap")
            .map(|d| d["expires_at"].clone())
    };
    let before = expiry(&serve);
    assert!(before.is_some());
    let (_, ready) = get_json(&serve.at("/readyz"));
    assert_eq!(ready["failsafe"]["engaged"], false, "{ready}");
    assert_eq!(
        metric(&serve, "osproxy_directives_failsafe").as_deref(),
        Some("0")
    );

    cluster.stop_all();
    wait_until(PROMPTLY, "the fail-safe engages", || {
        metric(&serve, "osproxy_directives_failsafe").as_deref() == Some("1")
    });
    assert_eq!(
        view_ids(&serve),
        ["shape"],
        "only the capture stops applying"
    );
    // 200 or 503 (by --stale-after): either body says it.
    let (_, ready) = get_json(&serve.at("/readyz"));
    assert_eq!(ready["failsafe"]["engaged"], true, "{ready}");
    assert_eq!(ready["failsafe"]["withheld"], 1, "{ready}");
    assert!(ready["failsafe"]["since"].is_string(), "{ready}");
    let mut not_ready = Value::Null;
    wait_until(PROMPTLY, "/readyz answers 503 past --stale-after", || {
        let (code, body) = get_json(&serve.at("/readyz"));
        not_ready = body;
        code == 503
    });
    assert_eq!(not_ready["error"], "not_ready", "{not_ready}");
    assert_eq!(not_ready["failsafe"]["engaged"], true, "{not_ready}");
    let (_, admin) = get_json(&serve.at("/admin/directives"));
    assert_eq!(admin["failsafe"]["engaged"], true, "{admin}");
    let since = metric(&serve, "osproxy_directives_failsafe_since_seconds")
        .and_then(|s| s.parse::<f64>().ok());
    assert!(since.is_some_and(|s| s > 1.0e9), "{since:?}");
    assert_eq!(
        metric(&serve, "osproxy_directives_failsafe_withheld").as_deref(),
        Some("1")
    );

    cluster.start_all();
    wait_until(PROMPTLY, "the fail-safe releases", || {
        metric(&serve, "osproxy_directives_failsafe").as_deref() == Some("0")
    });
    wait_until(PROMPTLY, "the capture applies again", || {
        view_ids(&serve) == ["shape", "cap"]
    });
    assert_eq!(expiry(&serve), before, "with its original expiry");
    let (_, ready) = get_json(&serve.at("/readyz"));
    assert_eq!(ready["failsafe"]["engaged"], false, "{ready}");
    assert!(ready["failsafe"]["since"].is_null(), "{ready}");
}

#[test]
fn a_ceiling_clamps_a_published_rewrite_diff_and_status_shows_it() {
    let cluster = shared_cluster();
    let key = unique_key("serve-ceiling");
    let status_prefix = format!("{}/", unique_key("serve-ceiling-reports"));
    let endpoints = endpoints_arg(cluster);
    let serve = Serve::start(&[
        "--etcd",
        "--instance-id",
        "clamped-1",
        "--status-prefix",
        &status_prefix,
        "--endpoints",
        &endpoints,
        "--key",
        &key,
        "--max-level",
        "ShapeTiming",
        "--deny-capture",
    ]);
    cluster.put(
        &key,
        r#"{"directives":[{"id":"diff","level":"ShapeRewriteDiff","tenant":"acme","capture":true,"ttl_secs":600}]}"#,
    );
    let latest = mod_revision(cluster, &key);
    wait_until(PROMPTLY, "the directive applies", || {
        view_ids(&serve) == ["diff"]
    });
    let entry = view(&serve).remove(0);
    assert_eq!(entry["level"], "ShapeTiming", "{entry}");
    assert_eq!(entry["capture"], false, "{entry}");
    assert_eq!(
        entry["clamped"],
        serde_json::json!(["level", "capture"]),
        "{entry}"
    );
    let (_, admin) = get_json(&serve.at("/admin/directives"));
    assert_eq!(admin["clamped"][0]["id"], "diff", "{admin}");
    // The canonical form is what this instance applies.
    assert_eq!(admin["directives"][0]["level"], "ShapeTiming", "{admin}");
    assert_eq!(
        metric(&serve, "osproxy_directives_clamped").as_deref(),
        Some("1")
    );
    assert_eq!(
        metric(&serve, "osproxy_directives_clamps{ceiling=\"level\"}").as_deref(),
        Some("1")
    );
    assert_eq!(
        metric(
            &serve,
            "osproxy_directives_clamps{ceiling=\"sample_per_mille\"}"
        )
        .as_deref(),
        Some("0")
    );

    let status_args = |json: bool| {
        let mut args = vec![
            "status",
            "--status-prefix",
            &status_prefix,
            "--endpoints",
            &endpoints,
            "--key",
            &key,
        ];
        if json {
            args.push("--json");
        }
        run(&args)
    };
    let mut last = Value::Null;
    wait_until(PROMPTLY, "the instance reports the clamp", || {
        let r = status_args(true);
        last = r.json();
        last["instances"][0]["current_revision"].as_i64() >= Some(latest)
            && last["instances"][0]["clamped"] == serde_json::json!(["diff"])
    });
    assert_eq!(last["instances"][0]["state"], "current", "{last}");
    let human = status_args(false);
    human.expect_code(0);
    assert!(
        human.stdout.contains("current, clamped"),
        "{}",
        human.stdout
    );
}

#[test]
fn safety_flags_are_checked_before_anything_starts() {
    // Ceilings are for the fleet store only.
    let r = run(&["serve", "--listen", "127.0.0.1:0", "--max-level", "Shape"]);
    r.expect_code(2);
    assert!(r.stderr.contains("--etcd"), "{r:?}");
    for bad in [
        &["--failsafe-after", "0s"][..],
        &["--failsafe-after", "soon"],
        &["--failsafe-level", "Loud"],
        &["--max-sample-per-mille", "1001"],
        // Meaningless together: the fail-safe never engages.
        &["--failsafe-after", "off", "--failsafe-level", "Shape"],
    ] {
        let mut args = vec!["serve", "--etcd", "--endpoints", "127.0.0.1:1"];
        args.extend_from_slice(bad);
        let r = run(&args);
        r.expect_code(2);
        assert!(!r.stderr.contains("listening"), "{bad:?}: {r:?}");
    }
    let r = run(&[
        "serve",
        "--etcd",
        "--endpoints",
        "127.0.0.1:1",
        "--failsafe-after",
        "off",
        "--failsafe-level",
        "Shape",
    ]);
    assert!(r.stderr.contains("no effect"), "{r:?}");

    // Any flag another flag makes meaningless is refused with the reason
    // and what to do instead, before anything starts.
    for (args, reason) in [
        (
            &["--listen", "127.0.0.1:0", "--stale-after", "5s"][..],
            "--stale-after has no effect without --etcd",
        ),
        (
            &["--listen", "127.0.0.1:0", "--metrics-need-token"],
            "--metrics-need-token has no effect without a token",
        ),
        (
            &[
                "--etcd",
                "--endpoints",
                "127.0.0.1:1",
                "--status-lease-ttl",
                "30s",
            ],
            "--status-lease-ttl has no effect without --instance-id",
        ),
    ] {
        let mut all = vec!["serve"];
        all.extend_from_slice(args);
        let r = run(&all);
        r.expect_code(2);
        assert!(r.stderr.contains(reason), "{args:?}: {r:?}");
        assert!(r.stderr.contains("hint: "), "{args:?}: {r:?}");
        assert!(!r.stderr.contains("listening"), "{args:?}: {r:?}");
    }
    // Only typed flags count: an exported variable meant for the fleet
    // subcommands does not stop an in-memory instance.
    let serve = Serve::start_with_env(
        &["serve", "--listen", "127.0.0.1:0"],
        &[("OSPROXY_ETCD_ENDPOINTS", "127.0.0.1:1")],
    );
    assert!(serve.url.starts_with("http://127.0.0.1:"), "{}", serve.url);
}
