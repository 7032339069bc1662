//! The background task that keeps a store's snapshot fresh: the I/O shell
//! around the watch core ([`crate::follow`]), an explicit state machine over
//! one etcd connection at a time. It connects, reads, watches, sleeps until
//! the core's next timer, converts what etcd says ([`crate::wire`]), and
//! carries out the core's answers; what an answer *means* is decided there.
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
//! Each transition is a named recovery (SPEC §5, §7; the rules themselves
//! are `follow::follower`'s and `follow::liveness`'s):
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

use etcd_client::{Client, KvClient, WatchOptions, WatchStream};
use osproxy_observe::RejectReason;
use tokio::time::{sleep_until, timeout, Instant as TokioInstant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::config::StoreOptions;
use crate::connection;
use crate::error::{client_error_kind, TransportError};
use crate::follow::{Action, End, Follower, Liveness, Outcome, WatchMsg};
use crate::instance::InstanceReporter;
use crate::offload::decode_work;
use crate::serving::Serving;
use crate::status::{StatusCell, WatchPhase};
use crate::timers;
use crate::wire;

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

/// An established watch: the stream, its connection's KV service, and the
/// revision it delivers next.
pub(crate) type Established = (WatchStream, KvClient, i64);

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

    fn transport(e: TransportError) -> Self {
        match e {
            TransportError::Request { kind, source, .. } => Failed {
                kind,
                error: Some(source),
            },
            TransportError::Timeout { .. } => Failed::timeout("read timeout"),
        }
    }
}

/// The watcher and everything it owns.
pub(crate) struct Watcher {
    pub(crate) config: StoreOptions,
    /// The served set: ceilings and fail-safe between the core and readers.
    pub(crate) serving: Arc<Serving>,
    pub(crate) status: Arc<StatusCell>,
    /// The watch core: what was applied, from which history.
    pub(crate) follower: Follower,
    pub(crate) backoff: Backoff,
    pub(crate) endpoint_ix: usize,
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
        // The fail-safe timer runs beside every state (an outage is spent in
        // backoff and connect), without interrupting the step in progress.
        let serving = Arc::clone(&self.serving);
        let clock = Arc::clone(self.config.clock());
        'run: loop {
            let step = self.step(state);
            tokio::pin!(step);
            state = loop {
                let due = serving.due_at();
                tokio::select! {
                    biased;
                    () = cancel.cancelled() => break 'run,
                    next = &mut step => break next,
                    () = sleep_until(due.unwrap_or_else(timers::now)), if due.is_some() => {
                        serving.fire(timers::now(), clock.unix_nanos());
                    }
                }
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
                let limit = self.config.connection().connect_timeout();
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
        let eps = self.config.connection().endpoints();
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
        let mut client = match timeout(
            limit,
            connection::open(self.config.connection().settings(), &endpoint),
        )
        .await
        {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(Failed::client(e)),
            Err(_) => return Err(Failed::timeout("connect timeout")),
        };
        let check_limit = limit.min(self.config.connection().request_timeout());
        let resume = match resume {
            Some(rev) => {
                match connection::resumable(&mut client, self.config.layout(), rev, check_limit)
                    .await
                {
                    Ok(true) => Some(rev),
                    Ok(false) => None,
                    Err(e) => return Err(Failed::transport(e)),
                }
            }
            None => None,
        };
        let next_revision = match resume {
            Some(rev) => rev,
            None => self.read(&mut client, limit).await? + 1,
        };
        let opts = self.watch_options(next_revision);
        let key = self.config.layout().key().to_owned();
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
            .layout()
            .watch_options(start)
            .with_progress_notify()
    }

    /// Reads the key (or prefix) and applies it; returns the read's revision.
    async fn read(&mut self, client: &mut Client, limit: Duration) -> Result<i64, Failed> {
        self.set_phase(WatchPhase::Reading, false);
        let key = self.config.layout().key().to_owned();
        let opts = Some(self.config.layout().get_options());
        let resp = match timeout(
            limit.min(self.config.connection().request_timeout()),
            client.get(key, opts),
        )
        .await
        {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(Failed::client(e)),
            Err(_) => return Err(Failed::timeout("read timeout")),
        };
        let snapshot = wire::snapshot(&resp);
        drop(resp);
        let clock = Arc::clone(self.config.clock());
        let follower = &mut self.follower;
        let bytes = snapshot.value_bytes();
        let applied = decode_work(bytes, || follower.on_read(snapshot, clock.as_ref()));
        self.publish(applied.outcome, &applied.rejected);
        if applied.rebuilt {
            // The old cluster's revisions mean nothing here: status must not
            // keep showing them (`confirmed` only ever raises its revision,
            // and an unchanged read publishes nothing).
            let revision = self.follower.revision();
            self.status.update(|s| {
                s.applied_revision = revision;
                s.confirmed_revision = 0;
            });
            if let Some(reporter) = &mut self.instance {
                reporter.mark_dirty();
            }
        }
        self.confirmed(applied.confirmed);
        Ok(applied.confirmed)
    }

