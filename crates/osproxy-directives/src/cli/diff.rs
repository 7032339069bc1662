//! `diff REV [REV2]`: what changed between the set as of revision `REV` and
//! as of `REV2` (the live set when omitted): ids added, removed and
//! changed, with each changed directive before and after.

use std::process::ExitCode;

use clap::Args;
use osproxy_observe::encode::directive_value;
use osproxy_observe::DirectiveSet;
use serde_json::{json, Value};

use super::common::term::say;
use super::common::{finish, note_json, note_text, print_json, FleetArgs};
use crate::diff::SetDiff;

/// Examples shown in `--help`.
pub const EXAMPLES: &str = "\
Examples:
  osproxy-directives diff 41            # revision 41 against the live set
  osproxy-directives diff 41 57 --json
  osproxy-directives diff --prefix /osproxy/directives/ 12

A revision between two changes means the set as it was then. A revision
before etcd's last compaction fails with compacted (exit 1), naming the oldest
available one.";

/// Options of `diff`.
#[derive(Args, Debug)]
pub struct DiffOpts {
    /// The older revision.
    #[arg(value_name = "REV")]
    pub from: i64,
    /// The newer revision (default: the live set).
    #[arg(value_name = "REV2")]
    pub to: Option<i64>,
    /// Where the directives live, how to reach etcd, limits and output.
    #[command(flatten)]
    pub fleet: FleetArgs,
}

/// Runs `diff`.
pub async fn run(opts: DiffOpts) -> ExitCode {
    finish(opts.fleet.output.json, async {
        let publisher = opts.fleet.publisher().await?;
        let d = publisher.diff(opts.from, opts.to).await?;
        let changes = SetDiff::from(d.changes.clone());
        let (old, new) = (&d.from.state.set, &d.to.state.set);
        if opts.fleet.output.json {
            let changed: Vec<Value> = changes
                .changed
                .iter()
                .map(|id| json!({"id": id, "before": canonical(old, id), "after": canonical(new, id)}))
                .collect();
            print_json(&json!({
                "from": {"requested": d.from.requested, "revision": d.from.state.revision, "note": note_json(&d.from.note)},
                "to": {"requested": d.to.requested, "revision": d.to.state.revision, "note": note_json(&d.to.note)},
                "added": changes.added.iter().map(|id| canonical(new, id)).collect::<Vec<_>>(),
                "removed": changes.removed.iter().map(|id| canonical(old, id)).collect::<Vec<_>>(),
                "changed": changed,
                "unchanged": changes.unchanged,
            }));
            return Ok(());
        }
        say!(
            "from revision {} ({}) to revision {} ({}): {}",
            d.from.state.revision,
            note_text(&d.from.note),
            d.to.state.revision,
            note_text(&d.to.note),
            changes.summary()
        );
        for id in &changes.added {
            say!("+ {}", line(new, id));
        }
        for id in &changes.removed {
            say!("- {}", line(old, id));
        }
        for id in &changes.changed {
            say!("~ {}\n  -> {}", line(old, id), line(new, id));
        }
        Ok(())
    })
    .await
}

/// The canonical form of directive `id` of `set` (`null` if absent).
fn canonical(set: &DirectiveSet, id: &str) -> Value {
    set.directives()
        .iter()
        .find(|d| d.id == id)
        .map_or(Value::Null, directive_value)
}

fn line(set: &DirectiveSet, id: &str) -> String {
    canonical(set, id).to_string()
}
