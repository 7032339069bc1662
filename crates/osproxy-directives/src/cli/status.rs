//! `status`: the fleet as its instances report it. Each instance started with
//! an instance id keeps a leased key under the status prefix saying which
//! revision it is current as of and what it rejects; this reads them together
//! with the live revision and shows who runs the latest, who lags and who
//! rejects. The exit code says it too (0 current, 1 lagging, 3 rejecting),
//! and `--wait` waits for convergence, so a rollout script can gate on it.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use osproxy_etcd::{FleetStatus, InstanceStatus, Publisher, DEFAULT_STATUS_PREFIX};
use serde_json::json;

use super::common::term::{say, warn_say};
use super::common::{clock, finish_with, print_json, summarize_ids, CliError, Failure, FleetArgs};
use crate::duration::{duration_default, format_duration, parse_duration};

/// Examples shown in `--help`.
pub const EXAMPLES: &str = "\
Examples:
  osproxy-directives status
  osproxy-directives status --wait --timeout 60s && echo converged
  osproxy-directives status --json | jq '.instances[] | select(.state != \"current\")'

States: current (current as of the latest revision), lagging (behind it,
e.g. it missed a delete), rejecting (current, but rejects a live value; the
last good set keeps serving). The latest revision is the live revision: it
moves on every change, deletes included (see the README).
Exit codes: 0 every instance current (or none reports); 1 some lag (with
--wait: still after --timeout); 3 some reject the latest revision (named).
An instance's key is leased: it disappears within the lease (10 s by default)
after the instance stops. LAST REPORT is when it last wrote a change.";

/// How often `--wait` reads the fleet's reports.
const POLL_EVERY: Duration = Duration::from_millis(200);

/// How long `status --wait` and `publish --wait` wait by default.
pub const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(60);

/// Options of `status`.
#[derive(Args, Debug)]
pub struct StatusOpts {
    /// The prefix the instances report under.
    #[arg(long, env = "OSPROXY_STATUS_PREFIX", default_value = DEFAULT_STATUS_PREFIX, value_name = "PREFIX")]
    pub status_prefix: String,
    /// Wait until every instance is current (exit 0), any rejects (exit 3)
    /// or --timeout passes (exit 1).
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits.
    #[arg(long, default_value = duration_default!(DEFAULT_WAIT_TIMEOUT), value_parser = parse_duration, value_name = "DURATION", requires = "wait")]
    pub timeout: Duration,
    /// Where the directives live, how to reach etcd, limits and output.
    #[command(flatten)]
    pub fleet: FleetArgs,
}

pub use osproxy_etcd::InstanceState;

/// What the fleet's reports say as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every instance is current (or none reports).
    Converged,
    /// Some instance lags; none rejects.
    Lagging,
    /// Some instance rejects the latest revision.
    Rejecting,
}

/// The fleet classified.
#[derive(Debug)]
pub struct FleetView {
    /// The reports as read.
    pub fleet: FleetStatus,
    /// Each report's state, in the same order.
    pub states: Vec<InstanceState>,
}

impl FleetView {
    /// Classifies `fleet`.
    pub fn new(fleet: FleetStatus) -> Self {
        let states = fleet
            .instances
            .iter()
            .map(|r| r.state(fleet.latest_revision))
            .collect();
        FleetView { fleet, states }
    }

    /// The verdict: rejecting beats lagging beats converged.
    pub fn verdict(&self) -> Verdict {
        if self.states.contains(&InstanceState::Rejecting) {
            Verdict::Rejecting
        } else if self.states.contains(&InstanceState::Lagging) {
            Verdict::Lagging
        } else {
            Verdict::Converged
        }
    }

    /// The ids of the instances in `state`.
    pub fn named(&self, state: InstanceState) -> Vec<String> {
        self.fleet
            .instances
            .iter()
            .zip(&self.states)
            .filter(|(_, s)| **s == state)
            .map(|(r, _)| r.instance.clone())
            .collect()
    }

    fn count(&self, state: InstanceState) -> usize {
        self.states.iter().filter(|s| **s == state).count()
    }

