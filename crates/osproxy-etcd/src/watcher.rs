//! The background task that keeps a store's snapshot fresh: a consumer of
//! the one watch [`Driver`](crate::session::driver::Driver). Every decision
//! (resume or read, liveness, backoff, endpoint, swap) is the session's
//! (`crate::session`); here its outputs reach the served set
//! ([`Serving`]), the status and the instance report, beside the two timers
//! the store adds: the fail-safe and the instance report.
//!
//! The task owns its connection and ends, closing it, when the store's last
//! handle drops (the cancellation token fires).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::sleep_until;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::StoreOptions;
use crate::instance::InstanceReporter;
use crate::serving::Serving;
use crate::session::driver::{Driver, Out};
use crate::session::Note;
use crate::status::{StatusCell, WatchPhase};
use crate::timers;

/// A first connection attempt that failed, with the client's error when
/// there was one.
pub(crate) struct Failed {
    pub(crate) error: Option<etcd_client::Error>,
}

/// The watcher and everything it owns.
pub(crate) struct Watcher {
    pub(crate) config: StoreOptions,
    /// The served set: ceilings and fail-safe between the core and readers.
    pub(crate) serving: Arc<Serving>,
    pub(crate) status: Arc<StatusCell>,
    pub(crate) driver: Driver,
    pub(crate) instance: Option<InstanceReporter>,
}

impl Watcher {
    /// Runs until `cancel` fires, from an established watch.
    pub(crate) async fn run(mut self, cancel: CancellationToken) {
        // The fail-safe timer runs beside every state (an outage is spent in
        // backoff and connect), without interrupting the step in progress.
        let serving = Arc::clone(&self.serving);
        let clock = Arc::clone(self.config.clock());
        'run: loop {
            // Reports go out over the watch's connection, only while it is
            // open: a report through a connection being replaced would hold
            // the replacement up.
            let watching = self.driver.session.is_watching();
            let out = {
                let step = self.driver.next();
                tokio::pin!(step);
                loop {
                    let due = serving.due_at();
                    let report_due = self
                        .instance
                        .as_ref()
                        .filter(|_| watching)
                        .and_then(InstanceReporter::next_due);
                    tokio::select! {
                        biased;
                        () = cancel.cancelled() => break 'run,
                        out = &mut step => break out,
                        () = sleep_until(due.unwrap_or_else(timers::now)), if due.is_some() => {
                            serving.fire(timers::now(), clock.unix_nanos());
                        }
                        () = sleep_until(report_due.unwrap_or_else(timers::now)), if report_due.is_some() => {
                            if let Some(reporter) = &mut self.instance {
                                Box::pin(reporter.report(&self.status, clock.as_ref())).await;
                            }
                        }
                    }
                }
            };
            self.handle(out);
        }
        self.status.update(|s| {
            s.phase = WatchPhase::Stopped;
            s.connected = false;
        });
        debug!("etcd directive watcher stopped");
    }

    /// The first connect at endpoint `i` within `limit`: drives the session
    /// until its watch is open or the attempt fails.
    pub(crate) async fn establish(&mut self, i: usize, limit: Duration) -> Result<(), Failed> {
        self.driver.start(i, limit);
        loop {
            match self.driver.next().await {
                Out::Watching => {
                    self.handle(Out::Watching);
                    return Ok(());
                }
                Out::GaveUp { .. } => {
                    return Err(Failed {
                        error: self.driver.take_error(),
                    })
                }
                out => self.handle(out),
            }
        }
    }

    /// Carries one output of the driver into the served set and status.
    pub(crate) fn handle(&mut self, out: Out) {
        match out {
            Out::Swap { set, revision } => {
                let len = set.len();
                self.serving.apply(set);
                info!(directives = len, revision, "directive set applied");
                let now_wall = self.config.clock().unix_nanos();
                self.status
                    .update(|s| s.last_update_unix_nanos = Some(now_wall));
            }
            Out::GaveUp { endpoint, why } => {
                self.status.update(|s| {
                    s.reconnects += 1;
                    s.connected = false;
                    s.last_error = Some(why);
                });
                let next = self.driver.endpoint().to_owned();
                warn!(
                    kind = why,
                    endpoint, next, "etcd connection lost; reconnecting"
                );
            }
            Out::Phase(phase) => {
                let connected = phase == WatchPhase::Watching;
                let endpoint = self.driver.endpoint().to_owned();
                self.status.update(|s| {
                    s.phase = phase;
                    s.connected = connected;
                    s.endpoint = Some(endpoint);
                });
            }
            Out::Watching => {
                if let (Some(reporter), Some(client)) = (&mut self.instance, self.driver.client()) {
                    reporter.attach(client.clone());
                }
            }
            Out::Note(note) => self.note(note),
        }
    }

    fn note(&mut self, note: Note) {
        match note {
            Note::Applied {
                changed, rejected, ..
            } => {
                if !changed {
                    return;
                }
                let session = &mut self.driver.session;
                let len = session.served().len();
                let follower = session.follower();
                let revision = follower.revision();
                let rejections = follower.rejections();
                self.status.update(|s| {
                    s.applied_revision = revision;
                    s.directives = len;
                    s.rejected = rejections;
                    for r in &rejected {
                        *s.rejected_total.entry(r.slug()).or_default() += 1;
                    }
                });
                for r in &rejected {
                    warn!(
                        reason = r.slug(),
                        "directive publish rejected; last good set keeps serving"
                    );
                }
                self.mark_dirty();
            }
            Note::Confirmed { revision } => {
                self.status
                    .confirmed(self.config.clock().as_ref(), revision);
                if self.serving.confirmed(timers::now()) {
                    self.mark_dirty();
                }
            }
            Note::Established => self.status.update(|s| s.last_error = None),
            Note::Rebuilt => {
                // The old cluster's revisions mean nothing here: status must
                // not keep showing them (`confirmed` only ever raises its
                // revision, and an unchanged read publishes nothing).
                let revision = self.driver.session.follower().revision();
                self.status.update(|s| {
                    s.applied_revision = revision;
                    s.confirmed_revision = 0;
                });
                self.mark_dirty();
            }
            Note::Interrupted { why, reread: true } => {
                info!(why, "re-reading the key or prefix (compacted, rebuilt, refused, or a change the watch missed)");
            }
            Note::Interrupted { .. } => {}
            Note::Refused { slug } => {
                self.status.update(|s| {
                    *s.refused_total.entry(slug).or_default() += 1;
                    s.last_error = Some(slug);
                });
                warn!(reason = slug, "watch message refused; reading afresh");
            }
            Note::Degraded { .. } => {
                let session = &self.driver.session;
                let degraded: Vec<String> = session
                    .degraded()
                    .map(|i| self.driver.endpoint_at(i).to_owned())
                    .collect();
                if !degraded.is_empty() {
                    warn!(endpoints = ?degraded, "etcd endpoint degraded: its watch misses changes");
                }
                self.status.update(|s| s.degraded_endpoints = degraded);
                self.mark_dirty();
            }
            Note::ProgressUnanswered => {
                info!("etcd endpoint does not answer watch progress requests; confirming freshness with reads");
            }
        }
    }

    fn mark_dirty(&mut self) {
        if let Some(reporter) = &mut self.instance {
            reporter.mark_dirty();
        }
    }
}
