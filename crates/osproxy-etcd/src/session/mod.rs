//! [`Session`]: one watch session over an endpoint list, sans I/O. It owns
//! every decision of following a key or prefix — which endpoint, resume or
//! read, when to ask for progress or read for liveness, when a connection is
//! given up, how long to back off, when a history is gone, whether the
//! served set changes — and answers with [`Command`]s for a driver to carry
//! out; the driver feeds back what etcd said through the `handle_*` methods
//! and the time through [`Session::handle_timeout`] at
//! [`Session::poll_timeout`]. The same session runs in the store's
//! background task, behind the publisher's change feed, and in the seeded
//! simulation (`follow::sim`), so what the simulation proves is what ships.
//!
//! Why sans I/O: a decision written once cannot drift between copies, and a
//! session that opens no socket and is handed the transport's time (only
//! directive expiry goes through the [`Clock`] seam) can be driven through a
//! hundred thousand seeded faults in seconds.
//!
//! The proxy hop is distrusted (SPEC §7): an event for a key outside the
//! followed key or prefix, or a second creation on one watch stream, is never
//! applied — the watch ends and the range is read afresh, and the refusal is
//! reported. A watch that a liveness read proves to have missed a change is
//! read afresh on the same endpoint once; when it happens again the endpoint
//! (a grpc-proxy whose broadcast died keeps attaching new watchers to it,
//! etcd-io/etcd#21813) is reported degraded and left for the next one.

mod distrust;
pub(crate) mod driver;
mod outputs;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::sync::Arc;

use osproxy_core::Clock;
use osproxy_observe::{DirectiveSet, RejectReason};
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::follow::{Action, End, Follower, Liveness, LivenessRead, Outcome, Snapshot, WatchMsg};

pub(crate) use distrust::Range;
pub(crate) use outputs::{Command, Note, Settings};

/// A liveness read that finds a missed change this many times on one
/// endpoint marks it degraded and moves the session to the next endpoint.
pub(crate) const MISSES_BEFORE_DEGRADED: u32 = 2;

/// Where the session is.
#[derive(Debug)]
enum Phase {
    /// No connection; connect once `not_before` has passed.
    Down {
        resume: Option<i64>,
        not_before: Option<Instant>,
    },
    Connecting {
        resume: Option<i64>,
    },
    Checking {
        next: i64,
    },
    Reading,
    Opening {
        from: i64,
    },
    Watching(Watch),
}

#[derive(Debug)]
struct Watch {
    next_revision: i64,
    liveness: Liveness,
    /// The stream said `created` already.
    created: bool,
    /// A liveness read is out.
    read_out: bool,
}

/// One watch session. See the module docs.
#[derive(Debug)]
pub(crate) struct Session {
    settings: Settings,
    follower: Follower,
    clock: Arc<dyn Clock>,
    phase: Phase,
    endpoint: usize,
    backoff: Backoff,
    jitter: u64,
    /// Before the first established watch: a failure gives up without
    /// backing off (the caller tries the next endpoint itself).
    initial: bool,
    served: Arc<DirectiveSet>,
    /// Missed changes found by liveness reads, per endpoint.
    missed: Vec<u32>,
    degraded: Vec<bool>,
    commands: VecDeque<Command>,
    notes: VecDeque<Note>,
}

impl Session {
    /// A session over `follower` that has connected nowhere yet; start it
    /// with [`start`](Self::start).
    pub(crate) fn new(settings: Settings, mut follower: Follower, clock: Arc<dyn Clock>) -> Self {
        let n = settings.endpoints.max(1);
        let served = follower.compose();
        Session {
            backoff: Backoff::new(settings.backoff),
            jitter: settings.seed | 1,
            settings,
            follower,
            clock,
            phase: Phase::Down {
                resume: None,
                not_before: None,
            },
            endpoint: 0,
            initial: true,
            served,
            missed: vec![0; n],
            degraded: vec![false; n],
            commands: VecDeque::new(),
            notes: VecDeque::new(),
        }
    }

