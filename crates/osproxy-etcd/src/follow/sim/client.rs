//! The simulated client: what the store's shell does around the core
//! (connect, resume or read, watch, answer the timers), over a simulated
//! network, checking the invariants after every step.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use osproxy_core::ManualClock;
use osproxy_observe::{DecodeLimits, DirectiveSet};
use tokio::time::Instant;

use super::etcd::{Etcd, Rng};
use super::{Coverage, PROGRESS_EVERY, STALE_AFTER};
use crate::follow::{Action, End, Follower, Header, Liveness, Outcome, WatchMsg};

/// One watch stream of the client.
struct Stream {
    /// Messages etcd has yet to deliver on it, in order.
    queue: std::collections::VecDeque<WatchMsg>,
    /// The next revision etcd will send on it.
    sent_up_to: i64,
    frozen: bool,
    answers_progress: bool,
    /// A liveness read is out on a frozen connection (the shell awaits it
    /// until the staleness bound).
    read_pending: bool,
    liveness: Liveness,
}

pub(super) struct Sim {
    pub(super) cov: Coverage,
    rng: Rng,
    seed: u64,
    step: usize,
    prefix: bool,
    etcd: Etcd,
    next_cluster: u64,
    clock: ManualClock,
    now: Instant,
    follower: Follower,
    /// Where the watch resumes (the shell's `next_revision`).
    next_revision: i64,
    stream: Option<Stream>,
    /// id → expiry first served (invariant 3).
    anchors: HashMap<String, osproxy_core::Instant>,
    /// The served set (what the shell swapped in last).
    served: Arc<DirectiveSet>,
    /// Applied revision floor of the current cluster (invariant 1).
    floor: i64,
    ids: u64,
    /// Every valid value ever written per key, for the last-good model.
    good_ids: HashMap<Vec<u8>, Vec<Vec<String>>>,
}

