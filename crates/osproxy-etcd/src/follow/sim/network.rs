//! The simulated world around the session: writes, the network between the
//! simulated etcd and the client (delivery, batching, duplicates, freezes,
//! broken streams), the proxy hop's faults (events from outside the range,
//! a second creation, a dead broadcast that still answers reads, a watch
//! gone silent on a healthy transport), compaction, rebuilds, virtual time,
//! and the check after quiescence.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use super::client::{Sim, Stream, ENDPOINTS};
use super::etcd::Etcd;
use crate::follow::{Event, Header, Kv, WatchMsg};

impl Sim {
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

    /// Opens a watch from `from` on the open connection: a compacted start
    /// is cancelled, else created; on a dead broadcast nothing follows.
    pub(super) fn open_stream(&mut self, from: i64) {
        let mut stream = Stream {
            queue: VecDeque::new(),
            sent_up_to: from,
            mute: false,
        };
        let header = self.etcd.header();
        if from - 1 < self.etcd.compacted {
            self.cov.compacted_watches += 1;
            stream.queue.push_back(WatchMsg {
                header,
                compact_revision: self.etcd.compacted,
                canceled: true,
                ..WatchMsg::default()
            });
            stream.sent_up_to = i64::MAX;
        } else {
            stream.queue.push_back(WatchMsg {
                header,
                created: true,
                ..WatchMsg::default()
            });
        }
        if let Some(c) = &mut self.conn {
            stream.mute = self.dead_broadcast[c.endpoint];
            c.stream = Some(stream);
        }
    }