    /// Connects to `endpoint` now (the first connect, which tries each
    /// endpoint in turn without backing off, or a restart).
    pub(crate) fn start(&mut self, endpoint: usize) {
        self.endpoint = endpoint % self.settings.endpoints.max(1);
        let resume = match &self.phase {
            Phase::Down { resume, .. } => *resume,
            _ => None,
        };
        // A restart abandons whatever the last attempt still asked for, but
        // never a set it decided to serve.
        self.commands.retain(|c| matches!(c, Command::Swap { .. }));
        self.connect(resume);
    }

    /// The next command, if any.
    pub(crate) fn poll(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    /// The next note, if any.
    pub(crate) fn poll_note(&mut self) -> Option<Note> {
        self.notes.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due next.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Down { not_before, .. } => *not_before,
            Phase::Watching(w) if w.read_out => Some(w.liveness.stale_at()),
            Phase::Watching(w) => Some(w.liveness.next().0),
            _ => None,
        }
    }

    /// The endpoint in use or being tried.
    pub(crate) fn endpoint(&self) -> usize {
        self.endpoint
    }

    /// Whether a watch is open.
    pub(crate) fn is_watching(&self) -> bool {
        matches!(self.phase, Phase::Watching(_))
    }

    /// The core (for composing and rejections).
    pub(crate) fn follower(&mut self) -> &mut Follower {
        &mut self.follower
    }

    /// The set served now.
    pub(crate) fn served(&self) -> &Arc<DirectiveSet> {
        &self.served
    }

