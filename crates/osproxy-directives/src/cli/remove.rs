//! `remove ID`: removes one directive from the live set, with
//! compare-and-swap (key layout) or by deleting its key (prefix layout).

use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use super::common::{finish, print_json, CliError, FleetArgs, NoteArgs};

/// Examples shown in `--help`.
pub const EXAMPLES: &str = "\
Examples:
  osproxy-directives remove acme-timing
  osproxy-directives remove --reason \"incident over\" acme-timing
  osproxy-directives remove --prefix /osproxy/directives/ acme

Removing an id that is not live fails with not_found (exit 1). The live
revision moves with the removal, so `status` shows who has not applied it.
In the single-key layout expired directives are dropped too, and a set
holding another tool's ttl_secs lifetimes is refused (foreign_relative_lifetime).
A write whose answer is lost exits 4 (outcome unknown).";

/// Options of `remove`.
#[derive(Args, Debug)]
pub struct RemoveOpts {
    /// The id of the directive to remove.
    #[arg(value_name = "ID")]
    pub id: String,
    /// Who writes and why.
    #[command(flatten)]
    pub note: NoteArgs,
    /// Where the directives live, how to reach etcd, limits and output.
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// Signing (SPEC §9).
    #[command(flatten)]
    pub sign: super::trust::SignArgs,
}

/// Runs `remove`.
pub async fn run(opts: RemoveOpts) -> ExitCode {
    finish(opts.fleet.output.json, async {
        let note = opts.note.note()?;
        let publisher = opts.sign.apply(opts.fleet.publisher().await?)?;
        let written = publisher
            .remove_noted(&opts.id, &note)
            .await
            .map_err(CliError::from)?;
        if opts.fleet.output.json {
            print_json(&json!({"revision": written.revision, "id": opts.id}));
        } else {
            println!("removed {} at revision {}", opts.id, written.revision);
        }
        Ok(())
    })
    .await
}
