//! The scale tier (`--scale`): the topology phase
//! ([`crate::topology`]) on several etcd releases in one run, at fleet sizes
//! up to 5,000 stores, directly and through one and two proxies of the same
//! release. Per (release, topology) the sizes run smallest first; a size
//! whose every-store p99 exceeds [`STOP_P99_MS`] (a write that never reached
//! every store within the cap counts as exceeding it) or where a store fails
//! to connect ends that (release, topology): larger sizes are not run, and
//! the report says which criterion stopped it.
//!
//! Per release it reports the topology table, the targets at 1,000
//! stores, and per added store: the etcd member's live heap and the proxy's
//! own memory and CPU (through one proxy, between the two largest sizes
//! that ran).

use std::path::PathBuf;

use serde::Serialize;
use tokio::runtime::Runtime;

use crate::target::Target;
use crate::topology::{self, Settings, TopologyRun};
use crate::workload::Values;

/// A size whose every-store p99 exceeds this ends its (release, topology).
pub const STOP_P99_MS: f64 = 1000.0;

/// Why a (release, topology) stopped before its largest size.
#[derive(Debug, Serialize)]
pub struct Stop {
    pub etcd: String,
    pub topology: String,
    /// The size that tripped the criterion.
    pub stores: usize,
    pub criterion: String,
}

/// What `--scale` measured.
#[derive(Debug, Serialize)]
pub struct Scale {
    pub runs: Vec<TopologyRun>,
    pub stops: Vec<Stop>,
}

/// Runs `s` once per entry of `bin_dirs` (`None`: the default etcd).
pub fn run(rt: &Runtime, values: &Values, s: &Settings, bin_dirs: &[Option<PathBuf>]) -> Scale {
    let mut sizes = s.store_counts.clone();
    sizes.sort_unstable();
    let mut scale = Scale {
        runs: Vec::new(),
        stops: Vec::new(),
    };
    for dir in bin_dirs {
        for &k in &s.proxies {
            for &n in &sizes {
                eprintln!(
                    "scale: etcd {} × {} × {n} stores",
                    dir.as_deref()
                        .map_or_else(|| "(default)".into(), |d| d.display().to_string()),
                    topology::name(k)
                );
                let criterion = match topology::one(rt, values, k, n, s, dir.as_deref()) {
                    Ok(r) => {
                        let every = &r.store_every_sent;
                        let criterion = if every.missed > 0 {
                            Some(format!(
                                "p99 > 1 s: {} of {} writes did not reach every store within {} ms",
                                every.missed,
                                every.n + every.missed,
                                s.cap.as_millis()
                            ))
                        } else {
                            every
                                .p99_ms
                                .filter(|p| *p > STOP_P99_MS)
                                .map(|p| format!("p99 > 1 s: {p:.0} ms"))
                        };
                        let etcd = r.etcd.clone();
                        // A line per size as it finishes, so that a run cut
                        // short still tells what it measured.
                        eprintln!(
                            "scale: etcd {etcd} {} {n}: every store p50/p99 {}/{} ms, bare {}/{} ms, missed {}, heap {:?} → {:?} KiB, proxies {} KiB {:.3} ms/publish, reconnects {}",
                            r.topology,
                            crate::report::f3(every.p50_ms),
                            crate::report::f3(every.p99_ms),
                            crate::report::f3(r.bare_every_sent.p50_ms),
                            crate::report::f3(r.bare_every_sent.p99_ms),
                            every.missed,
                            r.server_heap_before_kib.map(|h| h.round()),
                            r.server_heap_with_stores_kib.map(|h| h.round()),
                            r.proxy_rss_kib,
                            r.proxy_cpu_per_publish_ms,
                            r.reconnects
                        );
                        scale.runs.push(r);
                        criterion.map(|c| (etcd, c))
                    }
                    Err(e) => Some((
                        dir.as_deref()
                            .map_or_else(|| "default".into(), |d| d.display().to_string()),
                        format!("a store failed to connect (or the run failed): {e}"),
                    )),
                };
                if let Some((etcd, criterion)) = criterion {
                    eprintln!("scale: stopped {} at {n}: {criterion}", topology::name(k));
                    scale.stops.push(Stop {
                        etcd,
                        topology: topology::name(k),
                        stores: n,
                        criterion,
                    });
                    break;
                }
            }
        }
    }
    scale
}

/// The releases in `runs`, in the order they ran.
fn releases(runs: &[TopologyRun]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in runs {
        if !out.contains(&r.etcd) {
            out.push(r.etcd.clone());
        }
    }
    out
}

/// Per added store through one proxy, between the two largest sizes that
/// ran: the member's live heap, the proxy's resident memory and its CPU per
/// publish.
fn per_added_store(runs: &[&TopologyRun]) -> Option<Target> {
    let mut one: Vec<&&TopologyRun> = runs.iter().filter(|r| r.proxies == 1).collect();
    one.sort_by_key(|r| r.stores);
    let [.., small, big] = one.as_slice() else {
        return None;
    };
    #[allow(clippy::cast_precision_loss)]
    let added = (big.stores - small.stores).max(1) as f64;
    let heap = |r: &TopologyRun| {
        crate::target::sub(r.server_heap_with_stores_kib, r.server_heap_before_kib)
    };
    let heap_slope = crate::target::sub(heap(big), heap(small)).map(|d| d / added);
    #[allow(clippy::cast_precision_loss)]
    let proxy_rss = (big.proxy_rss_kib as f64 - small.proxy_rss_kib as f64) / added;
    let proxy_cpu = (big.proxy_cpu_per_publish_ms - small.proxy_cpu_per_publish_ms) / added;
    Some(Target {
        name: format!(
            "per added store through one proxy ({} → {} stores)",
            small.stores, big.stores
        ),
        target: "member live heap ≤ 1 KiB; the proxy's memory and CPU reported".into(),
        measured: format!(
            "member heap {} KiB; proxy RSS {proxy_rss:.2} KiB; proxy CPU {:.4} ms per publish",
            crate::report::f3(heap_slope),
            proxy_cpu
        ),
        pass: heap_slope.map(|s| s <= 1.0),
    })
}

/// The report: per release its table, the targets at 1,000 stores
/// (and below), the per-added-store line, then every stop.
pub fn report(scale: &Scale) -> (String, Vec<(String, Vec<Target>)>) {
    let mut text = String::new();
    let mut all = Vec::new();
    for etcd in releases(&scale.runs) {
        let mine: Vec<&TopologyRun> = scale.runs.iter().filter(|r| r.etcd == etcd).collect();
        let upto_1000: Vec<TopologyRun> = mine
            .iter()
            .filter(|r| r.stores <= 1000)
            .map(|r| (*r).clone())
            .collect();
        let every: Vec<TopologyRun> = mine.iter().map(|r| (*r).clone()).collect();
        let mut targets = topology::targets(&upto_1000);
        targets.extend(per_added_store(&mine));
        text += &format!("### etcd {etcd}\n\n");
        text += &topology::table(&every);
        text.push('\n');
        text += &crate::report::targets_table(&targets);
        text.push('\n');
        all.push((etcd, targets));
    }
    if scale.stops.is_empty() {
        text += "No (release, topology) stopped: every size ran.\n";
    } else {
        text += "Stopped:\n\n";
        for s in &scale.stops {
            text += &format!(
                "- etcd {}, {}, at {} stores: {}\n",
                s.etcd, s.topology, s.stores, s.criterion
            );
        }
    }
    (text, all)
}
