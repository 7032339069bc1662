//! The propagation harness: starts its own etcd (osproxy-test-support) and
//! measures, in one run on the same etcd, what a fleet of etcd directive
//! stores costs and how fast it follows a publish:
//!
//! 1. **cost** — connections, resident memory and idle CPU of 1,000 stores;
//! 2. **propagation** — write acknowledged → visible in 1, 100 and 1,000
//!    stores, beside bare etcd watches measured on interleaved writes;
//! 3. **churn** — hot-path reads per second on two threads with and without
//!    100 publishes per second;
//! 4. **recovery** — on a three-member cluster: member killed, connection
//!    frozen (default and tuned staleness bound), whole cluster restarted.
//!
//! ```text
//! cargo run --release -p osproxy-bench --bin propagation            # full, ~5 min
//! cargo run -p osproxy-bench --bin propagation -- --quick           # smoke, < 60 s
//!   --stores LIST store counts for propagation (default 1,100,1000; quick 1,10);
//!                 the largest also sizes the cost phase
//!   --writes N    measured writes per store count (default 200; quick 20)
//!   --out PATH    JSON report (default bench-out/propagation[-quick].json)
//!   --plots DIR   SVG plots (default docs/bench; with --quick, next to --out)
//! ```
//!
//! Everything listens on 127.0.0.1; every loop is bounded by a count or a
//! deadline. Tables go to stdout (Markdown) and next to the JSON (`.md`).
// A measurement tool, not library code: a failed setup step may panic, and
// its clocks come from `osproxy_core::SystemClock` like everything else.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod churn;
mod cost;
mod fleet;
mod plot;
mod propagation;
mod recovery;
mod report;
mod scale;
mod stats;
mod sys;
mod target;
mod topology;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use osproxy_test_support::{unique_key, EtcdCluster};
use serde::Serialize;

use crate::fleet::{connect_stores, StoreOpts, Writer};
use crate::sys::{load_average, mono, wall, Machine};
use crate::workload::Values;

/// Errors of the harness: reported, then exit 1.
pub type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Sizes and windows of one run.
#[derive(Clone, Debug, Serialize)]
struct Plan {
    mode: &'static str,
    store_counts: Vec<usize>,
    writes: usize,
    cap_ms: u64,
    directives: usize,
    cost_baseline_window_s: u64,
    cost_idle_window_s: u64,
    churn_rounds: usize,
    churn_window_s: u64,
    churn_directives: usize,
    churn_publishes_per_s: u32,
    kill_rounds: usize,
    freeze_default_rounds: usize,
    freeze_tuned_rounds: usize,
    tuned_stale_after_s: u64,
    tuned_progress_interval_s: u64,
    restart_rounds: usize,
    restart_outage_ms: u64,
    topology_store_counts: Vec<usize>,
    topology_proxies: Vec<usize>,
    topology_writes: usize,
}

impl Plan {
    fn full() -> Plan {
        Plan {
            mode: "full",
            store_counts: vec![1, 100, 1000],
            writes: 200,
            cap_ms: 1000,
            directives: 10,
            cost_baseline_window_s: 10,
            cost_idle_window_s: 30,
            churn_rounds: 12,
            churn_window_s: 1,
            churn_directives: 100,
            churn_publishes_per_s: 100,
            kill_rounds: 5,
            freeze_default_rounds: 4,
            freeze_tuned_rounds: 5,
            tuned_stale_after_s: 3,
            tuned_progress_interval_s: 1,
            restart_rounds: 3,
            restart_outage_ms: 1000,
            topology_store_counts: vec![1, 100, 1000],
            topology_proxies: vec![0, 1, 2],
            topology_writes: 50,
        }
    }

    fn quick() -> Plan {
        Plan {
            mode: "quick",
            store_counts: vec![1, 10],
            writes: 20,
            cap_ms: 1000,
            directives: 10,
            cost_baseline_window_s: 1,
            cost_idle_window_s: 2,
            churn_rounds: 1,
            churn_window_s: 1,
            churn_directives: 100,
            churn_publishes_per_s: 100,
            kill_rounds: 1,
            freeze_default_rounds: 0,
            freeze_tuned_rounds: 1,
            tuned_stale_after_s: 3,
            tuned_progress_interval_s: 1,
            restart_rounds: 1,
            restart_outage_ms: 200,
            topology_store_counts: vec![1, 10],
            topology_proxies: vec![0, 1],
            topology_writes: 5,
        }
    }
}

