//! `publish FILE|-`: validates a directive set with the fleet's decoder,
//! converts every `ttl_secs` to an absolute `expires_at`, checks that the
//! exact bytes it will write are accepted by the fleet, and replaces the live
//! set with compare-and-swap on the live revision. `--wait` then waits until
//! the fleet applies it, so a rollout script is one command.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use osproxy_etcd::DEFAULT_STATUS_PREFIX;
use osproxy_observe::decode_directive_set_with;
use serde_json::json;

use super::common::{
    check_published_form, clock, finish_with, meaningless_flag, print_json, read_input,
    summarize_ids, CliError, FleetArgs, Given, NoteArgs,
};
use super::status::{print_view, wait_for_fleet, InstanceState, DEFAULT_WAIT_TIMEOUT};
use super::trust::SignArgs;
use crate::diff::SetDiff;
use crate::duration::{duration_default, parse_duration};

/// Examples shown in `--help`.
pub const EXAMPLES: &str = "\
Examples:
  osproxy-directives publish directives.json
  osproxy-directives publish --dry-run directives.json
  osproxy-directives publish --expect-revision 42 directives.json
  osproxy-directives publish --wait --timeout 60s directives.json   # a gated rollout
  osproxy-directives publish --author alice --reason \"INC-42: more detail\" directives.json
  osproxy-directives get --json | jq '.directives |= map(select(.id != \"old\"))' \\
    | osproxy-directives publish -

