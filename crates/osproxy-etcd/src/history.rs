//! History, diff and rollback from etcd's MVCC history:
//! [`Publisher::history`], [`Publisher::set_at`], [`Publisher::diff`] and
//! [`Publisher::rollback`].
//!
//! # What a revision of the set is
//! A revision at which the layout changed as the live revision sees it
//! (see [`crate::publisher`]): the key (or any key under the prefix) was
//! put, or the revision marker moved (every write of this publisher,
//! deletes included). The set *as of* revision `R` is what a range read at
//! `R` returns, decoded as instances would serve it.
//!
//! `history` walks back from the live revision with one range read per
//! entry: the state just before entry `R` (a read at `R - 1`) both gives
//! `R`'s changes and names the entry before it. The work is bounded by the
//! limit ([`MAX_HISTORY_LIMIT`]), never by how long etcd's history is.
//! Deletes by other tools move no marker: they are not entries of their
//! own, and show in the changes of the next entry after them.
//!
//! # Compaction
//! etcd keeps history back to its last compaction only. A revision before
//! it is [`PublishError::Compacted`], naming the oldest available revision;
//! `history` stops there and says so ([`History::compacted`]).
//!
//! # Rollback
//! [`Publisher::rollback`] republishes the set as of a revision with
//! compare-and-swap against the live revision, keeping each directive's
//! absolute expiry (nothing is extended) and dropping directives already
//! expired ([`Rollback::expired`]). Its note records the author given and
//! the reason `rollback to R` (followed by the reason given, if any).
//!
//! # Where it lives
//! A reader of etcd's history, so beside the other readers rather than in
//! [`crate::publisher`], the write side; its methods are [`Publisher`]'s
//! only to share its connection (a rollback then writes through it).

use std::collections::BTreeMap;

use etcd_client::WatchOptions;
use osproxy_observe::encode::directive_value;
use osproxy_observe::{DirectiveSet, NoteError, PublishNote};

use crate::error::{is_out_of_range, TransportError};
use crate::publisher::live::{read_range, Live, LiveSet};
use crate::publisher::note::{RecordedNote, SignedNote};
use crate::publisher::{request, PublishError, Publisher};

/// How many entries [`Publisher::history`] returns when not told.
pub const DEFAULT_HISTORY_LIMIT: usize = 20;
/// The most entries [`Publisher::history`] returns (a larger limit is cut
/// to this): each entry costs one range read of the whole set.
pub const MAX_HISTORY_LIMIT: usize = 200;
/// The most bytes of stored values one page of history reads
/// ([`Publisher::history_page`]): past it the page ends (after at least one
/// entry) and [`History::next_before`] says where the next one starts, so a
/// history of large sets costs bounded memory and time per request.
pub const DEFAULT_HISTORY_PAGE_BYTES: usize = 4 * 1024 * 1024;

/// Which directive ids differ between two sets, each list sorted.
/// Directives are compared in canonical form (absolute expiry included).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetChanges {
    /// Ids only in the newer set.
    pub added: Vec<String>,
    /// Ids only in the older set.
    pub removed: Vec<String>,
    /// Ids in both whose canonical form differs.
    pub changed: Vec<String>,
    /// How many ids are in both, unchanged.
    pub unchanged: usize,
}