impl Sim {
    pub(super) fn new(seed: u64, prefix: bool) -> Sim {
        let clock = ManualClock::new();
        let mut follower = Follower::new(prefix, DecodeLimits::default());
        let served = follower.compose();
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
            follower,
            next_revision: 0,
            stream: None,
            anchors: HashMap::new(),
            served,
            floor: 0,
            ids: 0,
            good_ids: HashMap::new(),
        }
    }

    fn fail(&self, what: &str) -> ! {
        panic!(
            "simulation invariant broken at step {} (seed {}, {} layout): {what}\n\
             replay: OSPROXY_SIM_SEED={} cargo test -p osproxy-etcd --lib follow::sim",
            self.step,
            self.seed,
            if self.prefix { "prefix" } else { "key" },
            self.seed
        )
    }

    fn keys(&self) -> Vec<Vec<u8>> {
        if self.prefix {
            (0..4).map(|i| format!("p/{i}").into_bytes()).collect()
        } else {
            vec![b"k".to_vec()]
        }
    }

    /// A value for `key`: valid (fresh ids) or, rarely, malformed.
    fn value(&mut self, key: &[u8]) -> Vec<u8> {
        if self.rng.chance(60) {
            return br#"{"directives":[{"id":"x","tennant":"t"}]}"#.to_vec();
        }
        let n = if self.prefix {
            1
        } else {
            self.rng.below(3) + 1
        };
        let mut ids = Vec::new();
        let mut items = Vec::new();
        for _ in 0..n {
            self.ids += 1;
            let id = format!("d{}", self.ids);
            let ttl = 60 + self.rng.below(600);
            items.push(format!(
                r#"{{"id":"{id}","level":"Shape","ttl_secs":{ttl}}}"#
            ));
            ids.push(id);
        }
        self.good_ids.entry(key.to_vec()).or_default().push(ids);
        if self.prefix {
            items.pop().unwrap_or_default().into_bytes()
        } else {
            format!(r#"{{"directives":[{}]}}"#, items.join(",")).into_bytes()
        }
    }

    fn write(&mut self) {
        let keys = self.keys();
        let ops = 1 + self.rng.below(if self.prefix { 3 } else { 1 });
        let mut txn = Vec::new();
        for _ in 0..ops {
            let key = keys[self.rng.below(keys.len() as u64) as usize].clone();
            if txn.iter().any(|(k, _)| *k == key) {
                continue;
            }
            if self.rng.chance(250) {
                txn.push((key, None));
            } else {
                let v = self.value(&key);
                txn.push((key, Some(v)));
            }
        }
        let before = self.etcd.revision;
        self.etcd.txn(txn);
        if self.etcd.revision != before {
            self.enqueue_new();
        }
    }

    /// Queues history the open stream has not been sent yet, batching
    /// several revisions into one message now and then.
    fn enqueue_new(&mut self) {
        let Some(stream) = &mut self.stream else {
            return;
        };
        if stream.sent_up_to == i64::MAX {
            return; // a compacted watch: etcd sends nothing more on it
        }
        let revs: Vec<i64> = self
            .etcd
            .history
            .range(stream.sent_up_to..)
            .map(|(r, _)| *r)
            .collect();
        let mut i = 0;
        while i < revs.len() {
            let batch = 1 + self.rng.below(3) as usize;
            let mut events = Vec::new();
            for r in revs.iter().skip(i).take(batch) {
                events.extend(self.etcd.history[r].iter().cloned());
            }
            i += batch;
            stream.queue.push_back(WatchMsg {
                header: self.etcd.header(),
                events,
                ..WatchMsg::default()
            });
        }
        stream.sent_up_to = self.etcd.revision + 1;
    }

    /// The shell's connect: resume when etcd still holds the revision
    /// before the resume point, else read; then open the watch.
    pub(super) fn connect(&mut self, resume: bool) {
        let next = self.next_revision;
        let resumable =
            resume && next > 0 && next > self.etcd.compacted && next - 1 <= self.etcd.revision;
        if resumable {
            self.cov.resumes += 1;
            // The race the resume check cannot close: a compaction between
            // the check and the watch's creation.
            if self.rng.chance(150) {
                self.compact(0);
            }
        } else {
            self.cov.reads += 1;
            let applied = self.follower.on_read(self.etcd.snapshot(), &self.clock);
            if applied.rebuilt {
                self.floor = 0;
                self.anchors.clear();
            }
            if applied.outcome == Outcome::Unchanged {
                // Nothing to swap: the composed set is the served one.
                let set = self.follower.compose();
                let same = if self.prefix {
                    *set == *self.served
                } else {
                    Arc::ptr_eq(&set, &self.served)
                };
                if !same {
                    self.fail("a read that changed nothing would swap the set");
                }
            }
            self.publish(applied.outcome);
            self.next_revision = applied.confirmed + 1;
        }
        let from = self.next_revision;
        let mut stream = Stream {
            queue: Default::default(),
            sent_up_to: from,
            frozen: false,
            answers_progress: self.rng.chance(700),
            read_pending: false,
            liveness: Liveness::new(self.now, PROGRESS_EVERY, STALE_AFTER),
        };
        if from - 1 < self.etcd.compacted {
            self.cov.compacted_watches += 1;
            stream.queue.push_back(WatchMsg {
                header: self.etcd.header(),
                compact_revision: self.etcd.compacted,
                canceled: true,
                ..WatchMsg::default()
            });
            stream.sent_up_to = i64::MAX;
        } else {
            stream.queue.push_back(WatchMsg {
                header: self.etcd.header(),
                created: true,
                ..WatchMsg::default()
            });
        }
        self.stream = Some(stream);
        self.enqueue_new();
    }

    /// What the shell's `publish` does: swap when the composed set differs.
    fn publish(&mut self, outcome: Outcome) {
        if outcome == Outcome::Unchanged {
            return;
        }
        let set = self.follower.compose();
        let changed = if self.prefix {
            *self.served != *set
        } else {
            !Arc::ptr_eq(&self.served, &set)
        };
        if changed {
            self.served = set;
        }
        let rev = self.follower.revision();
        if rev < self.floor {
            self.fail(&format!(
                "applied revision went back from {} to {rev}",
                self.floor
            ));
        }
        self.floor = rev;
        for d in self.served.directives() {
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

    fn end(&mut self, end: End) {
        self.stream = None;
        match end {
            End::Reread => {
                self.next_revision = 0;
                self.connect(false);
            }
            End::Reconnect(_) => self.connect(true),
        }
    }

    /// Delivers the stream's next message to the core.
    fn deliver(&mut self) {
        let Some(stream) = &mut self.stream else {
            return;
        };
        if stream.frozen {
            return;
        }
        let mut msg = match stream.queue.pop_front() {
            Some(m) => m,
            None => return,
        };
        // Now and then etcd 3.4 repeats an old event.
        if self.rng.chance(50) && !msg.events.is_empty() {
            if let Some((_, old)) = self.etcd.history.range(..self.next_revision).next_back() {
                self.cov.duplicates += 1;
                if self.rng.chance(500) {
                    // Repeated inside the next message, before new events.
                    let mut events = old.clone();
                    events.extend(msg.events);
                    msg.events = events;
                } else {
                    // A watch travelling back in time: the old event again,
                    // alone, right after.
                    let again = WatchMsg {
                        header: msg.header,
                        events: old.clone(),
                        ..WatchMsg::default()
                    };
                    stream.queue.push_front(again);
                }
            }
        }
        stream.liveness.on_message(self.now);
        match self
            .follower
            .on_watch(msg, &mut self.next_revision, &self.clock)
        {
            Ok(applied) => self.publish(applied.outcome),
            Err(end) => self.end(end),
        }
    }

    /// Moves virtual time (and the decoder's clock) to `at`.
    fn move_to(&mut self, at: Instant) {
        if at > self.now {
            self.clock.advance(at.saturating_duration_since(self.now));
            self.now = at;
        }
    }

    /// Answers the liveness read the core asked for.
    fn answer_read(&mut self) {
        self.cov.liveness_reads += 1;
        let read = self.etcd.liveness_read(self.follower.liveness_floor());
        match self.follower.on_liveness_read(&read) {
            Ok(_) => {
                let now = self.now;
                if let Some(s) = &mut self.stream {
                    s.read_pending = false;
                    s.liveness.on_read_confirmed(now);
                }
            }
            Err(end) => self.end(end),
        }
    }

    /// Moves virtual time on by `d`, firing the core's timers on the way. A
    /// healthy stream delivers what etcd queued at once.
    fn advance(&mut self, d: Duration) {
        let until = self.now + d;
        // Most of the time the network delivers at once; sometimes messages
        // stay in flight while the timers run.
        let prompt = self.rng.chance(700);
        loop {
            while prompt
                && self
                    .stream
                    .as_ref()
                    .is_some_and(|s| !s.frozen && !s.queue.is_empty())
            {
                self.deliver();
            }
            let Some(s) = &self.stream else { break };
            let at = if s.read_pending {
                s.liveness.stale_at()
            } else {
                s.liveness.next().0
            };
            if at > until {
                break;
            }
            self.move_to(at);
            let now = self.now;
            let Some(s) = &mut self.stream else { break };
            let (frozen, answers) = (s.frozen, s.answers_progress);
            let last = s.liveness.stale_at() - STALE_AFTER;
            let header = Header {
                revision: s.sent_up_to.min(self.etcd.revision + 1) - 1,
                cluster_id: self.etcd.cluster_id,
            };
            match s.liveness.fire(now) {
                None => {}
                Some(Action::Stale) => {
                    if !frozen {
                        self.fail("a healthy connection was given up as stale");
                    }
                    if now.saturating_duration_since(last) > STALE_AFTER {
                        self.fail("a frozen connection outlived the staleness bound");
                    }
                    self.cov.stale += 1;
                    self.end(End::Reconnect("stale"));
                }
                Some(Action::RequestProgress) if !frozen && answers => {
                    self.cov.progress_replies += 1;
                    let reply = WatchMsg {
                        header,
                        ..WatchMsg::default()
                    };
                    // The header is what etcd has sent so far; now and
                    // then the reply overtakes events still in flight
                    // (etcd 3.4: progress out of step with the stream).
                    if self.rng.chance(200) {
                        s.queue.push_front(reply);
                    } else {
                        s.queue.push_back(reply);
                    }
                }
                Some(Action::RequestProgress) => {}
                Some(Action::Read) if frozen => s.read_pending = true,
                Some(Action::Read) => self.answer_read(),
            }
        }
        self.move_to(until);
    }

    /// Delivers everything, unfreezes, and checks the served set against
    /// the model (invariant 2).
    pub(super) fn quiesce(&mut self) {
        let mut pending_read = false;
        if let Some(s) = &mut self.stream {
            s.frozen = false;
            pending_read = s.read_pending;
        }
        if pending_read {
            self.answer_read();
        }
        if self.stream.is_none() {
            self.connect(true);
        }
        for _ in 0..10_000 {
            match &self.stream {
                Some(s) if !s.queue.is_empty() => self.deliver(),
                Some(_) => break,
                None => self.connect(true),
            }
        }
        // Expected: each key's current value if valid, else a value it held.
        let mut want: Vec<String> = Vec::new();
        let mut ambiguous = false;
        for (key, (value, _, _)) in &self.etcd.kvs {
            let valid = self
                .good_ids
                .get(key)
                .and_then(|all| all.iter().find(|ids| value_has(value, ids)));
            match valid {
                Some(ids) => want.extend(ids.iter().cloned()),
                None => ambiguous = true,
            }
        }
        let mut got: Vec<String> = self
            .served
            .directives()
            .iter()
            .map(|d| d.id.clone())
            .collect();
        want.sort();
        got.sort();
        if !ambiguous {
            self.cov.exact_checks += 1;
        }
        if !ambiguous && got != want {
            self.fail(&format!(
                "after quiescence serves {got:?}, etcd holds {want:?}"
            ));
        }
        if ambiguous {
            // A key ends malformed: every served id is one that key (or
            // another) held validly at some point.
            let known = |id: &String| self.good_ids.values().flatten().flatten().any(|k| k == id);
            if let Some(bad) = got.iter().find(|id| !known(id)) {
                self.fail(&format!("serves {bad}, never written"));
            }
        }
    }

    pub(super) fn step(&mut self) {
        self.step += 1;
        match self.rng.below(100) {
            0..=39 => self.write(),
            40..=69 => self.deliver(),
            70..=79 => {
                let ms = self.rng.below(4000);
                self.advance(Duration::from_millis(ms));
            }
            80..=82 => {
                // The stream breaks: reconnect and resume.
                if self.stream.is_some() {
                    self.end(End::Reconnect("stream error"));
                }
            }
            83..=85 => {
                if let Some(s) = &mut self.stream {
                    s.frozen = true;
                }
                let secs = self.rng.below(20);
                self.advance(Duration::from_secs(secs));
            }
            86..=87 => {
                let back = self.rng.below(3) as i64;
                self.compact(back);
            }
            88 => self.rebuild(),
            89..=92 => self.quiesce(),
            _ => {
                // Idle: time passes, healthy timers run.
                let secs = self.rng.below(30);
                self.advance(Duration::from_secs(secs));
            }
        }
    }

    /// Compacts etcd at `back` revisions before its current one.
    fn compact(&mut self, back: i64) {
        let at = self.etcd.revision - back;
        if at > self.etcd.compacted {
            self.etcd.compacted = at;
            self.etcd.history.retain(|r, _| *r >= at);
        }
    }

    /// etcd rebuilt from empty: a new cluster id, revisions from 1 again,
    /// new content; the old stream dies.
    fn rebuild(&mut self) {
        self.cov.rebuilds += 1;
        let start = 1 + self.rng.below(self.etcd.revision.max(2) as u64) as i64;
        self.stream = None;
        self.etcd = Etcd::new(self.next_cluster, start);
        self.next_cluster += 1;
        for _ in 0..self.rng.below(4) {
            self.write();
        }
        self.connect(true);
    }
}

/// Whether `value` is the value written with `ids` (each id appears in it).
fn value_has(value: &[u8], ids: &[String]) -> bool {
    let text = String::from_utf8_lossy(value);
    !ids.is_empty()
        && ids
            .iter()
            .all(|id| text.contains(&format!("\"id\":\"{id}\"")))
}
