//! [`PageModel`]: everything the operator's page shows, built once per
//! request from the instance's applied set and (fleet mode) the fleet's
//! reports. The server renders it into HTML ([`super::html`]) and serves it
//! as JSON at `GET /admin/page`, which the page polls; values are never
//! interpreted, only escaped (HTML) or set as text (the page's script).

use std::time::Duration;

use osproxy_etcd::{FleetStatus, InstanceStatus, StoreStatus};
use osproxy_observe::{format_rfc3339, DirectiveView};
use serde::Serialize;

use crate::admin::state::{AdminState, Backend};
use crate::duration::format_duration;

/// The page's data; its JSON is the body of `GET /admin/page`.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct PageModel {
    /// `in-memory` or `etcd`.
    pub store: &'static str,
    /// The etcd key or prefix the directives live under (fleet mode).
    pub source: Option<String>,
    /// The revision the applied set is current as of.
    pub revision: u64,
    /// The directives this instance applies.
    pub directives: Vec<DirectiveRow>,
    /// Whether this instance's fail-safe is engaged, and since when (fleet
    /// mode).
    pub failsafe_since: Option<String>,
    /// The fleet (fleet mode only).
    pub fleet: Option<FleetRows>,
}

/// One applied directive.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct DirectiveRow {
    pub id: String,
    pub level: &'static str,
    /// `tenant=…, index=…` or `*` (any request).
    pub targets: String,
    pub sample_per_mille: u16,
    /// `capture`, `ring_buffer`, or `-`.
    pub flags: String,
    pub expires_at: String,
    /// Whole seconds left at the time of the answer; the page counts down
    /// from it.
    pub remaining_secs: u64,
    /// `remaining_secs` as `get` prints it, or `expired`.
    pub remaining: String,
    /// The ceilings that clamped it on this instance (SPEC §8).
    pub clamped: Vec<&'static str>,
}

/// The fleet's reports, or why they could not be read.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct FleetRows {
    /// The live revision.
    pub latest_revision: Option<i64>,
    /// The error slug when the reports could not be read (the rest of the
    /// page keeps serving).
    pub error: Option<&'static str>,
    pub instances: Vec<InstanceRow>,
    /// Status keys that hold no instance report.
    pub unreadable: usize,
}

/// One instance as its report says.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct InstanceRow {
    pub instance: String,
    /// `current`, `lagging` or `rejecting` (as `status` says).
    pub state: &'static str,
    pub applied_revision: i64,
    pub current_revision: i64,
    pub directives: usize,
    /// `<slug> at revision <n>` for a standing rejection.
    pub rejected: Option<String>,
    /// Ids applied clamped on that instance.
    pub clamped: Vec<String>,
    /// Since when its fail-safe is engaged (it lost freshness).
    pub failsafe_since: Option<String>,
    /// How long ago it last wrote its report, as `get` prints durations.
    pub last_report: String,
}

impl PageModel {
    /// Builds the model of `state`; reads the fleet's reports in fleet mode.
    pub(crate) async fn build(state: &AdminState) -> PageModel {
        let (set, revision) = state.applied();
        let status: Option<StoreStatus> = match state.backend() {
            Backend::InMemory(_) => None,
            Backend::Etcd(b) => Some(b.store().status()),
        };
        let directives = set
            .view(state.clock())
            .into_iter()
            .map(|v| directive_row(&v, status.as_ref()))
            .collect();
        let source = match state.backend() {
            Backend::InMemory(_) => None,
            Backend::Etcd(b) => Some(b.layout().key().to_owned()),
        };
        let now = state.clock().unix_nanos();
        let fleet = state.fleet_status().await.map(|r| match r {
            Ok(fleet) => fleet_rows(&fleet, now),
            Err(e) => FleetRows {
                latest_revision: None,
                error: Some(e.slug),
                instances: Vec::new(),
                unreadable: 0,
            },
        });
        PageModel {
            store: state.store_name(),
            source,
            revision: revision.get(),
            directives,
            failsafe_since: status
                .and_then(|s| s.failsafe_since_unix_nanos)
                .map(format_rfc3339),
            fleet,
        }
    }
}