impl SetChanges {
    /// Compares `old` with `new`.
    pub fn between(old: &DirectiveSet, new: &DirectiveSet) -> SetChanges {
        let canon = |set: &DirectiveSet| {
            set.directives()
                .iter()
                .map(|d| (d.id.clone(), directive_value(d)))
                .collect::<BTreeMap<_, _>>()
        };
        let (old, new) = (canon(old), canon(new));
        let mut diff = SetChanges::default();
        for (id, value) in &new {
            match old.get(id) {
                None => diff.added.push(id.clone()),
                Some(v) if v != value => diff.changed.push(id.clone()),
                Some(_) => diff.unchanged += 1,
            }
        }
        diff.removed = old
            .keys()
            .filter(|id| !new.contains_key(*id))
            .cloned()
            .collect();
        diff
    }

    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// One revision of the set, as [`Publisher::history`] lists it.
#[derive(Clone, Debug)]
pub struct HistoryEntry {
    /// The etcd revision of the change.
    pub revision: i64,
    /// Who, why and when, as recorded by the publisher that wrote it (the
    /// signed note when the value carries one, see [`SignedNote`]).
    pub note: RecordedNote,
    /// The note signed into the value, checked against the marker's.
    pub signed_note: SignedNote,
    /// The set as of this revision, as instances would serve it (and the
    /// keys they would reject, in [`LiveSet::rejected`]).
    pub state: LiveSet,
    /// What this revision changed, against the state just before it; `None`
    /// when that state is compacted away.
    pub changes: Option<SetChanges>,
}

/// The revisions of the set still in etcd's history, newest first.
#[derive(Clone, Debug)]
pub struct History {
    /// The live revision (0 when nothing was ever published).
    pub live_revision: i64,
    /// The entries, newest first.
    pub entries: Vec<HistoryEntry>,
    /// The limit (or the page's byte bound) cut the walk: older revisions
    /// remain.
    pub more: bool,
    /// When [`more`](Self::more): the revision to pass as `before` for the
    /// next page.
    pub next_before: Option<i64>,
    /// The walk reached etcd's compaction: the oldest available revision.
    /// Entries before it are gone.
    pub compacted: Option<i64>,
}

/// The set as of one revision ([`Publisher::set_at`]).
#[derive(Clone, Debug)]
pub struct SetAt {
    /// The revision asked for.
    pub requested: i64,
    /// The set as of it; [`LiveSet::revision`] is the last change at or
    /// before `requested` (0 when there was none).
    pub state: LiveSet,
    /// The note of that change (the signed one when there is one).
    pub note: RecordedNote,
    /// The note signed into the value, checked against the marker's.
    pub signed_note: SignedNote,
}

/// Two states of the set and what differs ([`Publisher::diff`]).
#[derive(Clone, Debug)]
pub struct Diff {
    /// The older state.
    pub from: SetAt,
    /// The newer state (the live one when no second revision was given).
    pub to: SetAt,
    /// From `from` to `to`.
    pub changes: SetChanges,
}

/// The outcome (or, for a dry run, the plan) of [`Publisher::rollback`].
#[derive(Clone, Debug)]
pub struct Rollback {
    /// The revision rolled back to, as asked.
    pub to: i64,
    /// The last change at or before `to`, whose set is republished.
    pub source_revision: i64,
    /// The live revision the write compares against.
    pub base: i64,
    /// What is (or would be) published: the set as of `to` without its
    /// expired directives, every expiry as it was.
    pub set: DirectiveSet,
    /// Ids of the set as of `to` left out because they have expired.
    pub expired: Vec<String>,
    /// From the live set to [`set`](Self::set).
    pub changes: SetChanges,
    /// The note recorded with the write.
    pub note: PublishNote,
    /// `None` for a dry run; else the revision written, or `base` when the
    /// live set already was the rollback's (nothing was written).
    pub revision: Option<i64>,
}

impl Publisher {
    /// The newest `limit` revisions of the set still in etcd's history (at
    /// most [`MAX_HISTORY_LIMIT`], at least 1), newest first, each with its
    /// set, note and changes. See the module docs.
    ///
    /// # Errors
    /// A request error.
    ///
    /// ```no_run
    /// use osproxy_etcd::RecordedNote;
    /// # async fn f(publisher: &osproxy_etcd::Publisher) -> Result<(), osproxy_etcd::PublishError> {
    /// for entry in publisher.history(10).await?.entries {
    ///     let who = match &entry.note {
    ///         RecordedNote::Recorded(note) => note.author().unwrap_or("-").to_owned(),
    ///         _ => "-".to_owned(),
    ///     };
    ///     println!("{} by {who}: {} directives", entry.revision, entry.state.set.len());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn history(&self, limit: usize) -> Result<History, PublishError> {
        self.history_page(None, limit, usize::MAX).await
    }

