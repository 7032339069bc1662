//! The prefix layout's writes: a whole-prefix replace in one transaction,
//! and single-directive adds and removes.
//!
//! With signed format v2 ([`Publisher::with_signed_format`]) every write
//! also rewrites the prefix's signed manifest (`osproxy_observe::manifest`)
//! at the key equal to the prefix, in the same transaction: its sequence is
//! one above both the live manifest's and the live revision, its list names
//! every directive key that will be live with the hash of its bytes. So an
//! add or a remove is a read-modify-write of the whole prefix (retried like
//! the key layout's edits), and a key the live manifest does not list (put
//! there around the signers) is dropped by the next write, never re-signed.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use etcd_client::{Compare, CompareOp, KeyValue, PutOptions, Txn, TxnOp, TxnOpResponse};
use osproxy_core::Instant;
use osproxy_observe::manifest::Manifest;
use osproxy_observe::signed::payload_of;
use osproxy_observe::{decode_directive, DirectiveSet, PublishNote, TimedDirective};
use tracing::debug;

use super::live::key_string;
use super::write::{compare_base, lease_ttl_secs, retry_pause, settle, with_added, without};
use super::{directive_key, PublishError, Publisher, Written, MAX_ATTEMPTS};

impl Publisher {
    /// Replaces everything under `prefix` with `set` in one transaction
    /// (with signed format v2, also the signed manifest; see the module
    /// docs).
    pub(super) async fn replace_prefix(
        &self,
        prefix: &str,
        set: &DirectiveSet,
        expected: Option<i64>,
        note: &PublishNote,
    ) -> Result<i64, PublishError> {
        let mut payloads = Vec::with_capacity(set.len());
        for d in set.directives() {
            payloads.push((d, self.checked_directive_bytes(d)?));
        }
        let live = self.read().await?;
        let since = compare_base(expected, &live)?;
        let meta = self.signs_v2().then(|| self.next_meta(&live, note));
        // The manifest key is never a directive key: left alone by v1
        // writes, rewritten by every v2 write.
        let by_key: HashMap<&[u8], &KeyValue> = live
            .kvs
            .iter()
            .filter(|kv| kv.key() != prefix.as_bytes())
            .map(|kv| (kv.key(), kv))
            .collect();
        let mut wanted: BTreeMap<Vec<u8>, (Vec<u8>, &TimedDirective)> = BTreeMap::new();
        let mut manifest = Manifest::new();
        for (d, payload) in payloads {
            let key = directive_key(prefix, &d.id).into_bytes();
            let bytes = match &meta {
                // An unchanged key keeps its bytes; the manifest lists them.
                Some(meta) => match by_key.get(key.as_slice()) {
                    Some(kv) if self.holds_v2(kv.value(), &payload) => kv.value().to_vec(),
                    _ => self.seal_v2(&key, &payload, meta),
                },
                None => self.seal(&key, payload),
            };
            manifest.insert(&d.id, &bytes);
            wanted.insert(key, (bytes, d));
        }
        let mut replaced: Vec<&KeyValue> = Vec::new();
        let mut ops: Vec<TxnOp> = Vec::new();
        for kv in by_key.values() {
            if !wanted.contains_key(kv.key()) {
                ops.push(TxnOp::delete(kv.key(), None));
                replaced.push(kv);
            }
        }
        let changed: Vec<(&Vec<u8>, &Vec<u8>, &TimedDirective)> = wanted
            .iter()
            .filter(|(key, (bytes, _))| {
                by_key
                    .get(key.as_slice())
                    .is_none_or(|kv| kv.value() != bytes.as_slice())
            })
            .map(|(key, (bytes, d))| (key, bytes, *d))
            .collect();
        // A v2 write always writes: re-signing with a new sequence is the
        // point (a rollback to the live content must outrank a replay).
        if ops.is_empty() && changed.is_empty() && meta.is_none() {
            return Ok(live.revision);
        }
        let now = self.now();
        let mut leases: BTreeMap<i64, i64> = BTreeMap::new();
        for (key, bytes, d) in changed {
            let ttl = lease_ttl_secs(d, now);
            let lease = match leases.get(&ttl) {
                Some(id) => *id,
                None => match self.grant_lease(ttl).await {
                    Ok(id) => *leases.entry(ttl).or_insert(id),
                    Err(e) => {
                        self.revoke_unattached(leases.values()).await;
                        return Err(e);
                    }
                },
            };
            if let Some(kv) = by_key.get(key.as_slice()) {
                replaced.push(kv);
            }
            ops.push(TxnOp::put(
                key.clone(),
                bytes.clone(),
                Some(PutOptions::new().with_lease(lease)),
            ));
        }
        if let Some(meta) = &meta {
            let value = self.seal_v2(prefix.as_bytes(), &manifest.encode(), meta);
            ops.push(TxnOp::put(prefix, value, None));
        }
        ops.push(self.marker_put(note));
        let txn = Txn::new()
            .when(self.guard(since))
            .and_then(ops)
            .or_else(self.conflict_probe());
        let outcome = match self.commit("publish", txn, live.revision).await {
            // The keys may be written and bound to these leases: keep them.
            Err(e @ PublishError::OutcomeUnknown { .. }) => return Err(e),
            Err(e) => Err(e),
            Ok(resp) => settle(&resp, since),
        };
        match outcome {
            Ok(revision) => {
                let new: BTreeSet<i64> = leases.values().copied().collect();
                let old: BTreeSet<i64> = replaced
                    .iter()
                    .map(|kv| kv.lease())
                    .filter(|id| *id != 0 && !new.contains(id))
                    .collect();
                self.revoke_if_unused(old).await;
                Ok(revision)
            }
            Err(e) => {
                // Definitely not applied: the new leases hold no key.
                self.revoke_unattached(leases.values()).await;
                Err(e)
            }
        }
    }

