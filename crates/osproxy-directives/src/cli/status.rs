//! `status`: the fleet as its instances report it. Each instance started with
//! an instance id keeps a leased key under the status prefix saying which
//! revision it applied and what it rejected; this reads them together with
//! the live revision and shows who runs the latest, who lags and who rejects.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use osproxy_etcd::{InstanceStatus, DEFAULT_STATUS_PREFIX};
use serde::Serialize;
use serde_json::json;

use super::common::{clock, finish, print_json, FleetArgs};
use crate::duration::format_duration;

/// Examples shown in `--help`.
pub const EXAMPLES: &str = "\
Examples:
  osproxy-directives status
  osproxy-directives status --json | jq '.instances[] | select(.state != \"current\")'

States: current (applied the latest revision), lagging (applied an older one),
rejecting (its newest value was rejected; the last good set keeps serving).
The latest revision is the live directive key's modification revision.
An instance's key is leased: it disappears within the lease (10 s by default)
after the instance stops. LAST REPORT is when it last wrote a change.";

/// Options of `status`.
#[derive(Args, Debug)]
pub struct StatusOpts {
    /// The prefix the instances report under.
    #[arg(long, env = "OSPROXY_STATUS_PREFIX", default_value = DEFAULT_STATUS_PREFIX, value_name = "PREFIX")]
    pub status_prefix: String,
    /// Where the directives live, how to reach etcd, limits and output.
    #[command(flatten)]
    pub fleet: FleetArgs,
}

/// How an instance stands relative to the latest revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// Applied the latest revision and rejects nothing.
    Current,
    /// Applied an older revision.
    Lagging,
    /// Has a standing rejection.
    Rejecting,
}

impl InstanceState {
    /// Classifies one report against the latest revision.
    pub fn of(report: &InstanceStatus, latest: i64) -> Self {
        if report.applied_revision < latest {
            InstanceState::Lagging
        } else if report.rejected_revision.is_some() {
            InstanceState::Rejecting
        } else {
            InstanceState::Current
        }
    }

    fn name(self) -> &'static str {
        match self {
            InstanceState::Current => "current",
            InstanceState::Lagging => "lagging",
            InstanceState::Rejecting => "rejecting",
        }
    }
}

/// Runs `status`.
pub async fn run(opts: StatusOpts) -> ExitCode {
    finish(opts.fleet.output.json, async {
        let layout = opts.fleet.layout.layout()?;
        let publisher = opts.fleet.etcd.publisher(layout.clone(), opts.fleet.limits.limits()).await?;
        let fleet = publisher.fleet_status(&opts.status_prefix).await?;
        let now = clock().unix_nanos();
        let latest = fleet.latest_revision;
        let rows: Vec<(InstanceState, &InstanceStatus, Duration)> = fleet
            .instances
            .iter()
            .map(|r| {
                let age = Duration::from_nanos(now.saturating_sub(r.updated_unix_nanos));
                (InstanceState::of(r, latest), r, age)
            })
            .collect();
        let count = |s: InstanceState| rows.iter().filter(|(state, _, _)| *state == s).count();
        let (current, lagging, rejecting) = (
            count(InstanceState::Current),
            count(InstanceState::Lagging),
            count(InstanceState::Rejecting),
        );
        for key in &fleet.unreadable {
            eprintln!("warning: {key} does not hold an instance report");
        }
        if opts.fleet.output.json {
            let instances: Vec<_> = rows
                .iter()
                .map(|(state, r, age)| {
                    json!({
                        "instance": r.instance,
                        "state": state,
                        "applied_revision": r.applied_revision,
                        "directives": r.directives,
                        "rejected_revision": r.rejected_revision,
                        "rejected_reason": r.rejected_reason,
                        "last_report_unix_nanos": r.updated_unix_nanos,
                        "last_report_secs_ago": age.as_secs_f64(),
                    })
                })
                .collect();
            print_json(&json!({
                "key": layout.key(),
                "latest_revision": latest,
                "total": rows.len(),
                "current": current,
                "lagging": lagging,
                "rejecting": rejecting,
                "instances": instances,
                "unreadable": fleet.unreadable,
            }));
            return Ok(());
        }
        println!("directives {} at revision {latest}", layout.key());
        println!(
            "{} instances: {current} on revision {latest}, {lagging} lagging, {rejecting} rejecting",
            rows.len()
        );
        if rows.is_empty() {
            println!(
                "no instance reports under {} (start instances with --etcd --instance-id)",
                opts.status_prefix
            );
            return Ok(());
        }
        let mut table = vec![[
            "INSTANCE".to_owned(),
            "STATE".to_owned(),
            "APPLIED".to_owned(),
            "DIRECTIVES".to_owned(),
            "REJECTED".to_owned(),
            "LAST REPORT".to_owned(),
        ]];
        for (state, r, age) in &rows {
            let rejected = match (&r.rejected_revision, &r.rejected_reason) {
                (Some(rev), Some(reason)) => format!("{rev} {reason}"),
                (Some(rev), None) => rev.to_string(),
                _ => "-".to_owned(),
            };
            table.push([
                r.instance.clone(),
                state.name().to_owned(),
                r.applied_revision.to_string(),
                r.directives.to_string(),
                rejected,
                format!("{} ago", format_duration(Duration::from_secs(age.as_secs()))),
            ]);
        }
        let mut widths = [0usize; 6];
        for row in &table {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for row in &table {
            let cells: Vec<String> = row
                .iter()
                .zip(widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            println!("{}", cells.join("  ").trim_end());
        }
        Ok(())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(applied: i64, rejected: Option<i64>) -> InstanceStatus {
        InstanceStatus {
            instance: "i".into(),
            applied_revision: applied,
            directives: 0,
            rejected_revision: rejected,
            rejected_reason: rejected.map(|_| "lifetime_too_long".into()),
            updated_unix_nanos: 0,
        }
    }

    #[test]
    fn states_against_the_latest_revision() {
        assert_eq!(
            InstanceState::of(&report(5, None), 5),
            InstanceState::Current
        );
        assert_eq!(
            InstanceState::of(&report(6, None), 5),
            InstanceState::Current
        );
        assert_eq!(
            InstanceState::of(&report(4, None), 5),
            InstanceState::Lagging
        );
        assert_eq!(
            InstanceState::of(&report(5, Some(5)), 5),
            InstanceState::Rejecting
        );
        assert_eq!(
            InstanceState::of(&report(3, Some(3)), 5),
            InstanceState::Lagging
        );
    }
}
