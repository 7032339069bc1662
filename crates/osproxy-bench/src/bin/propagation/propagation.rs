//! Propagation: from a write being acknowledged to the new set being visible
//! in every store, beside bare etcd watches measured on the same etcd.
//!
//! Two keys per store count `n`, written alternately so that both series are
//! measured under the same conditions, one write at a time:
//!
//! - the **store key**, watched by the `n` stores (on the 2-worker runtime)
//!   and by one bare watch on its own thread (the **baseline**: what etcd and
//!   one client connection cost, no store);
//! - the **bare key**, watched by `n` bare watches on the 2-worker runtime
//!   (the **bare fleet**: what `n` watch connections cost in one process, no
//!   store).
//!
//! A store's visibility time is the stamp it takes itself right after its
//! snapshot swap (`status().last_update_unix_nanos`), so measuring a thousand
//! stores costs no polling. With one store a sampler thread also spins on the
//! store's `DirectiveReader` to time visibility through the read path
//! directly; the two are reported side by side.

use std::time::Duration;

use osproxy_etcd::EtcdDirectiveStore;
use serde::Serialize;
use tokio::runtime::Runtime;

use crate::fleet::{Ack, BareFleet, BaselineWatch, ReaderSampler, Slot, Writer};
use crate::stats::{Cdf, Summary};
use crate::sys::{mono, process_cpu, rss_kib, signed_delta, XorShift};
use crate::workload::Values;
use crate::Res;

/// Unrecorded writes per key before the measured ones.
const WARMUP_WRITES: usize = 3;

/// What one store count measured.
#[derive(Debug, Serialize)]
pub struct PropagationRun {
    pub stores: usize,
    pub writes: usize,
    /// Per write: the last store to have it ("every store has it").
    pub store_every: Summary,
    /// Every (write, store) pair.
    pub store_per_store: Summary,
    /// Per write, paired: the last store's stamp minus the baseline watch's
    /// receipt of the same write. Independent of when the writer's thread
    /// got its acknowledgement.
    pub store_every_minus_baseline: Summary,
    /// One bare watch on the store key, own thread and runtime.
    pub baseline: Summary,
    /// Per write: the last of `n` bare watches on the bare key.
    pub bare_fleet_every: Summary,
    /// Every (write, bare watch) pair.
    pub bare_fleet_per_watch: Summary,
    /// One store: visibility through its `DirectiveReader`, timed by a
    /// spinning sampler thread.
    pub store_via_reader: Option<Summary>,
    /// One store: reader-sampler time minus the store's own swap stamp.
    pub reader_minus_stamp: Option<Summary>,
    /// Put round trip of the writer (sent → acknowledged), store key.
    pub put_rtt: Summary,
    /// The same series measured from the moment the put was sent: the
    /// acknowledgement itself queues behind etcd's fan-out and this
    /// machine's two cores when a thousand watchers receive the write.
    pub from_sent: FromSent,
    /// Process CPU per store-key write (ack wait included), ms.
    pub cpu_per_store_write_ms: f64,
    /// Process CPU per bare-key write, ms.
    pub cpu_per_bare_write_ms: f64,
    /// Resident memory per bare watch (its own connection), measured when
    /// the bare fleet was created: what etcd-client alone costs.
    pub bare_fleet_rss_per_watch_kib: Option<f64>,
    /// Distributions for the plots.
    pub cdfs: Vec<Cdf>,
}

/// Latencies from "put sent" instead of "put acknowledged".
#[derive(Debug, Serialize)]
pub struct FromSent {
    pub baseline: Summary,
    pub store_every: Summary,
    pub store_per_store: Summary,
    pub bare_fleet_every: Summary,
    /// Put round trip of the bare-key writes.
    pub bare_put_rtt: Summary,
    /// Distributions for the plots.
    pub cdfs: Vec<Cdf>,
}

/// Settings of one run.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub writes: usize,
    /// Wait at most this long for every watcher to have a write.
    pub cap: Duration,
}

/// Raw series of one run, nanoseconds.
#[derive(Default)]
struct Series {
    every: Vec<i64>,
    every_missed: usize,
    per_store: Vec<i64>,
    per_store_missed: usize,
    baseline: Vec<i64>,
    baseline_missed: usize,
    bare_every: Vec<i64>,
    bare_every_missed: usize,
    bare_per: Vec<i64>,
    bare_per_missed: usize,
    reader: Vec<i64>,
    reader_missed: usize,
    reader_minus_stamp: Vec<i64>,
    every_minus_baseline: Vec<i64>,
    rtt: Vec<i64>,
    bare_rtt: Vec<i64>,
    every_sent: Vec<i64>,
    per_store_sent: Vec<i64>,
    baseline_sent: Vec<i64>,
    bare_every_sent: Vec<i64>,
    cpu_store: Duration,
    cpu_bare: Duration,
}

