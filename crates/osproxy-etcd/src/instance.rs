//! Per-instance status reporting: each instance given an id keeps a key
//! `<status prefix>/<instance id>` saying which revision it applied and what
//! it rejected, bound to a lease it keeps alive, so the key disappears when
//! the instance dies. `osproxy-directives status` reads these keys to show the
//! fleet.
//!
//! Reporting rides on the watcher's connection (one connection per store) and
//! never blocks serving: a failed write is retried on the next report.

use std::time::Duration;

use etcd_client::{Client, LeaseKeepAliveStream, LeaseKeeper, PutOptions};
use osproxy_core::Clock;
use osproxy_observe::decode::is_valid_id;
use serde::{Deserialize, Serialize};
use tokio::time::{timeout, Instant as TokioInstant};

use crate::status::StatusCell;
use crate::timers;

/// Where and how an instance reports its status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceReport {
    /// This instance's id, unique in the fleet.
    pub instance_id: String,
    /// The prefix status keys live under. Default `/osproxy/status/`.
    pub status_prefix: String,
    /// Lease time-to-live: how long a dead instance's key lingers. Default
    /// [`DEFAULT_STATUS_LEASE_TTL`] (10 s).
    pub lease_ttl: Duration,
}

/// Default prefix for instance status keys.
pub const DEFAULT_STATUS_PREFIX: &str = "/osproxy/status/";
/// Default lease time-to-live of an instance status key.
pub const DEFAULT_STATUS_LEASE_TTL: Duration = Duration::from_secs(10);

impl InstanceReport {
    /// Reports as `instance_id` under the default prefix and lease.
    pub fn new(instance_id: impl Into<String>) -> Self {
        InstanceReport {
            instance_id: instance_id.into(),
            status_prefix: DEFAULT_STATUS_PREFIX.to_owned(),
            lease_ttl: DEFAULT_STATUS_LEASE_TTL,
        }
    }

    /// The status key of this instance.
    pub fn key(&self) -> String {
        format!("{}{}", self.status_prefix, self.instance_id)
    }
}

/// The value of an instance status key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceStatus {
    /// The instance id.
    pub instance: String,
    /// Revision of the applied directive set: the modification revision of
    /// the newest change (put or delete) the instance applied.
    pub applied_revision: i64,
    /// The revision the instance's set is current *as of*: every change at
    /// or below it is applied (the revision of its last read, or of the last
    /// watch event it processed; [`crate::StoreStatus::confirmed_revision`]).
    /// An instance is current when this is at least the live revision (see
    /// [`crate::publisher`]); it is what makes a missed delete visible.
    /// Absent in reports of older versions: use `applied_revision` then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<i64>,
    /// Directives applied.
    pub directives: usize,
    /// The newest standing rejection: its revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_revision: Option<i64>,
    /// The newest standing rejection: its reason slug.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_reason: Option<String>,
    /// When this report was written (ns since the Unix epoch).
    pub updated_unix_nanos: u64,
    /// Ids of the directives applied clamped to this instance's ceilings
    /// ([`crate::StoreStatus::clamped`]). Absent when none is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clamped: Vec<String>,
    /// Since when the fail-safe is engaged (ns since the Unix epoch), if it
    /// is ([`crate::StoreStatus::failsafe`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failsafe_since_unix_nanos: Option<u64>,
}

impl InstanceStatus {
    /// Whether this report, read from the status key whose name after the
    /// prefix is `key_suffix`, can be shown: its instance id is a valid id
    /// (as a directive's, `[A-Za-z0-9._:-]`, 1–128 chars) and is the key's
    /// own name (a report cannot speak for another instance), the rejection
    /// reason is a slug, and every clamped id is a valid id. Anyone with
    /// write access to the status prefix can write a report; an invalid one
    /// is ignored and counted rather than shown.
    pub fn is_well_formed(&self, key_suffix: &[u8]) -> bool {
        let slug = |s: &str| {
            (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        };
        is_valid_id(&self.instance)
            && self.instance.as_bytes() == key_suffix
            && self.rejected_reason.as_deref().is_none_or(slug)
            && self.clamped.iter().all(|id| is_valid_id(id))
    }

    /// The revision this instance is current as of
    /// ([`current_revision`](Self::current_revision), or the applied
    /// revision for reports that lack it).
    pub fn current_as_of(&self) -> i64 {
        self.current_revision.unwrap_or(self.applied_revision)
    }

    /// How this instance stands against the live revision `latest`: lagging
    /// beats rejecting beats current. The one rule behind `status`, `publish
    /// --wait` and the admin page.
    pub fn state(&self, latest: i64) -> InstanceState {
        if self.current_as_of() < latest {
            InstanceState::Lagging
        } else if self.rejected_revision.is_some() {
            InstanceState::Rejecting
        } else {
            InstanceState::Current
        }
    }
}

/// How an instance stands relative to the latest revision
/// ([`InstanceStatus::state`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// Current as of the latest revision and rejects nothing.
    Current,
    /// Current as of an older revision only.
    Lagging,
    /// Current, with a standing rejection.
    Rejecting,
}

