//! Recovery: from a fault to the first publish after it being visible in
//! the store, on a three-member cluster.
//!
//! - **member killed**: `SIGKILL` the member the store is connected to, then
//!   publish through another member at once;
//! - **connection frozen**: a `TcpForwarder` in front of the member the store
//!   uses (its first endpoint; the second is another member, direct) stops
//!   moving bytes; publish through a third member at once. Only the staleness
//!   bound can notice this, so it is measured with the default (15 s) and a
//!   tuned bound;
//! - **whole cluster restarted**: every member killed, a short outage, every
//!   member started again; publish as soon as the cluster is healthy.

use std::time::Duration;

use osproxy_etcd::config::{DEFAULT_PROGRESS_INTERVAL, DEFAULT_STALE_AFTER};
use osproxy_etcd::EtcdDirectiveStore;
use osproxy_test_support::{EtcdCluster, TcpForwarder};
use serde::Serialize;
use tokio::runtime::Runtime;

use crate::fleet::{connect_store, StoreOpts, Writer};
use crate::stats::{ms, Summary};
use crate::sys::{mono, signed_delta, wall, XorShift};
use crate::workload::Values;
use crate::Res;

/// One fault and the publish after it.
#[derive(Debug, Serialize)]
pub struct Sample {
    /// Fault → the store's swap stamp.
    pub fault_to_visible_ms: Option<f64>,
    /// Publish acknowledged → the store's swap stamp.
    pub ack_to_visible_ms: Option<f64>,
    /// Fault → publish acknowledged (a leader election, a restart).
    pub fault_to_ack_ms: f64,
    /// Reconnects the store made for this fault.
    pub reconnects: u64,
    pub note: String,
}

/// One scenario.
#[derive(Debug, Serialize)]
pub struct Scenario {
    pub name: String,
    pub stale_after_s: f64,
    pub progress_interval_s: f64,
    pub rounds: usize,
    pub fault_to_visible: Summary,
    pub ack_to_visible: Summary,
    pub samples: Vec<Sample>,
}

/// Rounds per scenario; 0 skips it.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub kill_rounds: usize,
    pub freeze_default_rounds: usize,
    pub freeze_tuned_rounds: usize,
    pub tuned_stale_after: Duration,
    pub tuned_progress_interval: Duration,
    pub restart_rounds: usize,
    pub restart_outage: Duration,
}

/// Runs every scenario with rounds on a fresh three-member cluster.
pub fn run(rt: &Runtime, settings: Settings) -> Res<Vec<Scenario>> {
    let cluster = EtcdCluster::three();
    let values = Values::new(10);
    let mut out = Vec::new();
    if settings.kill_rounds > 0 {
        eprintln!("recovery: member killed × {}", settings.kill_rounds);
        out.push(kill(rt, &cluster, &values, settings.kill_rounds)?);
    }
    for (rounds, opts) in [
        (settings.freeze_default_rounds, StoreOpts::DEFAULT),
        (
            settings.freeze_tuned_rounds,
            StoreOpts {
                stale_after: Some(settings.tuned_stale_after),
                progress_interval: Some(settings.tuned_progress_interval),
            },
        ),
    ] {
        if rounds > 0 {
            eprintln!(
                "recovery: connection frozen × {rounds} (stale_after {:?})",
                opts.stale_after.unwrap_or(DEFAULT_STALE_AFTER)
            );
            out.push(freeze(rt, &cluster, &values, rounds, opts)?);
        }
    }
    if settings.restart_rounds > 0 {
        eprintln!(
            "recovery: whole cluster restarted × {}",
            settings.restart_rounds
        );
        out.push(restart(
            rt,
            &cluster,
            &values,
            settings.restart_rounds,
            settings.restart_outage,
        )?);
    }
    Ok(out)
}

fn store(
    rt: &Runtime,
    endpoints: &[String],
    key: &str,
    opts: StoreOpts,
) -> Res<EtcdDirectiveStore> {
    rt.block_on(connect_store(endpoints, key, opts, rt.handle().clone()))
}