    /// One page of history: as [`history`](Self::history), but starting at
    /// the last change *before* revision `before` (from the live revision
    /// when `None`), and ending once the values read reach `max_bytes`
    /// (after at least one entry). [`History::next_before`] continues it.
    ///
    /// # Errors
    /// As [`history`](Self::history); [`PublishError::Compacted`] when
    /// `before` itself is compacted away.
    pub async fn history_page(
        &self,
        before: Option<i64>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<History, PublishError> {
        let limit = limit.clamp(1, MAX_HISTORY_LIMIT);
        let live = self.read().await?;
        let mut history = History {
            live_revision: live.revision,
            entries: Vec::new(),
            more: false,
            next_before: None,
            compacted: None,
        };
        let mut at = match before {
            Some(b) if b <= live.revision => self.read_at(b - 1).await?,
            _ => live,
        };
        let mut state = self.decode_live(&at);
        let mut bytes = 0usize;
        while at.revision > 0 {
            if history.entries.len() == limit || (!history.entries.is_empty() && bytes >= max_bytes)
            {
                history.more = true;
                history.next_before = Some(at.revision + 1);
                break;
            }
            bytes = bytes.saturating_add(at.kvs.iter().map(|kv| kv.value().len()).sum());
            let revision = at.revision;
            let before = match self.read_at(revision - 1).await {
                Ok(b) => Some(b),
                Err(PublishError::Compacted { oldest, .. }) => {
                    history.compacted = Some(oldest);
                    None
                }
                Err(e) => return Err(e),
            };
            let before_state = before.as_ref().map(|b| self.decode_live(b));
            let (note, signed_note) = self.note_of(&at, revision);
            history.entries.push(HistoryEntry {
                revision,
                note,
                signed_note,
                changes: before_state
                    .as_ref()
                    .map(|b| SetChanges::between(&b.set, &state.set)),
                state,
            });
            match (before, before_state) {
                (Some(b), Some(s)) => (at, state) = (b, s),
                _ => break,
            }
        }
        Ok(history)
    }

    /// The set as of `revision`: what a range read at it returns, decoded as
    /// instances would serve it.
    ///
    /// # Errors
    /// [`PublishError::Compacted`] (naming the oldest available revision);
    /// [`PublishError::NoSuchRevision`] for a revision below 1 or beyond the
    /// cluster's; a request error.
    pub async fn set_at(&self, revision: i64) -> Result<SetAt, PublishError> {
        if revision < 1 {
            return Err(PublishError::NoSuchRevision {
                requested: revision,
                current: self.read().await?.header,
            });
        }
        let at = self.read_at(revision).await?;
        let (note, signed_note) = self.note_of(&at, at.revision);
        Ok(SetAt {
            requested: revision,
            note,
            signed_note,
            state: self.decode_live(&at),
        })
    }

    /// What differs between the set as of `from` and as of `to` (the live
    /// set when `None`).
    ///
    /// # Errors
    /// As [`set_at`](Self::set_at).
    pub async fn diff(&self, from: i64, to: Option<i64>) -> Result<Diff, PublishError> {
        let from = self.set_at(from).await?;
        let to = match to {
            Some(r) => self.set_at(r).await?,
            None => {
                let live = self.read().await?;
                let (note, signed_note) = self.note_of(&live, live.revision);
                SetAt {
                    requested: live.header,
                    note,
                    signed_note,
                    state: self.decode_live(&live),
                }
            }
        };
        let changes = SetChanges::between(&from.state.set, &to.state.set);
        Ok(Diff { from, to, changes })
    }

    /// Republishes the set as of revision `to` with compare-and-swap against
    /// `expected` (the live revision when `None`), recording `note` with the
    /// reason `rollback to <to>` (then `: ` and the note's own reason). With
    /// `dry_run`, only says what it would write. See the module docs.
    ///
    /// # Errors
    /// As [`set_at`](Self::set_at); [`PublishError::Malformed`] when a value
    /// as of `to` is rejected and [`PublishError::ForeignRelativeLifetime`]
    /// when it holds `ttl_secs` lifetimes (neither can be republished
    /// faithfully); [`PublishError::InvalidNote`] when the reason grows too
    /// long; [`PublishError::Conflict`] when the live revision is not
    /// `expected` or moves before the write; otherwise as
    /// [`publish_noted`](Self::publish_noted).
    ///
    /// ```no_run
    /// use osproxy_observe::PublishNote;
    /// # async fn f(publisher: &osproxy_etcd::Publisher) -> Result<(), osproxy_etcd::PublishError> {
    /// let live = publisher.revision().await?;
    /// let note = PublishNote::new()
    ///     .with_reason("INC-42: the new set records too much")
    ///     .map_err(osproxy_etcd::PublishError::InvalidNote)?;
    /// // First say what it would write, then write it over exactly that live revision.
    /// let plan = publisher.rollback(7, Some(live), &note, true).await?;
    /// println!("{} directives; expired since: {:?}", plan.set.len(), plan.expired);
    /// publisher.rollback(7, Some(live), &note, false).await?;
    /// # Ok(()) }
    /// ```
    pub async fn rollback(
        &self,
        to: i64,
        expected: Option<i64>,
        note: &PublishNote,
        dry_run: bool,
    ) -> Result<Rollback, PublishError> {
        let target = self.set_at(to).await?;
        if let Some(r) = target.state.rejected.into_iter().next() {
            return Err(PublishError::Malformed {
                key: r.key,
                revision: target.state.revision,
                source: r.error,
            });
        }
        if !target.state.relative.is_empty() {
            return Err(PublishError::ForeignRelativeLifetime {
                key: self.layout.key().to_owned(),
                count: target.state.relative.len(),
            });
        }
        let reason = match note.reason() {
            Some(r) => format!("rollback to {to}: {r}"),
            None => format!("rollback to {to}"),
        };
        let note = note
            .clone()
            .with_reason(&reason)
            .map_err(PublishError::InvalidNote)?;
        let live = self.live().await?;
        let base = expected.unwrap_or(live.revision);
        // Not the live revision, older or newer, is a conflict whatever the
        // content: the operator confirmed a rollback over what they saw, and
        // a revision above the live one was never seen by anyone.
        if base != live.revision {
            return Err(PublishError::Conflict {
                expected: base,
                actual: live.revision,
            });
        }
        let now = self.clock.now();
        let (kept, gone): (Vec<_>, Vec<_>) = target
            .state
            .set
            .directives()
            .iter()
            .cloned()
            .partition(|d| d.is_live(now));
        let set = DirectiveSet::try_from_directives(kept).map_err(PublishError::Invalid)?;
        let mut outcome = Rollback {
            to,
            source_revision: target.state.revision,
            base,
            changes: SetChanges::between(&live.set, &set),
            expired: gone.into_iter().map(|d| d.id.clone()).collect(),
            set,
            note,
            revision: None,
        };
        if !dry_run {
            let written = self
                .publish_noted(&outcome.set, Some(base), &outcome.note)
                .await?;
            outcome.revision = Some(written);
        }
        Ok(outcome)
    }

    /// A range read as of `revision`, with etcd's refusals made typed.
    async fn read_at(&self, revision: i64) -> Result<Live, PublishError> {
        if revision < 1 {
            return Ok(Live {
                kvs: Vec::new(),
                revision: 0,
                header: 0,
                cluster_id: 0,
                marker: None,
            });
        }
        let read = read_range(
            &self.client,
            &self.layout,
            self.request_timeout,
            false,
            Some(revision),
        )
        .await;
        match read {
            Err(PublishError::Transport(TransportError::Request { source, .. }))
                if is_out_of_range(&source) =>
            {
                // Compacted, or not reached yet: the current revision tells.
                let current = self.read().await?.header;
                if revision > current {
                    Err(PublishError::NoSuchRevision {
                        requested: revision,
                        current,
                    })
                } else {
                    Err(PublishError::Compacted {
                        requested: revision,
                        oldest: self.oldest_revision(revision).await?,
                    })
                }
            }
            other => other,
        }
    }

    /// The oldest revision etcd still holds, learnt from a watch opened at
    /// `compacted` (a revision known to be compacted): etcd cancels it at
    /// once with its compaction revision.
    async fn oldest_revision(&self, compacted: i64) -> Result<i64, PublishError> {
        let mut client = self.client.clone();
        let options = WatchOptions::new().with_start_revision(compacted);
        let key = self.layout.revision_key();
        let mut stream = request(
            self.request_timeout,
            "watch",
            client.watch(key, Some(options)),
        )
        .await?;
        loop {
            let msg = request(self.request_timeout, "watch", stream.message()).await?;
            match msg {
                Some(m) if m.compact_revision() > 0 => return Ok(m.compact_revision()),
                Some(m) if !m.canceled() => continue,
                _ => {
                    return Err(PublishError::WatchEnded {
                        why: "no compaction revision",
                    })
                }
            }
        }
    }
}

impl From<NoteError> for PublishError {
    fn from(e: NoteError) -> Self {
        PublishError::InvalidNote(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use osproxy_core::ManualClock;
    use osproxy_observe::decode_directive_set;

    fn set(body: &str, clock: &ManualClock) -> DirectiveSet {
        decode_directive_set(body.as_bytes(), clock).unwrap()
    }

    #[test]
    fn changes_are_by_id_in_canonical_form() {
        let clock = ManualClock::new();
        let old = set(
            r#"{"directives":[
                {"id":"keep","level":"Shape","expires_at":"2024-01-01T01:00:00Z"},
                {"id":"edit","level":"Shape","expires_at":"2024-01-01T01:00:00Z"},
                {"id":"drop","level":"Shape","expires_at":"2024-01-01T01:00:00Z"}]}"#,
            &clock,
        );
        clock.advance(std::time::Duration::from_secs(7));
        let new = set(
            r#"{"directives":[
                {"id":"keep","level":"Shape","expires_at":"2024-01-01T01:00:00Z"},
                {"id":"edit","level":"ShapeTiming","expires_at":"2024-01-01T01:00:00Z"},
                {"id":"new","level":"Shape","expires_at":"2024-01-01T01:00:00Z"}]}"#,
            &clock,
        );
        let diff = SetChanges::between(&old, &new);
        assert_eq!(diff.added, ["new"]);
        assert_eq!(diff.removed, ["drop"]);
        assert_eq!(diff.changed, ["edit"]);
        assert_eq!(
            diff.unchanged, 1,
            "a later decode of the same expiry is equal"
        );
        assert!(SetChanges::between(&new, &new).is_empty());
    }
}
