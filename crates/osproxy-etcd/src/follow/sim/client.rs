//! The simulated client: the shipped [`Session`] — the very type the store
//! and the change feed drive — with its commands carried out against the
//! simulated etcd instead of etcd-client, checking the invariants on every
//! set it swaps in. Nothing here decides what the session decides; this is
//! only the simulation's driver.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use osproxy_core::ManualClock;
use osproxy_observe::{DecodeLimits, DirectiveSet};
use tokio::time::Instant;

use super::etcd::{Etcd, Rng};
use super::{Coverage, PROGRESS_EVERY, STALE_AFTER};
use crate::backoff::BackoffPolicy;
use crate::follow::{Follower, WatchMsg};
use crate::session::{Command, Note, Range, Session, Settings};

/// Endpoints the session fails over across.
pub(super) const ENDPOINTS: usize = 2;

/// One watch stream of the open connection.
pub(super) struct Stream {
    /// Messages etcd has yet to deliver on it, in order.
    pub(super) queue: VecDeque<WatchMsg>,
    /// The next revision etcd will send on it (`i64::MAX`: nothing more).
    pub(super) sent_up_to: i64,
    /// Attached to a dead broadcast, or silent on a healthy transport: it
    /// delivers nothing more and answers no progress request.
    pub(super) mute: bool,
}

/// The open connection.
pub(super) struct Conn {
    pub(super) endpoint: usize,
    pub(super) frozen: bool,
    pub(super) answers_progress: bool,
    /// A liveness read is out on a frozen connection (the driver awaits it
    /// until the staleness bound).
    pub(super) read_pending: Option<i64>,
    /// Last message delivered or read answered (invariant 5).
    pub(super) last_heard: Instant,
    pub(super) stream: Option<Stream>,
}

pub(super) struct Sim {
    pub(super) cov: Coverage,
    pub(super) rng: Rng,
    pub(super) seed: u64,
    pub(super) step: usize,
    pub(super) prefix: bool,
    pub(super) etcd: Etcd,
    pub(super) next_cluster: u64,
    pub(super) clock: Arc<ManualClock>,
    pub(super) now: Instant,
    pub(super) session: Session,
    pub(super) conn: Option<Conn>,
    /// Per endpoint: a grpc-proxy whose broadcast died (every new watcher
    /// attaches to it; reads still answer).
    pub(super) dead_broadcast: [bool; ENDPOINTS],
    /// Whether a watch was ever open (before, a failure is the caller's).
    pub(super) established: bool,
    /// The last read changed nothing: a swap now would break invariant 4.
    pub(super) unchanged_read: bool,
    /// id → expiry first served (invariant 3).
    pub(super) anchors: HashMap<String, osproxy_core::Instant>,
    /// The served set (what the session swapped in last).
    pub(super) served: Arc<DirectiveSet>,
    /// Applied revision floor of the current cluster (invariant 1).
    pub(super) floor: i64,
    pub(super) ids: u64,
    /// Every valid value ever written per key, for the last-good model.
    pub(super) good_ids: HashMap<Vec<u8>, Vec<Vec<String>>>,
}

impl Sim {
    pub(super) fn new(seed: u64, prefix: bool) -> Sim {
        let clock = Arc::new(ManualClock::new());
        let follower = Follower::new(prefix, DecodeLimits::default());
        let range = if prefix {
            Range::new(b"p/", true)
        } else {
            Range::new(b"k", false)
        };
        let settings = Settings {
            endpoints: ENDPOINTS,
            range,
            progress_every: PROGRESS_EVERY,
            stale_after: STALE_AFTER,
            backoff: BackoffPolicy::default(),
            per_revision: seed % 2 == 1,
            seed,
        };
        let mut session = Session::new(settings, follower, Arc::clone(&clock) as _);
        let served = Arc::clone(session.served());
        session.start(0);
        Sim {
            cov: Coverage::default(),
            rng: Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
            seed,
            step: 0,
            prefix,
            etcd: Etcd::new(1, 1),
            next_cluster: 2,
            clock,
            now: Instant::now(),
            session,
            conn: None,
            dead_broadcast: [false; ENDPOINTS],
            established: false,
            unchanged_read: false,
            anchors: HashMap::new(),
            served,
            floor: 0,
            ids: 0,
            good_ids: HashMap::new(),
        }
    }

    pub(super) fn fail(&self, what: &str) -> ! {
        panic!(
            "simulation invariant broken at step {} (seed {}, {} layout): {what}\n\
             replay: OSPROXY_SIM_SEED={} cargo test -p osproxy-etcd --lib follow::sim",
            self.step,
            self.seed,
            if self.prefix { "prefix" } else { "key" },
            self.seed
        )
    }

    /// Carries out everything the session asked for, and reads its notes.
    pub(super) fn pump(&mut self) {
        loop {
            if let Some(note) = self.session.poll_note() {
                self.note(note);
                continue;
            }
            let Some(cmd) = self.session.poll() else {
                break;
            };
            self.execute(cmd);
        }
    }

