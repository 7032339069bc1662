//! [`Changes`]: every change of the live set, as an instance would serve it.
//! An I/O shell around the same watch core as the store's watcher
//! ([`crate::follow::Follower`]), so it means the same by every message: a
//! stream that ends or fails is resumed from the next unseen revision (after
//! a jittered backoff); a resume point that was compacted away, a changed
//! cluster id or revisions gone backwards lead to a fresh read, whose
//! difference is reported as one change.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, WatchStream};
use osproxy_core::Clock;
use osproxy_observe::DirectiveSet;
use tracing::warn;

use super::live::read_live;
use super::{PublishError, Publisher};
use crate::backoff::{Backoff, BackoffPolicy};
use crate::config::Layout;
use crate::error::client_error_kind;
use crate::follow::{End, Follower, Header, Snapshot, WatchMsg};
use crate::status::Rejection;
use crate::wire;

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
    pub async fn changes(&self) -> Result<(Change, Changes), PublishError> {
        let mut changes = Changes {
            client: self.client.clone(),
            layout: self.layout.clone(),
            request_timeout: self.request_timeout,
            stream: None,
            follower: Follower::new(self.layout.is_prefix(), self.limits)
                .with_prefix(self.layout.key()),
            clock: Arc::clone(&self.clock),
            next_revision: 0,
            reread: true,
            backoff: Backoff::new(BackoffPolicy::default()),
            pending: VecDeque::new(),
            interruptions: 0,
        };
        let first = changes.reread().await?;
        changes.open_watch().await?;
        Ok((first, changes))
    }
}

/// Every change to the live set after [`Publisher::changes`] read it.
///
/// A transaction that touches several keys is one change. Events at or below
/// an already reported revision are ignored (etcd 3.4 can repeat them).
pub struct Changes {
    client: Client,
    layout: Layout,
    request_timeout: Duration,
    stream: Option<WatchStream>,
    follower: Follower,
    clock: Arc<dyn Clock>,
    next_revision: i64,
    /// The next resume must read afresh (compacted, or never read).
    reread: bool,
    backoff: Backoff,
    pending: VecDeque<Change>,
    interruptions: u64,
}

impl fmt::Debug for Changes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Changes")
            .field("next_revision", &self.next_revision)
            .field("pending", &self.pending.len())
            .field("interruptions", &self.interruptions)
            .finish()
    }
}

/// How a watch response ended the stream.
enum Interrupted {
    /// Resume from the next unseen revision.
    Resume(&'static str),
    /// The resume point is gone: read afresh.
    Reread,
}

impl Changes {
    /// Waits for the next change. Never ends on its own: a watch that ends,
    /// fails or is compacted past is resumed (see the module docs).
    ///
    /// # Errors
    /// None today; kept fallible for callers that want to stop on errors.
    pub async fn next_change(&mut self) -> Result<Change, PublishError> {
        loop {
            if let Some(change) = self.pending.pop_front() {
                return Ok(change);
            }
            let Some(stream) = self.stream.as_mut() else {
                self.resume().await;
                continue;
            };
            let resp = match stream.message().await {
                Ok(Some(resp)) => resp,
                Ok(None) => {
                    self.interrupted(Interrupted::Resume("closed"));
                    continue;
                }
                Err(e) => {
                    self.interrupted(Interrupted::Resume(client_error_kind(&e)));
                    continue;
                }
            };
            let msg = wire::watch_msg(&resp);
            drop(resp);
            match self.apply(msg) {
                Ok(()) => {}
                Err(End::Reread) => self.interrupted(Interrupted::Reread),
                Err(End::Reconnect(why)) => self.interrupted(Interrupted::Resume(why)),
            }
        }
    }

    /// How often the watch was interrupted and resumed.
    pub fn interruptions(&self) -> u64 {
        self.interruptions
    }

    fn interrupted(&mut self, how: Interrupted) {
        self.stream = None;
        self.interruptions += 1;
        match how {
            Interrupted::Resume(why) => warn!(why, "watch interrupted; resuming"),
            Interrupted::Reread => {
                warn!("watch compacted past; reading afresh");
                self.reread = true;
            }
        }
    }

    /// Re-establishes the watch, retrying with backoff until it is open.
    async fn resume(&mut self) {
        loop {
            match self.try_resume().await {
                Ok(()) => return,
                Err(e) => {
                    let delay = self.backoff.next_delay();
                    warn!(error = %e, ?delay, "cannot resume the watch yet");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn try_resume(&mut self) -> Result<(), PublishError> {
        if !self.reread {
            let mut client = self.client.clone();
            let resumable = crate::connection::resumable(
                &mut client,
                &self.layout,
                self.next_revision,
                self.request_timeout,
            )
            .await?;
            self.reread = !resumable;
        }
        if self.reread {
            let previous = DirectiveSet::clone(&self.follower.compose());
            let change = self.reread().await?;
            if change.set != previous {
                self.pending.push_back(change);
            }
        }
        self.open_watch().await
    }

    /// Reads the live state afresh and returns it as a change.
    async fn reread(&mut self) -> Result<Change, PublishError> {
        let live = read_live(&self.client, &self.layout, self.request_timeout, false).await?;
        let snapshot = Snapshot {
            header: Header {
                revision: live.header,
                cluster_id: live.cluster_id,
            },
            kvs: live.kvs.iter().map(wire::kv).collect(),
        };
        let applied = self.follower.on_read(snapshot, self.clock.as_ref());
        self.next_revision = applied.confirmed + 1;
        self.reread = false;
        Ok(Change {
            revision: live.revision,
            set: DirectiveSet::clone(&self.follower.compose()),
            rejected: self.follower.rejections(),
        })
    }

    async fn open_watch(&mut self) -> Result<(), PublishError> {
        let options = self.layout.watch_options(self.next_revision);
        let mut client = self.client.clone();
        let stream = super::request(
            self.request_timeout,
            "watch",
            client.watch(self.layout.key().to_owned(), Some(options)),
        )
        .await?;
        self.stream = Some(stream);
        Ok(())
    }

    /// Hands a watch message to the core, one revision (one transaction) at
    /// a time, and queues a change for each revision it applied.
    fn apply(&mut self, mut msg: WatchMsg) -> Result<(), End> {
        if msg.events.is_empty() {
            let applied =
                self.follower
                    .on_watch(msg, &mut self.next_revision, self.clock.as_ref())?;
            if applied.created {
                self.backoff.reset();
            }
            return Ok(());
        }
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
            let before = self.next_revision;
            let applied =
                self.follower
                    .on_watch(one, &mut self.next_revision, self.clock.as_ref())?;
            if applied.created {
                self.backoff.reset();
            }
            if self.next_revision != before {
                self.emit(revision);
            }
        }
        Ok(())
    }

    fn emit(&mut self, revision: i64) {
        let set = DirectiveSet::clone(&self.follower.compose());
        let rejected = self.follower.rejections();
        self.pending.push_back(Change {
            revision,
            set,
            rejected,
        });
    }
}