/// Measures propagation to `stores`, all following `store_key` (whose value
/// is `values.value(0)`), on `endpoint`.
pub fn run(
    rt: &Runtime,
    endpoint: &str,
    writer: &mut Writer,
    values: &Values,
    store_key: &str,
    stores: Vec<EtcdDirectiveStore>,
    settings: Settings,
) -> Res<PropagationRun> {
    let n = stores.len();
    let bare_key = osproxy_test_support::unique_key("bench-prop-bare");
    writer.put(&bare_key, values.value(0))?;
    let baseline = BaselineWatch::start(endpoint, store_key)?;
    let rss0 = rss_kib();
    let bare = BareFleet::start(rt, endpoint, &bare_key, n)?;
    std::thread::sleep(Duration::from_millis(500));
    #[allow(clippy::cast_precision_loss)]
    let bare_rss = (rss_kib() as f64 - rss0 as f64) / n.max(1) as f64;
    let mut sampler = if n == 1 {
        Some(ReaderSampler::start(&stores[0])?)
    } else {
        None
    };
    let mut series = Series::default();
    let mut rng = XorShift::seeded();
    // Both keys hold value 0: the first write is value 1, a real change.
    let mut next_store_value = 1;
    let mut next_bare_value = 1;
    for w in 0..WARMUP_WRITES + settings.writes {
        let record = w >= WARMUP_WRITES;
        // Alternate which key goes first, so neither always follows a gap.
        let order = if w % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for store_turn in order {
            if store_turn {
                let i = next_store_value;
                next_store_value += 1;
                let s = if record { Some(&mut series) } else { None };
                store_write(
                    writer,
                    values,
                    i,
                    store_key,
                    &stores,
                    &baseline,
                    sampler.as_mut(),
                    settings.cap,
                    s,
                )?;
            } else {
                let i = next_bare_value;
                next_bare_value += 1;
                let s = if record { Some(&mut series) } else { None };
                bare_write(writer, values, i, &bare_key, &bare, settings.cap, s)?;
            }
            // A short, jittered gap: writes never overlap nor fall into step
            // with a timer.
            std::thread::sleep(rng.duration(Duration::from_millis(2), Duration::from_millis(5)));
        }
    }
    drop(sampler);
    drop(baseline);
    drop(bare);
    drop(stores);
    // Let the dropped connections close before anything else is measured.
    std::thread::sleep(Duration::from_millis(500));
    let mut run = summarise(n, settings.writes, series);
    run.bare_fleet_rss_per_watch_kib = Some(bare_rss);
    Ok(run)
}