struct Args {
    quick: bool,
    topology_only: bool,
    scale: bool,
    etcd_bin_dirs: Vec<PathBuf>,
    stores: Option<Vec<usize>>,
    writes: Option<usize>,
    out: Option<PathBuf>,
    plots: Option<PathBuf>,
}

fn parse_args() -> Res<Args> {
    let mut args = Args {
        quick: false,
        topology_only: false,
        scale: false,
        etcd_bin_dirs: Vec::new(),
        stores: None,
        writes: None,
        out: None,
        plots: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => args.quick = true,
            "--topology-only" => args.topology_only = true,
            "--scale" => args.scale = true,
            "--etcd-bin-dir" => args
                .etcd_bin_dirs
                .push(it.next().ok_or("--etcd-bin-dir needs a directory")?.into()),
            "--out" => args.out = Some(it.next().ok_or("--out needs a path")?.into()),
            "--stores" => {
                let list = it.next().ok_or("--stores needs a list, e.g. 1,100,1000")?;
                let counts = list
                    .split(',')
                    .map(|n| n.trim().parse::<usize>().map(|n| n.max(1)))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("--stores {list:?}: {e}"))?;
                args.stores = Some(counts);
            }
            "--writes" => {
                let n = it.next().ok_or("--writes needs a number")?;
                args.writes = Some(n.parse().map_err(|e| format!("--writes {n:?}: {e}"))?);
            }
            "--plots" => args.plots = Some(it.next().ok_or("--plots needs a directory")?.into()),
            "-h" | "--help" => {
                println!(
                    "usage: propagation [--quick] [--topology-only | --scale [--etcd-bin-dir DIR]...] [--stores N,N,..] [--writes N] [--out PATH] [--plots DIR]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)").into()),
        }
    }
    Ok(args)
}

/// Which code was measured: the commit, and whether the crates on the
/// measured path had uncommitted changes.
#[derive(Serialize)]
struct Source {
    commit: String,
    uncommitted_in_measured_crates: Vec<String>,
}

impl Source {
    fn describe() -> Source {
        let git = |args: &[&str]| {
            std::process::Command::new("git")
                .args(args)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
        };
        Source {
            commit: git(&["rev-parse", "HEAD"]).trim().to_owned(),
            uncommitted_in_measured_crates: git(&[
                "status",
                "--porcelain",
                "--",
                "crates/osproxy-core",
                "crates/osproxy-observe",
                "crates/osproxy-etcd/src",
            ])
            .lines()
            .map(str::to_owned)
            .collect(),
        }
    }
}

#[derive(Serialize)]
struct Meta {
    /// Over the whole run, in cores: everything busy on the machine, this
    /// process, and the difference (etcd and other people's work).
    machine_busy_cores: f64,
    harness_cores: f64,
    mode: &'static str,
    command: String,
    source: Source,
    machine: Machine,
    load_average_before: [f64; 3],
    load_average_after: [f64; 3],
    started_unix_s: u64,
    duration_s: f64,
    value_bytes: usize,
    plan: Plan,
}

