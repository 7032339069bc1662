//! What the `tracing` recorder costs a service, as ratios against the same
//! request with the recorder absent, measured in the same run.
//!
//! Run with `cargo bench -p osproxy-bench --bench recorder`.
//!
//! The workload: one request span with 10 child spans and 20 debug events
//! (two per child) in the service's own target, no I/O; the service's fmt
//! layer writes to `io::sink` behind its baseline as a per-layer filter
//! (`info`, and `warn` as a second row). Cases, per baseline:
//!
//! - `absent`: registry + fmt layer, no recorder (the baseline);
//! - `off_empty`: the recorder added, an empty set (idle: `Interest::never`);
//! - `absent_bare`, `floor`: the request span alone (no children), without
//!   and with the recorder at 1,000 live directives: the floor is what any
//!   recorder that reads the request span must pay (build it, decide once);
//! - `off_1000`: the recorder added, 1,000 live `ShapeTiming` directives for
//!   other tenants (the recorder is on and decides every request; none
//!   applies); `off_1000_diff`: the same at `ShapeRewriteDiff` (debug
//!   callsites are then wanted too); `off_1000_ungated`: `off_1000` through
//!   `Recorder::layer` (per-layer filter only) instead of
//!   `Recorder::layer_with_baseline`;
//! - `timing`: one `ShapeTiming` directive matching every request, tape on;
//! - `timing_export`: the same plus OTLP/HTTP export to a real receiver on
//!   loopback, requests as fast as one thread runs them (export under load;
//!   spans dropped by the bounded queue are reported).
//!
//! And the decision alone: `Recorder::decide` against
//! `DirectiveSet::decide` on the same attributes (through a reader, with a
//! clock read, both), in the 1,000-directive set.
//!
//! Why not criterion: each case needs its own `tracing` dispatcher, and
//! callsite interest is process-wide (the union of every live dispatcher's),
//! so a case's subscriber is built, registered and dropped around each of
//! its windows; the cases then alternate in short windows, many rounds, so
//! that every case sees the same machine, and each ratio is the median of
//! the rounds' paired ratios.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::disallowed_methods,
    missing_docs
)]

use std::hint::black_box;

use osproxy_core::{EndpointKind, PartitionId, RequestId, SystemClock};
use osproxy_observe::{
    decode_directive_set, DirectiveSet, InMemoryDirectiveStore, RequestAttrs, RequestKeys,
};
use osproxy_test_support::OtlpReceiver;
use osproxy_tracing::{OtlpConfig, OtlpExport, Recorder};
use tracing::Dispatch;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::prelude::*;

const ROUNDS: usize = 31;
const REQUESTS_PER_WINDOW: usize = 2_000;
/// The `info` row's requests cost ~500x the `warn` row's (the fmt layer
/// formats every span): shorter windows, more rounds, so that the windows a
/// ratio pairs run close together in time on a shared machine.
const INFO_ROUNDS: usize = 101;
const INFO_WINDOW_DIVISOR: usize = 5;
const IDS: usize = 1024;

fn ids() -> Vec<String> {
    (0..IDS).map(|i| format!("req-{i:08}")).collect()
}

/// The request span alone, no children: what the recorder must build and
/// decide for every request while a directive is live.
#[inline(never)]
fn bare_request(tenant: &str, id: &str) {
    let span = tracing::info_span!(
        "request",
        tenant = tenant,
        index = "logs",
        principal = "alice",
        endpoint = "search",
        request_id = id,
    );
    let _in = span.enter();
}

#[inline(never)]
fn request(tenant: &str, id: &str) {
    let span = tracing::info_span!(
        "request",
        tenant = tenant,
        index = "logs",
        principal = "alice",
        endpoint = "search",
        request_id = id,
    );
    let _in = span.enter();
    for step in 0..10u64 {
        let child = tracing::info_span!("step", n = step);
        let _c = child.enter();
        tracing::debug!(k = step, "first");
        tracing::debug!(k = step, "second");
    }
}

fn others_body(n: usize, level: &str) -> String {
    let items: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"id":"other-{i}","level":"{level}","tenant":"other-{i}","sample_per_mille":1000,"ttl_secs":86400}}"#
            )
        })
        .collect();
    format!(r#"{{"directives":[{}]}}"#, items.join(","))
}

fn store_with(body: &str) -> InMemoryDirectiveStore {
    let store = InMemoryDirectiveStore::new();
    store.publish(decode_directive_set(body.as_bytes(), &SystemClock).unwrap());
    store
}

struct Case {
    name: &'static str,
    recorder: Option<Recorder>,
    /// `Recorder::layer` (per-layer filter only) instead of
    /// `Recorder::layer_with_baseline`.
    ungated: bool,
    workload: fn(&str, &str),
    requests: usize,
}