    /// Puts `<prefix><id>`. With `since`, only if that key is as it was at
    /// revision `since` (see [`Publisher::add_noted_since`]).
    pub(super) async fn add_to_prefix(
        &self,
        prefix: &str,
        directive: &TimedDirective,
        note: &PublishNote,
        since: Option<i64>,
    ) -> Result<Written, PublishError> {
        if self.signs_v2() {
            return self
                .edit_prefix_v2(prefix, "add", note, |live, now| {
                    with_added(live, directive, now)
                })
                .await;
        }
        let key = directive_key(prefix, &directive.id);
        let bytes = self.seal(key.as_bytes(), self.checked_directive_bytes(directive)?);
        let (before, guard) = match since {
            None => (self.revision().await?, Vec::new()),
            Some(since) => {
                let (before, compare) = self.key_unchanged_since(&key, since).await?;
                (before, vec![compare])
            }
        };
        let lease = self
            .grant_lease(lease_ttl_secs(directive, self.now()))
            .await?;
        let put = TxnOp::put(
            key.as_str(),
            bytes,
            Some(PutOptions::new().with_lease(lease).with_prev_key()),
        );
        let txn = Txn::new()
            .when(guard)
            .and_then([put, self.marker_put(note)]);
        let resp = match self.commit("add", txn, before).await {
            Ok(resp) if !resp.succeeded() => {
                self.revoke_unattached([lease].iter()).await;
                return Err(PublishError::Conflict {
                    expected: since.unwrap_or(before),
                    actual: resp.header().map_or(0, |h| h.revision()),
                });
            }
            Ok(resp) => resp,
            Err(e @ PublishError::OutcomeUnknown { .. }) => return Err(e),
            Err(e) => {
                self.revoke_unattached([lease].iter()).await;
                return Err(e);
            }
        };
        let previous = resp.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Put(p) => p.prev_key().map(KeyValue::lease),
            _ => None,
        });
        if let Some(old) = previous.filter(|id| *id != 0 && *id != lease) {
            self.revoke_if_unused([old]).await;
        }
        Ok(Written {
            revision: resp.header().map_or(0, |h| h.revision()),
            replaced: previous.is_some(),
        })
    }

    /// Deletes the key holding `id` if it is unchanged since it was read
    /// (retried when it changed); with `since`, once, and only if it is
    /// also unchanged since revision `since` (see
    /// [`Publisher::remove_noted_since`]).
    pub(super) async fn remove_from_prefix(
        &self,
        prefix: &str,
        id: &str,
        note: &PublishNote,
        since: Option<i64>,
    ) -> Result<Written, PublishError> {
        if self.signs_v2() {
            return self
                .edit_prefix_v2(prefix, "remove", note, |live, now| without(live, id, now))
                .await;
        }
        let by_name = directive_key(prefix, id).into_bytes();
        for attempt in 1..=MAX_ATTEMPTS {
            let live = self.read().await?;
            let clock = self.clock.as_ref();
            let found = live
                .kvs
                .iter()
                .find(|kv| kv.key() == by_name.as_slice())
                .or_else(|| {
                    live.kvs.iter().find(|kv| {
                        decode_directive(payload_of(kv.value()), clock, &self.limits)
                            .is_ok_and(|d| d.id == id)
                    })
                });
            let Some(kv) = found else {
                return Err(PublishError::NotFound { id: id.to_owned() });
            };
            if let Some(since) = since.filter(|s| kv.mod_revision() > *s) {
                return Err(PublishError::Conflict {
                    expected: since,
                    actual: kv.mod_revision(),
                });
            }
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    kv.key(),
                    CompareOp::Equal,
                    kv.mod_revision(),
                )])
                .and_then([TxnOp::delete(kv.key(), None), self.marker_put(note)]);
            let resp = self.commit("remove", txn, live.revision).await?;
            if resp.succeeded() {
                if kv.lease() != 0 {
                    self.revoke_if_unused([kv.lease()]).await;
                }
                return Ok(Written {
                    revision: resp.header().map_or(0, |h| h.revision()),
                    replaced: true,
                });
            }
            if let Some(since) = since {
                return Err(PublishError::Conflict {
                    expected: since,
                    actual: resp.header().map_or(0, |h| h.revision()),
                });
            }
            debug!(key = %key_string(kv), "remove lost a race; retrying");
            retry_pause(attempt).await;
        }
        Err(PublishError::Contended {
            attempts: MAX_ATTEMPTS,
        })
    }

    /// The compare that holds while `key` is as it is now, and the live
    /// revision; [`PublishError::Conflict`] when the key changed after
    /// revision `since` already. A key absent now must stay absent (a
    /// create); one present must keep its modification revision.
    async fn key_unchanged_since(
        &self,
        key: &str,
        since: i64,
    ) -> Result<(i64, Compare), PublishError> {
        let live = self.read().await?;
        if since > live.header {
            return Err(PublishError::Conflict {
                expected: since,
                actual: live.revision,
            });
        }
        let compare = match live.kvs.iter().find(|kv| kv.key() == key.as_bytes()) {
            Some(kv) if kv.mod_revision() > since => {
                return Err(PublishError::Conflict {
                    expected: since,
                    actual: kv.mod_revision(),
                })
            }
            Some(kv) => Compare::mod_revision(key, CompareOp::Equal, kv.mod_revision()),
            None => Compare::version(key, CompareOp::Equal, 0),
        };
        Ok((live.revision, compare))
    }

    /// A v2 add or remove: read the live set (as instances serve it, keys
    /// outside the manifest left out, and so deleted by the write), edit
    /// it, replace the prefix against the revision read; retried when
    /// another writer got in between. Refused when the live manifest does
    /// not verify ([`PublishError::Malformed`]): a whole `publish` replaces
    /// it.
    async fn edit_prefix_v2(
        &self,
        prefix: &str,
        op: &'static str,
        note: &PublishNote,
        mut edit: impl FnMut(&DirectiveSet, Instant) -> Result<(DirectiveSet, bool), PublishError>,
    ) -> Result<Written, PublishError> {
        for attempt in 1..=MAX_ATTEMPTS {
            let live = self.read().await?;
            let decoded = self.decode_live(&live);
            // A manifest this publisher cannot verify (another key, not yet
            // in its trust store: see `with_trust_store`) would make every
            // key look unlisted; an edit must not drop them all for that.
            if let Some(r) = decoded.rejected.iter().find(|r| r.key == prefix) {
                return Err(PublishError::Malformed {
                    key: r.key.clone(),
                    revision: live.revision,
                    source: r.error,
                });
            }
            let (next, replaced) = edit(&decoded.set, self.clock.now())?;
            match self
                .replace_prefix(prefix, &next, Some(live.revision), note)
                .await
            {
                Ok(revision) => return Ok(Written { revision, replaced }),
                Err(PublishError::Conflict { .. }) => {
                    debug!(op, "v2 edit lost a race; retrying");
                    retry_pause(attempt).await;
                }
                Err(e) => return Err(e),
            }
        }
        Err(PublishError::Contended {
            attempts: MAX_ATTEMPTS,
        })
    }
}
