//! Churn: hot-path reads per second (`reader.current()` + `evaluate`) on
//! two threads while 100 publishes per second land on the store's key, beside
//! the same reads with no publishes. Quiet and churn windows alternate
//! (Q C C Q Q C …) so that drift in the machine's load cancels out.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use osproxy_core::{Clock, SystemClock};
use osproxy_etcd::EtcdDirectiveStore;
use osproxy_observe::{DiagLevel, DirectiveReader};
use serde::Serialize;
use tokio::runtime::Runtime;

use crate::fleet::{connect_store, StoreOpts, Writer};
use crate::sys::{mono, pct_of_core, pid_cpu};
use crate::workload::{Probe, Values};
use crate::Res;

/// Evaluations between two reads of the clock and of the stop flag.
const BATCH: u64 = 256;

/// One window.
#[derive(Debug, Serialize)]
pub struct Window {
    pub churn: bool,
    pub seconds: f64,
    pub reads: u64,
    pub reads_per_s: f64,
    pub publishes: u64,
    pub swaps: u64,
    /// Times a reader saw the evaluated level change (proof it saw swaps).
    pub level_changes_seen: u64,
    pub etcd_cpu_pct: f64,
}

/// What the churn phase measured.
#[derive(Debug, Serialize)]
pub struct Churn {
    pub reader_threads: usize,
    pub directives: usize,
    pub target_publishes_per_s: f64,
    pub window_s: f64,
    pub quiet_reads_per_s: f64,
    pub churn_reads_per_s: f64,
    /// `churn_reads_per_s / quiet_reads_per_s`.
    pub ratio: f64,
    pub achieved_publishes_per_s: f64,
    pub swaps_per_s: f64,
    pub windows: Vec<Window>,
}

/// Settings of the churn phase.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub rounds: usize,
    pub window: Duration,
    pub publishes_per_s: u32,
    pub reader_threads: usize,
    pub directives: usize,
}

fn read_loop(mut reader: DirectiveReader, stop: &AtomicBool) -> (u64, Duration, u64) {
    let probe = Probe::default();
    let attrs = probe.attrs();
    let clock = SystemClock;
    let mut reads = 0u64;
    let mut changes = 0u64;
    let mut last = DiagLevel::Off;
    let start = mono();
    while !stop.load(Ordering::Relaxed) {
        let now = clock.now();
        for _ in 0..BATCH {
            let level = reader.current().evaluate(&attrs, now, &probe.id);
            if level != last {
                changes += 1;
                last = level;
            }
        }
        reads += BATCH;
    }
    (reads, mono().saturating_duration_since(start), changes)
}

/// Runs the alternating windows on a fresh store of `settings.directives`.
pub fn run(
    rt: &Runtime,
    endpoint: &str,
    etcd_pid: u32,
    writer: &mut Writer,
    settings: Settings,
) -> Res<Churn> {
    let values = Values::new(settings.directives);
    let key = osproxy_test_support::unique_key("bench-churn");
    writer.put(&key, values.value(0))?;
    let store: EtcdDirectiveStore = rt.block_on(connect_store(
        &[endpoint.to_owned()],
        &key,
        StoreOpts::DEFAULT,
        rt.handle().clone(),
    ))?;
    let mut next_value = 1usize;
    let period = Duration::from_secs(1) / settings.publishes_per_s.max(1);
    let mut windows = Vec::new();
    for round in 0..settings.rounds {
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for churn in order {
            let stop = AtomicBool::new(false);
            let swaps0 = store.swaps();
            let etcd0 = pid_cpu(etcd_pid);
            let t0 = mono();
            let mut publishes = 0u64;
            let results = std::thread::scope(|scope| -> Res<Vec<(u64, Duration, u64)>> {
                let handles: Vec<_> = (0..settings.reader_threads)
                    .map(|_| {
                        let reader = store.reader();
                        let stop = &stop;
                        scope.spawn(move || read_loop(reader, stop))
                    })
                    .collect();
                let end = t0 + settings.window;
                let mut k = 0u32;
                let outcome = loop {
                    let now = mono();
                    if now >= end {
                        break Ok(());
                    }
                    if !churn {
                        std::thread::sleep(end.saturating_duration_since(now));
                        continue;
                    }
                    // Publishes on a fixed schedule: a slow put delays the
                    // next ones but does not thin the rate out.
                    let due = t0 + period * k;
                    if due > now {
                        std::thread::sleep(due.saturating_duration_since(now));
                        continue;
                    }
                    if let Err(e) = writer.put(&key, values.value(next_value)) {
                        break Err(e);
                    }
                    next_value += 1;
                    publishes += 1;
                    k += 1;
                };
                stop.store(true, Ordering::Relaxed);
                let mut out = Vec::new();
                for h in handles {
                    out.push(h.join().map_err(|_| "reader thread panicked")?);
                }
                outcome.map(|()| out)
            })?;
            let elapsed = mono().saturating_duration_since(t0);
            let reads: u64 = results.iter().map(|r| r.0).sum();
            // Each thread's own rate, summed: threads start and stop a few
            // microseconds apart.
            let rate: f64 = results
                .iter()
                .map(|r| r.0 as f64 / r.1.as_secs_f64().max(1e-9))
                .sum();
            windows.push(Window {
                churn,
                seconds: elapsed.as_secs_f64(),
                reads,
                reads_per_s: rate,
                publishes,
                swaps: store.swaps() - swaps0,
                level_changes_seen: results.iter().map(|r| r.2).sum(),
                etcd_cpu_pct: pct_of_core(pid_cpu(etcd_pid).saturating_sub(etcd0), elapsed),
            });
        }
    }
    let mean = |churn: bool, f: &dyn Fn(&Window) -> f64| {
        let v: Vec<f64> = windows.iter().filter(|w| w.churn == churn).map(f).collect();
        v.iter().sum::<f64>() / (v.len().max(1) as f64)
    };
    let quiet = mean(false, &|w| w.reads_per_s);
    let busy = mean(true, &|w| w.reads_per_s);
    Ok(Churn {
        reader_threads: settings.reader_threads,
        directives: settings.directives,
        target_publishes_per_s: f64::from(settings.publishes_per_s),
        window_s: settings.window.as_secs_f64(),
        quiet_reads_per_s: quiet,
        churn_reads_per_s: busy,
        ratio: if quiet > 0.0 { busy / quiet } else { 0.0 },
        achieved_publishes_per_s: mean(true, &|w| w.publishes as f64 / w.seconds.max(1e-9)),
        swaps_per_s: mean(true, &|w| w.swaps as f64 / w.seconds.max(1e-9)),
        windows,
    })
}
