//! `publish FILE|-`: validates a directive set with the fleet's decoder,
//! converts every `ttl_secs` to an absolute `expires_at`, and replaces the
//! live set with compare-and-swap on its revision.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use osproxy_etcd::PublishError;
use osproxy_observe::{decode_directive_set_with, DirectiveSet};
use serde_json::json;

use super::common::{clock, finish, print_json, read_input, CliError, FleetArgs};
use crate::diff::SetDiff;

/// Examples shown in `--help`.
pub const EXAMPLES: &str = "\
Examples:
  osproxy-directives publish directives.json
  osproxy-directives publish --dry-run directives.json
  osproxy-directives publish --expect-revision 42 directives.json
  osproxy-directives get --json | jq '.directives |= map(select(.id != \"old\"))' \\
    | osproxy-directives publish -

Without --expect-revision the live revision is read and the write only
succeeds if nobody else wrote in between; a lost race is a \"revision conflict\"
(exit 1). --expect-revision 0 means: only if nothing is published yet.";

/// Options of `publish`.
#[derive(Args, Debug)]
pub struct PublishOpts {
    /// The directive set file (`{"directives": [...]}`), or `-` for stdin.
    #[arg(value_name = "FILE|-")]
    pub file: PathBuf,
    /// Write only if the live set is at this revision (0: nothing published).
    #[arg(long, value_name = "N")]
    pub expect_revision: Option<i64>,
    /// Show what would change (added, removed, changed ids) and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Where the directives live, how to reach etcd, limits and output.
    #[command(flatten)]
    pub fleet: FleetArgs,
}

/// Runs `publish`.
pub async fn run(opts: PublishOpts) -> ExitCode {
    finish(opts.fleet.output.json, execute(&opts)).await
}

async fn execute(opts: &PublishOpts) -> Result<(), CliError> {
    let limits = opts.fleet.limits.limits();
    let bytes = read_input(&opts.file)?;
    let set = decode_directive_set_with(&bytes, clock().as_ref(), &limits)?;
    let layout = opts.fleet.layout.layout()?;
    let publisher = opts.fleet.etcd.publisher(layout.clone(), limits).await?;
    let (live, live_revision, live_rejected) = match publisher.current().await {
        Ok((live, revision)) => (live, revision, None),
        // A rejected live value is replaced whole: that is what publish is for.
        Err(PublishError::Malformed {
            revision, source, ..
        }) => (DirectiveSet::new(), revision, Some(source.slug())),
        Err(e) => return Err(e.into()),
    };
    let diff = SetDiff::between(&live, &set);
    if opts.dry_run {
        report(opts, &diff, live_revision, None, live_rejected);
        return Ok(());
    }
    let expected = opts.expect_revision.unwrap_or(live_revision);
    let revision = publisher.publish(&set, Some(expected)).await?;
    report(opts, &diff, live_revision, Some(revision), live_rejected);
    Ok(())
}

fn report(
    opts: &PublishOpts,
    diff: &SetDiff,
    live_revision: i64,
    written: Option<i64>,
    live_rejected: Option<&'static str>,
) {
    if opts.fleet.output.json {
        print_json(&json!({
            "dry_run": written.is_none(),
            "revision": written,
            "previous_revision": live_revision,
            "added": diff.added,
            "removed": diff.removed,
            "changed": diff.changed,
            "unchanged": diff.unchanged,
            "replaced_rejected_value": live_rejected,
        }));
        return;
    }
    if let Some(reason) = live_rejected {
        println!(
            "live value at revision {live_revision} is rejected ({reason}); it is replaced whole"
        );
    }
    match written {
        None => println!(
            "dry run: would publish over revision {live_revision}: {}",
            diff.summary()
        ),
        Some(revision) => println!(
            "published revision {revision} (was {live_revision}): {}",
            diff.summary()
        ),
    }
}
