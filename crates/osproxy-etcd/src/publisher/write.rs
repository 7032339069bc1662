//! The writes: whole-set publishes and single-directive edits, each one
//! transaction that also puts the revision marker, with the exact bytes
//! checked first and leases tidied only after a confirmed success. The
//! prefix layout's own writes are in `publisher::prefix`.

use std::time::Duration;

use etcd_client::{
    Compare, CompareOp, GetOptions, LeaseTimeToLiveOptions, Txn, TxnOp, TxnOpResponse, TxnResponse,
};
use osproxy_core::Instant;
use osproxy_observe::encode::directive_value;
use osproxy_observe::signed::payload_of;
use osproxy_observe::{
    decode_directive, decode_directive_set_with, encode_directive_set, DirectiveSet, PublishNote,
    TimedDirective,
};
use tokio::time::timeout;

use super::error::write_error;
use super::live::{newest_revision, relative_lifetimes, Live};
use super::{PublishError, Publisher, MAX_ATTEMPTS};
use crate::config::Layout;

/// The outcome of [`Publisher::add`] or [`Publisher::remove`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Written {
    /// The etcd revision of the write.
    pub revision: i64,
    /// For `add`: a directive with this id existed and was replaced. For
    /// `remove`: always true.
    pub replaced: bool,
}

impl Publisher {
    /// Replaces the live set with `set`, in canonical form, recording `note`
    /// (stamped with the time of the write) on the revision marker, if nothing
    /// changed after revision `expected` (`Some(0)`: nothing may be
    /// published yet). With `None`, reads the live revision first and swaps
    /// against that. Returns the revision of the write, or the live revision
    /// when the write would change nothing (then nothing is written).
    ///
    /// In the prefix layout every directive whose bytes change is written to
    /// `<prefix><id>` bound to a lease of its remaining lifetime and the
    /// other keys under the prefix are deleted, all in one transaction.
    ///
    /// # Errors
    /// [`PublishError::Invalid`] when the fleet would reject the bytes;
    /// [`PublishError::Conflict`] when someone else wrote after `expected`;
    /// [`PublishError::OutcomeUnknown`] when the answer was lost;
    /// [`PublishError::ValueTooLarge`] / [`PublishError::TooManyOps`] when
    /// etcd refuses it; a request error otherwise.
    pub async fn publish_noted(
        &self,
        set: &DirectiveSet,
        expected: Option<i64>,
        note: &PublishNote,
    ) -> Result<i64, PublishError> {
        match &self.layout {
            Layout::Key(key) => {
                let payload = self.checked_set_bytes(set)?;
                let live = self.read().await?;
                let since = compare_base(expected, &live)?;
                let bytes = self.seal_key(key, payload, &live, note);
                // (A v2 write always writes: see `publisher::prefix`.)
                if !self.signs_v2() && live.kvs.first().is_some_and(|kv| kv.value() == bytes) {
                    return Ok(live.revision);
                }
                let txn = Txn::new()
                    .when(self.guard(since))
                    .and_then([TxnOp::put(key.as_str(), bytes, None), self.marker_put(note)])
                    .or_else(self.conflict_probe());
                let resp = self.commit("publish", txn, live.revision).await?;
                settle(&resp, since)
            }
            Layout::Prefix(prefix) => self.replace_prefix(prefix, set, expected, note).await,
        }
    }

    /// Adds `directive`, replacing a directive with the same id, recording
    /// `note` on the revision marker.
    ///
    /// Key layout: read, drop expired directives, edit, swap; retried up to
    /// [`MAX_ATTEMPTS`] times when another writer gets in between. Prefix
    /// layout: writes `<prefix><id>` bound to a lease of the directive's
    /// remaining lifetime.
    ///
    /// # Errors
    /// [`PublishError::Invalid`] when the fleet would reject the bytes;
    /// [`PublishError::ForeignRelativeLifetime`] or
    /// [`PublishError::Malformed`] (key layout) when the live value cannot be
    /// rewritten faithfully; [`PublishError::Contended`];
    /// [`PublishError::OutcomeUnknown`]; a request error.
    pub async fn add_noted(
        &self,
        directive: TimedDirective,
        note: &PublishNote,
    ) -> Result<Written, PublishError> {
        match &self.layout {
            Layout::Key(key) => {
                self.edit_key(key, "add", note, |live, now| {
                    with_added(live, &directive, now)
                })
                .await
            }
            Layout::Prefix(prefix) => self.add_to_prefix(prefix, &directive, note, None).await,
        }
    }

