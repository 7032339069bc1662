//! `add`: builds one directive from flags, checks it with the fleet's decoder
//! and adds it to the live set (replacing a directive with the same id).
//! In the prefix layout its key is bound to an etcd lease of its lifetime.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use osproxy_observe::{decode_directive, RejectReason, TimedDirective};
use serde_json::{json, Map, Value};

use super::common::{clock, finish, print_json, CliError, FleetArgs, NoteArgs};
use crate::duration::{format_duration, parse_duration};

/// Examples shown in `--help`.
pub const EXAMPLES: &str = "\
Examples:
  osproxy-directives add --id acme-timing --level ShapeTiming --tenant acme --ttl 10m
  osproxy-directives add --id slow-search --level Shape --endpoint Search \\
      --sample-per-mille 50 --ring-buffer --ttl 2h
  osproxy-directives add --id audit --level ShapeRewriteDiff --principal svc-ingest \\
      --capture --expires-at 2030-01-01T00:00:00Z
  osproxy-directives add --prefix /osproxy/directives/ --id acme --level Shape --tenant acme --ttl 30s

--author (default $USER) and --reason are recorded with the write; `history`
shows them. Durations: 30s, 10m, 2h, 1d (or 1h30m). A directive with the same id is replaced.
In the single-key layout the set is rewritten: expired directives are dropped,
and a set holding ttl_secs lifetimes written by another tool is refused
(foreign_relative_lifetime, exit 1): a rewrite would restart them on every
instance. A write whose answer is lost exits 4 (outcome unknown).";

/// Options of `add`.
#[derive(Args, Debug)]
pub struct AddOpts {
    /// Directive id: 1–128 characters of [A-Za-z0-9._:-], unique in the set.
    #[arg(long)]
    pub id: String,
    /// Detail to record: Off, Shape, ShapeTiming or ShapeRewriteDiff.
    #[arg(long)]
    pub level: String,
    /// Which requests it applies to.
    #[command(flatten)]
    pub targets: super::common::TargetArgs,
    /// Share of matching requests sampled, 0–1000 (default 1000: all).
    #[arg(long, value_name = "N")]
    pub sample_per_mille: Option<u64>,
    /// Also keep matching requests in the ring buffer.
    #[arg(long)]
    pub ring_buffer: bool,
    /// Also capture matching request bodies.
    #[arg(long)]
    pub capture: bool,
    /// Lifetime from now (30s, 10m, 2h, 1d); stored as an absolute expiry.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION", required_unless_present = "expires_at", conflicts_with = "expires_at")]
    pub ttl: Option<Duration>,
    /// Absolute end of life, RFC 3339 (e.g. 2030-01-01T00:00:00Z).
    #[arg(long, value_name = "RFC3339")]
    pub expires_at: Option<String>,
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

/// Runs `add`.
pub async fn run(opts: AddOpts) -> ExitCode {
    finish(opts.fleet.output.json, execute(&opts)).await
}

async fn execute(opts: &AddOpts) -> Result<(), CliError> {
    let limits = opts.fleet.limits.limits();
    let directive = build(opts)?;
    let note = opts.note.note()?;
    let layout = opts.fleet.layout.layout()?;
    let publisher = opts.fleet.etcd.publisher(layout, limits).await?;
    let publisher = opts.sign.apply(publisher)?;
    let written = publisher.add_noted(directive.clone(), &note).await?;
    let remaining = directive
        .expires_at
        .saturating_duration_since(clock().now());
    let expires_at = directive
        .expires_at_unix_nanos
        .map_or_else(String::new, osproxy_observe::format_rfc3339);
    if opts.fleet.output.json {
        print_json(&json!({
            "revision": written.revision,
            "id": directive.id,
            "replaced": written.replaced,
            "expires_at": expires_at,
        }));
    } else {
        let verb = if written.replaced {
            "replaced"
        } else {
            "added"
        };
        println!(
            "{verb} {} at revision {} (expires {expires_at}, in {})",
            directive.id,
            written.revision,
            format_duration(remaining)
        );
    }
    Ok(())
}

/// The directive the flags describe, through the fleet's decoder.
fn build(opts: &AddOpts) -> Result<TimedDirective, CliError> {
    let mut o = Map::new();
    o.insert("id".into(), opts.id.clone().into());
    o.insert("level".into(), opts.level.clone().into());
    opts.targets.insert_into(&mut o);
    if let Some(s) = opts.sample_per_mille {
        o.insert("sample_per_mille".into(), s.into());
    }
    if opts.ring_buffer {
        o.insert("ring_buffer".into(), true.into());
    }
    if opts.capture {
        o.insert("capture".into(), true.into());
    }
    match (&opts.ttl, &opts.expires_at) {
        (Some(ttl), _) => {
            if ttl.subsec_nanos() != 0 {
                return Err(CliError::usage(
                    RejectReason::InvalidTtl.slug(),
                    "--ttl must be whole seconds",
                ));
            }
            o.insert("ttl_secs".into(), ttl.as_secs().into());
        }
        (None, Some(at)) => {
            o.insert("expires_at".into(), at.clone().into());
        }
        (None, None) => {}
    }
    let bytes = serde_json::to_vec(&Value::Object(o)).map_err(|e| {
        CliError::usage("invalid_input", "cannot encode the directive").caused_by(&e)
    })?;
    let clock = clock();
    let directive =
        decode_directive(&bytes, clock.as_ref(), &opts.fleet.limits.limits()).map_err(|e| {
            let mut err = CliError::usage(e.slug(), format!("directive rejected: {}", e.reason));
            err.hint = Some("see `osproxy-directives add --help` for each flag's rules".into());
            err
        })?;
    if !directive.is_live(clock.now()) {
        return Err(CliError::usage(
            "already_expired",
            "the directive's expiry is in the past",
        ));
    }
    Ok(directive)
}
