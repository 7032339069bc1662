//! `rollback --to REV [--dry-run] [--wait]`: republishes the set as of
//! revision `REV` with compare-and-swap against the live revision, keeping
//! every absolute expiry and dropping directives already expired (and saying
//! so). The write records the author and the reason `rollback to REV`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use osproxy_etcd::DEFAULT_STATUS_PREFIX;
use serde_json::json;

use super::common::{finish_with, print_json, summarize_ids, CliError, FleetArgs, Given, NoteArgs};
use super::publish::{refuse_meaningless, FleetGate};
use super::status::DEFAULT_WAIT_TIMEOUT;
use crate::diff::SetDiff;
use crate::duration::{duration_default, parse_duration};

/// Examples shown in `--help`.
pub const EXAMPLES: &str = "\
Examples:
  osproxy-directives history                       # find the revision to go back to
  osproxy-directives rollback --to 41 --dry-run
  osproxy-directives rollback --to 41 --reason \"INC-42: too noisy\" --wait

The set as of REV is published again over the live revision (or only if
nothing changed after --expect-revision N): a write in between is a revision
conflict (exit 1) and nothing is written. Expiries stay as they were, so a
rollback never extends a directive; directives that have expired since are
left out, and the output names them. A revision before etcd's last compaction
fails with compacted (exit 1), naming the oldest available one. --wait exits
like `publish --wait`.";

/// Options of `rollback`.
#[derive(Args, Debug)]
pub struct RollbackOpts {
    /// The revision whose set to publish again (see `history`).
    #[arg(long, value_name = "REV")]
    pub to: i64,
    /// Write only if nothing changed after this revision.
    #[arg(long, value_name = "N")]
    pub expect_revision: Option<i64>,
    /// Show what would change and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// After writing, wait until every instance applied it (see `status --wait`).
    #[arg(long, conflicts_with = "dry_run")]
    pub wait: bool,
    /// How long --wait waits.
    #[arg(long, default_value = duration_default!(DEFAULT_WAIT_TIMEOUT), value_parser = parse_duration, value_name = "DURATION", requires = "wait")]
    pub timeout: Duration,
    /// The prefix the instances report under (for --wait).
    #[arg(long, env = "OSPROXY_STATUS_PREFIX", default_value = DEFAULT_STATUS_PREFIX, value_name = "PREFIX")]
    pub status_prefix: String,
    /// Who rolls back and why (the reason is recorded after `rollback to REV: `).
    #[command(flatten)]
    pub note: NoteArgs,
    /// Sign the rollback (with v2, a new sequence number: it outranks the
    /// values it replaces).
    #[command(flatten)]
    pub sign: super::trust::SignArgs,
    /// Where the directives live, how to reach etcd, limits and output.
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// Which of these flags were typed (filled in by `cli::main`).
    #[arg(skip)]
    pub given: Given,
}

/// Runs `rollback`.
pub async fn run(opts: RollbackOpts) -> ExitCode {
    finish_with(opts.fleet.output.json, execute(&opts)).await
}

async fn execute(opts: &RollbackOpts) -> Result<ExitCode, CliError> {
    refuse_meaningless(&opts.given, opts.wait, &opts.sign)?;
    let note = opts.note.note()?;
    let publisher = opts.sign.apply(opts.fleet.publisher().await?)?;
    let outcome = publisher
        .rollback(opts.to, opts.expect_revision, &note, opts.dry_run)
        .await?;
    let diff = SetDiff::from(outcome.changes.clone());
    let written = outcome.revision.filter(|r| *r != outcome.base);
    let mut out = opts.fleet.output.json.then(|| {
        json!({
            "dry_run": opts.dry_run,
            "to": outcome.to,
            "source_revision": outcome.source_revision,
            "previous_revision": outcome.base,
            "revision": outcome.revision,
            "written": written.is_some(),
            "directives": outcome.set.len(),
            "expired_dropped": outcome.expired,
            "added": diff.added,
            "removed": diff.removed,
            "changed": diff.changed,
            "unchanged": diff.unchanged,
            "reason": outcome.note.reason(),
            "author": outcome.note.author(),
        })
    });
    if out.is_none() {
        let what = format!("the set as of revision {}", outcome.source_revision);
        match outcome.revision {
            None => println!(
                "dry run: would publish {what} over revision {}: {}",
                outcome.base,
                diff.summary()
            ),
            Some(_) if written.is_none() => println!(
                "nothing to write: the live set at revision {} already is {what}",
                outcome.base
            ),
            Some(r) => println!(
                "rolled back to revision {}: published revision {r} (was {}): {}",
                outcome.to,
                outcome.base,
                diff.summary()
            ),
        }
        if !outcome.expired.is_empty() {
            println!(
                "left out, expired since: {} (expiries are kept, never extended)",
                summarize_ids(&outcome.expired)
            );
        }
    }
    let mut code = ExitCode::SUCCESS;
    if let (true, Some(revision)) = (opts.wait, written) {
        let gate = FleetGate {
            status_prefix: &opts.status_prefix,
            timeout: opts.timeout,
        };
        code = gate.wait(&publisher, revision, out.as_mut()).await?;
    }
    if let Some(v) = out {
        print_json(&v);
    }
    Ok(code)
}
