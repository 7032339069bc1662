//! `get`: shows the live directive set in etcd — a table with remaining
//! lifetimes and who made the last change (author, time, reason; `history
//! --json` has it for machines) for humans, or with `--json` the canonical encoding, which
//! `publish` accepts verbatim (absolute expiries: re-publishing extends
//! nothing).
//!
//! Two things are shown as instances see them rather than hidden:
//! - a key whose value instances reject (prefix layout) is named with its
//!   reason slug; the other keys are shown;
//! - a directive stored with a relative `ttl_secs` by another tool has no
//!   knowable end here: each instance counts it from when it first read that
//!   revision. The table says `ttl Ns, relative` and `unknown` instead of
//!   inventing an expiry counted from this `get`, and `--json` keeps its
//!   `ttl_secs` (so re-publishing it would start its lifetime again: a warning
//!   says so).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use osproxy_etcd::LiveSet;
use osproxy_observe::encode::to_value;
use osproxy_observe::{DirectiveSet, DirectiveView};
use serde_json::Value;

use super::common::term::{say, warn_say};
use super::common::{clock, finish, note_text, summarize_ids, FleetArgs};
use crate::duration::format_duration;

/// Examples shown in `--help`.
pub const EXAMPLES: &str = "\
Examples:
  osproxy-directives get
  osproxy-directives get --json > live.json     # canonical; `publish live.json` re-publishes it
  osproxy-directives get --prefix /osproxy/directives/

With --json the revision and any warning go to stderr, so stdout stays a
publishable set. A directive another tool stored with ttl_secs shows
`unknown` remaining: instances count it from when they first read it.";

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
        let publisher = opts.fleet.publisher().await?;
        let layout = publisher.layout().clone();
        let (live, recorded) = publisher.live_noted().await?;
        if !layout.is_prefix() {
            // The single value is rejected whole: nothing to show beside it.
            if let Some(r) = live.rejected.first() {
                return Err(osproxy_etcd::PublishError::Malformed {
                    key: r.key.clone(),
                    revision: live.revision,
                    source: r.error,
                }
                .into());
            }
        }
        let notes = notes(&live);
        if opts.fleet.output.json {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", json_set(&live));
            warn_say!("revision {}", live.revision);
            for note in &notes {
                warn_say!("warning: {note}");
            }
        } else {
            say!(
                "{} at revision {}: {}",
                layout.key(),
                live.revision,
                count(live.set.len())
            );
            if live.revision > 0 {
                say!("last change: {}", note_text(&recorded));
            }
            if !live.set.is_empty() {
                say!("{}", table_with(&live.set, &live));
            }
            for note in &notes {
                say!("note: {note}");
            }
        }
        Ok(())
    })
    .await
}

/// The warnings `get` prints under the set.
fn notes(live: &LiveSet) -> Vec<String> {
    let mut notes = Vec::new();
    for r in &live.rejected {
        notes.push(format!(
            "key {} (revision {}) is rejected ({}); instances leave it out",
            r.key,
            r.mod_revision,
            r.error.slug()
        ));
    }
    if !live.relative.is_empty() {
        let ids: Vec<String> = live.relative.keys().cloned().collect();
        notes.push(format!(
            "{} with a relative lifetime (ttl_secs) written by another tool: {}; each instance \
             counts it from when it first read it, so its end is unknown here, and re-publishing \
             it starts it again: replace it with an absolute expires_at",
            count(ids.len()),
            summarize_ids(&ids)
        ));
    }
    notes
}

/// The canonical set, with each relative lifetime kept as `ttl_secs`.
fn json_set(live: &LiveSet) -> Value {
    let mut v = to_value(&live.set);
    if let Some(list) = v.get_mut("directives").and_then(Value::as_array_mut) {
        for d in list {
            let Some(obj) = d.as_object_mut() else {
                continue;
            };
            let ttl = obj
                .get("id")
                .and_then(Value::as_str)
                .and_then(|id| live.relative.get(id))
                .copied();
            if let Some(ttl) = ttl {
                obj.remove("expires_at");
                obj.insert("ttl_secs".into(), ttl.into());
            }
        }
    }
    v
}

/// `no directives`, `1 directive`, `3 directives`.
pub fn count(n: usize) -> String {
    match n {
        0 => "no directives".to_owned(),
        1 => "1 directive".to_owned(),
        n => format!("{n} directives"),
    }
}

/// One row per directive: id, level, targets, sample (per mille), flags,
/// expiry and remaining lifetime, showing relative lifetimes as such.
fn table_with(set: &DirectiveSet, live: &LiveSet) -> String {
    render(set, |id| live.relative.get(id).copied())
}

fn render(set: &DirectiveSet, relative: impl Fn(&str) -> Option<u64>) -> String {
    let rows: Vec<[String; 7]> = set
        .view(clock().as_ref())
        .iter()
        .map(|v| row(v, relative(&v.id)))
        .collect();
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

fn row(v: &DirectiveView, relative_ttl: Option<u64>) -> [String; 7] {
    let targets = v.targets_text(",");
    let flags = v.flag_names();
    let (expires_at, remaining) = match relative_ttl {
        Some(ttl) => (format!("ttl {ttl}s, relative"), "unknown".to_owned()),
        None if v.expired => (v.expires_at.clone(), "expired".to_owned()),
        None => (
            v.expires_at.clone(),
            format_duration(Duration::from_secs(v.remaining_secs)),
        ),
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
        expires_at,
        remaining,
    ]
}
