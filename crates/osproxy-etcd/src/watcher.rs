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
//!   a compaction of that revision, a revision that went backwards or a
//!   changed cluster id lead to a fresh read instead, never to a skip;
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

use etcd_client::{Client, EventType, GetOptions, WatchOptions, WatchStream};
use osproxy_observe::{RejectReason, SharedDirectiveSet};
use tokio::time::{sleep_until, timeout, Instant as TokioInstant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::applied::{AppliedState, Outcome};
use crate::backoff::Backoff;
use crate::config::StoreConfig;
use crate::error::client_error_kind;
use crate::instance::InstanceReporter;
use crate::status::{StatusCell, WatchPhase};

/// Where the watcher is; each variant holds only what is valid in it.
// `Client` is large; a state moves once per transition, so boxing buys nothing.
#[allow(clippy::large_enum_variant)]
enum State {
    /// Wait, then connect.
    Backoff {
        delay: Duration,
        resume: Option<i64>,
    },
    /// Open a connection to the current endpoint. With `resume`, skip the
    /// read and watch from that revision.
    Connect { resume: Option<i64> },
    /// Read the key (or prefix) at a revision on this connection.
    Read { client: Client },
    /// Follow the watch from `next_revision`.
    Watch {
        client: Client,
        stream: WatchStream,
        next_revision: i64,
    },
}

/// Why a watch ended.
enum WatchEnd {
    /// Compacted, rebuilt or gone backwards: take a fresh read on this client.
    Reread,
    /// The connection is unusable (error, end, stale): reconnect and resume.
    Reconnect { kind: &'static str },
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
    /// Runs until `cancel` fires. `client` is the connection `connect` already
    /// read on; `start` is the revision after that read.
    pub(crate) async fn run(mut self, client: Client, start: i64, cancel: CancellationToken) {
        let mut state = match client
            .watch_client()
            .watch(self.watch_key(), Some(self.watch_options(start)))
            .await
        {
            Ok(stream) => State::Watch {
                client,
                stream,
                next_revision: start,
            },
            Err(e) => self.fail(client_error_kind(&e), Some(start)),
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
            State::Connect { resume } => self.connect(resume).await,
            State::Read { client } => self.read(client).await,
            State::Watch {
                client,
                stream,
                next_revision,
            } => self.watch(client, stream, next_revision).await,
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

    async fn connect(&mut self, resume: Option<i64>) -> State {
        self.set_phase(WatchPhase::Connecting, false);
        let conn = &self.config.connection;
        let endpoint = self.endpoint().to_owned();
        let attempt = timeout(
            conn.connect_timeout,
            Client::connect([endpoint.as_str()], Some(conn.client_options())),
        )
        .await;
        let client = match attempt {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return self.fail(client_error_kind(&e), resume),
            Err(_) => return self.fail("connect timeout", resume),
        };
        match resume {
            None => State::Read { client },
            Some(rev) => self.open_watch(client, rev).await,
        }
    }

    async fn open_watch(&mut self, mut client: Client, next_revision: i64) -> State {
        let opts = self.watch_options(next_revision);
        let key = self.watch_key();
        match timeout(
            self.config.connection.connect_timeout,
            client.watch(key, Some(opts)),
        )
        .await
        {
            Ok(Ok(stream)) => State::Watch {
                client,
                stream,
                next_revision,
            },
            Ok(Err(e)) => self.fail(client_error_kind(&e), Some(next_revision)),
            Err(_) => self.fail("watch timeout", Some(next_revision)),
        }
    }

    fn watch_key(&self) -> String {
        self.config.layout.key().to_owned()
    }

    fn watch_options(&self, start: i64) -> WatchOptions {
        let o = WatchOptions::new()
            .with_start_revision(start)
            .with_progress_notify();
        if self.config.layout.is_prefix() {
            o.with_prefix()
        } else {
            o
        }
    }

    async fn read(&mut self, mut client: Client) -> State {
        self.set_phase(WatchPhase::Reading, false);
        let key = self.watch_key();
        let opts = self
            .config
            .layout
            .is_prefix()
            .then(|| GetOptions::new().with_prefix());
        let resp = match timeout(
            self.config.connection.request_timeout,
            client.get(key, opts),
        )
        .await
        {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return self.fail(client_error_kind(&e), None),
            Err(_) => return self.fail("read timeout", None),
        };
        let (revision, cluster_id) = resp
            .header()
            .map_or((0, 0), |h| (h.revision(), h.cluster_id()));
        self.header_revision = revision;
        self.cluster_id = Some(cluster_id);
        self.apply_read(resp.kvs());
        self.status.confirmed(self.config.clock.as_ref(), revision);
        self.open_watch(client, revision + 1).await
    }

    /// Applies a full read: the same logic `connect` uses for the first one.
    pub(crate) fn apply_read(&mut self, kvs: &[etcd_client::KeyValue]) {
        let mut rejected = Vec::new();
        let outcome = self
            .applied
            .replace_all(kvs, self.config.clock.as_ref(), &mut rejected);
        self.publish(outcome, &rejected);
    }

    /// Swaps the snapshot if anything changed and records rejections.
    fn publish(&mut self, outcome: Outcome, rejected: &[RejectReason]) {
        let clock = self.config.clock.as_ref();
        if outcome == Outcome::Changed {
            let set = self.applied.compose();
            let len = set.len();
            let changed = *self.shared.load_full() != set;
            if changed {
                self.shared.store(Arc::new(set));
                info!(
                    directives = len,
                    revision = self.applied.revision(),
                    "directive set applied"
                );
            }
            let now_wall = clock.unix_nanos();
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
    }

    async fn watch(
        &mut self,
        client: Client,
        mut stream: WatchStream,
        mut next_revision: i64,
    ) -> State {
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
                    match self.on_response(&resp, &mut next_revision) {
                        Ok(()) => {}
                        Err(end) => break end,
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
                        reporter.report(&client, &self.status, self.config.clock.as_ref()).await;
                    }
                }
            }
        };
        // Close the old watch before anything opens a new one.
        drop(stream);
        match end {
            WatchEnd::Reread => State::Read { client },
            WatchEnd::Reconnect { kind } => {
                drop(client);
                self.fail(kind, Some(next_revision))
            }
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
            info!("etcd cluster id changed; re-reading");
            self.cluster_id = Some(cluster_id);
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
        for event in resp.events() {
            let Some(kv) = event.kv() else { continue };
            let revision = kv.mod_revision();
            if revision < floor {
                continue; // a duplicate or a watch travelling back in time
            }
            let o = match event.event_type() {
                EventType::Put => self.applied.put(kv, clock.as_ref(), &mut rejected),
                EventType::Delete => self.applied.delete(kv.key(), revision),
            };
            if o == Outcome::Changed {
                outcome = Outcome::Changed;
            }
            *next_revision = (*next_revision).max(revision + 1);
        }
        self.publish(outcome, &rejected);
        self.status.confirmed(clock.as_ref(), *next_revision - 1);
        Ok(())
    }
}