    /// Endpoints currently degraded.
    pub(crate) fn degraded(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.degraded.len()).filter(|&i| self.degraded[i])
    }

    fn connect(&mut self, resume: Option<i64>) {
        self.phase = Phase::Connecting { resume };
        self.commands.push_back(Command::Connect {
            endpoint: self.endpoint,
        });
    }

    fn read(&mut self) {
        self.phase = Phase::Reading;
        self.commands.push_back(Command::Read);
    }

    fn open_watch(&mut self, from: i64) {
        self.phase = Phase::Opening { from };
        self.commands.push_back(Command::Watch { from });
    }

    /// The connection opened.
    pub(crate) fn handle_connected(&mut self) {
        if let Phase::Connecting { resume } = self.phase {
            match resume {
                Some(next) if next > 0 => {
                    self.phase = Phase::Checking { next };
                    self.commands
                        .push_back(Command::CheckHeld { revision: next - 1 });
                }
                _ => self.read(),
            }
        }
    }

    /// Whether etcd still holds the revision before the resume point. It
    /// does not after a compaction reached it (etcd 3.4 drops a delete at
    /// the compaction revision from a watch opened there) or when the
    /// cluster has not reached it (rebuilt): read afresh then.
    pub(crate) fn handle_held(&mut self, held: bool) {
        if let Phase::Checking { next } = self.phase {
            if held {
                self.open_watch(next);
            } else {
                self.read();
            }
        }
    }

    /// A read of the whole range: applied whole, the watch starts after it.
    pub(crate) fn handle_read(&mut self, snapshot: Snapshot) {
        if !matches!(self.phase, Phase::Reading) {
            return;
        }
        let applied = self.follower.on_read(snapshot, self.clock.as_ref());
        if applied.rebuilt {
            self.notes.push_back(Note::Rebuilt);
        }
        self.swap(
            applied.outcome,
            applied.confirmed,
            true,
            true,
            applied.rejected,
        );
        self.confirmed(applied.confirmed);
        self.open_watch(applied.confirmed + 1);
    }

    /// The watch is open; its messages follow.
    pub(crate) fn handle_watch_opened(&mut self, now: Instant) {
        if let Phase::Opening { from } = self.phase {
            self.phase = Phase::Watching(Watch {
                next_revision: from,
                liveness: Liveness::new(
                    now,
                    self.settings.progress_every,
                    self.settings.stale_after,
                ),
                created: false,
                read_out: false,
            });
            self.initial = false;
        }
    }

    /// A step of connecting, or a request on the open connection, failed.
    pub(crate) fn handle_failed(&mut self, now: Instant, why: &'static str) {
        match self.phase {
            Phase::Down { .. } => {}
            Phase::Watching(_) => self.end_watch(now, End::Reconnect(why)),
            _ => self.give_up(now, why),
        }
    }

    /// The open watch stream ended or failed.
    pub(crate) fn handle_stream_end(&mut self, now: Instant, why: &'static str) {
        if self.is_watching() {
            self.end_watch(now, End::Reconnect(why));
        }
    }

    /// One message of the open watch.
    pub(crate) fn handle_watch_msg(&mut self, now: Instant, msg: WatchMsg) {
        let Phase::Watching(w) = &mut self.phase else {
            return;
        };
        w.liveness.on_message(now);
        if let Err(slug) = self.settings.range.check(&msg, w.created) {
            self.notes.push_back(Note::Refused { slug });
            self.end_watch(now, End::Reread);
            return;
        }
        if msg.created {
            w.created = true;
            self.backoff.reset();
            self.notes.push_back(Note::Established);
        }
        let result = if self.settings.per_revision && !msg.events.is_empty() {
            self.apply_per_revision(msg)
        } else {
            self.apply(msg)
        };
        if let Err(end) = result {
            self.end_watch(now, end);
        }
    }

    fn apply(&mut self, msg: WatchMsg) -> Result<(), End> {
        let Phase::Watching(w) = &mut self.phase else {
            return Ok(());
        };
        let before = w.next_revision;
        let events = !msg.events.is_empty();
        let applied = self
            .follower
            .on_watch(msg, &mut w.next_revision, self.clock.as_ref())?;
        let moved = w.next_revision != before;
        if events && moved {
            // The watch delivers: whatever made this endpoint suspect is over.
            self.recovered();
        }
        if events {
            self.swap(
                applied.outcome,
                applied.confirmed,
                false,
                moved,
                applied.rejected,
            );
        }
        self.confirmed(applied.confirmed);
        Ok(())
    }

    /// The change feed's granularity: one transaction at a time.
    fn apply_per_revision(&mut self, mut msg: WatchMsg) -> Result<(), End> {
        let mut events = std::mem::take(&mut msg.events).into_iter().peekable();
        let mut first = true;
        while let Some(head) = events.next() {
            let revision = head.kv().mod_revision;
            let mut group = vec![head];
            while let Some(e) = events.next_if(|e| e.kv().mod_revision == revision) {
                group.push(e);
            }
            let one = WatchMsg {
                created: msg.created && first,
                events: group,
                ..msg.clone()
            };
            first = false;
            self.apply(one)?;
        }
        Ok(())
    }

    /// A liveness read's answer: confirmed, or the watch missed a change.
    pub(crate) fn handle_liveness_read(&mut self, now: Instant, read: &LivenessRead) {
        let Phase::Watching(w) = &mut self.phase else {
            return;
        };
        if !w.read_out {
            return;
        }
        w.read_out = false;
        match self.follower.on_liveness_read(read) {
            Ok(revision) => {
                w.liveness.on_read_confirmed(now);
                self.confirmed(revision);
            }
            Err(end) => {
                let ix = self.endpoint;
                self.missed[ix] = self.missed[ix].saturating_add(1);
                if self.missed[ix] >= MISSES_BEFORE_DEGRADED {
                    if !self.degraded[ix] {
                        self.degraded[ix] = true;
                        self.notes.push_back(Note::Degraded {
                            endpoint: ix,
                            degraded: true,
                        });
                    }
                    self.missed[ix] = 0;
                    self.notes.push_back(Note::Interrupted {
                        why: "watch missed a change",
                        reread: true,
                    });
                    self.commands.push_back(Command::GiveUp {
                        endpoint: ix,
                        why: "degraded endpoint",
                    });
                    // With one endpoint, the same one afresh: still reported.
                    self.endpoint = (ix + 1) % self.settings.endpoints.max(1);
                    self.connect(None);
                } else {
                    self.end_watch(now, end);
                }
            }
        }
    }

    /// Time has come to `now`: run what is due.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        match &mut self.phase {
            Phase::Down {
                resume,
                not_before: Some(at),
            } if now >= *at => {
                let resume = *resume;
                self.connect(resume);
            }
            Phase::Watching(w) => {
                if w.read_out && now < w.liveness.stale_at() {
                    return;
                }
                let answered = w.liveness.answers_progress();
                match w.liveness.fire(now) {
                    None => {}
                    Some(Action::Stale) => self.end_watch(now, End::Reconnect("stale connection")),
                    Some(Action::RequestProgress) => {
                        self.commands.push_back(Command::RequestProgress);
                    }
                    Some(Action::Read) => {
                        if answered && !w.liveness.answers_progress() {
                            self.notes.push_back(Note::ProgressUnanswered);
                        }
                        w.read_out = true;
                        let deadline = w.liveness.stale_at();
                        self.commands.push_back(Command::LivenessRead {
                            min_mod_revision: self.follower.liveness_floor(),
                            deadline,
                        });
                    }
                }
            }
            _ => {}
        }
    }

    fn end_watch(&mut self, now: Instant, end: End) {
        let Phase::Watching(w) = &self.phase else {
            return;
        };
        let next = w.next_revision;
        match end {
            End::Reread => {
                // The same endpoint, a new connection (`Connect` replaces
                // the old one), no backoff: nothing failed.
                self.notes.push_back(Note::Interrupted {
                    why: "reread",
                    reread: true,
                });
                self.connect(None);
            }
            End::Reconnect(why) => {
                self.notes
                    .push_back(Note::Interrupted { why, reread: false });
                self.phase = Phase::Down {
                    resume: Some(next),
                    not_before: None,
                };
                self.give_up(now, why);
            }
        }
    }

    /// Gives the connection up: the next endpoint, after a backoff.
    fn give_up(&mut self, now: Instant, why: &'static str) {
        let resume = match &self.phase {
            Phase::Down { resume, .. } | Phase::Connecting { resume } => *resume,
            Phase::Checking { next } | Phase::Opening { from: next } => Some(*next),
            Phase::Watching(w) => Some(w.next_revision),
            Phase::Reading => None,
        };
        // A read never taken leaves nothing to resume from.
        let resume = resume.filter(|&r| r > 0);
        self.commands.push_back(Command::GiveUp {
            endpoint: self.endpoint,
            why,
        });
        self.endpoint = (self.endpoint + 1) % self.settings.endpoints.max(1);
        if self.initial {
            self.phase = Phase::Down {
                resume,
                not_before: None,
            };
            return;
        }
        let jitter = self.next_jitter();
        let until = now + self.backoff.next_delay_at(jitter);
        self.phase = Phase::Down {
            resume,
            not_before: Some(until),
        };
        self.commands.push_back(Command::Sleep { until });
    }

    fn next_jitter(&mut self) -> f64 {
        // xorshift64*: replayable under a seed, spread enough for a herd.
        self.jitter ^= self.jitter >> 12;
        self.jitter ^= self.jitter << 25;
        self.jitter ^= self.jitter >> 27;
        let x = self.jitter.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    fn recovered(&mut self) {
        let ix = self.endpoint;
        self.missed[ix] = 0;
        if self.degraded[ix] {
            self.degraded[ix] = false;
            self.notes.push_back(Note::Degraded {
                endpoint: ix,
                degraded: false,
            });
        }
    }

    /// The swap decision: compose when something changed, serve it when it
    /// differs from what is served (single key: an unchanged last good set
    /// is the very same `Arc`; prefix: the set is rebuilt, so compare).
    fn swap(
        &mut self,
        outcome: Outcome,
        revision: i64,
        read: bool,
        moved: bool,
        mut rejected: Vec<RejectReason>,
    ) {
        let changed = outcome == Outcome::Changed;
        if outcome == Outcome::Changed {
            let set = self.follower.compose();
            rejected.extend(self.follower.take_fresh_rejections());
            let differs = if self.settings.range.is_prefix() {
                *set != *self.served
            } else {
                !Arc::ptr_eq(&set, &self.served)
            };
            if differs {
                self.served = Arc::clone(&set);
                self.commands.push_back(Command::Swap {
                    set,
                    revision: self.follower.revision(),
                });
            }
        }
        // A read reports the newest change it holds; a message, the newest
        // revision it applied.
        let revision = if read {
            self.follower.revision()
        } else {
            revision
        };
        self.notes.push_back(Note::Applied {
            revision,
            read,
            moved,
            changed,
            rejected,
        });
    }

    fn confirmed(&mut self, revision: i64) {
        self.notes.push_back(Note::Confirmed { revision });
    }
}