    /// Removes the directive with this id, recording `note` on the revision
    /// marker.
    ///
    /// Key layout: read, drop expired directives, edit, swap, retried like
    /// [`add`](Self::add). Prefix layout: deletes the key holding that id
    /// (`<prefix><id>`, or any key under the prefix whose directive has the
    /// id) if it is unchanged since it was read.
    ///
    /// # Errors
    /// [`PublishError::NotFound`]; otherwise as [`add`](Self::add).
    pub async fn remove_noted(
        &self,
        id: &str,
        note: &PublishNote,
    ) -> Result<Written, PublishError> {
        match &self.layout {
            Layout::Key(key) => {
                self.edit_key(key, "remove", note, |live, now| without(live, id, now))
                    .await
            }
            Layout::Prefix(prefix) => self.remove_from_prefix(prefix, id, note, None).await,
        }
    }

    /// [`add_noted`](Self::add_noted) with compare-and-swap against what a
    /// caller showed at revision `since` (the admin page's edits). In the
    /// prefix layout the compare is per key: the directive's key must be
    /// unchanged since `since` (or still absent), whatever happened to other
    /// keys. In the key layout, and with signed format v2 (whose manifest
    /// covers the whole prefix), nothing in the set may have changed since
    /// `since`. Never retried.
    ///
    /// # Errors
    /// [`PublishError::Conflict`] when the compare fails; otherwise as
    /// [`add_noted`](Self::add_noted).
    pub async fn add_noted_since(
        &self,
        directive: TimedDirective,
        since: i64,
        note: &PublishNote,
    ) -> Result<Written, PublishError> {
        match &self.layout {
            Layout::Prefix(prefix) if !self.signs_v2() => {
                self.add_to_prefix(prefix, &directive, note, Some(since))
                    .await
            }
            _ => {
                self.edit_since(since, note, |live, now| with_added(live, &directive, now))
                    .await
            }
        }
    }

    /// [`remove_noted`](Self::remove_noted) with compare-and-swap against
    /// revision `since`, per key in the prefix layout, like
    /// [`add_noted_since`](Self::add_noted_since).
    ///
    /// # Errors
    /// [`PublishError::NotFound`]; [`PublishError::Conflict`]; otherwise as
    /// [`remove_noted`](Self::remove_noted).
    pub async fn remove_noted_since(
        &self,
        id: &str,
        since: i64,
        note: &PublishNote,
    ) -> Result<Written, PublishError> {
        match &self.layout {
            Layout::Prefix(prefix) if !self.signs_v2() => {
                self.remove_from_prefix(prefix, id, note, Some(since)).await
            }
            _ => {
                self.edit_since(since, note, |live, now| without(live, id, now))
                    .await
            }
        }
    }

    /// A whole-set edit written over revision `since`: the live set read,
    /// refused when it cannot be rewritten faithfully (as the key layout's
    /// edits), edited, published with `since` as the compare base.
    async fn edit_since(
        &self,
        since: i64,
        note: &PublishNote,
        edit: impl FnOnce(&DirectiveSet, Instant) -> Result<(DirectiveSet, bool), PublishError>,
    ) -> Result<Written, PublishError> {
        let live = self.live().await?;
        if let Some(r) = live.rejected.into_iter().next() {
            return Err(PublishError::Malformed {
                key: r.key,
                revision: live.revision,
                source: r.error,
            });
        }
        if !live.relative.is_empty() {
            return Err(PublishError::ForeignRelativeLifetime {
                key: self.layout.key().to_owned(),
                count: live.relative.len(),
            });
        }
        if live.revision > since {
            return Err(PublishError::Conflict {
                expected: since,
                actual: live.revision,
            });
        }
        let (next, replaced) = edit(&live.set, self.clock.now())?;
        let revision = self.publish_noted(&next, Some(since), note).await?;
        Ok(Written { revision, replaced })
    }

    /// The canonical bytes of `set`, if the fleet's decoder accepts them.
    pub(super) fn checked_set_bytes(&self, set: &DirectiveSet) -> Result<Vec<u8>, PublishError> {
        let bytes = encode_directive_set(set);
        decode_directive_set_with(&bytes, self.clock.as_ref(), &self.limits)
            .map_err(PublishError::Invalid)?;
        Ok(bytes)
    }

    /// The canonical bytes of one prefix-layout directive, if accepted.
    pub(super) fn checked_directive_bytes(
        &self,
        d: &TimedDirective,
    ) -> Result<Vec<u8>, PublishError> {
        let bytes = directive_bytes(d);
        decode_directive(&bytes, self.clock.as_ref(), &self.limits)
            .map_err(PublishError::Invalid)?;
        Ok(bytes)
    }

    /// "Nothing in the range nor the marker changed after `since`."
    pub(super) fn guard(&self, since: i64) -> Vec<Compare> {
        let range = Compare::mod_revision(self.layout.key(), CompareOp::Less, since + 1);
        let range = if self.layout.is_prefix() {
            range.with_prefix()
        } else {
            range
        };
        vec![
            range,
            Compare::mod_revision(self.layout.revision_key(), CompareOp::Less, since + 1),
        ]
    }