    /// Queues history the open stream has not been sent yet, batching
    /// several revisions into one message now and then.
    pub(super) fn enqueue_new(&mut self) {
        let Some(stream) = self.conn.as_mut().and_then(|c| c.stream.as_mut()) else {
            return;
        };
        if stream.sent_up_to == i64::MAX || stream.mute {
            return; // compacted, or nothing flows through this stream
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

    /// Whether the open stream can deliver something now.
    fn deliverable(&self) -> bool {
        self.conn
            .as_ref()
            .is_some_and(|c| !c.frozen && c.stream.as_ref().is_some_and(|s| !s.queue.is_empty()))
    }

    /// Delivers the stream's next message to the session.
    pub(super) fn deliver(&mut self) {
        if !self.deliverable() {
            return;
        }
        let floor = self.session.follower().revision() + 1;
        let now = self.now;
        let Some(c) = self.conn.as_mut() else { return };
        let Some(stream) = c.stream.as_mut() else {
            return;
        };
        let Some(mut msg) = stream.queue.pop_front() else {
            return;
        };
        c.last_heard = now;
        // Now and then etcd 3.4 repeats an old event.
        if self.rng.chance(50) && !msg.events.is_empty() {
            if let Some((_, old)) = self.etcd.history.range(..floor).next_back() {
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
        self.session.handle_watch_msg(now, msg);
        self.pump();
    }

    /// Answers a progress request on a connection that answers them.
    pub(super) fn progress_reply(&mut self) {
        let revision = self.etcd.revision;
        let cluster_id = self.etcd.cluster_id;
        let Some(c) = self.conn.as_mut() else { return };
        let Some(s) = c.stream.as_mut() else { return };
        if c.frozen || !c.answers_progress || s.mute {
            return;
        }
        self.cov.progress_replies += 1;
        let reply = WatchMsg {
            // What etcd has sent so far.
            header: Header {
                revision: s.sent_up_to.min(revision + 1) - 1,
                cluster_id,
            },
            ..WatchMsg::default()
        };
        // Now and then the reply overtakes events still in flight (etcd
        // 3.4: progress out of step with the stream).
        if self.rng.chance(200) {
            s.queue.push_front(reply);
        } else {
            s.queue.push_back(reply);
        }
    }

    /// Moves virtual time (and the decoder's clock) to `at`.
    fn move_to(&mut self, at: Instant) {
        if at > self.now {
            self.clock.advance(at.saturating_duration_since(self.now));
            self.now = at;
        }
    }

    /// Moves virtual time on by `d`, running the session's timers on the
    /// way. A healthy stream delivers what etcd queued at once.
    pub(super) fn advance(&mut self, d: Duration) {
        let until = self.now + d;
        // Most of the time the network delivers at once; sometimes messages
        // stay in flight while the timers run.
        let prompt = self.rng.chance(700);
        loop {
            while prompt && self.deliverable() {
                self.deliver();
            }
            let Some(at) = self.session.poll_timeout() else {
                break;
            };
            if at > until {
                break;
            }
            self.move_to(at);
            self.session.handle_timeout(self.now);
            self.pump();
        }
        self.move_to(until);
    }

    /// Until a watch is open, with nothing left to deliver; every fault healed.
    pub(super) fn quiesce(&mut self) {
        self.dead_broadcast = [false; ENDPOINTS];
        let mut pending_read = None;
        let mut restart = false;
        if let Some(c) = &mut self.conn {
            c.frozen = false;
            pending_read = c.read_pending;
            // A mute stream stays mute: the proxy restarts, the stream ends.
            restart = c.stream.as_ref().is_some_and(|s| s.mute);
        }
        if let Some(floor) = pending_read {
            self.answer_read(floor);
            self.pump();
        }
        if restart {
            self.session.handle_stream_end(self.now, "proxy restarted");
            self.pump();
        }
        for _ in 0..10_000 {
            if self.deliverable() {
                self.deliver();
                continue;
            }
            if self.session.is_watching() {
                break;
            }
            match self.session.poll_timeout() {
                Some(at) => {
                    self.move_to(at);
                    self.session.handle_timeout(self.now);
                }
                None => {
                    let endpoint = self.session.endpoint();
                    self.session.start(endpoint);
                }
            }
            self.pump();
        }
        self.check_converged();
    }

    /// Invariant 2: after quiescence the served set is the model's.
    fn check_converged(&mut self) {
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
        match self.rng.below(1000) {
            0..=389 => self.write(),
            390..=689 => self.deliver(),
            690..=789 => {
                let ms = self.rng.below(4000);
                self.advance(Duration::from_millis(ms));
            }
            790..=819 => {
                // The stream breaks: reconnect and resume.
                if self.conn.as_ref().is_some_and(|c| c.stream.is_some()) {
                    self.session.handle_stream_end(self.now, "stream error");
                    self.pump();
                }
            }
            820..=849 => {
                if let Some(c) = &mut self.conn {
                    c.frozen = true;
                }
                let secs = self.rng.below(20);
                self.advance(Duration::from_secs(secs));
            }
            850..=869 => {
                let back = self.rng.below(3) as i64;
                self.compact(back);
            }
            870..=879 => self.rebuild(),
            880..=884 => self.foreign_event(),
            885..=889 => self.second_created(),
            890..=894 => self.dead_broadcast(),
            895..=899 => self.silent_watch(),
            900..=929 => self.quiesce(),
            _ => {
                // Idle: time passes, healthy timers run.
                let secs = self.rng.below(30);
                self.advance(Duration::from_secs(secs));
            }
        }
    }

    fn queue(&mut self) -> Option<&mut VecDeque<WatchMsg>> {
        let stream = self.conn.as_mut()?.stream.as_mut()?;
        (!stream.mute).then_some(&mut stream.queue)
    }

    /// The proxy hop delivers an event for a key outside the range.
    fn foreign_event(&mut self) {
        let key = if self.prefix {
            b"q/0".to_vec()
        } else {
            b"k2".to_vec()
        };
        self.ids += 1;
        let id = format!("foreign{}", self.ids);
        let value = if self.prefix {
            format!(r#"{{"id":"{id}","level":"Shape","ttl_secs":60}}"#)
        } else {
            format!(r#"{{"directives":[{{"id":"{id}","level":"Shape","ttl_secs":60}}]}}"#)
        };
        let mut header = self.etcd.header();
        // etcd's revisions are global: another range's change takes the
        // next one, which the range's own next change will reuse here.
        let rev = self.etcd.revision + 1;
        header.revision = rev;
        let Some(queue) = self.queue() else { return };
        queue.push_back(WatchMsg {
            header,
            events: vec![Event::Put(Kv {
                key,
                value: value.into_bytes(),
                mod_revision: rev,
                create_revision: rev,
            })],
            ..WatchMsg::default()
        });
        self.cov.foreign_events += 1;
    }

    /// The proxy hop delivers a second creation on the stream.
    fn second_created(&mut self) {
        let header = self.etcd.header();
        let Some(queue) = self.queue() else { return };
        queue.push_back(WatchMsg {
            header,
            created: true,
            ..WatchMsg::default()
        });
        self.cov.second_created += 1;
    }

    /// The current endpoint's broadcast dies: its streams deliver nothing
    /// more, new watchers attach to it, reads still answer.
    fn dead_broadcast(&mut self) {
        let Some(c) = &mut self.conn else { return };
        self.dead_broadcast[c.endpoint] = true;
        if let Some(s) = &mut c.stream {
            s.mute = true;
        }
        self.cov.dead_broadcasts += 1;
    }

    /// The open watch goes silent while its transport stays healthy.
    fn silent_watch(&mut self) {
        let Some(s) = self.conn.as_mut().and_then(|c| c.stream.as_mut()) else {
            return;
        };
        s.mute = true;
        self.cov.silent_watches += 1;
    }

    /// Compacts etcd at `back` revisions before its current one.
    pub(super) fn compact(&mut self, back: i64) {
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
        self.etcd = Etcd::new(self.next_cluster, start);
        self.next_cluster += 1;
        for _ in 0..self.rng.below(4) {
            self.write();
        }
        if self.session.is_watching() {
            self.session.handle_stream_end(self.now, "member restarted");
            self.pump();
        }
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
