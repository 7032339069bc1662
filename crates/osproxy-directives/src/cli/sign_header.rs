//! `sign-header`: mints an `X-Debug-Directive` header value (the signed
//! single-request directive, SPEC §9) for a level, targets, a lifetime and
//! optionally one request id.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use osproxy_core::RequestId;
use osproxy_observe::token::{
    sign_token_with, TokenClaims, DEFAULT_MAX_TOKEN_LIFETIME, HEADER_NAME,
};
use osproxy_observe::{decode_directive, format_rfc3339, DecodeLimits};
use serde_json::{json, Map, Value};

use super::common::{clock, finish, print_json, CliError, OutputArgs};
use super::trust::read_signer;
use crate::duration::{duration_default, parse_duration};

/// Default `--ttl` of a header: 5 minutes.
pub const DEFAULT_HEADER_TTL: Duration = Duration::from_secs(5 * 60);

/// Examples shown in `--help`.
pub const EXAMPLES: &str = "\
Examples:
  osproxy-directives sign-header --sign-key ops.key --level ShapeTiming --request-id req-42
  osproxy-directives sign-header --sign-key ops.key --level Shape --tenant acme --ttl 10m
  curl -H \"X-Debug-Directive: $(osproxy-directives sign-header --sign-key ops.key \\
      --level ShapeTiming --request-id req-42)\" http://proxy/...

Prints the header value only (with --json: also what it grants). Instances
accept at most 15 minutes by default (plus 30 s of clock skew); a longer --ttl
is refused here unless --max-lifetime says the fleet allows it.";

/// Options of `sign-header`.
#[derive(Args, Debug)]
pub struct SignHeaderOpts {
    /// The private key file (from `keygen`).
    #[arg(long, env = "OSPROXY_SIGN_KEY", value_name = "FILE")]
    pub sign_key: PathBuf,
    /// Detail to record: Shape, ShapeTiming or ShapeRewriteDiff.
    #[arg(long)]
    pub level: String,
    /// The directive's id, as it shows in explanations.
    #[arg(long, default_value = "header")]
    pub id: String,
    /// Which requests it applies to.
    #[command(flatten)]
    pub targets: super::common::TargetArgs,
    /// Also keep the request in the ring buffer.
    #[arg(long)]
    pub ring_buffer: bool,
    /// Also capture the request body.
    #[arg(long)]
    pub capture: bool,
    /// Only the request with this id (recommended: a leaked header then
    /// raises nothing else).
    #[arg(long, value_name = "ID")]
    pub request_id: Option<String>,
    /// Only the fleet of this name (instances whose trust store says
    /// `osproxy-audience <NAME>` refuse headers for another fleet or none).
    #[arg(long, value_name = "NAME")]
    pub audience: Option<String>,
    /// Lifetime from now.
    #[arg(long, default_value = duration_default!(DEFAULT_HEADER_TTL), value_parser = parse_duration, value_name = "DURATION")]
    pub ttl: Duration,
    /// The longest lifetime the instances accept (their verifier's maximum).
    #[arg(long, default_value = duration_default!(DEFAULT_MAX_TOKEN_LIFETIME), value_parser = parse_duration, value_name = "DURATION")]
    pub max_lifetime: Duration,
    /// Output format.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Runs `sign-header`.
pub async fn run(opts: SignHeaderOpts) -> ExitCode {
    finish(opts.output.json, async { execute(&opts) }).await
}

fn execute(opts: &SignHeaderOpts) -> Result<(), CliError> {
    let signer = read_signer(&opts.sign_key)?;
    if opts.ttl.is_zero() || opts.ttl.subsec_nanos() != 0 {
        return Err(CliError::usage(
            "invalid_ttl",
            "--ttl must be whole seconds, at least 1s",
        ));
    }
    let clock = clock();
    let nanos = u64::try_from(opts.ttl.as_nanos()).unwrap_or(u64::MAX);
    let expires_at = format_rfc3339(clock.unix_nanos().saturating_add(nanos));
    let mut o = Map::new();
    o.insert("id".into(), opts.id.clone().into());
    o.insert("level".into(), opts.level.clone().into());
    opts.targets.insert_into(&mut o);
    if opts.ring_buffer {
        o.insert("ring_buffer".into(), true.into());
    }
    if opts.capture {
        o.insert("capture".into(), true.into());
    }
    o.insert("expires_at".into(), expires_at.clone().into());
    let limits = DecodeLimits {
        max_lifetime: opts.max_lifetime,
        clock_skew_allowance: Duration::ZERO,
        ..DecodeLimits::default()
    };
    let bytes = Value::Object(o).to_string();
    let directive = decode_directive(bytes.as_bytes(), clock.as_ref(), &limits).map_err(|e| {
        CliError::usage(e.slug(), format!("directive rejected: {}", e.reason))
            .hint("see `osproxy-directives sign-header --help` for each flag's rules")
    })?;
    let request = opts.request_id.as_deref().map(RequestId::from);
    // Always stamped with the time it is minted: instances bound the whole
    // lifetime from it (and may require it).
    let claims = TokenClaims {
        audience: opts.audience.clone(),
        ..TokenClaims::issued_at(clock.unix_nanos())
    };
    let token = sign_token_with(&signer, &directive, request.as_ref(), &claims).map_err(|e| {
        let slug = match e {
            osproxy_observe::token::TokenError::InvalidAudience => "invalid_audience",
            _ => "invalid_request_id",
        };
        CliError::usage(slug, e.to_string())
    })?;
    if opts.output.json {
        print_json(&json!({
            "header": HEADER_NAME,
            "value": token,
            "key_id": signer.id(),
            "expires_at": expires_at,
            "request_id": opts.request_id,
            "audience": opts.audience,
        }));
    } else {
        println!("{token}");
    }
    Ok(())
}
