//! [`NoteArgs`]: `--author` and `--reason`, recorded with a write (on the
//! revision marker, see `osproxy_etcd::RecordedNote`) and shown by `history`
//! and `get`.

use clap::Args;
use osproxy_etcd::RecordedNote;
use osproxy_observe::note::is_valid_author;
use osproxy_observe::{format_rfc3339, NoteError, PublishNote};
use serde_json::{json, Value};

use super::CliError;

/// Who writes and why.
#[derive(Args, Clone, Debug, Default)]
#[command(next_help_heading = "Record")]
pub struct NoteArgs {
    /// Who publishes, recorded with the write: 1–128 characters of
    /// [A-Za-z0-9 ._@+-]. Default: $USER, else $LOGNAME (none when unset).
    #[arg(long, value_name = "NAME")]
    pub author: Option<String>,
    /// Why, recorded with the write: up to 512 characters, no control
    /// characters.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

impl NoteArgs {
    /// The note to record. The default author is taken from the environment
    /// only when it is a valid author (otherwise none is recorded).
    ///
    /// # Errors
    /// A usage error (`invalid_author`, `invalid_reason`) for a flag that
    /// breaks its rule.
    pub fn note(&self) -> Result<PublishNote, CliError> {
        let mut note = PublishNote::new();
        let author = match &self.author {
            Some(a) => Some(a.clone()),
            None => default_author(),
        };
        if let Some(a) = author {
            note = note.with_author(&a).map_err(note_error)?;
        }
        if let Some(r) = &self.reason {
            note = note.with_reason(r).map_err(note_error)?;
        }
        Ok(note)
    }
}

/// `$USER`, else `$LOGNAME`, when set and a valid author.
fn default_author() -> Option<String> {
    ["USER", "LOGNAME"]
        .into_iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|a| is_valid_author(a))
}

/// A note that breaks its rules: a usage error with the note's slug.
pub(crate) fn note_error(e: NoteError) -> CliError {
    let mut err = CliError::usage(e.slug(), e.to_string());
    err.hint = Some(
        "--author: 1-128 characters of [A-Za-z0-9 ._@+-]; --reason: 1-512 characters, no control characters; nothing was written"
            .into(),
    );
    err
}

/// A recorded note as JSON: `{"author", "reason", "published_at"}` (each
/// `null` when not recorded) plus `"note_rejected": slug` when the marker
/// does not decode, and `"recorded": false` for a change another tool made.
pub fn note_json(note: &RecordedNote) -> Value {
    let n = note.note();
    let mut v = json!({
        "recorded": !matches!(note, RecordedNote::Unknown),
        "author": n.and_then(PublishNote::author),
        "reason": n.and_then(PublishNote::reason),
        "published_at": n.and_then(PublishNote::published_at_unix_nanos).map(format_rfc3339),
    });
    if let RecordedNote::Rejected(e) = note {
        v["note_rejected"] = e.slug().into();
    }
    v
}

/// A recorded note for humans: `by alice at 2026-…Z: reason`, `-` when
/// nothing is known.
pub fn note_text(note: &RecordedNote) -> String {
    match note {
        RecordedNote::Unknown => "not written by osproxy-directives (no author recorded)".into(),
        RecordedNote::Rejected(e) => format!("note rejected ({})", e.slug()),
        RecordedNote::Recorded(n) => {
            let mut parts = Vec::new();
            if let Some(a) = n.author() {
                parts.push(format!("by {a}"));
            }
            if let Some(t) = n.published_at_unix_nanos() {
                parts.push(format!("at {}", format_rfc3339(t)));
            }
            let head = if parts.is_empty() {
                "-".to_owned()
            } else {
                parts.join(" ")
            };
            match n.reason() {
                Some(r) => format!("{head}: {r}"),
                None => head,
            }
        }
    }
}
