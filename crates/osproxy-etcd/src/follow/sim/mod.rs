//! Deterministic simulation of the shipped watch session
//! ([`crate::session::Session`], the type the store and the change feed
//! drive) against a simulated etcd: seeded, replayable, a hundred thousand
//! random steps per run.
//!
//! The simulated etcd keeps an MVCC history over both layouts: puts (valid
//! and malformed values), deletes and multi-key transactions at one
//! revision, compaction, restarts, and rebuilds from empty (a new cluster
//! id, revisions going backwards). The simulation's driver carries out the
//! session's commands against it over two endpoints, while the network
//! drops streams, refuses connections, freezes them, batches and duplicates
//! events, answers or ignores progress requests (a grpc-proxy never answers
//! them) and moves virtual time; the proxy hop delivers events from outside
//! the range and second creations, lets its broadcast die while reads still
//! answer (every new watcher attaching to the dead one), or lets one watch
//! fall silent on a healthy transport. After every step it checks:
//!
//! 1. per cluster, the applied revision never decreases;
//! 2. after quiescence the served set equals the model's;
//! 3. a directive (ids are unique per write) is anchored once: its expiry is
//!    the same every time it is served, whatever re-reads or reconnects
//!    happened in between;
//! 4. a read that changes nothing never swaps the served set;
//! 5. a frozen connection is given up exactly `stale_after` after its last
//!    confirmation, and a healthy one never is;
//! 6. nothing from outside the range is ever served.
//!
//! Every command of the session must be carried out at least
//! [`COMMAND_FLOOR`] times per two seeds: a session imported but bypassed
//! fails the run.
//!
//! `OSPROXY_SIM_SEED=<n>` replays one seed; a failure names its seed and step.

use std::io::Write as _;
use std::time::Duration;

use osproxy_core::Clock;

mod client;
mod etcd;
mod network;

use client::Sim;

pub(super) const PROGRESS_EVERY: Duration = Duration::from_secs(10);
pub(super) const STALE_AFTER: Duration = Duration::from_secs(15);
/// Steps per (seed, layout) run; CI runs enough runs for 100,000 steps.
const STEPS: usize = 25_000;

/// Each command carried out at least this often per two seeds.
const COMMAND_FLOOR: usize = 1_000;

/// How often each command of the session was carried out.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Commands {
    pub(super) connect: usize,
    pub(super) check_held: usize,
    pub(super) read: usize,
    pub(super) watch: usize,
    pub(super) request_progress: usize,
    pub(super) liveness_read: usize,
    pub(super) swap: usize,
    pub(super) give_up: usize,
    pub(super) sleep: usize,
}

impl Commands {
    fn add(&mut self, o: Commands) {
        self.connect += o.connect;
        self.check_held += o.check_held;
        self.read += o.read;
        self.watch += o.watch;
        self.request_progress += o.request_progress;
        self.liveness_read += o.liveness_read;
        self.swap += o.swap;
        self.give_up += o.give_up;
        self.sleep += o.sleep;
    }

    fn list(&self) -> [(&'static str, usize); 9] {
        [
            ("Connect", self.connect),
            ("CheckHeld", self.check_held),
            ("Read", self.read),
            ("Watch", self.watch),
            ("RequestProgress", self.request_progress),
            ("LivenessRead", self.liveness_read),
            ("Swap", self.swap),
            ("GiveUp", self.give_up),
            ("Sleep", self.sleep),
        ]
    }
}

/// What a run exercised, so a run that tested nothing fails.
#[derive(Debug, Default)]
pub(super) struct Coverage {
    pub(super) commands: Commands,
    pub(super) resumes: usize,
    pub(super) compacted_watches: usize,
    pub(super) stale: usize,
    pub(super) liveness_reads: usize,
    pub(super) progress_replies: usize,
    pub(super) rebuilds: usize,
    pub(super) exact_checks: usize,
    pub(super) duplicates: usize,
    pub(super) foreign_events: usize,
    pub(super) second_created: usize,
    pub(super) dead_broadcasts: usize,
    pub(super) silent_watches: usize,
    pub(super) degraded: usize,
    pub(super) refused: std::collections::BTreeMap<&'static str, usize>,
}

fn run(seed: u64, prefix: bool) -> Coverage {
    let mut sim = Sim::new(seed, prefix);
    sim.pump();
    for _ in 0..STEPS {
        sim.step();
    }
    sim.quiesce();
    sim.cov
}

/// The seeds of this run: `OSPROXY_SIM_SEED` alone, or two fresh ones.
fn seeds() -> Vec<u64> {
    if let Some(seed) = std::env::var("OSPROXY_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![seed];
    }
    let t = osproxy_core::SystemClock.unix_nanos();
    vec![t, t.rotate_left(17) ^ 0x9E37_79B9_7F4A_7C15]
}

#[test]
fn the_session_keeps_its_invariants_over_random_histories() {
    let seeds = seeds();
    let started = osproxy_core::SystemClock.now();
    let mut steps = 0;
    let mut commands = Commands::default();
    for &seed in &seeds {
        // Printed past the test harness's capture, so CI logs show it.
        let _ = writeln!(
            std::io::stderr(),
            "follow::sim seed {seed} (replay with OSPROXY_SIM_SEED={seed})"
        );
        for prefix in [false, true] {
            let c = run(seed, prefix);
            steps += STEPS;
            commands.add(c.commands);
            let refused = |slug| c.refused.get(slug).copied().unwrap_or(0);
            // Every kind of history happened, many times over.
            let kinds = [
                ("fresh reads", c.commands.read),
                ("resumes", c.resumes),
                ("compacted watches", c.compacted_watches),
                ("stale connections", c.stale),
                ("liveness reads", c.liveness_reads),
                ("progress replies", c.progress_replies),
                ("rebuilds", c.rebuilds),
                ("exact quiescence checks", c.exact_checks),
                ("duplicate events", c.duplicates),
                ("foreign-range events", c.foreign_events),
                ("refused foreign_key_event", refused("foreign_key_event")),
                ("second creations", c.second_created),
                ("refused second_created", refused("second_created")),
                ("dead broadcasts", c.dead_broadcasts),
                ("degraded endpoints", c.degraded),
                ("silent watches", c.silent_watches),
            ];
            for (what, n) in kinds {
                assert!(n >= 20, "seed {seed}: only {n} {what}: {c:?}");
            }
            let _ = writeln!(
                std::io::stderr(),
                "follow::sim seed {seed} {} layout: {kinds:?}",
                if prefix { "prefix" } else { "key" }
            );
        }
    }
    assert!(steps >= 50_000 * seeds.len());
    // The shipped session ran: every command it gives was carried out, many
    // times over.
    let floor = COMMAND_FLOOR * seeds.len() / 2;
    for (command, n) in commands.list() {
        assert!(
            n >= floor,
            "only {n} {command} commands (floor {floor}): {commands:?}"
        );
    }
    let _ = writeln!(
        std::io::stderr(),
        "follow::sim: {steps} steps in {:.2?}; commands {:?}",
        osproxy_core::SystemClock
            .now()
            .saturating_duration_since(started),
        commands.list()
    );
}