impl Case {
    fn new(name: &'static str, recorder: Option<Recorder>) -> Self {
        Case {
            name,
            recorder,
            ungated: false,
            workload: request,
            requests: REQUESTS_PER_WINDOW,
        }
    }
}

fn dispatch(baseline: LevelFilter, case: &Case) -> Dispatch {
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::sink)
        .with_filter(baseline);
    match &case.recorder {
        None => Dispatch::new(tracing_subscriber::registry().with(fmt)),
        Some(r) if case.ungated => {
            Dispatch::new(tracing_subscriber::registry().with(fmt).with(r.layer()))
        }
        Some(r) => Dispatch::new(
            tracing_subscriber::registry()
                .with(fmt)
                .with(r.layer_with_baseline(baseline)),
        ),
    }
}

/// ns per request of one window of `case`.
fn window(
    baseline: LevelFilter,
    case: &Case,
    divisor: usize,
    ids: &[String],
    offset: &mut usize,
) -> f64 {
    let requests = (case.requests / divisor).max(1);
    let d = dispatch(baseline, case);
    let work = case.workload;
    tracing::dispatcher::with_default(&d, || {
        // Interest is rebuilt when the dispatcher registers; a few requests
        // warm the thread-locals before the clock starts.
        for i in 0..16 {
            work("acme", &ids[i % IDS]);
        }
        let t0 = std::time::Instant::now();
        for _ in 0..requests {
            *offset = (*offset + 1) % IDS;
            work(black_box("acme"), black_box(&ids[*offset]));
        }
        t0.elapsed().as_nanos() as f64 / requests as f64
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn run_row(
    baseline: LevelFilter,
    rounds: usize,
    divisor: usize,
    cases: &[Case],
    ids: &[String],
) -> Vec<(f64, f64)> {
    let mut per_case: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    let mut offset = 0;
    for round in 0..rounds {
        let mut this = vec![0.0; cases.len()];
        for k in 0..cases.len() {
            // Rotate the order every round.
            let i = (k + round) % cases.len();
            this[i] = window(baseline, &cases[i], divisor, ids, &mut offset);
        }
        for i in 0..cases.len() {
            per_case[i].push(this[i]);
            ratios[i].push(this[i] / this[0]);
        }
    }
    per_case
        .into_iter()
        .zip(ratios)
        .map(|(t, r)| (median(t), median(r)))
        .collect()
}

fn decision_row(
    store: &InMemoryDirectiveStore,
    recorder: &Recorder,
    ids: &[String],
) -> (f64, f64, f64) {
    let clock = SystemClock;
    let tenant = PartitionId::from("acme");
    let principal = osproxy_core::PrincipalId::from("alice");
    let attrs = RequestAttrs::new(EndpointKind::Search)
        .with_tenant(&tenant)
        .with_index_str("logs")
        .with_principal(&principal);
    let keys = RequestKeys {
        tenant: Some("acme"),
        index: "logs",
        principal: "alice",
        endpoint: EndpointKind::Search,
    };
    let rids: Vec<RequestId> = ids.iter().map(|s| RequestId::from(s.as_str())).collect();
    let mut reader = store.reader();
    const N: usize = 200_000;
    let mut base = Vec::new();
    let mut ours = Vec::new();
    let mut ratios = Vec::new();
    for _ in 0..ROUNDS {
        let t0 = std::time::Instant::now();
        for i in 0..N {
            let set: &DirectiveSet = reader.current();
            let now = osproxy_core::Clock::now(&clock);
            black_box(set.decide(black_box(&attrs), now, &rids[i % IDS]));
        }
        let b = t0.elapsed().as_nanos() as f64 / N as f64;
        let t0 = std::time::Instant::now();
        for i in 0..N {
            black_box(recorder.decide(black_box(&keys), &ids[i % IDS]));
        }
        let o = t0.elapsed().as_nanos() as f64 / N as f64;
        base.push(b);
        ours.push(o);
        ratios.push(o / b);
    }
    (median(base), median(ours), median(ratios))
}

fn main() {
    let ids = ids();
    let others = store_with(&others_body(1_000, "ShapeTiming"));
    let others_diff = store_with(&others_body(1_000, "ShapeRewriteDiff"));
    let empty = store_with(r#"{"directives":[]}"#);
    let timing_body = r#"{"directives":[{"id":"acme-timing","level":"ShapeTiming","tenant":"acme","sample_per_mille":1000,"ttl_secs":86400,"ring_buffer":true}]}"#;
    let timing = store_with(timing_body);
    let timing_x = store_with(timing_body);
    let receiver = OtlpReceiver::start();
    let recorder = |s: &InMemoryDirectiveStore| {
        Recorder::builder(s.shared().clone())
            .refresh_every(None)
            .build()
    };
    let export_recorder = Recorder::builder(timing_x.shared().clone())
        .refresh_every(None)
        .otlp(OtlpExport::start(OtlpConfig::new(receiver.traces_url())).unwrap())
        .build();
    let off_1000 = recorder(&others);
    // Recorded requests cost hundreds of times more: shorter windows.
    let slow = REQUESTS_PER_WINDOW / 10;
    let cases = [
        Case::new("absent", None),
        Case {
            workload: bare_request,
            ..Case::new("absent_bare", None)
        },
        Case {
            workload: bare_request,
            ..Case::new("floor", Some(off_1000.clone()))
        },
        Case::new("off_empty", Some(recorder(&empty))),
        Case::new("off_1000", Some(off_1000.clone())),
        Case::new("off_1000_diff", Some(recorder(&others_diff))),
        Case {
            ungated: true,
            ..Case::new("off_1000_ungated", Some(off_1000.clone()))
        },
        Case {
            requests: slow,
            ..Case::new("timing", Some(recorder(&timing)))
        },
        Case {
            requests: slow,
            ..Case::new("timing_export", Some(export_recorder.clone()))
        },
    ];
    // `OSPROXY_RECORDER_CASES=absent,off_1000` runs only those cases (for a
    // profile); the full run is the reported one.
    let only = std::env::var("OSPROXY_RECORDER_CASES").ok();
    let cases: Vec<Case> = cases
        .into_iter()
        .filter(|c| {
            only.as_deref()
                .is_none_or(|o| o.split(',').any(|n| n == c.name))
        })
        .collect();
    println!(
        "recorder cost: cases alternating; warn: {ROUNDS} rounds × {REQUESTS_PER_WINDOW} requests per case (recorded cases a tenth), info: {INFO_ROUNDS} rounds, windows a {INFO_WINDOW_DIVISOR}th of that"
    );
    let rows_only = std::env::var("OSPROXY_RECORDER_ROWS").ok();
    for (label, baseline) in [("info", LevelFilter::INFO), ("warn", LevelFilter::WARN)] {
        if rows_only
            .as_deref()
            .is_some_and(|r| !r.split(',').any(|n| n == label))
        {
            continue;
        }
        let (rounds, divisor) = if baseline == LevelFilter::INFO {
            (INFO_ROUNDS, INFO_WINDOW_DIVISOR)
        } else {
            (ROUNDS, 1)
        };
        let rows = run_row(baseline, rounds, divisor, &cases, &ids);
        let absent = rows[0].0;
        println!("baseline {label}:");
        for (case, (ns, ratio)) in cases.iter().zip(&rows) {
            println!(
                "  {:<14} {:>9.1} ns/request  {:>6.3}x absent  {:>+8.1} ns",
                case.name,
                ns,
                ratio,
                ns - absent
            );
        }
        for name in ["off_empty", "off_1000", "off_1000_diff"] {
            let Some(i) = cases.iter().position(|c| c.name == name) else {
                continue;
            };
            let ok = rows[i].1 <= 1.10;
            println!(
                "  target {name} <= 1.10x absent ({label}): {:.3}x {}",
                rows[i].1,
                if ok { "met" } else { "MISSED" }
            );
        }
        // The floor: what any recorder must do per request while a
        // directive is live (build the request span to read its attributes,
        // decide once), over the same bare span without the recorder. What
        // off_1000 adds beyond it is the recorder's cost on the children.
        let at = |name: &str| cases.iter().position(|c| c.name == name).map(|i| rows[i].0);
        if let (Some(bare), Some(floor), Some(off)) =
            (at("absent_bare"), at("floor"), at("off_1000"))
        {
            let unavoidable = floor - bare;
            println!(
                "  floor (request span + one decision) adds {unavoidable:+.1} ns; off_1000 adds {:+.1} ns, of which {:+.1} ns beyond the floor",
                off - absent,
                off - absent - unavoidable
            );
            if absent > 0.0 && unavoidable > 0.10 * absent {
                println!(
                    "  ({label}: the floor alone is {:.2}x absent; <= 1.10x is not reachable by any recorder that reads the request span)",
                    (absent + unavoidable) / absent
                );
            }
        }
    }
    let s = export_recorder.stats();
    println!(
        "export under load: {} spans queued, {} exported, {} dropped (queue full), {} failed",
        s.export_queued, s.exported, s.export_dropped, s.export_failed
    );
    if rows_only
        .as_deref()
        .is_some_and(|r| !r.split(',').any(|n| n == "decision"))
    {
        return;
    }
    let decider = recorder(&others);
    let (base, ours, ratio) = decision_row(&others, &decider, &ids);
    println!(
        "decision, 1,000 live directives, none matching: DirectiveSet::decide {base:.1} ns, Recorder::decide {ours:.1} ns, {ratio:.3}x; target <= 1.2x: {}",
        if ratio <= 1.2 { "met" } else { "MISSED" }
    );
    drop(cases);
    drop(receiver);
}