    /// Swaps the snapshot if anything changed and records rejections.
    fn publish(&mut self, outcome: Outcome, rejected: &[RejectReason]) {
        if outcome == Outcome::Unchanged {
            return;
        }
        let set = self.follower.compose();
        let mut rejected = rejected.to_vec();
        rejected.extend(self.follower.take_fresh_rejections());
        let rejected = rejected.as_slice();
        let len = set.len();
        let current = self.serving.composed();
        // Single key: an unchanged last good set is the very same `Arc`.
        // Prefix: the set is rebuilt from the keys, so compare contents.
        let changed = if self.config.layout().is_prefix() {
            *current != *set
        } else {
            !Arc::ptr_eq(&current, &set)
        };
        if changed {
            self.serving.apply(set);
            info!(
                directives = len,
                revision = self.follower.revision(),
                "directive set applied"
            );
        }
        let now_wall = self.config.clock().unix_nanos();
        let revision = self.follower.revision();
        let rejections = self.follower.rejections();
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

    /// Follows the watch until it must end; the timers are
    /// [`Liveness`]'s (see `follow::liveness`), the meaning of each message
    /// the [`Follower`]'s.
    async fn watch(
        &mut self,
        mut stream: WatchStream,
        mut kv: KvClient,
        mut next_revision: i64,
    ) -> State {
        self.set_phase(WatchPhase::Watching, true);
        let mut liveness = Liveness::new(
            timers::now(),
            self.config.progress_interval(),
            self.config.stale_after(),
        );
        let end = loop {
            let (due_at, _) = liveness.next();
            let report_due = self.instance.as_ref().and_then(InstanceReporter::next_due);
            tokio::select! {
                msg = stream.message() => {
                    let resp = match msg {
                        Ok(Some(resp)) => resp,
                        Ok(None) => break End::Reconnect("watch stream ended"),
                        Err(e) => break End::Reconnect(client_error_kind(&e)),
                    };
                    liveness.on_message(timers::now());
                    let msg = wire::watch_msg(&resp);
                    drop(resp);
                    if let Err(end) = self.on_watch_msg(msg, &mut next_revision) {
                        break end;
                    }
                }
                () = sleep_until(due_at) => {
                    let answered_progress = liveness.answers_progress();
                    match liveness.fire(timers::now()) {
                        None => {}
                        Some(Action::Stale) => break End::Reconnect("stale connection"),
                        Some(Action::RequestProgress) if stream.request_progress().await.is_err() => {
                            break End::Reconnect("watch stream closed");
                        }
                        Some(Action::RequestProgress) => {}
                        Some(Action::Read) => {
                            if answered_progress && !liveness.answers_progress() {
                                info!("etcd endpoint does not answer watch progress requests; confirming freshness with reads");
                            }
                            match self.liveness_read(&mut kv, liveness.stale_at()).await {
                                Ok(()) => liveness.on_read_confirmed(timers::now()),
                                Err(end) => break end,
                            }
                        }
                    }
                }
                () = sleep_until(report_due.unwrap_or(due_at)), if report_due.is_some() => {
                    if let Some(reporter) = &mut self.instance {
                        Box::pin(reporter.report(&self.status, self.config.clock().as_ref())).await;
                    }
                }
            }
        };
        // Close the old watch before anything opens a new one.
        drop(stream);
        drop(kv);
        match end {
            End::Reread => {
                info!("re-reading the key or prefix (compacted, rebuilt, or a change the watch missed)");
                State::Connect { resume: None }
            }
            End::Reconnect(kind) => self.fail(kind, Some(next_revision)),
        }
    }

    /// One liveness read, answered by `deadline` or the connection is stale
    /// (see [`Follower::on_liveness_read`] for what it proves).
    async fn liveness_read(
        &mut self,
        kv: &mut KvClient,
        deadline: TokioInstant,
    ) -> Result<(), End> {
        let opts = self
            .config
            .layout()
            .get_options()
            .with_keys_only()
            .with_min_mod_revision(self.follower.liveness_floor())
            .with_limit(1);
        let key = self.config.layout().key().to_owned();
        let resp = match tokio::time::timeout_at(deadline, kv.get(key, Some(opts))).await {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => return Err(End::Reconnect(client_error_kind(&e))),
            Err(_) => return Err(End::Reconnect("stale connection")),
        };
        let confirmed = self
            .follower
            .on_liveness_read(&wire::liveness_read(&resp))?;
        self.confirmed(confirmed);
        Ok(())
    }

    /// Hands one watch message to the core and carries out its answer.
    fn on_watch_msg(&mut self, msg: WatchMsg, next_revision: &mut i64) -> Result<(), End> {
        let clock = Arc::clone(self.config.clock());
        let follower = &mut self.follower;
        let bytes = msg.value_bytes();
        let applied = decode_work(bytes, || {
            follower.on_watch(msg, next_revision, clock.as_ref())
        })?;
        if applied.created {
            self.backoff.reset();
            self.status.update(|s| s.last_error = None);
        }
        self.publish(applied.outcome, &applied.rejected);
        self.confirmed(applied.confirmed);
        Ok(())
    }

    /// etcd confirmed the store is current as of `revision`: status, and the
    /// fail-safe (released if engaged).
    fn confirmed(&mut self, revision: i64) {
        self.status
            .confirmed(self.config.clock().as_ref(), revision);
        if self.serving.confirmed(timers::now()) {
            if let Some(reporter) = &mut self.instance {
                reporter.mark_dirty();
            }
        }
    }
}