    /// The verdict as an error, `None` when converged.
    pub fn failure(&self, waited: Option<Duration>) -> Option<CliError> {
        let latest = self.fleet.latest_revision;
        match self.verdict() {
            Verdict::Converged => None,
            Verdict::Rejecting => {
                let names = self.named(InstanceState::Rejecting);
                Some(CliError::with_failure(
                    Failure::Rejecting,
                    "rejecting",
                    format!(
                        "{} instance(s) reject revision {latest}: {}",
                        names.len(),
                        summarize_ids(&names)
                    ),
                ))
            }
            Verdict::Lagging => {
                let names = self.named(InstanceState::Lagging);
                let when =
                    waited.map_or(String::new(), |w| format!(" after {}", format_duration(w)));
                Some(CliError::runtime(
                    "lagging",
                    format!(
                        "{} instance(s) not current as of revision {latest}{when}: {}",
                        names.len(),
                        summarize_ids(&names)
                    ),
                ))
            }
        }
    }
}

/// Reads the fleet until it converges, an instance rejects, or `limit`
/// passes; returns the last view read.
///
/// # Errors
/// A request error.
pub async fn wait_for_fleet(
    publisher: &Publisher,
    status_prefix: &str,
    limit: Duration,
) -> Result<FleetView, CliError> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let view = FleetView::new(publisher.fleet_status(status_prefix).await?);
        if view.verdict() != Verdict::Lagging || tokio::time::Instant::now() >= deadline {
            return Ok(view);
        }
        tokio::time::sleep(POLL_EVERY.min(deadline - tokio::time::Instant::now())).await;
    }
}

/// Runs `status`.
pub async fn run(opts: StatusOpts) -> ExitCode {
    let json = opts.fleet.output.json;
    finish_with(json, async {
        let publisher = opts.fleet.publisher().await?;
        let layout = publisher.layout().clone();
        let view = if opts.wait {
            wait_for_fleet(&publisher, &opts.status_prefix, opts.timeout).await?
        } else {
            FleetView::new(publisher.fleet_status(&opts.status_prefix).await?)
        };
        print_view(&view, layout.key(), &opts.status_prefix, json);
        if let Some(e) = view.failure(opts.wait.then_some(opts.timeout)) {
            if !json {
                warn_say!("{}", e.message);
            }
            return Ok(e.exit_code());
        }
        Ok(ExitCode::SUCCESS)
    })
    .await
}