#[derive(Serialize)]
struct Report {
    meta: Meta,
    cost: cost::Cost,
    propagation: Vec<propagation::PropagationRun>,
    churn: churn::Churn,
    recovery: Vec<recovery::Scenario>,
    topology: Vec<topology::TopologyRun>,
    targets: Vec<target::Target>,
    plots: Vec<String>,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("propagation harness failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Res<()> {
    let args = parse_args()?;
    let mut plan = if args.quick {
        Plan::quick()
    } else {
        Plan::full()
    };
    if let Some(counts) = args.stores.clone() {
        plan.store_counts = counts;
    }
    if let Some(w) = args.writes {
        plan.writes = w.max(1);
    }
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from(if args.quick {
            "bench-out/propagation-quick.json"
        } else {
            "bench-out/propagation.json"
        })
    });
    let plots_dir = args.plots.clone().unwrap_or_else(|| {
        if args.quick {
            out.parent().map_or_else(PathBuf::new, PathBuf::from)
        } else {
            PathBuf::from("docs/bench")
        }
    });
    let started = wall();
    let t0 = mono();
    let (busy0, own0) = (sys::machine_busy(), sys::process_cpu());
    let load_before = load_average();
    let machine = Machine::describe();
    // Before anything runs: the code this binary was built from.
    let source = Source::describe();
    eprintln!(
        "propagation harness ({}): {} CPUs ({}), etcd {}, load {:?}",
        plan.mode, machine.nproc, machine.cpu_model, machine.etcd_version, load_before
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("stores")
        .enable_all()
        .build()?;

    let topology_settings = topology::Settings {
        store_counts: args
            .stores
            .clone()
            .unwrap_or_else(|| plan.topology_store_counts.clone()),
        proxies: plan.topology_proxies.clone(),
        writes: args.writes.unwrap_or(plan.topology_writes).max(1),
        cap: Duration::from_millis(plan.cap_ms),
    };
    if args.scale {
        return scale_only(&rt, &args, &plan, source, machine, &out, t0);
    }
    if args.topology_only {
        let values = Values::new(plan.directives);
        let runs = topology::run(&rt, &values, &topology_settings)?;
        let targets = topology::targets(&runs);
        let mut text = topology::table(&runs);
        text.push('\n');
        text += &report::targets_table(&targets);
        let json = serde_json::json!({
            "mode": plan.mode,
            "source": source,
            "machine": machine,
            "settings": topology_settings,
            "topology": runs,
            "targets": targets,
            "duration_s": mono().saturating_duration_since(t0).as_secs_f64(),
        });
        let out = out.with_file_name(format!(
            "topology{}.json",
            if args.quick { "-quick" } else { "" }
        ));
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&out, serde_json::to_vec_pretty(&json)?)?;
        std::fs::write(out.with_extension("md"), &text)?;
        let plot = topology::plot(&plots_dir, &runs)?;
        println!("{text}");
        println!("JSON: {}", out.display());
        println!("plot: {}", plot.display());
        return Ok(());
    }

    // One single-member etcd for cost, propagation and churn.
    let cluster = EtcdCluster::single();
    let member = cluster.member(0);
    let endpoint = member.endpoint();
    let etcd_port = member.client_addr().port();
    let etcd_pid = member.pid().ok_or("etcd is not running")?;
    let values = Values::new(plan.directives);
    let mut writer = Writer::connect(std::slice::from_ref(&endpoint))?;
    let cap = Duration::from_millis(plan.cap_ms);

    // Cost first, in a process that has not yet allocated for other stores;
    // its stores then serve the largest propagation run.
    let largest = plan.store_counts.iter().copied().max().unwrap_or(1);
    let big_key = unique_key("bench-prop-store");
    writer.put(&big_key, values.value(0))?;
    eprintln!("cost: {largest} stores");
    let (cost, big_stores) = cost::run(
        &rt,
        &endpoint,
        etcd_port,
        etcd_pid,
        &big_key,
        cost::Settings {
            stores: largest,
            baseline_window: Duration::from_secs(plan.cost_baseline_window_s),
            idle_window: Duration::from_secs(plan.cost_idle_window_s),
        },
    )?;

    let settings = propagation::Settings {
        writes: plan.writes,
        cap,
    };
    let mut runs = Vec::new();
    eprintln!("propagation: {largest} stores × {} writes", plan.writes);
    runs.push(propagation::run(
        &rt,
        &endpoint,
        &mut writer,
        &values,
        &big_key,
        big_stores,
        settings,
    )?);
    for &n in plan.store_counts.iter().rev().filter(|&&n| n != largest) {
        eprintln!("propagation: {n} stores × {} writes", plan.writes);
        let key = unique_key("bench-prop-store");
        writer.put(&key, values.value(0))?;
        let stores = connect_stores(
            &rt,
            std::slice::from_ref(&endpoint),
            &key,
            n,
            StoreOpts::DEFAULT,
        )?;
        runs.push(propagation::run(
            &rt,
            &endpoint,
            &mut writer,
            &values,
            &key,
            stores,
            settings,
        )?);
    }
    runs.sort_by_key(|r| r.stores);

    eprintln!(
        "churn: {} × ({} s quiet + {} s churn)",
        plan.churn_rounds, plan.churn_window_s, plan.churn_window_s
    );
    let churn = churn::run(
        &rt,
        &endpoint,
        etcd_pid,
        &mut writer,
        churn::Settings {
            rounds: plan.churn_rounds,
            window: Duration::from_secs(plan.churn_window_s),
            publishes_per_s: plan.churn_publishes_per_s,
            reader_threads: 2,
            directives: plan.churn_directives,
        },
    )?;
    drop(writer);
    drop(cluster);

    let recovery = recovery::run(
        &rt,
        recovery::Settings {
            kill_rounds: plan.kill_rounds,
            freeze_default_rounds: plan.freeze_default_rounds,
            freeze_tuned_rounds: plan.freeze_tuned_rounds,
            tuned_stale_after: Duration::from_secs(plan.tuned_stale_after_s),
            tuned_progress_interval: Duration::from_secs(plan.tuned_progress_interval_s),
            restart_rounds: plan.restart_rounds,
            restart_outage: Duration::from_millis(plan.restart_outage_ms),
        },
    )?;

    let topology_runs = topology::run(&rt, &values, &topology_settings)?;

    let mut plots = plot::draw(&plots_dir, &runs)?;
    plots.push(topology::plot(&plots_dir, &topology_runs)?);
    let mut targets = report::targets(&runs, &cost, &churn);
    targets.extend(topology::targets(&topology_runs));
    let mut text = String::new();
    text += &report::propagation_table(&runs);
    text.push('\n');
    text += &report::from_sent_table(&runs);
    text.push('\n');
    text += &report::cpu_table(&runs);
    text.push('\n');
    text += &report::recovery_table(&recovery);
    text.push('\n');
    text += &report::cost_table(&cost);
    text.push('\n');
    text += &report::churn_table(&churn);
    text.push('\n');
    text += &topology::table(&topology_runs);
    text.push('\n');
    text += &report::targets_table(&targets);

    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let run_time = mono().saturating_duration_since(t0);
    let cores = |d: Duration| d.as_secs_f64() / run_time.as_secs_f64().max(1e-9);
    let report = Report {
        meta: Meta {
            machine_busy_cores: cores(sys::machine_busy().saturating_sub(busy0)),
            harness_cores: cores(sys::process_cpu().saturating_sub(own0)),
            mode: plan.mode,
            command,
            source,
            machine,
            load_average_before: load_before,
            load_average_after: load_average(),
            started_unix_s: started / 1_000_000_000,
            duration_s: mono().saturating_duration_since(t0).as_secs_f64(),
            value_bytes: values.bytes(),
            plan,
        },
        cost,
        propagation: runs,
        churn,
        recovery,
        topology: topology_runs,
        targets,
        plots: plots.iter().map(|p| p.display().to_string()).collect(),
    };
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, serde_json::to_vec_pretty(&report)?)?;
    std::fs::write(out.with_extension("md"), &text)?;
    println!("{text}");
    println!(
        "load average before {:?}, after {:?}; {:.0} s; machine busy {:.2} cores on average, this process {:.2}",
        report.meta.load_average_before,
        report.meta.load_average_after,
        report.meta.duration_s,
        report.meta.machine_busy_cores,
        report.meta.harness_cores
    );
    println!("JSON: {}", out.display());
    for p in &report.plots {
        println!("plot: {p}");
    }
    Ok(())
}

