//! What a [`Session`](super::Session) is told to be ([`Settings`]) and what
//! it answers: [`Command`]s for the driver, [`Note`]s for the consumer.

use std::sync::Arc;
use std::time::Duration;

use osproxy_observe::{DirectiveSet, RejectReason};
use tokio::time::Instant;

use super::Range;
use crate::backoff::BackoffPolicy;

/// What the driver must do next.
#[derive(Clone, Debug)]
pub(crate) enum Command {
    /// Open a connection to endpoint `endpoint`, closing the current one
    /// first (a re-read takes a new connection); answer with
    /// [`Session::handle_connected`] or [`Session::handle_failed`].
    Connect { endpoint: usize },
    /// Ask whether etcd still holds `revision` (a count-only read at it);
    /// answer with [`Session::handle_held`].
    CheckHeld { revision: i64 },
    /// Read the whole key or prefix; answer with [`Session::handle_read`].
    Read,
    /// Open the watch from revision `from` with progress notifications;
    /// answer with [`Session::handle_watch_opened`].
    Watch { from: i64 },
    /// Send a progress request on the open watch.
    RequestProgress,
    /// A keys-only read of the range modified at or after
    /// `min_mod_revision`, limit one, answered by `deadline` (else the
    /// next [`Session::handle_timeout`] gives the connection up); answer
    /// with [`Session::handle_liveness_read`].
    LivenessRead {
        min_mod_revision: i64,
        deadline: Instant,
    },
    /// Serve `set` (it differs from the set served so far), applied as of
    /// `revision`.
    Swap {
        set: Arc<DirectiveSet>,
        revision: i64,
    },
    /// The connection to `endpoint` failed or is given up (`why` is a
    /// stable slug): close it, count it.
    GiveUp { endpoint: usize, why: &'static str },
    /// Back off: nothing to do until `until` (then
    /// [`Session::handle_timeout`]).
    Sleep { until: Instant },
}

/// What the session tells its consumer (status, logs, the change feed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Note {
    /// A read or a watch message was applied. `revision` is the newest
    /// revision applied by it; `moved` whether it applied anything new;
    /// `rejected` the values it rejected.
    Applied {
        revision: i64,
        read: bool,
        moved: bool,
        changed: bool,
        rejected: Vec<RejectReason>,
    },
    /// etcd confirmed the session current as of `revision`.
    Confirmed { revision: i64 },
    /// A watch was created: the connection works.
    Established,
    /// A read found the cluster rebuilt; its old revisions mean nothing.
    Rebuilt,
    /// The watch ended: resumed (`reread` false) or read afresh.
    Interrupted { why: &'static str, reread: bool },
    /// A message from etcd was refused (a stable slug).
    Refused { slug: &'static str },
    /// Endpoint `endpoint` became degraded (or recovered).
    Degraded { endpoint: usize, degraded: bool },
    /// The endpoint does not answer progress requests; reads confirm.
    ProgressUnanswered,
}

/// The session's settings.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// How many endpoints there are (at least one).
    pub(crate) endpoints: usize,
    pub(crate) range: Range,
    pub(crate) progress_every: Duration,
    pub(crate) stale_after: Duration,
    pub(crate) backoff: BackoffPolicy,
    /// Apply a watch message one revision (one transaction) at a time, with
    /// a [`Note::Applied`] for each (the change feed reports each).
    pub(crate) per_revision: bool,
    /// Seeds the backoff jitter.
    pub(crate) seed: u64,
}

impl Settings {
    /// The store's: its layout, timers and backoff, one swap per message.
    pub(crate) fn for_store(options: &crate::config::StoreOptions) -> Settings {
        Settings {
            endpoints: options.connection().endpoints().len(),
            range: Range::of(options.layout()),
            progress_every: options.progress_interval(),
            stale_after: options.stale_after(),
            backoff: options.backoff(),
            per_revision: false,
            seed: rand::random(),
        }
    }
}
