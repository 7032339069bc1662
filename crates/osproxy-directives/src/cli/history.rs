//! `history [--limit N]`: the revisions of the key or prefix still in etcd's
//! history, newest first: revision, who and when (when recorded), why, and
//! the directive ids each added, removed or changed. With `--trust-store`,
//! a revision written in signed format v2 shows the note signed into the
//! value (the marker's note is unsigned, anyone with etcd access can write
//! it), and a marker that disagrees is flagged.

use std::process::ExitCode;

use clap::Args;
use osproxy_etcd::{HistoryEntry, SignedNote, DEFAULT_HISTORY_LIMIT, MAX_HISTORY_LIMIT};
use serde_json::json;

use super::common::term::say;
use super::common::{finish, note_json, note_text, print_json, FleetArgs};
use super::get::count;
use crate::diff::SetDiff;

/// Examples shown in `--help`.
pub const EXAMPLES: &str = "\
Examples:
  osproxy-directives history
  osproxy-directives history --limit 5 --json
  osproxy-directives history --prefix /osproxy/directives/

Each line is one revision at which the set changed, newest first, with the
author, time and reason its publisher recorded (none for a change another
tool made). Revisions before etcd's last compaction are gone; the output
says where history ends. `diff REV` and `rollback --to REV` take these
revisions.";

/// Options of `history`.
#[derive(Args, Debug)]
pub struct HistoryOpts {
    /// How many revisions to show, newest first (at most 200).
    #[arg(long, default_value_t = DEFAULT_HISTORY_LIMIT, value_parser = parse_limit, value_name = "N")]
    pub limit: usize,
    /// Check the notes signed into the values (signed format v2) against
    /// this trust store file and show them instead of the unsigned marker's.
    #[arg(long, env = "OSPROXY_TRUST_STORE", value_name = "FILE")]
    pub trust_store: Option<std::path::PathBuf>,
    /// Where the directives live, how to reach etcd, limits and output.
    #[command(flatten)]
    pub fleet: FleetArgs,
}

/// Runs `history`.
pub async fn run(opts: HistoryOpts) -> ExitCode {
    finish(opts.fleet.output.json, async {
        let mut publisher = opts.fleet.publisher().await?;
        if let Some(path) = &opts.trust_store {
            publisher = publisher.with_trust_store(super::trust::read_trust_store(path)?);
        }
        let history = publisher.history(opts.limit).await?;
        let key = publisher.layout().key().to_owned();
        if opts.fleet.output.json {
            let entries: Vec<_> = history.entries.iter().map(entry_json).collect();
            print_json(&json!({
                "key": key,
                "live_revision": history.live_revision,
                "entries": entries,
                "more": history.more,
                "compacted": history.compacted,
            }));
            return Ok(());
        }
        if history.entries.is_empty() {
            say!("{key}: no revisions");
        }
        for e in &history.entries {
            say!("revision {}: {}", e.revision, entry_text(e));
        }
        if history.more {
            say!("(older revisions remain: --limit)");
        }
        if let Some(oldest) = history.compacted {
            say!("history ends at etcd's compaction: the oldest available revision is {oldest}");
        }
        Ok(())
    })
    .await
}

/// `--limit`: 1 to [`MAX_HISTORY_LIMIT`].
fn parse_limit(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=MAX_HISTORY_LIMIT).contains(&n) => Ok(n),
        _ => Err(format!("expected a number from 1 to {MAX_HISTORY_LIMIT}")),
    }
}

fn entry_text(e: &HistoryEntry) -> String {
    let changes = match &e.changes {
        Some(c) => SetDiff::from(c.clone()).summary(),
        None => "changes unknown (the revision before is compacted)".to_owned(),
    };
    let mut line = format!(
        "{}; {changes}; {}",
        count(e.state.set.len()),
        note_text(&e.note)
    );
    match &e.signed_note {
        SignedNote::Absent => {}
        SignedNote::Signed {
            marker_agrees: true,
            ..
        } => line.push_str(" (signed)"),
        SignedNote::Signed {
            marker_agrees: false,
            ..
        } => line.push_str(" (signed; the unsigned marker note differs and is ignored)"),
    }
    if !e.state.rejected.is_empty() {
        line.push_str(&format!("; {} rejected key(s)", e.state.rejected.len()));
    }
    line
}

fn entry_json(e: &HistoryEntry) -> serde_json::Value {
    let changes = e.changes.clone().map(SetDiff::from);
    json!({
        "revision": e.revision,
        "note": note_json(&e.note),
        "note_signed": matches!(e.signed_note, SignedNote::Signed { .. }),
        "marker_note_differs": matches!(e.signed_note, SignedNote::Signed { marker_agrees: false, .. }),
        "directives": e.state.set.len(),
        "ids": e.state.set.directives().iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        "changes": changes,
        "rejected": e.state.rejected.iter().map(|r| json!({"key": r.key, "reason": r.error.slug()})).collect::<Vec<_>>(),
    })
}
