//! `get`: shows the live directive set in etcd — a table with remaining
//! lifetimes for humans, or with `--json` the canonical encoding, which
//! `publish` accepts verbatim (absolute expiries: re-publishing extends
//! nothing).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use osproxy_observe::{encode_directive_set, DirectiveSet, DirectiveView};

use super::common::{clock, finish, FleetArgs};
use crate::duration::format_duration;

/// Examples shown in `--help`.
pub const EXAMPLES: &str = "\
Examples:
  osproxy-directives get
  osproxy-directives get --json > live.json     # canonical; `publish live.json` re-publishes it
  osproxy-directives get --prefix /osproxy/directives/

With --json the revision goes to stderr, so stdout stays a publishable set.";

/// Options of `get`.
#[derive(Args, Debug)]
pub struct GetOpts {
    /// Where the directives live, how to reach etcd, limits and output.
    #[command(flatten)]
    pub fleet: FleetArgs,
}

/// Runs `get`.
pub async fn run(opts: GetOpts) -> ExitCode {
    finish(opts.fleet.output.json, async {
        let layout = opts.fleet.layout.layout()?;
        let publisher = opts
            .fleet
            .etcd
            .publisher(layout.clone(), opts.fleet.limits.limits())
            .await?;
        let (set, revision) = publisher.current().await?;
        if opts.fleet.output.json {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&encode_directive_set(&set));
            let _ = writeln!(out);
            eprintln!("revision {revision}");
        } else {
            println!(
                "{} at revision {revision}: {}",
                layout.key(),
                count(set.len())
            );
            if !set.is_empty() {
                print!("{}", table(&set));
            }
        }
        Ok(())
    })
    .await
}

/// `no directives`, `1 directive`, `3 directives`.
pub fn count(n: usize) -> String {
    match n {
        0 => "no directives".to_owned(),
        1 => "1 directive".to_owned(),
        n => format!("{n} directives"),
    }
}

/// One row per directive: id, level, targets, sample (per mille), flags, expiry and
/// remaining lifetime.
pub fn table(set: &DirectiveSet) -> String {
    let rows: Vec<[String; 7]> = set.view(clock().as_ref()).iter().map(row).collect();
    let header = [
        "ID",
        "LEVEL",
        "TARGETS",
        "PER MILLE",
        "FLAGS",
        "EXPIRES AT",
        "REMAINING",
    ]
    .map(str::to_owned);
    let mut widths = header.clone().map(|h| h.chars().count());
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for r in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn row(v: &DirectiveView) -> [String; 7] {
    let mut targets = Vec::new();
    for (name, value) in [
        ("tenant", &v.tenant),
        ("index", &v.index),
        ("principal", &v.principal),
    ] {
        if let Some(value) = value {
            targets.push(format!("{name}={value}"));
        }
    }
    if let Some(e) = v.endpoint {
        targets.push(format!("endpoint={e}"));
    }
    let targets = if targets.is_empty() {
        "*".to_owned()
    } else {
        targets.join(",")
    };
    let mut flags = Vec::new();
    if v.ring_buffer {
        flags.push("ring_buffer");
    }
    if v.capture {
        flags.push("capture");
    }
    let remaining = if v.expired {
        "expired".to_owned()
    } else {
        format_duration(Duration::from_secs(v.remaining_secs))
    };
    [
        v.id.clone(),
        v.level.to_owned(),
        targets,
        v.sample_per_mille.to_string(),
        if flags.is_empty() {
            "-".to_owned()
        } else {
            flags.join(",")
        },
        v.expires_at.clone(),
        remaining,
    ]
}