/// `--scale`: the topology phase on every `--etcd-bin-dir` (the default
/// etcd when none is given) at 1 to 5,000 stores, 20 writes per size, a 2 s
/// cap per write (so a p99 over 1 s shows), stopping a (release, topology)
/// at the first size that trips [`scale::STOP_P99_MS`] or fails to connect.
fn scale_only(
    rt: &tokio::runtime::Runtime,
    args: &Args,
    plan: &Plan,
    source: Source,
    machine: Machine,
    out: &std::path::Path,
    t0: osproxy_core::Instant,
) -> Res<()> {
    let settings = topology::Settings {
        store_counts: args
            .stores
            .clone()
            .unwrap_or_else(|| vec![1, 100, 1000, 5000]),
        proxies: plan.topology_proxies.clone(),
        writes: args.writes.unwrap_or(20).max(1),
        cap: Duration::from_secs(2),
    };
    let dirs: Vec<Option<PathBuf>> = if args.etcd_bin_dirs.is_empty() {
        vec![None]
    } else {
        args.etcd_bin_dirs.iter().cloned().map(Some).collect()
    };
    let values = Values::new(plan.directives);
    let measured = scale::run(rt, &values, &settings, &dirs);
    let (text, targets) = scale::report(&measured);
    let json = serde_json::json!({
        "mode": plan.mode,
        "source": source,
        "machine": machine,
        "settings": settings,
        "etcd_bin_dirs": dirs,
        "scale": measured,
        "targets": targets,
        "duration_s": mono().saturating_duration_since(t0).as_secs_f64(),
    });
    let out = out.with_file_name("scale.json");
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, serde_json::to_vec_pretty(&json)?)?;
    std::fs::write(out.with_extension("md"), &text)?;
    println!("{text}");
    println!("JSON: {}", out.display());
    Ok(())
}