#[allow(clippy::too_many_arguments)]
fn store_write(
    writer: &mut Writer,
    values: &Values,
    i: usize,
    key: &str,
    stores: &[EtcdDirectiveStore],
    baseline: &BaselineWatch,
    mut sampler: Option<&mut ReaderSampler>,
    cap: Duration,
    series: Option<&mut Series>,
) -> Res<()> {
    let before: Vec<u64> = stores.iter().map(EtcdDirectiveStore::swaps).collect();
    let generation = sampler.as_deref_mut().map(|s| s.arm(Values::level(i)));
    let cpu0 = process_cpu();
    let ack = writer.put(key, values.value(i))?;
    let deadline = mono() + cap;
    let mut pending: Vec<usize> = (0..stores.len()).collect();
    loop {
        pending.retain(|&s| stores[s].swaps() == before[s]);
        let base_done = baseline.slot.seen(ack.revision).is_some();
        let sampler_done = match (&sampler, generation) {
            (Some(s), Some(g)) => s.stamp(g).is_some(),
            _ => true,
        };
        if (pending.is_empty() && base_done && sampler_done) || mono() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let cpu1 = process_cpu();
    let Some(series) = series else {
        return Ok(());
    };
    series.cpu_store += cpu1.saturating_sub(cpu0);
    series.rtt.push(signed_delta(ack.acked, ack.sent));
    let mut worst: Option<i64> = Some(i64::MIN);
    let mut first_stamp = None;
    for (ix, store) in stores.iter().enumerate() {
        let swapped = store.swaps() != before[ix];
        match swapped.then(|| swap_stamp(store, &ack)).flatten() {
            Some(stamp) => {
                let lat = signed_delta(stamp, ack.acked);
                series.per_store.push(lat);
                series.per_store_sent.push(signed_delta(stamp, ack.sent));
                worst = worst.map(|w| w.max(lat));
                if ix == 0 {
                    first_stamp = Some(stamp);
                }
            }
            None => {
                series.per_store_missed += 1;
                worst = None;
            }
        }
    }
    match worst {
        Some(w) if !stores.is_empty() => {
            series.every.push(w);
            series
                .every_sent
                .push(w + signed_delta(ack.acked, ack.sent));
            if let Some(b) = baseline.slot.seen(ack.revision) {
                series
                    .every_minus_baseline
                    .push(w - signed_delta(b, ack.acked));
                series.baseline_sent.push(signed_delta(b, ack.sent));
            }
        }
        _ => series.every_missed += 1,
    }
    push_slot(
        &baseline.slot,
        &ack,
        &mut series.baseline,
        &mut series.baseline_missed,
    );
    if let (Some(s), Some(g)) = (sampler, generation) {
        match s.stamp(g) {
            Some(t) => {
                series.reader.push(signed_delta(t, ack.acked));
                if let Some(st) = first_stamp {
                    series.reader_minus_stamp.push(signed_delta(t, st));
                }
            }
            None => series.reader_missed += 1,
        }
    }
    Ok(())
}

/// The store's own stamp of the swap that applied `ack`, if it did. The
/// status is updated just after the swap counter moves: allow it a moment.
fn swap_stamp(store: &EtcdDirectiveStore, ack: &Ack) -> Option<u64> {
    let until = mono() + Duration::from_millis(20);
    loop {
        let st = store.status();
        if st.applied_revision >= ack.revision {
            return st.last_update_unix_nanos;
        }
        if mono() > until {
            return None;
        }
        std::thread::sleep(Duration::from_micros(50));
    }
}

fn push_slot(slot: &Slot, ack: &Ack, out: &mut Vec<i64>, missed: &mut usize) {
    match slot.seen(ack.revision) {
        Some(t) => out.push(signed_delta(t, ack.acked)),
        None => *missed += 1,
    }
}

fn bare_write(
    writer: &mut Writer,
    values: &Values,
    i: usize,
    key: &str,
    bare: &BareFleet,
    cap: Duration,
    series: Option<&mut Series>,
) -> Res<()> {
    let cpu0 = process_cpu();
    let ack = writer.put(key, values.value(i))?;
    let deadline = mono() + cap;
    let mut pending: Vec<usize> = (0..bare.slots.len()).collect();
    loop {
        pending.retain(|&s| bare.slots[s].seen(ack.revision).is_none());
        if pending.is_empty() || mono() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let cpu1 = process_cpu();
    let Some(series) = series else {
        return Ok(());
    };
    series.cpu_bare += cpu1.saturating_sub(cpu0);
    series.bare_rtt.push(signed_delta(ack.acked, ack.sent));
    let before = series.bare_per.len();
    let missed_before = series.bare_per_missed;
    for slot in &bare.slots {
        push_slot(
            slot,
            &ack,
            &mut series.bare_per,
            &mut series.bare_per_missed,
        );
    }
    if series.bare_per_missed == missed_before && !bare.slots.is_empty() {
        let worst = series.bare_per[before..].iter().copied().max();
        if let Some(w) = worst {
            series.bare_every.push(w);
            series
                .bare_every_sent
                .push(w + signed_delta(ack.acked, ack.sent));
        }
    } else {
        series.bare_every_missed += 1;
    }
    Ok(())
}

fn summarise(n: usize, writes: usize, s: Series) -> PropagationRun {
    let one = n == 1;
    let mut cdfs = vec![
        Cdf::of("baseline: one bare watch", &s.baseline),
        Cdf::of("store: every store has it", &s.every),
    ];
    if one {
        cdfs.push(Cdf::of("store: via its reader (sampler)", &s.reader));
    } else {
        cdfs.push(Cdf::of("store: per store", &s.per_store));
        cdfs.push(Cdf::of("bare fleet: every watch has it", &s.bare_every));
    }
    let mut sent_cdfs = vec![
        Cdf::of("baseline: one bare watch", &s.baseline_sent),
        Cdf::of("store: every store has it", &s.every_sent),
    ];
    if !one {
        sent_cdfs.push(Cdf::of("store: per store", &s.per_store_sent));
        sent_cdfs.push(Cdf::of(
            "bare fleet: every watch has it",
            &s.bare_every_sent,
        ));
    }
    #[allow(clippy::cast_precision_loss)]
    let per_write = |d: Duration| d.as_secs_f64() * 1e3 / writes.max(1) as f64;
    PropagationRun {
        stores: n,
        writes,
        store_every: Summary::of(&s.every, s.every_missed),
        store_per_store: Summary::of(&s.per_store, s.per_store_missed),
        store_every_minus_baseline: Summary::of(&s.every_minus_baseline, 0),
        baseline: Summary::of(&s.baseline, s.baseline_missed),
        bare_fleet_every: Summary::of(&s.bare_every, s.bare_every_missed),
        bare_fleet_per_watch: Summary::of(&s.bare_per, s.bare_per_missed),
        store_via_reader: one.then(|| Summary::of(&s.reader, s.reader_missed)),
        reader_minus_stamp: one.then(|| Summary::of(&s.reader_minus_stamp, 0)),
        put_rtt: Summary::of(&s.rtt, 0),
        from_sent: FromSent {
            baseline: Summary::of(&s.baseline_sent, s.baseline_missed),
            store_every: Summary::of(&s.every_sent, s.every_missed),
            store_per_store: Summary::of(&s.per_store_sent, s.per_store_missed),
            bare_fleet_every: Summary::of(&s.bare_every_sent, s.bare_every_missed),
            bare_put_rtt: Summary::of(&s.bare_rtt, 0),
            cdfs: sent_cdfs,
        },
        cpu_per_store_write_ms: per_write(s.cpu_store),
        cpu_per_bare_write_ms: per_write(s.cpu_bare),
        bare_fleet_rss_per_watch_kib: None,
        cdfs,
    }
}
