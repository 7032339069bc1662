//! The background task that keeps a store's snapshot fresh: an explicit state
//! machine over one etcd connection at a time.
//!
//! ```text
//!            ┌───────────── stale / stream error / cancel ─────────────┐
//!            ▼                                                          │
//! Backoff ─► Connect ─► Read (at revision R) ─► Watch (from R+1) ───────┤
//!    ▲          │ resume from last applied + 1 ───────▲   │ compacted,  │
//!    └──────────┘ failure (next endpoint)                 │ rebuilt     │
//!                                                         └─► Read ─────┘
//! ```
//!
//! Each transition is a named recovery (SPEC §5, §7):
//! - a fresh read is taken at a revision and the watch starts at the next one,
//!   so no write between the read and the watch is missed;
//! - after a reconnect the watch resumes from the last applied revision + 1;
//!   a compaction that reached that revision (checked before resuming: etcd
//!   3.4 can drop a delete at the compaction revision), a revision that went
//!   backwards or a changed cluster id lead to a fresh read instead, never to
//!   a skip;
//! - events at or below the last applied revision are ignored (duplicates);
//!   progress replies refresh liveness but never move the resume point;
//! - a watch silent for `progress_interval` is asked for progress, and one
//!   silent for `stale_after` is dropped for the next endpoint, so a frozen
//!   member or a half-open connection cannot leave the store stale;
//! - reconnects back off with jitter and reset once a watch is established.
//!
//! The task owns its connection and ends, closing it, when the store's last
//! handle drops (the cancellation token fires).

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, EventType, GetOptions, WatchOptions, WatchResponse, WatchStream};
use osproxy_core::Clock;
use osproxy_observe::{RejectReason, SharedDirectiveSet};
use tokio::time::{sleep_until, timeout, Instant as TokioInstant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::applied::{AppliedState, Outcome};
use crate::backoff::Backoff;
use crate::config::StoreConfig;
use crate::connection;
use crate::error::client_error_kind;
use crate::instance::InstanceReporter;
use crate::offload::decode_work;
use crate::status::{StatusCell, WatchPhase};

/// Where the watcher is; each variant holds only what is valid in it.
///
/// The steady state holds nothing but the watch stream: the connection lives
/// as long as the stream does, and a store's memory is mostly this task.
// The steady state is `Watch`: boxing its stream would add an allocation and
// an indirection there to shrink the rare states.
#[allow(clippy::large_enum_variant)]
enum State {
    /// Wait, then connect.
    Backoff {
        delay: Duration,
        resume: Option<i64>,
    },
    /// Open a connection to the current endpoint; read first unless
    /// resuming from a known revision.
    Connect { resume: Option<i64> },
    /// Follow the watch from `next_revision`.
    Watch {
        stream: WatchStream,
        next_revision: i64,
    },
}

/// Why a watch ended.
enum WatchEnd {
    /// Compacted, rebuilt or gone backwards: take a fresh read.
    Reread,
    /// The connection is unusable (error, end, stale): reconnect and resume.
    Reconnect { kind: &'static str },
}

/// A connection attempt that failed, with the error kind for status and,
/// for the first connect, the error itself.
pub(crate) struct Failed {
    pub(crate) kind: &'static str,
    pub(crate) error: Option<etcd_client::Error>,
}

impl Failed {
    fn client(e: etcd_client::Error) -> Self {
        Failed {
            kind: client_error_kind(&e),
            error: Some(e),
        }
    }

    fn timeout(kind: &'static str) -> Self {
        Failed { kind, error: None }
    }
}

/// The watcher and everything it owns.
pub(crate) struct Watcher {
    pub(crate) config: StoreConfig,
    pub(crate) shared: SharedDirectiveSet,
    pub(crate) status: Arc<StatusCell>,
    pub(crate) applied: AppliedState,
    pub(crate) backoff: Backoff,
    pub(crate) endpoint_ix: usize,
    /// Highest header revision seen from the current cluster.
    pub(crate) header_revision: i64,
    pub(crate) cluster_id: Option<u64>,
    pub(crate) instance: Option<InstanceReporter>,
}

impl Watcher {
    /// Runs until `cancel` fires, starting from an established watch.
    pub(crate) async fn run(
        mut self,
        stream: WatchStream,
        next_revision: i64,
        cancel: CancellationToken,
    ) {
        let mut state = State::Watch {
            stream,
            next_revision,
        };
        loop {
            state = tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                next = self.step(state) => next,
            };
        }
        self.status.update(|s| {
            s.phase = WatchPhase::Stopped;
            s.connected = false;
        });
        debug!("etcd directive watcher stopped");
    }

    async fn step(&mut self, state: State) -> State {
        match state {
            State::Backoff { delay, resume } => {
                self.set_phase(WatchPhase::Backoff, false);
                tokio::time::sleep(delay).await;
                State::Connect { resume }
            }
            State::Connect { resume } => {
                let limit = self.config.connection.connect_timeout;
                // Boxed: connecting is rare and its future is large; the
                // steady state should not carry its size.
                match Box::pin(self.establish(limit, resume)).await {
                    Ok((stream, next_revision)) => State::Watch {
                        stream,
                        next_revision,
                    },
                    Err(failed) => self.fail(failed.kind, resume),
                }
            }
            State::Watch {
                stream,
                next_revision,
            } => self.watch(stream, next_revision).await,
        }
    }

    fn endpoint(&self) -> &str {
        let eps = &self.config.connection.endpoints;
        eps.get(self.endpoint_ix % eps.len().max(1))
            .map_or("", String::as_str)
    }

    fn set_phase(&self, phase: WatchPhase, connected: bool) {
        let endpoint = self.endpoint().to_owned();
        self.status.update(|s| {
            s.phase = phase;
            s.connected = connected;
            s.endpoint = Some(endpoint);
        });
    }

    /// A failed connection: count it, move to the next endpoint, back off.
    fn fail(&mut self, kind: &'static str, resume: Option<i64>) -> State {
        self.endpoint_ix = self.endpoint_ix.wrapping_add(1);
        self.status.update(|s| {
            s.reconnects += 1;
            s.connected = false;
            s.last_error = Some(kind);
        });
        let delay = self.backoff.next_delay();
        warn!(kind, ?delay, "etcd connection lost; reconnecting");
        State::Backoff { delay, resume }
    }

    /// Connects to the current endpoint within `limit`, reads (unless
    /// resuming) and opens the watch. The one path for the first connect and
    /// every reconnect.
    pub(crate) async fn establish(
        &mut self,
        limit: Duration,
        resume: Option<i64>,
    ) -> Result<(WatchStream, i64), Failed> {
        self.set_phase(WatchPhase::Connecting, false);
        let endpoint = self.endpoint().to_owned();
        let mut client =
            match timeout(limit, connection::open(&self.config.connection, &endpoint)).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => return Err(Failed::client(e)),
                Err(_) => return Err(Failed::timeout("connect timeout")),
            };
        let next_revision = match resume {
            Some(rev) if self.resumable(&mut client, rev, limit).await? => rev,
            _ => self.read(&mut client, limit).await? + 1,
        };
        let opts = self.watch_options(next_revision);
        let key = self.config.layout.key().to_owned();
        let stream = match timeout(limit, client.watch(key, Some(opts))).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(Failed::client(e)),
            Err(_) => return Err(Failed::timeout("watch timeout")),
        };
        if let Some(reporter) = &mut self.instance {
            reporter.attach(client);
        }
        Ok((stream, next_revision))
    }

    fn watch_options(&self, start: i64) -> WatchOptions {
        self.config
            .layout
            .watch_options(start)
            .with_progress_notify()
    }

    /// Whether a watch may resume at `next_revision`: only while etcd still
    /// holds the revision before it, i.e. no compaction reached the resume
    /// point. etcd 3.4 drops a delete that is a key's last change from a
    /// watch opened at exactly the compaction revision (etcd-io/etcd#18089,
    /// #19179), and a compaction beyond it would cancel the watch anyway: in
    /// both cases a fresh read replaces the resume. A revision etcd does not
    /// have yet (a rebuilt cluster) also means a read.
    async fn resumable(
        &self,
        client: &mut Client,
        next_revision: i64,
        limit: Duration,
    ) -> Result<bool, Failed> {
        let opts = GetOptions::new()
            .with_revision(next_revision - 1)
            .with_count_only();
        match timeout(
            limit.min(self.config.connection.request_timeout),
            client.get(self.config.layout.key(), Some(opts)),
        )
        .await
        {
            Ok(Ok(_)) => Ok(true),
            // Compacted, or a future revision.
            Ok(Err(etcd_client::Error::GRpcStatus(s))) if s.code() == tonic::Code::OutOfRange => {
                Ok(false)
            }
            Ok(Err(e)) => Err(Failed::client(e)),
            Err(_) => Err(Failed::timeout("read timeout")),
        }
    }

    /// Reads the key (or prefix) and applies it; returns the read's revision.
    async fn read(&mut self, client: &mut Client, limit: Duration) -> Result<i64, Failed> {
        self.set_phase(WatchPhase::Reading, false);
        let key = self.config.layout.key().to_owned();
        let opts = Some(self.config.layout.get_options());
        let resp = match timeout(
            limit.min(self.config.connection.request_timeout),
            client.get(key, opts),
        )
        .await
        {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(Failed::client(e)),
            Err(_) => return Err(Failed::timeout("read timeout")),
        };
        let (revision, cluster_id) = resp
            .header()
            .map_or((0, 0), |h| (h.revision(), h.cluster_id()));
        let rebuilt =
            self.cluster_id.is_some_and(|id| id != cluster_id) || revision < self.header_revision;
        if rebuilt {
            // A rebuilt cluster: its revisions start afresh.
            self.applied.forget_revision();
        }
        self.header_revision = revision;
        self.cluster_id = Some(cluster_id);
        let mut rejected = Vec::new();
        let bytes = resp.kvs().iter().map(|kv| kv.value().len()).sum();
        let clock = self.config.clock.as_ref();
        let outcome = decode_work(bytes, || {
            self.applied.replace_all(resp.kvs(), clock, &mut rejected)
        });
        self.publish(outcome, &rejected);
        if rebuilt {
            // The old cluster's revisions mean nothing here: status must not
            // keep showing them (`confirmed` only ever raises its revision,
            // and an unchanged read publishes nothing).
            let applied = self.applied.revision();
            self.status.update(|s| {
                s.applied_revision = applied;
                s.confirmed_revision = 0;
            });
            if let Some(reporter) = &mut self.instance {
                reporter.mark_dirty();
            }
        }
        self.status.confirmed(self.config.clock.as_ref(), revision);
        Ok(revision)
    }

    /// Swaps the snapshot if anything changed and records rejections.
    fn publish(&mut self, outcome: Outcome, rejected: &[RejectReason]) {
        if outcome == Outcome::Unchanged {
            return;
        }
        let set = self.applied.compose();
        let len = set.len();
        let current = self.shared.load_full();
        // Single key: an unchanged last good set is the very same `Arc`.
        // Prefix: the set is rebuilt from the keys, so compare contents.
        let changed = if self.config.layout.is_prefix() {
            *current != *set
        } else {
            !Arc::ptr_eq(&current, &set)
        };
        if changed {
            self.shared.store(set);
            info!(
                directives = len,
                revision = self.applied.revision(),
                "directive set applied"
            );
        }
        let now_wall = self.config.clock.unix_nanos();
        let revision = self.applied.revision();
        let rejections = self.applied.rejections();
        self.status.update(|s| {
            s.applied_revision = revision;
            s.directives = len;
            if changed {
                s.last_update_unix_nanos = Some(now_wall);
            }
            s.rejected = rejections;
            for r in rejected {
                *s.rejected_total.entry(r.slug()).or_default() += 1;
            }
        });
        for r in rejected {
            warn!(
                reason = r.slug(),
                "directive publish rejected; last good set keeps serving"
            );
        }
        if let Some(reporter) = &mut self.instance {
            reporter.mark_dirty();
        }
    }

    async fn watch(&mut self, mut stream: WatchStream, mut next_revision: i64) -> State {
        self.set_phase(WatchPhase::Watching, true);
        let progress_every = self.config.progress_interval;
        let stale_after = self.config.stale_after;
        let mut last_message = TokioInstant::now();
        let mut progress_requested = false;
        let end = loop {
            let progress_at = last_message + progress_every;
            let stale_at = last_message + stale_after;
            let report_due = self.instance.as_ref().and_then(InstanceReporter::next_due);
            tokio::select! {
                msg = stream.message() => {
                    let resp = match msg {
                        Ok(Some(resp)) => resp,
                        Ok(None) => break WatchEnd::Reconnect { kind: "watch stream ended" },
                        Err(e) => break WatchEnd::Reconnect { kind: client_error_kind(&e) },
                    };
                    last_message = TokioInstant::now();
                    progress_requested = false;
                    if let Err(end) = self.on_response(&resp, &mut next_revision) {
                        break end;
                    }
                }
                () = sleep_until(progress_at), if !progress_requested => {
                    progress_requested = true;
                    if stream.request_progress().await.is_err() {
                        break WatchEnd::Reconnect { kind: "watch stream closed" };
                    }
                }
                () = sleep_until(stale_at) => {
                    break WatchEnd::Reconnect { kind: "stale connection" };
                }
                () = sleep_until(report_due.unwrap_or(stale_at)), if report_due.is_some() => {
                    if let Some(reporter) = &mut self.instance {
                        Box::pin(reporter.report(&self.status, self.config.clock.as_ref())).await;
                    }
                }
            }
        };
        // Close the old watch before anything opens a new one.
        drop(stream);
        match end {
            WatchEnd::Reread => State::Connect { resume: None },
            WatchEnd::Reconnect { kind } => self.fail(kind, Some(next_revision)),
        }
    }

    /// Handles one watch response; `Err` names why the watch must end.
    fn on_response(
        &mut self,
        resp: &etcd_client::WatchResponse,
        next_revision: &mut i64,
    ) -> Result<(), WatchEnd> {
        let (header_revision, cluster_id) = resp
            .header()
            .map_or((0, 0), |h| (h.revision(), h.cluster_id()));
        if self
            .cluster_id
            .is_some_and(|id| id != cluster_id && cluster_id != 0)
        {
            // `read` records the new id (and sees that it changed).
            info!("etcd cluster id changed; re-reading");
            return Err(WatchEnd::Reread);
        }
        if resp.compact_revision() != 0 {
            info!(
                compact_revision = resp.compact_revision(),
                "watch revision compacted; re-reading"
            );
            return Err(WatchEnd::Reread);
        }
        if resp.canceled() {
            return Err(WatchEnd::Reconnect {
                kind: "watch canceled",
            });
        }
        if resp.created() {
            // A new watch whose cluster is behind where we resume from was
            // rebuilt (revision went backwards): events we expect may never come.
            if header_revision < *next_revision - 1 {
                info!(
                    header_revision,
                    next_revision = *next_revision,
                    "etcd revision went backwards; re-reading"
                );
                return Err(WatchEnd::Reread);
            }
            self.backoff.reset();
            self.status.update(|s| s.last_error = None);
        }
        if resp.events().is_empty() {
            // Progress reply or creation: liveness only; the resume point stays.
            self.status.confirmed(
                self.config.clock.as_ref(),
                header_revision.min(*next_revision - 1),
            );
            return Ok(());
        }
        if header_revision < self.header_revision {
            info!("etcd header revision went backwards; re-reading");
            return Err(WatchEnd::Reread);
        }
        self.header_revision = header_revision;
        let clock = Arc::clone(&self.config.clock);
        let mut outcome = Outcome::Unchanged;
        let mut rejected = Vec::new();
        // Several events of one response may share a revision (a transaction):
        // filter against the resume point as it was before this response.
        let floor = *next_revision;
        let bytes = resp
            .events()
            .iter()
            .filter_map(|e| e.kv().map(|kv| kv.value().len()))
            .sum();
        decode_work(bytes, || {
            self.apply_events(
                resp,
                clock.as_ref(),
                floor,
                next_revision,
                &mut outcome,
                &mut rejected,
            )
        });
        self.publish(outcome, &rejected);
        self.status.confirmed(clock.as_ref(), *next_revision - 1);
        Ok(())
    }

    /// Applies the events of one response at or above `floor`, moving
    /// `next_revision` past each.
    fn apply_events(
        &mut self,
        resp: &WatchResponse,
        clock: &dyn Clock,
        floor: i64,
        next_revision: &mut i64,
        outcome: &mut Outcome,
        rejected: &mut Vec<RejectReason>,
    ) {
        for event in resp.events() {
            let Some(kv) = event.kv() else { continue };
            let revision = kv.mod_revision();
            if revision < floor {
                continue; // a duplicate or a watch travelling back in time
            }
            let o = match event.event_type() {
                EventType::Put => self.applied.put(kv, clock, rejected),
                EventType::Delete => self.applied.delete(kv.key(), revision),
            };
            if o == Outcome::Changed {
                *outcome = Outcome::Changed;
            }
            *next_revision = (*next_revision).max(revision + 1);
        }
    }
}