/// Prints the fleet: a summary and a table, or one JSON object.
pub fn print_view(view: &FleetView, key: &str, status_prefix: &str, json: bool) {
    let now = clock().unix_nanos();
    let fleet = &view.fleet;
    let latest = fleet.latest_revision;
    let age = |r: &InstanceStatus| Duration::from_nanos(now.saturating_sub(r.updated_unix_nanos));
    let (current, lagging, rejecting) = (
        view.count(InstanceState::Current),
        view.count(InstanceState::Lagging),
        view.count(InstanceState::Rejecting),
    );
    for key in &fleet.unreadable {
        warn_say!("warning: {key} does not hold an instance report");
    }
    if json {
        let instances: Vec<_> = fleet
            .instances
            .iter()
            .zip(&view.states)
            .map(|(r, state)| {
                json!({
                    "instance": r.instance,
                    "state": state,
                    "applied_revision": r.applied_revision,
                    "current_revision": r.current_as_of(),
                    "directives": r.directives,
                    "rejected_revision": r.rejected_revision,
                    "rejected_reason": r.rejected_reason,
                    "clamped": r.clamped,
                    "failsafe_since_unix_nanos": r.failsafe_since_unix_nanos,
                    "last_report_unix_nanos": r.updated_unix_nanos,
                    "last_report_secs_ago": age(r).as_secs_f64(),
                })
            })
            .collect();
        print_json(&json!({
            "key": key,
            "latest_revision": latest,
            "total": fleet.instances.len(),
            "current": current,
            "lagging": lagging,
            "rejecting": rejecting,
            "instances": instances,
            "unreadable": fleet.unreadable,
        }));
        return;
    }
    say!("directives {key} at revision {latest}");
    say!(
        "{} instances: {current} on revision {latest}, {lagging} lagging, {rejecting} rejecting",
        fleet.instances.len()
    );
    if fleet.instances.is_empty() {
        say!(
            "no instance reports under {status_prefix} (start instances with --etcd --instance-id)"
        );
        return;
    }
    let mut table = vec![[
        "INSTANCE".to_owned(),
        "STATE".to_owned(),
        "APPLIED".to_owned(),
        "DIRECTIVES".to_owned(),
        "REJECTED".to_owned(),
        "LAST REPORT".to_owned(),
    ]];
    for (r, state) in fleet.instances.iter().zip(&view.states) {
        let rejected = match (&r.rejected_revision, &r.rejected_reason) {
            (Some(rev), Some(reason)) => format!("{rev} {reason}"),
            (Some(rev), None) => rev.to_string(),
            _ => "-".to_owned(),
        };
        table.push([
            r.instance.clone(),
            state_cell(*state, r),
            // The newest live revision it has: current ones show the latest.
            r.current_as_of()
                .min(latest.max(r.applied_revision))
                .to_string(),
            r.directives.to_string(),
            rejected,
            format!(
                "{} ago",
                format_duration(Duration::from_secs(age(r).as_secs()))
            ),
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
        say!("{}", cells.join("  ").trim_end());
    }
}

/// The STATE cell: the state, then `clamped` when the instance applies
/// directives clamped to its ceilings and `failsafe` while its fail-safe is
/// engaged (SPEC §8), e.g. `current, clamped`.
fn state_cell(state: InstanceState, r: &InstanceStatus) -> String {
    let mut cell = state.as_str().to_owned();
    if !r.clamped.is_empty() {
        cell.push_str(", clamped");
    }
    if r.failsafe_since_unix_nanos.is_some() {
        cell.push_str(", failsafe");
    }
    cell
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(applied: i64, current: Option<i64>, rejected: Option<i64>) -> InstanceStatus {
        InstanceStatus {
            instance: format!("i{applied}"),
            applied_revision: applied,
            current_revision: current,
            directives: 0,
            rejected_revision: rejected,
            rejected_reason: rejected.map(|_| "lifetime_too_long".into()),
            updated_unix_nanos: 0,
            clamped: Vec::new(),
            failsafe_since_unix_nanos: None,
        }
    }

    #[test]
    fn the_state_cell_says_clamped_and_failsafe() {
        let mut r = report(5, Some(5), None);
        assert_eq!(state_cell(InstanceState::Current, &r), "current");
        r.clamped = vec!["diff".into()];
        assert_eq!(state_cell(InstanceState::Current, &r), "current, clamped");
        r.failsafe_since_unix_nanos = Some(1);
        assert_eq!(
            state_cell(InstanceState::Lagging, &r),
            "lagging, clamped, failsafe"
        );
    }

    #[test]
    fn states_against_the_latest_revision() {
        let of = |r: InstanceStatus, latest| r.state(latest);
        assert_eq!(of(report(5, None, None), 5), InstanceState::Current);
        assert_eq!(of(report(6, None, None), 5), InstanceState::Current);
        assert_eq!(of(report(4, None, None), 5), InstanceState::Lagging);
        assert_eq!(of(report(5, None, Some(5)), 5), InstanceState::Rejecting);
        assert_eq!(of(report(3, None, Some(3)), 5), InstanceState::Lagging);
        // A missed delete: applied an old put, current only as of before the
        // delete at 7.
        assert_eq!(of(report(4, Some(6), None), 7), InstanceState::Lagging);
        // Read after the delete: current although the newest key is older.
        assert_eq!(of(report(4, Some(9), None), 7), InstanceState::Current);
    }

    #[test]
    fn the_verdict_prefers_rejecting_and_names_instances() {
        let fleet = FleetStatus {
            latest_revision: 7,
            instances: vec![
                report(7, Some(7), None),
                report(3, Some(3), None),
                report(8, Some(8), Some(8)),
            ],
            unreadable: Vec::new(),
        };
        let view = FleetView::new(fleet);
        assert_eq!(view.verdict(), Verdict::Rejecting);
        let e = view.failure(None).unwrap();
        assert_eq!((e.code(), e.slug), (3, "rejecting"));
        assert!(e.message.contains("i8"), "{}", e.message);
        let lagging = FleetView::new(FleetStatus {
            latest_revision: 7,
            instances: vec![report(3, Some(3), None)],
            unreadable: Vec::new(),
        });
        let e = lagging.failure(Some(Duration::from_secs(2))).unwrap();
        assert_eq!((e.code(), e.slug), (1, "lagging"));
        assert!(
            e.message.contains("i3") && e.message.contains("2s"),
            "{}",
            e.message
        );
        let empty = FleetView::new(FleetStatus {
            latest_revision: 7,
            instances: Vec::new(),
            unreadable: Vec::new(),
        });
        assert!(empty.failure(None).is_none());
    }
}
