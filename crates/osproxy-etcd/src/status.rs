//! [`StoreStatus`]: what an operator sees of one store — connected or not,
//! the applied revision, how fresh the last confirmation from etcd is, how
//! often it reconnected, and which publishes it rejected and why.
//!
//! The watcher writes it under a mutex on every state change and every
//! message from etcd; readers take a copy. Nothing here is on the request path.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use osproxy_core::{Clock, Instant};
use serde::Serialize;

/// Where the background watcher is in its cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchPhase {
    /// Opening a connection to an endpoint.
    Connecting,
    /// Reading the key (or prefix) at a revision.
    Reading,
    /// Following the watch stream.
    Watching,
    /// Waiting before the next reconnect attempt.
    Backoff,
    /// Stopped: every handle of the store was dropped.
    Stopped,
}

/// One standing rejection: the value at `key`, revision `revision`, was not
/// applied because of `reason`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// The etcd key whose value was rejected.
    pub key: String,
    /// The key's modification revision.
    pub revision: i64,
    /// The decoder's stable reason slug.
    pub reason: &'static str,
    /// The offending directive's position, when one directive caused it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub directive_index: Option<usize>,
}

/// A snapshot of a store's health.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StoreStatus {
    /// The watcher's phase.
    pub phase: WatchPhase,
    /// Whether the watch is established.
    pub connected: bool,
    /// The endpoint in use or being tried.
    pub endpoint: Option<String>,
    /// The newest etcd revision the store has processed: the modification
    /// revision of the newest change (put or delete) it saw, 0 before any. A
    /// rejected publish counts too: the store has seen it and keeps serving its
    /// last good set, which [`rejected`](Self::rejected) then explains. So an
    /// instance is current when this equals the key's latest revision, and
    /// rejecting when, in addition, `rejected` names that revision.
    pub applied_revision: i64,
    /// The newest etcd revision etcd confirmed this store is current with:
    /// every change at or below it (deletes included) is applied — the
    /// revision of the last read, or of the last watch event processed.
    /// Instances report it as
    /// [`InstanceStatus::current_revision`](crate::InstanceStatus::current_revision),
    /// and it is the admin `ETag`: an instance is current when it is at least
    /// the live revision (see [`crate::publisher`]).
    pub confirmed_revision: i64,
    /// Directives in the applied snapshot (expired ones included).
    pub directives: usize,
    /// Wall-clock time of the last snapshot swap (ns since the Unix epoch).
    pub last_update_unix_nanos: Option<u64>,
    /// Wall-clock time of the last message from etcd.
    pub last_confirmed_unix_nanos: Option<u64>,
    /// Time since the last message from etcd, at the moment of this snapshot.
    #[serde(serialize_with = "secs_f64")]
    pub staleness: Option<Duration>,
    /// Connections replaced after the first (failures and stale connections).
    pub reconnects: u64,
    /// Values currently rejected (the last good value of their key serves).
    pub rejected: Vec<Rejection>,
    /// Rejected values since start, by reason slug.
    pub rejected_total: BTreeMap<&'static str, u64>,
    /// Watch messages refused since start, by slug: an event for a key
    /// outside the key or prefix (`foreign_key_event`), a second creation
    /// on one stream (`second_created`). Each ended the watch and forced a
    /// fresh read.
    pub refused_total: BTreeMap<&'static str, u64>,
    /// Endpoints whose watch was found, more than once, to have missed a
    /// change a read showed (a grpc-proxy whose broadcast died): left for
    /// the next endpoint until their watch delivers again.
    pub degraded_endpoints: Vec<String>,
    /// The kind of the last connection error, if any since the last success.
    pub last_error: Option<&'static str>,
    /// Whether the fail-safe is engaged (SPEC §8): no confirmation from etcd
    /// within `failsafe_after`, so directives above the fail-safe level and
    /// those asking for capture or ring buffer do not apply.
    pub failsafe: bool,
    /// Wall-clock time the fail-safe engaged (ns since the Unix epoch).
    pub failsafe_since_unix_nanos: Option<u64>,
    /// Directives the engaged fail-safe withholds (0 when not engaged).
    pub failsafe_withheld: usize,
    /// Directives applied below what was published, clamped to this
    /// instance's ceilings, with the ceilings each was clamped to.
    pub clamped: Vec<crate::safety::ClampedDirective>,
}

fn secs_f64<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

/// The mutable status, shared by the watcher and every handle.
#[derive(Debug)]
pub(crate) struct StatusCell {
    inner: Mutex<Inner>,
}

#[derive(Debug, Clone)]
struct Inner {
    status: StoreStatus,
    last_confirmed: Option<Instant>,
}

impl StatusCell {
    pub(crate) fn new() -> Self {
        StatusCell {
            inner: Mutex::new(Inner {
                status: StoreStatus {
                    phase: WatchPhase::Connecting,
                    connected: false,
                    endpoint: None,
                    applied_revision: 0,
                    confirmed_revision: 0,
                    directives: 0,
                    last_update_unix_nanos: None,
                    last_confirmed_unix_nanos: None,
                    staleness: None,
                    reconnects: 0,
                    rejected: Vec::new(),
                    rejected_total: BTreeMap::new(),
                    refused_total: BTreeMap::new(),
                    degraded_endpoints: Vec::new(),
                    last_error: None,
                    failsafe: false,
                    failsafe_since_unix_nanos: None,
                    failsafe_withheld: 0,
                    clamped: Vec::new(),
                },
                last_confirmed: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update leaves the status consistent; a panic elsewhere while
        // holding the lock cannot corrupt it.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn snapshot(&self, clock: &dyn Clock) -> StoreStatus {
        let inner = self.lock();
        let mut s = inner.status.clone();
        s.staleness = inner
            .last_confirmed
            .map(|t| clock.now().saturating_duration_since(t));
        s
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut StoreStatus)) {
        f(&mut self.lock().status);
    }

    pub(crate) fn confirmed(&self, clock: &dyn Clock, revision: i64) {
        let mut inner = self.lock();
        inner.last_confirmed = Some(clock.now());
        inner.status.last_confirmed_unix_nanos = Some(clock.unix_nanos());
        inner.status.confirmed_revision = inner.status.confirmed_revision.max(revision);
    }
}