Without --expect-revision the live revision is read and the write only
succeeds if nobody else wrote in between; a lost race is a \"revision conflict\"
(exit 1). --expect-revision N: only if nothing changed after revision N (as
`get`, `status` or an instance's ETag show it; deletes count); 0 means: only
if nothing was ever published. A set an instance would reject (too_large once
ttl_secs became expires_at, …) is refused before writing (exit 2). A write
whose answer is lost exits 4 (outcome unknown): run `get` before retrying.
--wait exits 0 once every instance applied it, 1 if some still lag after
--timeout, 3 if any rejects it.";

/// Options of `publish`.
#[derive(Args, Debug)]
pub struct PublishOpts {
    /// The directive set file (`{"directives": [...]}`), or `-` for stdin.
    #[arg(value_name = "FILE|-")]
    pub file: PathBuf,
    /// Write only if nothing changed after this revision (0: nothing ever published).
    #[arg(long, value_name = "N")]
    pub expect_revision: Option<i64>,
    /// Show what would change (added, removed, changed ids) and write nothing.
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
    /// Who writes and why.
    #[command(flatten)]
    pub note: NoteArgs,
    /// Where the directives live, how to reach etcd, limits and output.
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// Signing (SPEC §9).
    #[command(flatten)]
    pub sign: SignArgs,
    /// Which of these flags were typed (filled in by `cli::main`).
    #[arg(skip)]
    pub given: Given,
}

/// Refuses, as `meaningless_flag` with the reason, a flag of a writing
/// subcommand (`publish`, `rollback`) that another makes meaningless:
/// `--status-prefix` without `--wait` (nothing reads the instance reports),
/// `--signed-format` without `--sign-key`. Only typed flags count.
///
/// # Errors
/// That usage error.
pub fn refuse_meaningless(given: &Given, wait: bool, sign: &SignArgs) -> Result<(), CliError> {
    if given.has("status_prefix") && !wait {
        return Err(meaningless_flag(
            "--status-prefix",
            "without --wait (nothing reads the instance reports)",
            "add --wait, or drop --status-prefix",
        ));
    }
    sign.refuse_meaningless(given)
}

/// Runs `publish`.
pub async fn run(opts: PublishOpts) -> ExitCode {
    finish_with(opts.fleet.output.json, execute(&opts)).await
}

/// Publishes; with `--wait`, the exit code is the fleet's verdict (the
/// write itself succeeded, so it is reported as such, once).
async fn execute(opts: &PublishOpts) -> Result<ExitCode, CliError> {
    refuse_meaningless(&opts.given, opts.wait, &opts.sign)?;
    let limits = opts.fleet.limits.limits();
    let bytes = read_input(&opts.file)?;
    let set = decode_directive_set_with(&bytes, clock().as_ref(), &limits)?;
    let note = opts.note.note()?;
    if !opts.fleet.layout.layout()?.is_prefix() {
        // Dry runs too: the single value must fit once canonical.
        check_published_form(&set, &limits)?;
    }
    let layout = opts.fleet.layout.layout()?;
    let publisher = opts.fleet.etcd.publisher(layout.clone(), limits).await?;
    let publisher = opts.sign.apply(publisher)?;
    let live = publisher.live().await?;
    let live_rejected: Vec<&'static str> = live.rejected.iter().map(|r| r.error.slug()).collect();
    let diff = SetDiff::between(&live.set, &set);
    let json = opts.fleet.output.json;
    if opts.dry_run {
        if let Some(v) = report(json, &diff, live.revision, None, &live_rejected) {
            print_json(&v);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let expected = opts.expect_revision.unwrap_or(live.revision);
    let revision = publisher.publish_noted(&set, Some(expected), &note).await?;
    let mut out = report(json, &diff, live.revision, Some(revision), &live_rejected);
    let mut code = ExitCode::SUCCESS;
    if opts.wait {
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

/// `--wait` after a write: waits for the fleet and says its verdict (into
/// `out` for `--json`, else as the status table and an error line).
pub(crate) struct FleetGate<'a> {
    /// The prefix the instances report under.
    pub(crate) status_prefix: &'a str,
    /// How long to wait.
    pub(crate) timeout: Duration,
}

impl FleetGate<'_> {
    /// Waits; the exit code is the fleet's verdict on `revision` (written).
    pub(crate) async fn wait(
        &self,
        publisher: &osproxy_etcd::Publisher,
        revision: i64,
        out: Option<&mut serde_json::Value>,
    ) -> Result<ExitCode, CliError> {
        let view = wait_for_fleet(publisher, self.status_prefix, self.timeout).await?;
        let failure = view.failure(Some(self.timeout));
        let json = out.is_some();
        if let Some(v) = out {
            v["wait"] = json!({
                "verdict": failure.as_ref().map_or("converged", |e| e.slug),
                "latest_revision": view.fleet.latest_revision,
                "instances": view.fleet.instances.len(),
                "lagging": view.named(InstanceState::Lagging),
                "rejecting": view.named(InstanceState::Rejecting),
            });
        } else {
            print_view(&view, publisher.layout().key(), self.status_prefix, false);
        }
        let Some(e) = failure else {
            return Ok(ExitCode::SUCCESS);
        };
        if !json {
            eprintln!("error: {}", e.message);
            eprintln!("  hint: revision {revision} is written; `status` shows the fleet");
        }
        Ok(e.exit_code())
    }
}

/// The outcome: printed as text, or returned as JSON for the caller to
/// complete and print once.
fn report(
    json: bool,
    diff: &SetDiff,
    live_revision: i64,
    written: Option<i64>,
    live_rejected: &[&'static str],
) -> Option<serde_json::Value> {
    let unchanged = written.is_some() && diff.is_empty();
    if json {
        return Some(json!({
            "dry_run": written.is_none(),
            "revision": written,
            "previous_revision": live_revision,
            "written": written.is_some() && written != Some(live_revision),
            "added": diff.added,
            "removed": diff.removed,
            "changed": diff.changed,
            "unchanged": diff.unchanged,
            "replaced_rejected_value": live_rejected.first(),
            "replaced_rejected_values": live_rejected,
        }));
    }
    if !live_rejected.is_empty() {
        let slugs: Vec<String> = live_rejected.iter().map(|s| (*s).to_owned()).collect();
        println!(
            "live value at revision {live_revision} is rejected ({}); it is replaced whole",
            summarize_ids(&slugs)
        );
    }
    match written {
        None => println!(
            "dry run: would publish over revision {live_revision}: {}",
            diff.summary()
        ),
        Some(revision) if unchanged && revision == live_revision => {
            println!("nothing to write: the live set at revision {revision} is already this set")
        }
        Some(revision) => println!(
            "published revision {revision} (was {live_revision}): {}",
            diff.summary()
        ),
    }
    None
}
