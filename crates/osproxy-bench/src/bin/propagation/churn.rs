//! Churn: hot-path reads per second (`reader.current()` + `evaluate`) on
//! two threads while 100 publishes per second land on the store's key, beside
//! the same reads with no publishes. Quiet and churn windows alternate
//! (Q C, C Q, Q C, …) so that drift in the machine's load cancels out, and
//! each round's pair of adjacent windows gives one ratio.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use osproxy_core::{Clock, SystemClock};
use osproxy_etcd::EtcdDirectiveStore;
use osproxy_observe::{DiagLevel, DirectiveReader};
use serde::Serialize;
use tokio::runtime::Runtime;

use crate::fleet::{connect_store, StoreOpts, Writer};
use crate::sys::{machine_busy, mono, pct_of_core, pid_cpu, process_cpu};
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
    /// Distinct snapshots the window read (quiet: one per part).
    pub sets_read: u64,
    /// Times a reader saw the evaluated level change (proof it saw swaps).
    pub level_changes_seen: u64,
    pub etcd_cpu_pct: f64,
    /// CPU used by every other process on the machine (not this one, not
    /// etcd) during the window, % of one core: other people's work.
    pub others_cpu_pct: f64,
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
    pub ratio_of_means: f64,
    /// The median over rounds of (churn window rate / quiet window rate):
    /// the figure checked against the target.
    pub ratio: f64,
    /// Every round's ratio, ascending.
    pub round_ratios: Vec<f64>,
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

/// Runs `threads` readers while `work` runs on this thread; each reader's
/// (reads, time reading, level changes seen).
fn reads_during(
    store: &EtcdDirectiveStore,
    threads: usize,
    work: impl FnOnce() -> Res<()>,
) -> Res<Vec<(u64, Duration, u64)>> {
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let reader = store.reader();
                let stop = &stop;
                scope.spawn(move || read_loop(reader, stop))
            })
            .collect();
        let outcome = work();
        stop.store(true, Ordering::Relaxed);
        let mut out = Vec::new();
        for h in handles {
            out.push(h.join().map_err(|_| "reader thread panicked")?);
        }
        outcome.map(|()| out)
    })
}

fn add(total: &mut [(u64, Duration, u64)], part: &[(u64, Duration, u64)]) {
    for (t, p) in total.iter_mut().zip(part) {
        t.0 += p.0;
        t.1 += p.1;
        t.2 += p.2;
    }
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
    // A quiet window is read in one-second parts, each on a freshly published
    // set (published between parts, outside the timing): how fast a read is
    // varies by some 30 % between two allocations of the same set, and a
    // churn window reads hundreds of them, so the quiet rate must average
    // over several too.
    let parts = u32::try_from(settings.window.as_secs()).unwrap_or(1).max(1);
    let part = settings.window / parts;
    let mut windows = Vec::new();
    for round in 0..settings.rounds {
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for churn in order {
            let etcd0 = pid_cpu(etcd_pid);
            let (busy0, own0) = (machine_busy(), process_cpu());
            let t0 = mono();
            let mut per_thread = vec![(0u64, Duration::ZERO, 0u64); settings.reader_threads];
            let mut publishes = 0u64;
            let mut swaps = 0u64;
            let mut instances = 0u64;
            if churn {
                let swaps0 = store.swaps();
                let results = reads_during(&store, settings.reader_threads, || {
                    let end = mono() + settings.window;
                    let start = mono();
                    let mut k = 0u32;
                    loop {
                        let now = mono();
                        if now >= end {
                            return Ok(());
                        }
                        // A fixed schedule: a slow put delays the next ones
                        // but does not thin the rate out.
                        let due = start + period * k;
                        if due > now {
                            std::thread::sleep(due.saturating_duration_since(now));
                            continue;
                        }
                        writer.put(&key, values.value(next_value))?;
                        next_value += 1;
                        publishes += 1;
                        k += 1;
                    }
                })?;
                swaps = store.swaps() - swaps0;
                instances = swaps + 1;
                add(&mut per_thread, &results);
            } else {
                for _ in 0..parts {
                    let before = store.swaps();
                    writer.put(&key, values.value(next_value))?;
                    next_value += 1;
                    let until = mono() + Duration::from_secs(2);
                    while store.swaps() == before && mono() < until {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    let results = reads_during(&store, settings.reader_threads, || {
                        std::thread::sleep(part);
                        Ok(())
                    })?;
                    instances += 1;
                    add(&mut per_thread, &results);
                }
            }
            let elapsed = mono().saturating_duration_since(t0);
            let etcd = pid_cpu(etcd_pid).saturating_sub(etcd0);
            let others = machine_busy()
                .saturating_sub(busy0)
                .saturating_sub(process_cpu().saturating_sub(own0))
                .saturating_sub(etcd);
            let reads: u64 = per_thread.iter().map(|r| r.0).sum();
            let read_time: f64 = per_thread.iter().map(|r| r.1.as_secs_f64()).sum::<f64>()
                / per_thread.len().max(1) as f64;
            // Each thread's own rate, summed: threads start and stop a few
            // microseconds apart.
            let rate: f64 = per_thread
                .iter()
                .map(|r| r.0 as f64 / r.1.as_secs_f64().max(1e-9))
                .sum();
            windows.push(Window {
                churn,
                seconds: read_time,
                reads,
                reads_per_s: rate,
                publishes,
                swaps,
                sets_read: instances,
                level_changes_seen: per_thread.iter().map(|r| r.2).sum(),
                etcd_cpu_pct: pct_of_core(etcd, elapsed),
                others_cpu_pct: pct_of_core(others, elapsed),
            });
        }
    }
    let mean = |churn: bool, f: &dyn Fn(&Window) -> f64| {
        let v: Vec<f64> = windows.iter().filter(|w| w.churn == churn).map(f).collect();
        v.iter().sum::<f64>() / (v.len().max(1) as f64)
    };
    let quiet = mean(false, &|w| w.reads_per_s);
    let busy = mean(true, &|w| w.reads_per_s);
    // Each round's two windows are adjacent in time: their ratio is the
    // least disturbed by other load on the machine.
    let mut ratios: Vec<f64> = windows
        .chunks(2)
        .filter_map(|pair| {
            let q = pair.iter().find(|w| !w.churn)?;
            let c = pair.iter().find(|w| w.churn)?;
            (q.reads_per_s > 0.0).then(|| c.reads_per_s / q.reads_per_s)
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    let median_ratio = match ratios.len() {
        0 => 0.0,
        n if n % 2 == 1 => ratios[n / 2],
        n => (ratios[n / 2 - 1] + ratios[n / 2]) / 2.0,
    };
    Ok(Churn {
        reader_threads: settings.reader_threads,
        directives: settings.directives,
        target_publishes_per_s: f64::from(settings.publishes_per_s),
        window_s: settings.window.as_secs_f64(),
        quiet_reads_per_s: quiet,
        churn_reads_per_s: busy,
        ratio_of_means: if quiet > 0.0 { busy / quiet } else { 0.0 },
        ratio: median_ratio,
        round_ratios: ratios,
        achieved_publishes_per_s: mean(true, &|w| w.publishes as f64 / w.seconds.max(1e-9)),
        swaps_per_s: mean(true, &|w| w.swaps as f64 / w.seconds.max(1e-9)),
        windows,
    })
}