fn directive_row(v: &DirectiveView, status: Option<&StoreStatus>) -> DirectiveRow {
    let flags = v.flag_names();
    let clamped = status
        .and_then(|s| s.clamped.iter().find(|c| c.id == v.id))
        .map(|c| c.clamps.iter().map(|c| c.slug()).collect())
        .unwrap_or_default();
    DirectiveRow {
        id: v.id.clone(),
        level: v.level,
        targets: v.targets_text(", "),
        sample_per_mille: v.sample_per_mille,
        flags: if flags.is_empty() {
            "-".to_owned()
        } else {
            flags.join(", ")
        },
        expires_at: v.expires_at.clone(),
        remaining_secs: v.remaining_secs,
        remaining: remaining_text(v.remaining_secs),
        clamped,
    }
}

/// What the page shows for `secs` left (the page's script counts the same
/// way).
pub(crate) fn remaining_text(secs: u64) -> String {
    if secs == 0 {
        "expired".to_owned()
    } else {
        format_duration(Duration::from_secs(secs))
    }
}

fn fleet_rows(fleet: &FleetStatus, now_unix_nanos: u64) -> FleetRows {
    FleetRows {
        latest_revision: Some(fleet.latest_revision),
        error: None,
        instances: fleet
            .instances
            .iter()
            .map(|r| instance_row(r, fleet.latest_revision, now_unix_nanos))
            .collect(),
        unreadable: fleet.unreadable.len(),
    }
}

fn instance_row(r: &InstanceStatus, latest: i64, now_unix_nanos: u64) -> InstanceRow {
    let age = Duration::from_nanos(now_unix_nanos.saturating_sub(r.updated_unix_nanos));
    let rejected = match (&r.rejected_reason, r.rejected_revision) {
        (Some(reason), Some(rev)) => Some(format!("{reason} at revision {rev}")),
        (Some(reason), None) => Some(reason.clone()),
        (None, Some(rev)) => Some(format!("revision {rev}")),
        (None, None) => None,
    };
    InstanceRow {
        instance: r.instance.clone(),
        state: r.state(latest).as_str(),
        applied_revision: r.applied_revision,
        current_revision: r.current_as_of(),
        directives: r.directives,
        rejected,
        clamped: r.clamped.clone(),
        failsafe_since: r.failsafe_since_unix_nanos.map(format_rfc3339),
        last_report: format!(
            "{} ago",
            format_duration(Duration::from_secs(age.as_secs()))
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(current: i64, rejected: Option<i64>) -> InstanceStatus {
        InstanceStatus {
            instance: "a".to_owned(),
            applied_revision: current,
            current_revision: Some(current),
            directives: 1,
            rejected_revision: rejected,
            rejected_reason: rejected.map(|_| "lifetime_too_long".to_owned()),
            updated_unix_nanos: 1_000_000_000,
            clamped: Vec::new(),
            failsafe_since_unix_nanos: None,
        }
    }

    #[test]
    fn instance_states_follow_the_status_rule() {
        assert_eq!(instance_row(&report(7, None), 7, 0).state, "current");
        assert_eq!(instance_row(&report(7, Some(7)), 7, 0).state, "rejecting");
        assert_eq!(instance_row(&report(6, Some(6)), 7, 0).state, "lagging");
        let row = instance_row(&report(7, Some(7)), 7, 4_500_000_000);
        assert_eq!(
            row.rejected.as_deref(),
            Some("lifetime_too_long at revision 7")
        );
        assert_eq!(row.last_report, "3s ago");
    }

    #[test]
    fn remaining_is_counted_like_get() {
        assert_eq!(remaining_text(0), "expired");
        assert_eq!(remaining_text(584), "9m44s");
        assert_eq!(remaining_text(3600), "1h");
    }
}
