//! `verify-header`: says whether an `X-Debug-Directive` header value is
//! accepted by a trust store, and why not (the verdict slug an instance's
//! explain shows: [`osproxy_observe::TokenVerifier::judge`]).

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use osproxy_core::RequestId;
use osproxy_observe::token::{
    Judgement, DEFAULT_MAX_TOKEN_LIFETIME, DEFAULT_TOKEN_CLOCK_SKEW, MAX_HEADER_BYTES,
};
use osproxy_observe::{format_rfc3339, TokenVerifier};

use super::common::{clock, finish_with, print_json, CliError, Failure, OutputArgs};
use super::trust::read_trust_store;
use crate::duration::{duration_default, parse_duration};

/// Examples shown in `--help`.
pub const EXAMPLES: &str = "\
Examples:
  osproxy-directives verify-header --trust-store fleet.trust --request-id req-42 \"$HEADER\"
  echo \"$HEADER\" | osproxy-directives verify-header --trust-store fleet.trust -

Exit 0 when accepted, 2 when refused, with the reason's slug: absent,
too_large, malformed, unsupported_version, unknown_key, bad_signature,
invalid_directive, relative_lifetime, lifetime_too_long, expired,
wrong_request, request_unchecked (bound to a request id and none given).";

/// Options of `verify-header`.
#[derive(Args, Debug)]
pub struct VerifyHeaderOpts {
    /// The header value, or `-` to read it from stdin.
    #[arg(value_name = "VALUE|-")]
    pub value: String,
    /// The trust store file (public-key lines from `keygen`).
    #[arg(long, env = "OSPROXY_TRUST_STORE", value_name = "FILE")]
    pub trust_store: PathBuf,
    /// The request the header arrives with (a bound header applies to it only).
    #[arg(long, value_name = "ID")]
    pub request_id: Option<String>,
    /// The longest lifetime accepted.
    #[arg(long, default_value = duration_default!(DEFAULT_MAX_TOKEN_LIFETIME), value_parser = parse_duration, value_name = "DURATION")]
    pub max_lifetime: Duration,
    /// Slack for a signer whose clock runs ahead.
    #[arg(long, default_value = duration_default!(DEFAULT_TOKEN_CLOCK_SKEW), value_parser = parse_duration, value_name = "DURATION")]
    pub clock_skew: Duration,
    /// Output format.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Runs `verify-header`.
pub async fn run(opts: VerifyHeaderOpts) -> ExitCode {
    finish_with(opts.output.json, async { execute(&opts) }).await
}

fn execute(opts: &VerifyHeaderOpts) -> Result<ExitCode, CliError> {
    let trust = read_trust_store(&opts.trust_store)?;
    let value = if opts.value == "-" {
        let mut text = String::new();
        std::io::stdin()
            .take(MAX_HEADER_BYTES as u64 + 1)
            .read_to_string(&mut text)
            .map_err(|e| CliError::usage("unreadable_input", "cannot read stdin").caused_by(&e))?;
        text
    } else {
        opts.value.clone()
    };
    let verifier = TokenVerifier::new(trust, clock())
        .with_max_lifetime(opts.max_lifetime)
        .with_clock_skew(opts.clock_skew);
    let request = opts.request_id.as_deref().map(RequestId::from);
    let judgement = verifier.judge(&value, request.as_ref());
    let accepted = judgement.is_accepted();
    if opts.output.json {
        print_json(&judgement_json(&judgement));
    } else {
        println!("{}", describe(&judgement));
    }
    Ok(if accepted {
        ExitCode::SUCCESS
    } else {
        CliError::with_failure(Failure::Usage, "refused", "").exit_code()
    })
}

pub use crate::explain::judgement_json;

/// One line for humans.
fn describe(j: &Judgement) -> String {
    let mut line = if j.is_accepted() {
        "accepted".to_owned()
    } else {
        format!("refused: {}", j.verdict.slug())
    };
    if let Some(reason) = j.decode_reason {
        line.push_str(&format!(" ({})", reason.slug()));
    }
    if let Some(k) = &j.key_id {
        line.push_str(&format!("; key {k}"));
    }
    if let Some(d) = &j.directive {
        line.push_str(&format!("; directive {} at {}", d.id, d.level));
        if let Some(at) = d.expires_at_unix_nanos {
            line.push_str(&format!(", expires {}", format_rfc3339(at)));
        }
    }
    if let Some(r) = &j.bound_request {
        line.push_str(&format!("; request {}", r.as_str()));
    }
    line
}