    pub(super) fn marker_put(&self, note: &PublishNote) -> TxnOp {
        let value = note.clone().stamped(self.now()).encode();
        TxnOp::put(self.layout.revision_key(), value, None)
    }

    /// Reads what a failed guard needs to report the live revision.
    pub(super) fn conflict_probe(&self) -> Vec<TxnOp> {
        vec![
            TxnOp::get(
                self.layout.key(),
                Some(self.layout.get_options().with_keys_only()),
            ),
            TxnOp::get(
                self.layout.revision_key(),
                Some(GetOptions::new().with_keys_only()),
            ),
        ]
    }

    /// Sends a write transaction. A lost answer is an unknown outcome, never
    /// a failure to clean up after.
    pub(super) async fn commit(
        &self,
        op: &'static str,
        txn: Txn,
        before: i64,
    ) -> Result<TxnResponse, PublishError> {
        let mut client = self.client.clone();
        match timeout(self.request_timeout, client.txn(txn)).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(write_error(op, before, e)),
            Err(_) => Err(PublishError::OutcomeUnknown {
                op,
                before,
                source: None,
            }),
        }
    }

    /// The read-modify-swap cycle of `add` and `remove` in the key layout.
    async fn edit_key(
        &self,
        key: &str,
        op: &'static str,
        note: &PublishNote,
        mut edit: impl FnMut(&DirectiveSet, Instant) -> Result<(DirectiveSet, bool), PublishError>,
    ) -> Result<Written, PublishError> {
        for attempt in 1..=MAX_ATTEMPTS {
            let live = self.read().await?;
            if let Some(kv) = live.kvs.first() {
                let relative = relative_lifetimes(payload_of(kv.value()), false);
                if !relative.is_empty() {
                    return Err(PublishError::ForeignRelativeLifetime {
                        key: key.to_owned(),
                        count: relative.len(),
                    });
                }
            }
            let decoded = self.decode_live(&live);
            if let Some(r) = decoded.rejected.into_iter().next() {
                return Err(PublishError::Malformed {
                    key: r.key,
                    revision: live.revision,
                    source: r.error,
                });
            }
            let (next, replaced) = edit(&decoded.set, self.clock.now())?;
            let bytes = self.seal_key(key, self.checked_set_bytes(&next)?, &live, note);
            let txn = Txn::new()
                .when(self.guard(live.revision))
                .and_then([TxnOp::put(key, bytes, None), self.marker_put(note)])
                .or_else(self.conflict_probe());
            let resp = self.commit(op, txn, live.revision).await?;
            match settle(&resp, live.revision) {
                Ok(revision) => return Ok(Written { revision, replaced }),
                Err(PublishError::Conflict { .. }) => retry_pause(attempt).await,
                Err(e) => return Err(e),
            }
        }
        Err(PublishError::Contended {
            attempts: MAX_ATTEMPTS,
        })
    }

    pub(super) async fn grant_lease(&self, ttl_secs: i64) -> Result<i64, PublishError> {
        let mut client = self.client.clone();
        let resp = self
            .request("grant lease", client.lease_grant(ttl_secs, None))
            .await?;
        Ok(resp.id())
    }

    /// Revokes leases granted for a write that was definitely not applied
    /// (no key is bound to them). Best effort: they expire anyway.
    pub(super) async fn revoke_unattached(&self, leases: impl Iterator<Item = &i64>) {
        for id in leases {
            let mut client = self.client.clone();
            let _ = self.request("revoke lease", client.lease_revoke(*id)).await;
        }
    }

    /// Revokes each lease that no key uses any more (a lease another tool
    /// shares with other keys is left alone). Best effort.
    pub(super) async fn revoke_if_unused(&self, leases: impl IntoIterator<Item = i64>) {
        for id in leases {
            let mut client = self.client.clone();
            let options = LeaseTimeToLiveOptions::new().with_keys();
            let unused = match self
                .request("lease ttl", client.lease_time_to_live(id, Some(options)))
                .await
            {
                Ok(r) => r.ttl() > 0 && r.keys().is_empty(),
                Err(_) => false,
            };
            if unused {
                let _ = self.request("revoke lease", client.lease_revoke(id)).await;
            }
        }
    }
}

/// The edit behind `add`: the live directives still alive at `now`, with
/// `directive` in place of any of the same id; and whether it replaced one.
/// Also what the admin page's add previews and writes.
///
/// # Errors
/// [`PublishError::Invalid`] when the result is not a valid set.
pub fn with_added(
    live: &DirectiveSet,
    directive: &TimedDirective,
    now: Instant,
) -> Result<(DirectiveSet, bool), PublishError> {
    let replaced = live.get(&directive.id).is_some();
    let mut list: Vec<TimedDirective> = live
        .directives()
        .iter()
        .filter(|d| d.is_live(now) && d.id != directive.id)
        .cloned()
        .collect();
    list.push(directive.clone());
    let next = DirectiveSet::try_from_directives(list).map_err(PublishError::Invalid)?;
    Ok((next, replaced))
}