impl InstanceState {
    /// `current`, `lagging` or `rejecting`: the serialized name.
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Current => "current",
            InstanceState::Lagging => "lagging",
            InstanceState::Rejecting => "rejecting",
        }
    }
}

/// The reporter's state on the current connection.
pub(crate) struct InstanceReporter {
    report: InstanceReport,
    /// The current connection's client; replaced on every reconnect.
    client: Option<Client>,
    request_timeout: Duration,
    lease: Option<(i64, LeaseKeeper, LeaseKeepAliveStream)>,
    dirty: bool,
    /// The `current_revision` last written, so a re-read that changed
    /// nothing but the revision is still reported (at the next keepalive).
    reported_current: Option<i64>,
    next_keepalive: TokioInstant,
    /// No write before this: set after a failure so a failing etcd is not
    /// retried in a tight loop.
    retry_at: TokioInstant,
}

impl InstanceReporter {
    pub(crate) fn new(report: InstanceReport, request_timeout: Duration) -> Self {
        InstanceReporter {
            report,
            client: None,
            request_timeout,
            lease: None,
            dirty: true,
            reported_current: None,
            next_keepalive: timers::now(),
            retry_at: timers::now(),
        }
    }

    /// Uses `client` (a new connection) from now on; the old lease's
    /// keepalive stream died with the old connection.
    pub(crate) fn attach(&mut self, client: Client) {
        self.client = Some(client);
        self.lease = None;
        self.dirty = true;
        // The pause after a failure was for the old connection; the new one
        // (itself reached after a backoff) reports at once.
        self.retry_at = timers::now();
    }

    /// Something changed that the fleet should see.
    pub(crate) fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// When the reporter next needs to run.
    pub(crate) fn next_due(&self) -> Option<TokioInstant> {
        if self.client.is_none() {
            None
        } else if self.dirty || self.lease.is_none() {
            Some(self.retry_at)
        } else {
            Some(self.next_keepalive)
        }
    }

    /// Writes the status if it changed, and keeps the lease alive. Failures
    /// drop the lease so the next call starts over, after a short pause.
    pub(crate) async fn report(&mut self, status: &StatusCell, clock: &dyn Clock) {
        let Some(client) = self.client.clone() else {
            return;
        };
        let limit = self.request_timeout;
        let result = timeout(limit, self.try_report(client, status, clock)).await;
        if matches!(result, Ok(Ok(()))) {
            self.retry_at = timers::now();
        } else {
            self.lease = None;
            self.dirty = true;
            // Retry no sooner than a keepalive period, so a broken etcd is not hammered.
            self.retry_at = timers::now() + self.keepalive_period();
        }
    }

    fn keepalive_period(&self) -> Duration {
        (self.report.lease_ttl / 3).max(Duration::from_millis(500))
    }

    async fn try_report(
        &mut self,
        mut client: Client,
        status: &StatusCell,
        clock: &dyn Clock,
    ) -> Result<(), etcd_client::Error> {
        if self.lease.is_none() {
            let ttl = i64::try_from(self.report.lease_ttl.as_secs().max(2)).unwrap_or(10);
            let grant = client.lease_grant(ttl, None).await?;
            let (keeper, stream) = client.lease_keep_alive(grant.id()).await?;
            self.lease = Some((grant.id(), keeper, stream));
            self.dirty = true;
        }
        let Some((lease_id, keeper, stream)) = &mut self.lease else {
            return Ok(());
        };
        let s = status.snapshot(clock);
        if self.reported_current != Some(s.confirmed_revision) {
            self.dirty = true;
        }
        if self.dirty {
            let newest = s.rejected.iter().max_by_key(|r| r.revision);
            let value = InstanceStatus {
                instance: self.report.instance_id.clone(),
                applied_revision: s.applied_revision,
                current_revision: Some(s.confirmed_revision),
                directives: s.directives,
                rejected_revision: newest.map(|r| r.revision),
                rejected_reason: newest.map(|r| r.reason.to_owned()),
                updated_unix_nanos: clock.unix_nanos(),
                clamped: s.clamped.iter().map(|c| c.id.clone()).collect(),
                failsafe_since_unix_nanos: s.failsafe_since_unix_nanos,
            };
            let body = serde_json::to_vec(&value).unwrap_or_default();
            client
                .put(
                    self.report.key(),
                    body,
                    Some(PutOptions::new().with_lease(*lease_id)),
                )
                .await?;
            self.dirty = false;
            self.reported_current = Some(s.confirmed_revision);
        } else {
            keeper.keep_alive().await?;
            match stream.message().await? {
                Some(resp) if resp.ttl() > 0 => {}
                _ => {
                    // The lease expired (etcd was away too long): start over.
                    self.lease = None;
                    self.dirty = true;
                    return Ok(());
                }
            }
        }
        self.next_keepalive = timers::now() + self.keepalive_period();
        Ok(())
    }
}
