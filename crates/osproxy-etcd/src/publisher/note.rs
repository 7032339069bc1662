//! Notes on writes: every write of the publisher puts its revision marker
//! ([`Layout::revision_key`](crate::config::Layout::revision_key)) in the
//! same transaction, and the marker's value is the write's
//! [`PublishNote`] (author, reason, time of the write). Reading a marker
//! back gives a [`RecordedNote`], decoded fail-closed.
//!
//! The seed-compatible [`Publisher::publish`], [`Publisher::add`] and
//! [`Publisher::remove`] record a note with nothing but the time; the
//! `*_noted` forms take the caller's note.
//!
//! The marker is not signed: whoever can write to etcd can write any note
//! there. A value in signed format v2 carries its note inside what is
//! signed (`osproxy_observe::signed`), so where one verifies (with the
//! publisher's trust store) that note is the one reported, and a marker that
//! says otherwise is flagged ([`SignedNote::Signed`] with `marker_agrees`
//! false).

use etcd_client::KeyValue;
use osproxy_observe::signed::open_signed;
use osproxy_observe::{decode_publish_note, DirectiveSet, NoteError, PublishNote, TimedDirective};

use super::live::{Live, LiveSet};
use super::{PublishError, Publisher, Written};

/// The marker value publishers before notes wrote: what it is, nothing
/// else. It reads back as an empty note.
const LEGACY_MARKER_VALUE: &[u8] = b"osproxy-directives live revision marker";

/// The note recorded with a revision, as read back from the marker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordedNote {
    /// The marker did not move at this revision: the change was written by
    /// another tool (etcdctl, a lease expiring), so nothing is known about
    /// who or why.
    Unknown,
    /// The note written with the change (empty when written by a publisher
    /// that predates notes).
    Recorded(PublishNote),
    /// The marker holds a value that does not decode as a note; the slug
    /// says why. The change itself is unaffected.
    Rejected(NoteError),
}

impl RecordedNote {
    /// The note, when one was recorded and decodes.
    pub fn note(&self) -> Option<&PublishNote> {
        match self {
            RecordedNote::Recorded(n) => Some(n),
            _ => None,
        }
    }

    /// The recorded author, if any.
    pub fn author(&self) -> Option<&str> {
        self.note().and_then(PublishNote::author)
    }

    /// The recorded reason, if any.
    pub fn reason(&self) -> Option<&str> {
        self.note().and_then(PublishNote::reason)
    }

    /// The recorded time of the write, if any.
    pub fn published_at_unix_nanos(&self) -> Option<u64> {
        self.note().and_then(PublishNote::published_at_unix_nanos)
    }
}

/// The note of the change at `revision`, given the marker as read at (or
/// after) it: recorded only when the marker moved at exactly that revision.
pub(crate) fn note_at(marker: Option<&KeyValue>, revision: i64) -> RecordedNote {
    match marker {
        Some(kv) if kv.mod_revision() == revision => decode_marker(kv.value()),
        _ => RecordedNote::Unknown,
    }
}

/// Decodes a marker value.
pub(crate) fn decode_marker(value: &[u8]) -> RecordedNote {
    if value == LEGACY_MARKER_VALUE {
        return RecordedNote::Recorded(PublishNote::new());
    }
    match decode_publish_note(value) {
        Ok(n) => RecordedNote::Recorded(n),
        Err(e) => RecordedNote::Rejected(e),
    }
}

/// The note signed into the value of a revision (signed format v2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignedNote {
    /// The value carries no signed note that verifies (format v1, unsigned,
    /// not written at that revision, or no trust store to check it with).
    Absent,
    /// The value's signed note, reported as the revision's note;
    /// `marker_agrees` is false when the (unsigned) marker names another
    /// author or reason: someone wrote it around the signers.
    Signed {
        /// The signed note.
        note: PublishNote,
        /// Whether the marker's note has the same author and reason.
        marker_agrees: bool,
    },
}