/// The edit behind `remove`: the live directives still alive at `now`
/// without `id`. Also what the admin page's end previews and writes.
///
/// # Errors
/// [`PublishError::NotFound`] when the live set has no such id;
/// [`PublishError::Invalid`] when the result is not a valid set.
pub fn without(
    live: &DirectiveSet,
    id: &str,
    now: Instant,
) -> Result<(DirectiveSet, bool), PublishError> {
    if live.get(id).is_none() {
        return Err(PublishError::NotFound { id: id.to_owned() });
    }
    let list = live
        .directives()
        .iter()
        .filter(|d| d.is_live(now) && d.id != id)
        .cloned()
        .collect();
    let next = DirectiveSet::try_from_directives(list).map_err(PublishError::Invalid)?;
    Ok((next, true))
}

/// The revision a write compares against: `expected` when given (it must
/// not be older than the live revision nor newer than the cluster), else the
/// live revision.
pub(super) fn compare_base(expected: Option<i64>, live: &Live) -> Result<i64, PublishError> {
    match expected {
        None => Ok(live.revision),
        Some(x) if x < live.revision || x > live.header => Err(PublishError::Conflict {
            expected: x,
            actual: live.revision,
        }),
        Some(x) => Ok(x),
    }
}

/// The revision of a successful swap, or the conflict its probe read.
pub(super) fn settle(resp: &TxnResponse, expected: i64) -> Result<i64, PublishError> {
    if resp.succeeded() {
        return Ok(resp.header().map_or(0, |h| h.revision()));
    }
    let actual = resp
        .op_responses()
        .into_iter()
        .filter_map(|r| match r {
            TxnOpResponse::Get(g) => Some(newest_revision(g.kvs())),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    Err(PublishError::Conflict { expected, actual })
}

/// The key of a directive in the prefix layout.
pub fn directive_key(prefix: &str, id: &str) -> String {
    format!("{prefix}{id}")
}

/// The canonical single-directive object, as stored in the prefix layout.
fn directive_bytes(d: &TimedDirective) -> Vec<u8> {
    // Serialising a `Value` of strings, numbers and booleans cannot fail.
    serde_json::to_vec(&directive_value(d)).unwrap_or_default()
}

/// The lease of a directive: its remaining lifetime, rounded up to whole
/// seconds, at least 1 s (etcd raises short leases to its own minimum).
pub(super) fn lease_ttl_secs(d: &TimedDirective, now_unix_nanos: u64) -> i64 {
    let remaining = d
        .expires_at_unix_nanos
        .unwrap_or_default()
        .saturating_sub(now_unix_nanos);
    let secs = remaining.div_ceil(1_000_000_000).max(1);
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// A short, jittered pause before another read-modify-swap attempt, so
/// writers that collided do not collide again in lockstep.
pub(super) async fn retry_pause(attempt: u32) {
    let base = 10 * u64::from(attempt);
    let jitter = rand::random_range(0..=base);
    tokio::time::sleep(Duration::from_millis(base + jitter)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use osproxy_core::{Clock, ManualClock};
    use osproxy_observe::DecodeLimits;

    fn directive(ttl: u64, clock: &ManualClock) -> TimedDirective {
        let body = format!(r#"{{"id":"a","level":"Shape","ttl_secs":{ttl}}}"#);
        decode_directive(body.as_bytes(), clock, &DecodeLimits::default()).unwrap()
    }

    #[test]
    fn lease_covers_the_remaining_lifetime_rounded_up() {
        let clock = ManualClock::new();
        let d = directive(10, &clock);
        assert_eq!(lease_ttl_secs(&d, clock.unix_nanos()), 10);
        clock.advance(Duration::from_millis(2_500));
        assert_eq!(lease_ttl_secs(&d, clock.unix_nanos()), 8);
        clock.advance(Duration::from_secs(60));
        assert_eq!(lease_ttl_secs(&d, clock.unix_nanos()), 1, "never zero");
    }

    #[test]
    fn prefix_values_are_canonical_single_directives() {
        let clock = ManualClock::new();
        let d = directive(60, &clock);
        let bytes = directive_bytes(&d);
        let again = decode_directive(&bytes, &clock, &DecodeLimits::default()).unwrap();
        assert_eq!(again, d);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains("expires_at"), "{text}");
        assert!(!text.contains("ttl_secs"), "{text}");
        assert_eq!(directive_key("/p/", "a"), "/p/a");
    }
}