/// Waits until the store applied `revision` (or `cap` passes); its stamp.
fn wait_applied(store: &EtcdDirectiveStore, revision: i64, cap: Duration) -> Option<u64> {
    let until = mono() + cap;
    loop {
        let st = store.status();
        if st.applied_revision >= revision {
            return st.last_update_unix_nanos;
        }
        if mono() > until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits until the store is watching (bounded).
fn wait_watching(store: &EtcdDirectiveStore, cap: Duration) -> Res<()> {
    let until = mono() + cap;
    while !store.status().connected {
        if mono() > until {
            return Err(format!("store not connected after {cap:?}").into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

fn sample(
    fault: u64,
    ack: crate::fleet::Ack,
    stamp: Option<u64>,
    reconnects: u64,
    note: String,
) -> (Sample, Option<i64>, Option<i64>) {
    let f2v = stamp.map(|s| signed_delta(s, fault));
    let a2v = stamp.map(|s| signed_delta(s, ack.acked));
    (
        Sample {
            fault_to_visible_ms: f2v.map(ms),
            ack_to_visible_ms: a2v.map(ms),
            fault_to_ack_ms: ms(signed_delta(ack.acked, fault)),
            reconnects,
            note,
        },
        f2v,
        a2v,
    )
}

fn scenario(
    name: &str,
    opts: StoreOpts,
    rows: Vec<(Sample, Option<i64>, Option<i64>)>,
) -> Scenario {
    let f2v: Vec<i64> = rows.iter().filter_map(|r| r.1).collect();
    let a2v: Vec<i64> = rows.iter().filter_map(|r| r.2).collect();
    let missed = rows.len() - f2v.len();
    Scenario {
        name: name.to_owned(),
        stale_after_s: opts
            .stale_after
            .unwrap_or(DEFAULT_STALE_AFTER)
            .as_secs_f64(),
        progress_interval_s: opts
            .progress_interval
            .unwrap_or(DEFAULT_PROGRESS_INTERVAL)
            .as_secs_f64(),
        rounds: rows.len(),
        fault_to_visible: Summary::of(&f2v, missed),
        ack_to_visible: Summary::of(&a2v, missed),
        samples: rows.into_iter().map(|r| r.0).collect(),
    }
}

fn kill(rt: &Runtime, cluster: &EtcdCluster, values: &Values, rounds: usize) -> Res<Scenario> {
    let key = osproxy_test_support::unique_key("bench-rec-kill");
    let endpoints = cluster.endpoints();
    Writer::connect(&endpoints)?.put(&key, values.value(0))?;
    let store = store(rt, &endpoints, &key, StoreOpts::DEFAULT)?;
    let mut rows = Vec::new();
    // Round r publishes value r: value 0 is the starting one.
    for round in 1..=rounds {
        wait_watching(&store, Duration::from_secs(30))?;
        let used = store.status().endpoint.unwrap_or_default();
        let m = cluster
            .members()
            .iter()
            .position(|mem| used.ends_with(&format!(":{}", mem.client_addr().port())))
            .ok_or("cannot tell which member the store uses")?;
        let other = (m + 1) % cluster.len();
        let mut writer = Writer::connect(&[cluster.member(other).endpoint()])?;
        let leader = cluster.member(m).status().is_leader();
        let reconnects = store.status().reconnects;
        let fault = wall();
        cluster.member(m).kill();
        let ack = writer.put_retrying(&key, values.value(round), Duration::from_secs(20))?;
        let stamp = wait_applied(&store, ack.revision, Duration::from_secs(30));
        let note = format!(
            "killed m{m}{}; published via m{other}",
            if leader { " (the leader)" } else { "" }
        );
        let reconnected = store.status().reconnects - reconnects;
        rows.push(sample(fault, ack, stamp, reconnected, note));
        cluster.member(m).restart();
        std::thread::sleep(Duration::from_secs(1));
    }
    Ok(scenario("member killed", StoreOpts::DEFAULT, rows))
}

fn freeze(
    rt: &Runtime,
    cluster: &EtcdCluster,
    values: &Values,
    rounds: usize,
    opts: StoreOpts,
) -> Res<Scenario> {
    let key = osproxy_test_support::unique_key("bench-rec-freeze");
    let forwarder = TcpForwarder::start(cluster.member(0).client_addr());
    let endpoints = vec![forwarder.endpoint(), cluster.member(1).endpoint()];
    let mut writer = Writer::connect(&[cluster.member(2).endpoint()])?;
    writer.put(&key, values.value(0))?;
    let stale_after = opts.stale_after.unwrap_or(DEFAULT_STALE_AFTER);
    let progress = opts.progress_interval.unwrap_or(DEFAULT_PROGRESS_INTERVAL);
    let mut rng = XorShift::seeded();
    let mut rows = Vec::new();
    // Round r publishes value r: value 0 is the starting one.
    for round in 1..=rounds {
        forwarder.thaw();
        let store = store(rt, &endpoints, &key, opts)?;
        wait_watching(&store, Duration::from_secs(30))?;
        let through = store.status().endpoint.unwrap_or_default();
        if !through.ends_with(&forwarder.endpoint()) {
            return Err(format!("store connected to {through}, not the forwarder").into());
        }
        // The fault lands at a uniformly random point of the store's silence
        // cycle (an idle watch hears from etcd once per `progress_interval`,
        // the reply to its progress request); the first message after the
        // watch is created starts the cycle.
        std::thread::sleep(Duration::from_millis(200));
        std::thread::sleep(rng.duration(Duration::ZERO, progress));
        let reconnects = store.status().reconnects;
        let fault = wall();
        forwarder.freeze();
        let ack = writer.put(&key, values.value(round))?;
        let stamp = wait_applied(&store, ack.revision, stale_after + Duration::from_secs(20));
        let reconnected = store.status().reconnects - reconnects;
        rows.push(sample(
            fault,
            ack,
            stamp,
            reconnected,
            "froze the forwarder in front of m0; published via m2".into(),
        ));
        drop(store);
    }
    forwarder.thaw();
    let name = format!(
        "connection frozen (stale_after {}s)",
        stale_after.as_secs_f64()
    );
    Ok(scenario(&name, opts, rows))
}

fn restart(
    rt: &Runtime,
    cluster: &EtcdCluster,
    values: &Values,
    rounds: usize,
    outage: Duration,
) -> Res<Scenario> {
    let key = osproxy_test_support::unique_key("bench-rec-restart");
    let endpoints = cluster.endpoints();
    Writer::connect(&endpoints)?.put(&key, values.value(0))?;
    let store = store(rt, &endpoints, &key, StoreOpts::DEFAULT)?;
    let mut rows = Vec::new();
    // Round r publishes value r: value 0 is the starting one.
    for round in 1..=rounds {
        wait_watching(&store, Duration::from_secs(60))?;
        let reconnects = store.status().reconnects;
        let fault = wall();
        cluster.stop_all();
        std::thread::sleep(outage);
        cluster.start_all();
        let healthy = wall();
        let mut writer = Writer::connect(&endpoints)?;
        let ack = writer.put_retrying(&key, values.value(round), Duration::from_secs(30))?;
        let stamp = wait_applied(&store, ack.revision, Duration::from_secs(60));
        let reconnected = store.status().reconnects - reconnects;
        let note = format!(
            "outage {:?}; healthy again {:.0} ms after the kill",
            outage,
            ms(signed_delta(healthy, fault))
        );
        rows.push(sample(fault, ack, stamp, reconnected, note));
        std::thread::sleep(Duration::from_secs(1));
    }
    Ok(scenario(
        "whole cluster restarted",
        StoreOpts::DEFAULT,
        rows,
    ))
}
