//! `watch`: one line per change of the live directive set, with its revision
//! and the ids it added, changed or removed. Rejected values are shown as the
//! fleet sees them: the last good set keeps serving. A watch that ends (etcd
//! restarted, connection lost, revisions compacted away) is resumed like the
//! store's: from the next unseen revision, or with a fresh read whose
//! difference is printed as one change; a note goes to stderr.

use std::process::ExitCode;

use clap::Args;
use osproxy_etcd::Change;
use serde_json::json;

use super::common::term::{say, warn_say};
use super::common::{finish, print_json, CliError, FleetArgs};
use super::get::count;
use crate::diff::SetDiff;

/// Examples shown in `--help`.
pub const EXAMPLES: &str = "\
Examples:
  osproxy-directives watch
  osproxy-directives watch --json | jq .revision
  osproxy-directives watch --count 1      # wait for the next change, then exit

The state at start goes to stderr (\"watching KEY at revision N\"); stdout has
one line per change. Ctrl-C stops.";

/// Options of `watch`.
#[derive(Args, Debug)]
pub struct WatchOpts {
    /// Stop after this many changes (for scripts).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Where the directives live, how to reach etcd, limits and output.
    #[command(flatten)]
    pub fleet: FleetArgs,
}

/// Runs `watch`.
pub async fn run(opts: WatchOpts) -> ExitCode {
    finish(opts.fleet.output.json, execute(&opts)).await
}

async fn execute(opts: &WatchOpts) -> Result<(), CliError> {
    let publisher = opts.fleet.publisher().await?;
    let layout = publisher.layout().clone();
    let (first, mut changes) = publisher.changes().await?;
    warn_say!(
        "watching {} at revision {}: {}",
        layout.key(),
        first.revision,
        count(first.set.len())
    );
    let mut previous = first;
    let mut seen = 0u64;
    let mut interruptions = 0;
    while opts.count.is_none_or(|n| seen < n) {
        let change = tokio::select! {
            change = changes.next_change() => change?,
            _ = tokio::signal::ctrl_c() => break,
        };
        if changes.interruptions() != interruptions {
            interruptions = changes.interruptions();
            warn_say!("watch resumed (interrupted {interruptions} time(s) so far)");
        }
        print_change(&previous, &change, opts.fleet.output.json);
        previous = change;
        seen += 1;
    }
    Ok(())
}

fn print_change(previous: &Change, change: &Change, json: bool) {
    let diff = SetDiff::between(&previous.set, &change.set);
    let fresh: Vec<_> = change
        .rejected
        .iter()
        .filter(|r| r.revision == change.revision)
        .collect();
    if json {
        print_json(&json!({
            "revision": change.revision,
            "directives": change.set.len(),
            "added": diff.added,
            "removed": diff.removed,
            "changed": diff.changed,
            "rejected": fresh,
        }));
        return;
    }
    let mut line = format!(
        "revision {}: {}; {}",
        change.revision,
        count(change.set.len()),
        diff.summary()
    );
    for r in fresh {
        line.push_str(&format!("; rejected {} at {}", r.reason, r.key));
        if let Some(i) = r.directive_index {
            line.push_str(&format!(" (directive {i})"));
        }
    }
    say!("{line}");
}
