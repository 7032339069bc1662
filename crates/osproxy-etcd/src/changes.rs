//! [`Changes`]: every change of the live set, as an instance would serve it.
//! The second consumer of the one watch session
//! ([`crate::session::driver::Driver`]), so it means the same by every
//! message as the store and recovers the same way: liveness by progress
//! requests and reads, a silent or failing endpoint given up for the next
//! one of the publisher's list after a jittered backoff, a resume point
//! that was compacted away, a changed cluster id, revisions gone backwards
//! or a refused message lead to a fresh read, whose difference is reported
//! as one change.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use osproxy_observe::DirectiveSet;
use tracing::warn;

use crate::backoff::BackoffPolicy;
use crate::config::{DEFAULT_PROGRESS_INTERVAL, DEFAULT_STALE_AFTER};
use crate::error::TransportError;
use crate::follow::Follower;
use crate::publisher::{PublishError, Publisher};
use crate::session::driver::{Driver, Out};
use crate::session::{Note, Range, Session, Settings};
use crate::status::Rejection;

/// One change seen by [`Changes`]: the set an instance would serve after it.
#[derive(Clone, Debug)]
pub struct Change {
    /// The etcd revision of the change.
    pub revision: i64,
    /// The set served after the change (a rejected value leaves the last
    /// good one of its key serving, exactly as in the store).
    pub set: DirectiveSet,
    /// Values currently rejected.
    pub rejected: Vec<Rejection>,
}

impl Publisher {
    /// Follows the live set: returns the current state as a first [`Change`]
    /// and a [`Changes`] stream of every later change.
    ///
    /// # Errors
    /// A request error.
    ///
    /// ```no_run
    /// # async fn f(publisher: &osproxy_etcd::Publisher) -> Result<(), osproxy_etcd::PublishError> {
    /// let (first, mut changes) = publisher.changes().await?;
    /// println!("{} directives at revision {}", first.set.len(), first.revision);
    /// loop {
    ///     let change = changes.next_change().await?; // resumes, re-reads, fails over by itself
    ///     println!("revision {}: {} directives", change.revision, change.set.len());
    /// }
    /// # }
    /// ```
    pub async fn changes(&self) -> Result<(Change, Changes), PublishError> {
        let connection = self.connection.clone();
        let settings = Settings {
            endpoints: connection.endpoints().len(),
            range: Range::of(&self.layout),
            progress_every: DEFAULT_PROGRESS_INTERVAL,
            stale_after: DEFAULT_STALE_AFTER,
            backoff: BackoffPolicy::default(),
            per_revision: true,
            seed: rand::random(),
        };
        let follower =
            Follower::new(self.layout.is_prefix(), self.limits).with_prefix(self.layout.key());
        let session = Session::new(settings, follower, Arc::clone(&self.clock));
        let limit = connection.connect_timeout();
        let mut driver = Driver::new(session, connection, self.layout.clone(), true);
        driver.start(self.endpoint_ix, limit);
        let mut changes = Changes {
            driver,
            pending: VecDeque::new(),
            last: None,
            interruptions: 0,
        };
        // The first connect: one attempt at the endpoint that answered.
        loop {
            match changes.driver.next().await {
                Out::Watching => break,
                Out::GaveUp { .. } => {
                    let e = match changes.driver.take_error() {
                        Some(source) => TransportError::request("watch", source),
                        None => TransportError::Timeout {
                            op: "watch",
                            after: limit,
                        },
                    };
                    return Err(PublishError::Transport(e));
                }
                out => changes.handle(out),
            }
        }
        let first = match changes.pending.pop_back() {
            Some(first) => first,
            None => changes.current(changes.driver.live_revision()),
        };
        changes.pending.clear();
        changes.last = Some(first.set.clone());
        Ok((first, changes))
    }
}

/// Every change to the live set after [`Publisher::changes`] read it.
///
/// A transaction that touches several keys is one change. Events at or below
/// an already reported revision are ignored (etcd 3.4 can repeat them).
pub struct Changes {
    driver: Driver,
    pending: VecDeque<Change>,
    /// The set of the last change reported after a read.
    last: Option<DirectiveSet>,
    interruptions: u64,
}

impl fmt::Debug for Changes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Changes")
            .field("endpoint", &self.driver.endpoint())
            .field("pending", &self.pending.len())
            .field("interruptions", &self.interruptions)
            .finish()
    }
}

impl Changes {
    /// Waits for the next change. Never ends on its own: a watch that ends,
    /// fails, falls silent or is compacted past is resumed (see the module
    /// docs).
    ///
    /// # Errors
    /// None today; kept fallible for callers that want to stop on errors.
    pub async fn next_change(&mut self) -> Result<Change, PublishError> {
        loop {
            if let Some(change) = self.pending.pop_front() {
                self.last = Some(change.set.clone());
                return Ok(change);
            }
            let out = self.driver.next().await;
            self.handle(out);
        }
    }

    /// How often the watch was interrupted and resumed.
    pub fn interruptions(&self) -> u64 {
        self.interruptions
    }

    fn current(&mut self, revision: i64) -> Change {
        let follower = self.driver.session.follower();
        Change {
            revision,
            set: DirectiveSet::clone(&follower.compose()),
            rejected: follower.rejections(),
        }
    }

    fn handle(&mut self, out: Out) {
        match out {
            Out::Note(Note::Applied {
                read: true,
                revision,
                ..
            }) => {
                let live = self.driver.live_revision().max(revision);
                let change = self.current(live);
                // A read reports only what differs from what was reported.
                if self.last.as_ref() != Some(&change.set) {
                    self.pending.push_back(change);
                }
            }
            Out::Note(Note::Applied {
                read: false,
                moved: true,
                revision,
                ..
            }) => {
                let change = self.current(revision);
                self.pending.push_back(change);
            }
            Out::Note(Note::Interrupted { why, reread }) => {
                self.interruptions += 1;
                if reread {
                    warn!(why, "watch history gone or refused; reading afresh");
                } else {
                    warn!(why, "watch interrupted; resuming");
                }
            }
            Out::Note(Note::Refused { slug }) => {
                warn!(reason = slug, "watch message refused; reading afresh");
            }
            Out::Note(Note::Degraded {
                endpoint,
                degraded: true,
            }) => {
                warn!(endpoint, "etcd endpoint degraded: its watch misses changes");
            }
            Out::GaveUp { why, .. } => {
                warn!(
                    why,
                    next = self.driver.endpoint(),
                    "cannot follow the watch here; moving on"
                );
            }
            _ => {}
        }
    }
}
