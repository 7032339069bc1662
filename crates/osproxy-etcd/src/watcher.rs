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

use etcd_client::{
    Client, EventType, GetOptions, KvClient, WatchOptions, WatchResponse, WatchStream,
};
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
    /// Follow the watch from `next_revision`; `kv` is the same connection's
    /// KV service, for the liveness read.
    Watch {
        stream: WatchStream,
        kv: KvClient,
        next_revision: i64,
    },
}

/// Longest wait for a progress reply before the liveness read takes over.
pub(crate) const PROGRESS_GRACE: Duration = Duration::from_secs(1);

/// The wait for a progress reply: [`PROGRESS_GRACE`], or a third of the gap
/// between the progress interval and the staleness bound when that is
/// shorter, so the read still has time to answer before `stale_after`.
fn progress_grace(progress_every: Duration, stale_after: Duration) -> Duration {
    PROGRESS_GRACE.min(stale_after.saturating_sub(progress_every) / 3)
}

/// Where the liveness probe of a watch is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Probe {
    /// Nothing asked since the last message.
    Idle,
    /// A progress request is out, sent at `since`.
    AwaitingProgress { since: TokioInstant },
}

/// What a liveness read answered.
#[derive(Clone, Copy, Debug)]
struct LivenessRead {
    header_revision: i64,
    cluster_id: u64,
    /// Keys modified after the applied revision (the read asks for at most 1).
    newer_keys: usize,
    /// Keys in the range, whatever the filter.
    count: usize,
}

/// What the watcher knows when it probes.
#[derive(Clone, Copy, Debug)]
struct Known {
    header_revision: i64,
    cluster_id: Option<u64>,
    keys: usize,
}

impl LivenessRead {
    /// Whether the read proves that nothing in the range changed after what
    /// was applied: no newer key (a put), the same number of keys (a delete
    /// of a key applied earlier lowers it; a put raises it or shows as
    /// newer), the same cluster and a header revision not gone backwards
    /// (a rebuilt cluster).
    fn shows_current(&self, known: &Known) -> bool {
        let same_cluster = known
            .cluster_id
            .is_none_or(|id| id == self.cluster_id || self.cluster_id == 0);
        same_cluster
            && self.header_revision >= known.header_revision
            && self.newer_keys == 0
            && self.count == known.keys
    }
}

