//! `remove ID`: removes one directive from the live set, with
//! compare-and-swap (key layout) or by deleting its key (prefix layout).

use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use super::common::{finish, print_json, CliError, EtcdArgs, LayoutArgs, LimitArgs, OutputArgs};

/// Examples shown in `--help`.
pub const EXAMPLES: &str = "\
Examples:
  osproxy-directives remove acme-timing
  osproxy-directives remove --prefix /osproxy/directives/ acme

Removing an id that is not live fails with not_found (exit 1).";

/// Options of `remove`.
#[derive(Args, Debug)]
pub struct RemoveOpts {
    /// The id of the directive to remove.
    #[arg(value_name = "ID")]
    pub id: String,
    /// Where the directives live.
    #[command(flatten)]
    pub layout: LayoutArgs,
    /// How to reach etcd.
    #[command(flatten)]
    pub etcd: EtcdArgs,
    /// Decoder limits.
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Output format.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Runs `remove`.
pub async fn run(opts: RemoveOpts) -> ExitCode {
    finish(opts.output.json, async {
        let layout = opts.layout.layout()?;
        let publisher = opts.etcd.publisher(layout, opts.limits.limits()).await?;
        let written = publisher.remove(&opts.id).await.map_err(CliError::from)?;
        if opts.output.json {
            print_json(&json!({"revision": written.revision, "id": opts.id}));
        } else {
            println!("removed {} at revision {}", opts.id, written.revision);
        }
        Ok(())
    })
    .await
}
