//! `demo`: a throwaway etcd, three reference-service instances, a directive
//! for tenant acme applied by each within milliseconds, only acme's
//! requests on each instance's tape, stamped with the directive and
//! revision, switched off by each at expiry and nothing recorded after; and
//! the clear message when etcd is not installed.

mod common;

use common::*;

#[test]
fn demo_shows_three_instances_applying_and_expiring_a_directive() {
    let r = run(&["demo", "--ttl", "2s"]);
    r.expect_code(0);
    let out = &r.stdout;
    assert!(
        out.contains("3 instances connected: demo-1, demo-2, demo-3"),
        "{out}"
    );
    for id in ["demo-1", "demo-2", "demo-3"] {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("instance {id} applied revision ")))
            .unwrap_or_else(|| panic!("{id} did not report applying: {out}"));
        assert!(line.ends_with(" ms"), "{line}");
    }
    assert!(out.contains("3 of 3 instances report revision"), "{out}");
    assert!(
        out.contains("demo-1=ShapeTiming demo-2=ShapeTiming demo-3=ShapeTiming"),
        "{out}"
    );
    for id in ["demo-1", "demo-2", "demo-3"] {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("instance {id}: /admin/breakglass holds ")))
            .unwrap_or_else(|| panic!("{id} did not report its tape: {out}"));
        assert!(
            line.contains("holds 3 request(s), all tenant acme: "),
            "{line}"
        );
        assert_eq!(line.matches("[demo-flip @ revision ").count(), 3, "{line}");
        assert!(
            !line.contains("globex") && !line.contains("initech"),
            "{line}"
        );
    }
    assert!(
        out.contains("expired") && out.contains("all 3 instances evaluate Off"),
        "{out}"
    );
    assert!(
        out.contains("nothing more recorded (tapes: demo-1=3 demo-2=3 demo-3=3)"),
        "{out}"
    );
    for secret in ["s3cr3t-demo-token", "hunter2", "4111111111111111"] {
        assert!(!out.contains(secret), "{out}");
    }
    assert!(
        out.contains("stopped etcd and removed its data directory"),
        "{out}"
    );
    let dir = out
        .lines()
        .find_map(|l| l.split("(data in ").nth(1))
        .map(|d| d.trim_end_matches(')').to_owned())
        .unwrap_or_else(|| panic!("no data dir line: {out}"));
    assert!(!std::path::Path::new(&dir).exists(), "{dir} is cleaned up");
}

#[test]
fn demo_without_etcd_says_how_to_install_it() {
    let empty = tempfile::tempdir().unwrap();
    let mut cmd = command();
    cmd.arg("demo").env("PATH", empty.path());
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("etcd is not installed"), "{stderr}");
    assert!(stderr.contains("apt-get install etcd-server"), "{stderr}");

    let r = run(&["demo", "--etcd-bin", "/nonexistent/etcd"]);
    r.expect_code(1);
    run(&["demo", "--ttl", "0s"]).expect_code(2);
}