/// An established watch: the stream, its connection's KV service, and the
/// revision it delivers next.
pub(crate) type Established = (WatchStream, KvClient, i64);

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
        (stream, kv, next_revision): Established,
        cancel: CancellationToken,
    ) {
        let mut state = State::Watch {
            stream,
            kv,
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
                    Ok((stream, kv, next_revision)) => State::Watch {
                        stream,
                        kv,
                        next_revision,
                    },
                    Err(failed) => self.fail(failed.kind, resume),
                }
            }
            State::Watch {
                stream,
                kv,
                next_revision,
            } => self.watch(stream, kv, next_revision).await,
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
    ) -> Result<Established, Failed> {
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
        let kv = client.kv_client();
        if let Some(reporter) = &mut self.instance {
            reporter.attach(client);
        }
        Ok((stream, kv, next_revision))
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

    /// Follows the watch until it must end. Liveness (SPEC §5.5, §5.12): after
    /// `progress_interval` of silence the watch is asked for progress; an
    /// endpoint that does not answer within [`PROGRESS_GRACE`] (etcd's
    /// grpc-proxy never does, etcd-io/etcd#19710) is probed with a liveness
    /// read on the same connection instead, then and at every later silence
    /// on this connection. A probe that shows nothing newer than what was
    /// applied confirms freshness like a progress reply; one that shows a
    /// change the watch did not deliver re-reads; a probe that fails or
    /// gets no answer by `stale_after` drops the connection.
    async fn watch(
        &mut self,
        mut stream: WatchStream,
        mut kv: KvClient,
        mut next_revision: i64,
    ) -> State {
        self.set_phase(WatchPhase::Watching, true);
        let progress_every = self.config.progress_interval;
        let stale_after = self.config.stale_after;
        let grace = progress_grace(progress_every, stale_after);
        let mut last_message = TokioInstant::now();
        let mut probe = Probe::Idle;
        // Whether this connection answers progress requests: unknown until
        // the first one, and never asked again once it did not.
        let mut answers_progress = true;
        let end = loop {
            let progress_at = last_message + progress_every;
            let stale_at = last_message + stale_after;
            let read_at = match probe {
                Probe::Idle if !answers_progress => Some(progress_at),
                Probe::AwaitingProgress { since } => Some(since + grace),
                Probe::Idle => None,
            };
            let report_due = self.instance.as_ref().and_then(InstanceReporter::next_due);
            tokio::select! {
                msg = stream.message() => {
                    let resp = match msg {
                        Ok(Some(resp)) => resp,
                        Ok(None) => break WatchEnd::Reconnect { kind: "watch stream ended" },
                        Err(e) => break WatchEnd::Reconnect { kind: client_error_kind(&e) },
                    };
                    last_message = TokioInstant::now();
                    probe = Probe::Idle;
                    if let Err(end) = self.on_response(&resp, &mut next_revision) {
                        break end;
                    }
                }
                () = sleep_until(progress_at), if probe == Probe::Idle && answers_progress => {
                    probe = Probe::AwaitingProgress { since: TokioInstant::now() };
                    if stream.request_progress().await.is_err() {
                        break WatchEnd::Reconnect { kind: "watch stream closed" };
                    }
                }
                () = sleep_until(read_at.unwrap_or(stale_at)), if read_at.is_some() => {
                    if matches!(probe, Probe::AwaitingProgress { .. }) && answers_progress {
                        answers_progress = false;
                        info!("etcd endpoint does not answer watch progress requests; confirming freshness with reads");
                    }
                    match self.liveness_read(&mut kv, stale_at).await {
                        Ok(()) => {
                            last_message = TokioInstant::now();
                            probe = Probe::Idle;
                        }
                        Err(end) => break end,
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
        drop(kv);
        match end {
            WatchEnd::Reread => State::Connect { resume: None },
            WatchEnd::Reconnect { kind } => self.fail(kind, Some(next_revision)),
        }
    }

    /// One liveness read, answered by `deadline` or the connection is stale:
    /// a linearizable keys-only range over the layout with
    /// `min_mod_revision` just above what was applied. Its `count` is the
    /// number of keys in the range whatever the filter, so "nothing newer
    /// than applied" is exactly: no key returned, the same number of keys as
    /// applied, the same cluster, a header revision not behind. Then the
    /// store is confirmed fresh as of the header revision; otherwise the
    /// watch missed something (or the cluster was rebuilt) and a fresh read
    /// follows.
    async fn liveness_read(
        &mut self,
        kv: &mut KvClient,
        deadline: TokioInstant,
    ) -> Result<(), WatchEnd> {
        let applied = self.applied.revision();
        let opts = self
            .config
            .layout
            .get_options()
            .with_keys_only()
            .with_min_mod_revision(applied + 1)
            .with_limit(1);
        let key = self.config.layout.key().to_owned();
        let resp = match tokio::time::timeout_at(deadline, kv.get(key, Some(opts))).await {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => {
                return Err(WatchEnd::Reconnect {
                    kind: client_error_kind(&e),
                })
            }
            Err(_) => {
                return Err(WatchEnd::Reconnect {
                    kind: "stale connection",
                })
            }
        };
        let (header_revision, cluster_id) = resp
            .header()
            .map_or((0, 0), |h| (h.revision(), h.cluster_id()));
        let seen = LivenessRead {
            header_revision,
            cluster_id,
            newer_keys: resp.kvs().len(),
            count: usize::try_from(resp.count()).unwrap_or(usize::MAX),
        };
        let known = Known {
            header_revision: self.header_revision,
            cluster_id: self.cluster_id,
            keys: self.applied.key_count(),
        };
        if !seen.shows_current(&known) {
            info!(
                header_revision,
                applied, "liveness read shows changes the watch did not deliver; re-reading"
            );
            return Err(WatchEnd::Reread);
        }
        self.header_revision = header_revision;
        self.status
            .confirmed(self.config.clock.as_ref(), header_revision);
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: Known = Known {
        header_revision: 40,
        cluster_id: Some(7),
        keys: 3,
    };

    fn read(
        header_revision: i64,
        cluster_id: u64,
        newer_keys: usize,
        count: usize,
    ) -> LivenessRead {
        LivenessRead {
            header_revision,
            cluster_id,
            newer_keys,
            count,
        }
    }

    #[test]
    fn a_read_confirms_only_an_unchanged_range() {
        // Writes elsewhere moved the header on: still current.
        assert!(read(40, 7, 0, 3).shows_current(&KNOWN));
        assert!(read(90, 7, 0, 3).shows_current(&KNOWN));
        // A put the watch did not deliver.
        assert!(!read(41, 7, 1, 3).shows_current(&KNOWN));
        assert!(!read(41, 7, 1, 4).shows_current(&KNOWN));
        // A delete the watch did not deliver: one key fewer, nothing newer.
        assert!(!read(41, 7, 0, 2).shows_current(&KNOWN));
        // A rebuilt cluster: another id, or revisions gone backwards.
        assert!(!read(40, 8, 0, 3).shows_current(&KNOWN));
        assert!(!read(39, 7, 0, 3).shows_current(&KNOWN));
        // A proxy or member that does not report a cluster id.
        assert!(read(40, 0, 0, 3).shows_current(&KNOWN));
    }

    #[test]
    fn the_progress_grace_leaves_the_read_time_before_the_bound() {
        let s = Duration::from_secs;
        assert_eq!(progress_grace(s(10), s(15)), PROGRESS_GRACE);
        assert_eq!(progress_grace(s(1), s(3)), s(2) / 3);
        assert_eq!(progress_grace(s(3), s(3)), Duration::ZERO);
    }
}