    fn note(&mut self, note: Note) {
        match note {
            Note::Applied {
                read: true,
                changed: false,
                ..
            } => self.unchanged_read = true,
            Note::Rebuilt => {
                self.floor = 0;
                self.anchors.clear();
            }
            Note::Refused { slug } => *self.cov.refused.entry(slug).or_default() += 1,
            Note::Degraded { degraded: true, .. } => self.cov.degraded += 1,
            _ => {}
        }
    }

    fn execute(&mut self, cmd: Command) {
        let now = self.now;
        match cmd {
            Command::Connect { endpoint } => {
                self.cov.commands.connect += 1;
                self.conn = None;
                // Now and then the endpoint refuses (after the first watch:
                // before it, a refusal is the caller's to retry).
                if self.established && self.rng.chance(30) {
                    self.session.handle_failed(now, "refused");
                    return;
                }
                self.conn = Some(Conn {
                    endpoint,
                    frozen: false,
                    // A grpc-proxy never answers progress requests.
                    answers_progress: self.rng.chance(700),
                    read_pending: None,
                    last_heard: now,
                    stream: None,
                });
                self.session.handle_connected();
            }
            Command::CheckHeld { revision } => {
                self.cov.commands.check_held += 1;
                let held = revision >= self.etcd.compacted && revision <= self.etcd.revision;
                if held {
                    self.cov.resumes += 1;
                    // The race the check cannot close: a compaction between
                    // the check and the watch's creation.
                    if self.rng.chance(150) {
                        self.compact(0);
                    }
                }
                self.session.handle_held(held);
            }
            Command::Read => {
                self.cov.commands.read += 1;
                self.unchanged_read = false;
                self.session.handle_read(self.etcd.snapshot());
            }
            Command::Watch { from } => {
                self.cov.commands.watch += 1;
                self.established = true;
                self.unchanged_read = false;
                self.open_stream(from);
                self.session.handle_watch_opened(now);
                self.enqueue_new();
            }
            Command::RequestProgress => {
                self.cov.commands.request_progress += 1;
                self.progress_reply();
            }
            Command::LivenessRead {
                min_mod_revision,
                deadline,
            } => {
                self.cov.commands.liveness_read += 1;
                if deadline <= now {
                    self.fail("a liveness read asked with no time to answer");
                }
                match &mut self.conn {
                    Some(c) if c.frozen => c.read_pending = Some(min_mod_revision),
                    Some(_) => self.answer_read(min_mod_revision),
                    None => self.fail("a liveness read without a connection"),
                }
            }
            Command::Swap { set, .. } => {
                self.cov.commands.swap += 1;
                if self.unchanged_read {
                    self.fail("a read that changed nothing swapped the set");
                }
                self.swap(set);
            }
            Command::GiveUp { why, .. } => {
                self.cov.commands.give_up += 1;
                if why == "stale connection" {
                    let Some(c) = &self.conn else {
                        self.fail("gave up a connection never opened as stale")
                    };
                    if !c.frozen {
                        self.fail("a healthy connection was given up as stale");
                    }
                    if now.saturating_duration_since(c.last_heard) > STALE_AFTER {
                        self.fail("a frozen connection outlived the staleness bound");
                    }
                    self.cov.stale += 1;
                }
                self.conn = None;
            }
            Command::Sleep { until } => {
                self.cov.commands.sleep += 1;
                if until <= now || until > now + BackoffPolicy::default().max {
                    self.fail("a backoff outside its bounds");
                }
            }
        }
    }

    /// Answers a liveness read at `min_mod_revision`.
    pub(super) fn answer_read(&mut self, min_mod_revision: i64) {
        self.cov.liveness_reads += 1;
        let now = self.now;
        if let Some(c) = &mut self.conn {
            c.read_pending = None;
            c.last_heard = now;
        }
        let read = self.etcd.liveness_read(min_mod_revision);
        self.session.handle_liveness_read(now, &read);
    }

    /// What a consumer does with a swap: serve it. Checks invariants 1 and 3
    /// and that nothing outside the range was ever applied.
    fn swap(&mut self, set: Arc<DirectiveSet>) {
        self.served = set;
        let rev = self.session.follower().revision();
        if rev < self.floor {
            self.fail(&format!(
                "applied revision went back from {} to {rev}",
                self.floor
            ));
        }
        self.floor = rev;
        for d in self.served.directives() {
            if d.id.starts_with("foreign") {
                self.fail(&format!("applied {} from outside the range", d.id));
            }
            let at = d.expires_at;
            match self.anchors.get(&d.id) {
                Some(first) if *first != at => {
                    self.fail(&format!("directive {} re-anchored", d.id))
                }
                Some(_) => {}
                None => {
                    self.anchors.insert(d.id.clone(), at);
                }
            }
        }
    }
}
