//! `validate FILE|-`: runs the fleet's decoder on a directive set file, so a
//! set is checked exactly as every instance will check it — in the form it
//! is published in, too: `ttl_secs` become longer absolute `expires_at`, so a
//! set just under the size limit can be over it once published.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use osproxy_observe::decode_directive_set_with;
use serde_json::json;

use super::common::{
    check_published_form, clock, finish, print_json, read_input, CliError, LimitArgs, OutputArgs,
};

/// Examples shown in `--help`.
pub const EXAMPLES: &str = "\
Examples:
  osproxy-directives validate directives.json
  cat directives.json | osproxy-directives validate -
  osproxy-directives validate --max-lifetime 1d --json directives.json

On failure the reason slug (e.g. unknown_field, lifetime_too_long) and the
offending directive's index are printed, and the exit code is 2.";

/// Options of `validate`.
#[derive(Args, Debug)]
pub struct ValidateOpts {
    /// The directive set file (`{"directives": [...]}`), or `-` for stdin.
    #[arg(value_name = "FILE|-")]
    pub file: PathBuf,
    /// Decoder limits.
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Output format.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Runs `validate`.
pub async fn run(opts: ValidateOpts) -> ExitCode {
    finish(opts.output.json, async {
        let bytes = read_input(&opts.file)?;
        let set = decode_directive_set_with(&bytes, clock().as_ref(), &opts.limits.limits())
            .map_err(CliError::from)?;
        // What `publish` would write, checked like the instances will.
        check_published_form(&set, &opts.limits.limits())?;
        let live = set.live_count(clock().now());
        if opts.output.json {
            print_json(&json!({"valid": true, "directives": set.len(), "live": live}));
        } else {
            println!("valid: {} directives ({live} not yet expired)", set.len());
        }
        Ok(())
    })
    .await
}
