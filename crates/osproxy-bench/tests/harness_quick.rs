//! Keeps the propagation harness building and working: runs the built
//! binary in `--quick` mode (a real etcd, a few stores, short windows) and
//! checks that it exits cleanly with every section of its report. No timing
//! is asserted: the numbers of a smoke run on a shared machine mean nothing.

use std::fs::File;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

#[test]
fn quick_run_writes_every_section() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("harness-quick-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("propagation.json");

    // The harness's tables and progress go to files, shown on failure.
    let stdout = dir.join("stdout.txt");
    let stderr = dir.join("stderr.txt");
    let mut child = Command::new(env!("CARGO_BIN_EXE_propagation"))
        .arg("--quick")
        .arg("--out")
        .arg(&json)
        .arg("--plots")
        .arg(&dir)
        .stdout(File::create(&stdout).unwrap())
        .stderr(File::create(&stderr).unwrap())
        .spawn()
        .expect("start the harness");
    let output = || {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            std::fs::read_to_string(&stdout).unwrap_or_default(),
            std::fs::read_to_string(&stderr).unwrap_or_default()
        )
    };
    // Bounded (about 240 s of polls): a hung harness fails the test instead
    // of hanging CI.
    let mut polls = 0;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        polls += 1;
        if polls > 1200 {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the quick harness run took over 240 s\n{}", output());
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        status.success(),
        "harness exited with {status}\n{}",
        output()
    );

    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    for section in [
        "meta",
        "cost",
        "propagation",
        "churn",
        "recovery",
        "topology",
        "targets",
        "plots",
    ] {
        assert!(report.get(section).is_some(), "missing section {section}");
    }
    assert_eq!(report["meta"]["mode"], "quick");

    let runs = report["propagation"].as_array().unwrap();
    let counts: Vec<u64> = runs.iter().map(|r| r["stores"].as_u64().unwrap()).collect();
    assert_eq!(counts, [1, 10]);
    for run in runs {
        for series in [
            "store_every",
            "store_per_store",
            "baseline",
            "bare_fleet_every",
        ] {
            let s = &run[series];
            assert!(s["n"].as_u64().unwrap() > 0, "{series} has no samples");
            assert!(s["p50_ms"].is_number() && s["p99_ms"].is_number());
        }
    }
    assert!(runs[0]["store_via_reader"]["p50_ms"].is_number());

    let cost = &report["cost"];
    assert_eq!(cost["stores"], 10);
    assert!(cost["rss_per_store_kib"].is_number());
    assert!(cost["connections_per_store"].is_number());

    let churn = &report["churn"];
    assert!(churn["quiet_reads_per_s"].as_f64().unwrap() > 0.0);
    assert!(churn["churn_reads_per_s"].as_f64().unwrap() > 0.0);

    let names: Vec<&str> = report["recovery"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names[0].contains("killed"));
    assert!(names[1].contains("frozen"));
    assert!(names[2].contains("restarted"));
    for s in report["recovery"].as_array().unwrap() {
        assert_eq!(s["fault_to_visible"]["missed"], 0, "{}", s["name"]);
    }

    // Direct and through one grpc-proxy, at 1 and 10 stores; the proxy
    // causes no reconnects.
    let topo = report["topology"].as_array().unwrap();
    let shapes: Vec<(u64, u64)> = topo
        .iter()
        .map(|r| {
            (
                r["proxies"].as_u64().unwrap(),
                r["stores"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(shapes, [(0, 1), (0, 10), (1, 1), (1, 10)]);
    for r in topo {
        assert_eq!(r["store_every_sent"]["missed"], 0, "{r}");
        assert!(r["server_rss_with_stores_kib"].as_u64().unwrap() > 0, "{r}");
        if r["proxies"] == 1 {
            assert_eq!(r["reconnects"], 0, "{r}");
        }
    }

    assert!(!report["targets"].as_array().unwrap().is_empty());
    for plot in report["plots"].as_array().unwrap() {
        let path = PathBuf::from(plot.as_str().unwrap());
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{} is not an SVG", path.display());
    }
    assert!(json.with_extension("md").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