impl Publisher {
    /// The note of the change at `revision` in `live`: the signed one when
    /// the value (key layout) or manifest (prefix layout) written at that
    /// revision carries one that verifies, else the marker's.
    pub(crate) fn note_of(&self, live: &Live, revision: i64) -> (RecordedNote, SignedNote) {
        let marker = note_at(live.marker.as_ref(), revision);
        let signed = self.trust.as_deref().and_then(|trust| {
            let kv = self
                .sequenced(live)
                .filter(|kv| kv.mod_revision() == revision)?;
            open_signed(kv.value(), kv.key(), Some(trust)).ok()?.meta
        });
        match signed {
            None => (marker, SignedNote::Absent),
            Some(meta) => {
                let note = meta.note;
                let marker_agrees =
                    marker.author() == note.author() && marker.reason() == note.reason();
                (
                    RecordedNote::Recorded(note.clone()),
                    SignedNote::Signed {
                        note,
                        marker_agrees,
                    },
                )
            }
        }
    }

    /// [`live`](Self::live), with the note of the live revision.
    ///
    /// # Errors
    /// A request error.
    pub async fn live_noted(&self) -> Result<(LiveSet, RecordedNote), PublishError> {
        let live = self.read().await?;
        let (note, _) = self.note_of(&live, live.revision);
        Ok((self.decode_live(&live), note))
    }

    /// [`publish_noted`](Self::publish_noted) with a note holding only the
    /// time of the write.
    ///
    /// # Errors
    /// As [`publish_noted`](Self::publish_noted).
    pub async fn publish(
        &self,
        set: &DirectiveSet,
        expected: Option<i64>,
    ) -> Result<i64, PublishError> {
        self.publish_noted(set, expected, &PublishNote::new()).await
    }

    /// [`add_noted`](Self::add_noted) with a note holding only the time of
    /// the write.
    ///
    /// # Errors
    /// As [`add_noted`](Self::add_noted).
    ///
    /// ```no_run
    /// use osproxy_core::SystemClock;
    /// use osproxy_observe::{decode_directive, DecodeLimits};
    /// # async fn f(publisher: &osproxy_etcd::Publisher) -> Result<(), osproxy_etcd::PublishError> {
    /// let directive = decode_directive(
    ///     br#"{"id":"acme-timing","level":"ShapeTiming","tenant":"acme","ttl_secs":600}"#,
    ///     &SystemClock,
    ///     &DecodeLimits::default(),
    /// )
    /// .map_err(osproxy_etcd::PublishError::Invalid)?;
    /// let written = publisher.add(directive).await?;
    /// println!("at revision {} (replaced: {})", written.revision, written.replaced);
    /// # Ok(()) }
    /// ```
    pub async fn add(&self, directive: TimedDirective) -> Result<Written, PublishError> {
        self.add_noted(directive, &PublishNote::new()).await
    }

    /// [`remove_noted`](Self::remove_noted) with a note holding only the
    /// time of the write.
    ///
    /// # Errors
    /// As [`remove_noted`](Self::remove_noted).
    ///
    /// ```no_run
    /// # async fn f(publisher: &osproxy_etcd::Publisher) -> Result<(), osproxy_etcd::PublishError> {
    /// match publisher.remove("acme-timing").await {
    ///     Ok(w) => println!("removed at revision {}", w.revision),
    ///     Err(osproxy_etcd::PublishError::NotFound { .. }) => println!("already gone"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn remove(&self, id: &str) -> Result<Written, PublishError> {
        self.remove_noted(id, &PublishNote::new()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_decode_fail_closed_and_legacy_ones_as_empty_notes() {
        assert_eq!(
            decode_marker(LEGACY_MARKER_VALUE),
            RecordedNote::Recorded(PublishNote::new())
        );
        let note = PublishNote::new().with_author("bob").unwrap().stamped(5);
        let read = decode_marker(&note.encode());
        assert_eq!(read.author(), Some("bob"));
        assert_eq!(read.published_at_unix_nanos(), Some(5));
        let RecordedNote::Rejected(e) = decode_marker(br#"{"author":"x","who":"y"}"#) else {
            panic!("an unknown key must be rejected");
        };
        assert_eq!(e.slug(), "unknown_field");
        assert_eq!(note_at(None, 3), RecordedNote::Unknown);
    }
}
