//! [`PublishNote`]: who published a change, why, and when — the metadata a
//! publisher records beside a write, decoded fail-closed by
//! [`decode_publish_note`].
//!
//! Why a type of its own and not fields of the directive set: a note says
//! something about a *write*, not about what instances apply. The etcd
//! publisher stores it in the value of its revision marker key (written in
//! the same transaction as every change, deletes included), which instances
//! never read; so a note changes nothing an instance decodes and a fleet of
//! mixed versions keeps applying every publish.
//!
//! # Wire format
//! A JSON object with three optional keys, written in alphabetical order:
//!
//! | key | value |
//! |---|---|
//! | `author` | 1–[`MAX_AUTHOR_LEN`] chars of `[A-Za-z0-9 ._@+-]` (a user name, an e-mail address) |
//! | `published_at` | RFC 3339 UTC timestamp of the write (the publisher's clock) |
//! | `reason` | 1–[`MAX_REASON_LEN`] chars of any text without control characters |
//!
//! Decoding uses the same strict JSON reader as directive sets: an unknown
//! or duplicated key, a wrong type, a value breaking its rule or a body over
//! [`MAX_NOTE_BYTES`] is a [`NoteError`] with a stable, value-free slug.

use std::fmt;

use crate::encode::format_rfc3339;
use crate::json::{self, Json};
use crate::rules::RejectReason;

/// Longest accepted `author`, in characters.
pub const MAX_AUTHOR_LEN: usize = 128;
/// Longest accepted `reason`, in characters.
pub const MAX_REASON_LEN: usize = 512;
/// Largest accepted encoded note, in bytes.
pub const MAX_NOTE_BYTES: usize = 4096;

/// Who published a change, why and when. Every field is optional; the only
/// way to set one is through its validating method.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PublishNote {
    author: Option<String>,
    reason: Option<String>,
    published_at_unix_nanos: Option<u64>,
}

/// Why a note was rejected. Each reason has a stable slug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    /// The body is not a well-formed note object: its JSON fault
    /// (`malformed_json`, `duplicate_key`, `unknown_field`, `wrong_type`,
    /// `too_large`, …).
    #[error("publish note rejected: {}", .0.slug())]
    Structure(RejectReason),
    /// `author` is empty, too long or has a character outside its set.
    #[error("publish note rejected: invalid_author")]
    InvalidAuthor,
    /// `reason` is empty, too long or holds a control character.
    #[error("publish note rejected: invalid_reason")]
    InvalidReason,
    /// `published_at` is not an RFC 3339 timestamp.
    #[error("publish note rejected: invalid_published_at")]
    InvalidPublishedAt,
}

impl NoteError {
    /// A stable, value-free slug.
    pub fn slug(&self) -> &'static str {
        match self {
            NoteError::Structure(r) => r.slug(),
            NoteError::InvalidAuthor => "invalid_author",
            NoteError::InvalidReason => "invalid_reason",
            NoteError::InvalidPublishedAt => "invalid_published_at",
        }
    }
}

impl From<RejectReason> for NoteError {
    fn from(r: RejectReason) -> Self {
        NoteError::Structure(r)
    }
}

impl PublishNote {
    /// A note with nothing in it.
    pub fn new() -> Self {
        PublishNote::default()
    }

    /// Records `author`.
    ///
    /// # Errors
    /// [`NoteError::InvalidAuthor`] when it breaks the rule (see the module
    /// docs).
    pub fn with_author(mut self, author: &str) -> Result<Self, NoteError> {
        if !is_valid_author(author) {
            return Err(NoteError::InvalidAuthor);
        }
        self.author = Some(author.to_owned());
        Ok(self)
    }

    /// Records `reason`.
    ///
    /// # Errors
    /// [`NoteError::InvalidReason`] when it breaks the rule (see the module
    /// docs).
    pub fn with_reason(mut self, reason: &str) -> Result<Self, NoteError> {
        if !is_valid_reason(reason) {
            return Err(NoteError::InvalidReason);
        }
        self.reason = Some(reason.to_owned());
        Ok(self)
    }

    /// Records the moment of the write (nanoseconds since the Unix epoch).
    #[must_use]
    pub fn stamped(mut self, unix_nanos: u64) -> Self {
        self.published_at_unix_nanos = Some(unix_nanos);
        self
    }

    /// Who published, if recorded.
    pub fn author(&self) -> Option<&str> {
        self.author.as_deref()
    }

    /// Why, if recorded.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// When, if recorded (nanoseconds since the Unix epoch).
    pub fn published_at_unix_nanos(&self) -> Option<u64> {
        self.published_at_unix_nanos
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.author.is_none() && self.reason.is_none() && self.published_at_unix_nanos.is_none()
    }

    /// The canonical encoding (keys in the documented order, absent fields
    /// left out), which [`decode_publish_note`] accepts.
    pub fn encode(&self) -> Vec<u8> {
        let mut map = serde_json::Map::new();
        if let Some(a) = &self.author {
            map.insert("author".into(), a.clone().into());
        }
        if let Some(r) = &self.reason {
            map.insert("reason".into(), r.clone().into());
        }
        if let Some(t) = self.published_at_unix_nanos {
            map.insert("published_at".into(), format_rfc3339(t).into());
        }
        // A map of strings always serialises.
        serde_json::to_vec(&serde_json::Value::Object(map)).unwrap_or_default()
    }
}

impl fmt::Display for PublishNote {
    /// `by alice (published 2026-…Z): reason`, leaving out what is absent;
    /// `-` when nothing is recorded.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(a) = &self.author {
            parts.push(format!("by {a}"));
        }
        if let Some(r) = &self.reason {
            parts.push(format!("reason: {r}"));
        }
        if parts.is_empty() {
            f.write_str("-")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// Whether `s` is a valid `author`: 1–[`MAX_AUTHOR_LEN`] chars of
/// `[A-Za-z0-9 ._@+-]`.
pub fn is_valid_author(s: &str) -> bool {
    (1..=MAX_AUTHOR_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b" ._@+-_".contains(&b))
}

/// Whether `s` is a valid `reason`: 1–[`MAX_REASON_LEN`] chars, none a
/// control character.
pub fn is_valid_reason(s: &str) -> bool {
    let chars = s.chars().count();
    (1..=MAX_REASON_LEN).contains(&chars) && !s.chars().any(char::is_control)
}

/// Decodes a note, fail-closed (see the module docs).
///
/// # Errors
/// The first fault as a [`NoteError`].
pub fn decode_publish_note(bytes: &[u8]) -> Result<PublishNote, NoteError> {
    if bytes.len() > MAX_NOTE_BYTES {
        return Err(RejectReason::TooLarge.into());
    }
    let text = std::str::from_utf8(bytes).map_err(|_| RejectReason::InvalidUtf8)?;
    note_from_json(json::parse(text)?)
}

/// A note from an already parsed object (the signed format's metadata
/// carries one inside).
pub(crate) fn note_from_json(value: Json) -> Result<PublishNote, NoteError> {
    let Json::Object(fields) = value else {
        return Err(RejectReason::WrongType.into());
    };
    let mut note = PublishNote::new();
    for (key, value) in fields {
        let Json::String(s) = value else {
            return Err(RejectReason::WrongType.into());
        };
        note = match key.as_str() {
            "author" => note.with_author(&s)?,
            "reason" => note.with_reason(&s)?,
            "published_at" => note.stamped(
                crate::decode::parse_rfc3339(&s).map_err(|_| NoteError::InvalidPublishedAt)?,
            ),
            _ => return Err(RejectReason::UnknownField.into()),
        };
    }
    Ok(note)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_round_trips_in_canonical_form() {
        let note = PublishNote::new()
            .with_author("alice@example.com")
            .unwrap()
            .with_reason("incident 42: too noisy <b>")
            .unwrap()
            .stamped(1_700_000_000_123_456_789);
        let bytes = note.encode();
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"author":"alice@example.com","published_at":"2023-11-14T22:13:20.123456789Z","reason":"incident 42: too noisy <b>"}"#
        );
        assert_eq!(decode_publish_note(&bytes).unwrap(), note);
        assert_eq!(decode_publish_note(b"{}").unwrap(), PublishNote::new());
        assert!(PublishNote::new().is_empty());
    }

    #[test]
    fn faults_have_stable_slugs() {
        let cases: [(&[u8], &str); 11] = [
            (br#"{"author":"a","author":"b"}"#, "duplicate_key"),
            (br#"{"autor":"a"}"#, "unknown_field"),
            (br#"{"author":7}"#, "wrong_type"),
            (br#"["a"]"#, "wrong_type"),
            (br#"{"author":""}"#, "invalid_author"),
            (br#"{"author":"a;b"}"#, "invalid_author"),
            (br#"{"reason":"line\nbreak"}"#, "invalid_reason"),
            (br#"{"reason":""}"#, "invalid_reason"),
            (br#"{"published_at":"yesterday"}"#, "invalid_published_at"),
            (b"{", "malformed_json"),
            (b"\xff", "invalid_utf8"),
        ];
        for (body, slug) in cases {
            let e = decode_publish_note(body).unwrap_err();
            assert_eq!(e.slug(), slug, "{}", String::from_utf8_lossy(body));
            assert!(!e.to_string().contains("a;b"), "value-free: {e}");
        }
        let big = format!(r#"{{"reason":"{}"}}"#, "x".repeat(MAX_NOTE_BYTES));
        assert_eq!(
            decode_publish_note(big.as_bytes()).unwrap_err().slug(),
            "too_large"
        );
    }

    #[test]
    fn lengths_are_bounded() {
        assert!(is_valid_author(&"a".repeat(MAX_AUTHOR_LEN)));
        assert!(!is_valid_author(&"a".repeat(MAX_AUTHOR_LEN + 1)));
        assert!(is_valid_author("Jane Doe_2+ops@x.io"));
        assert!(is_valid_reason(&"é".repeat(MAX_REASON_LEN)));
        assert!(!is_valid_reason(&"é".repeat(MAX_REASON_LEN + 1)));
        assert_eq!(
            PublishNote::new().with_reason("\u{7}").unwrap_err().slug(),
            "invalid_reason"
        );
    }
}
