//! [`AppliedState`]: the watcher's record of what it has applied, key by key,
//! and the composition of the served [`DirectiveSet`] from it.
//!
//! Why per key: each key keeps its *last good* decoded value, so a malformed
//! publish is rejected alone while the previous value keeps serving (SPEC §5.3,
//! §5.10). And each key remembers the exact value and revisions it decoded, so
//! a re-read after a reconnect that finds the same revision neither re-decodes
//! (which would re-anchor `ttl_secs` expiries, SPEC §5.7) nor re-swaps the
//! snapshot.

use std::collections::BTreeMap;
use std::sync::Arc;

use osproxy_core::Clock;
use osproxy_observe::signed::{open_value, signing_key_id};
use osproxy_observe::{
    decode_directive, decode_directive_set_with, DecodeError, DecodeLimits, DirectiveSet,
    RejectReason, TrustStore,
};

use super::shared::{DecodeInput, Decoded, SharedDecodes};
use super::types::Kv;
use crate::status::Rejection;

/// `set` stamped with an etcd revision (never negative in practice).
fn stamp(set: DirectiveSet, revision: i64) -> DirectiveSet {
    match u64::try_from(revision) {
        Ok(r) if r > 0 => set.with_revision(r),
        _ => set,
    }
}

/// One key as last seen.
#[derive(Debug)]
struct Entry {
    mod_revision: i64,
    create_revision: i64,
    value: Vec<u8>,
    /// The newest value that decoded, as the decoder built it (index
    /// included): in the single-key layout it is served as is.
    good: Option<Arc<DirectiveSet>>,
    /// The newest value's rejection, when it did not decode.
    rejected: Option<DecodeError>,
}

/// What a change did to the served set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Nothing to re-publish.
    Unchanged,
    /// The composed set may differ: rebuild and swap.
    Changed,
}

/// What the watcher has applied.
#[derive(Debug)]
pub(crate) struct AppliedState {
    prefix_layout: bool,
    limits: DecodeLimits,
    /// With a trust store, only values signed by a trusted key apply
    /// (SPEC §9); without, a signed value's payload applies unchecked.
    trust: Option<Arc<TrustStore>>,
    entries: BTreeMap<Vec<u8>, Entry>,
    /// Highest modification revision of any applied change.
    revision: i64,
    /// Rejections found while composing (duplicate ids across keys).
    compose_rejections: Vec<Rejection>,
    /// The empty set, shared so that "still empty" is the same `Arc`.
    empty: Arc<DirectiveSet>,
    /// The decodes this store shares with the others on its clock, if any.
    shared: Option<Arc<SharedDecodes>>,
}

impl AppliedState {
    pub(crate) fn new(prefix_layout: bool, limits: DecodeLimits) -> Self {
        AppliedState {
            prefix_layout,
            limits,
            trust: None,
            entries: BTreeMap::new(),
            revision: 0,
            compose_rejections: Vec::new(),
            empty: Arc::new(DirectiveSet::new()),
            shared: None,
        }
    }

    /// Decodes through `shared`: a key revision another store on the same
    /// clock decoded is not decoded again (see [`SharedDecodes`]).
    pub(crate) fn share_decodes(&mut self, shared: Arc<SharedDecodes>) {
        self.shared = Some(shared);
    }

    /// Applies only values signed by a key in `trust` from now on.
    pub(crate) fn set_trust(&mut self, trust: Option<Arc<TrustStore>>) {
        self.trust = trust;
    }

    /// The newest applied change's revision.
    pub(crate) fn revision(&self) -> i64 {
        self.revision
    }

    /// How many keys the applied state holds (good or rejected).
    pub(crate) fn key_count(&self) -> usize {
        self.entries.len()
    }

    /// Forgets the applied revision before a read from a rebuilt cluster,
    /// whose revisions start afresh (the read sets it again).
    pub(crate) fn forget_revision(&mut self) {
        self.revision = 0;
    }

    /// Replaces everything with a fresh read. Keys whose value and revisions
    /// did not change keep their decoded directives (and their anchors).
    /// Takes the read whole: each value moves into its entry, uncopied.
    pub(crate) fn replace_all(
        &mut self,
        kvs: Vec<Kv>,
        clock: &dyn Clock,
        rejected: &mut Vec<RejectReason>,
    ) -> Outcome {
        let mut changed = Outcome::Unchanged;
        let mut keep = std::collections::BTreeSet::new();
        for kv in kvs {
            keep.insert(kv.key.clone());
            if self.put(kv, clock, rejected) == Outcome::Changed {
                changed = Outcome::Changed;
            }
        }
        let before = self.entries.len();
        self.entries.retain(|k, _| keep.contains(k));
        if self.entries.len() != before {
            // Some key vanished while we were away: a delete we never saw.
            changed = Outcome::Changed;
        }
        changed
    }

    /// Applies a put of `kv` (its key and value move into the entry).
    pub(crate) fn put(
        &mut self,
        kv: Kv,
        clock: &dyn Clock,
        rejected: &mut Vec<RejectReason>,
    ) -> Outcome {
        self.revision = self.revision.max(kv.mod_revision);
        let previous = self.entries.get(&kv.key);
        if let Some(p) = previous {
            if p.mod_revision == kv.mod_revision
                && p.create_revision == kv.create_revision
                && p.value == kv.value
            {
                return Outcome::Unchanged;
            }
        }
        let decoded = match open_value(&kv.value, &kv.key, self.trust.as_deref()) {
            // The signature is this store's to check (its trust store); the
            // decode of what it opened is shared.
            Err(e) => Err(e.into()),
            Ok(payload) => match &self.shared {
                Some(shared) => shared.get_or_decode(
                    &DecodeInput {
                        prefix_layout: self.prefix_layout,
                        limits: self.limits,
                        key: &kv.key,
                        mod_revision: kv.mod_revision,
                        create_revision: kv.create_revision,
                        value: payload,
                    },
                    || self.decode(payload, kv.mod_revision, clock),
                ),
                None => self.decode(payload, kv.mod_revision, clock),
            },
        };
        let previous_good = previous.and_then(|p| p.good.clone());
        let decoded = decoded.map(|d| self.stamp_key_id(d, &kv.value));
        let entry = match decoded {
            Ok(directives) => Entry {
                mod_revision: kv.mod_revision,
                create_revision: kv.create_revision,
                value: kv.value,
                good: Some(directives),
                rejected: None,
            },
            Err(e) => {
                rejected.push(e.reason);
                Entry {
                    mod_revision: kv.mod_revision,
                    create_revision: kv.create_revision,
                    value: kv.value,
                    good: previous_good,
                    rejected: Some(e),
                }
            }
        };
        self.entries.insert(kv.key, entry);
        Outcome::Changed
    }

    /// `set` stamped with the id of the key whose signature this store
    /// verified on `value` (only with a trust store: without one nothing was
    /// verified), so what is recorded under it can name the key. A copy of
    /// the shared decode, made once per applied change.
    fn stamp_key_id(&self, set: Arc<DirectiveSet>, value: &[u8]) -> Arc<DirectiveSet> {
        match (&self.trust, signing_key_id(value)) {
            (Some(_), Some(id)) if set.key_id() != Some(id) => {
                Arc::new(DirectiveSet::clone(&set).with_key_id(id))
            }
            _ => set,
        }
    }

    /// Applies a delete of `key` at `revision`.
    pub(crate) fn delete(&mut self, key: &[u8], revision: i64) -> Outcome {
        self.revision = self.revision.max(revision);
        match self.entries.remove(key) {
            Some(_) => Outcome::Changed,
            None => Outcome::Unchanged,
        }
    }

    /// Decodes one opened value, stamped with the revision it was written at.
    fn decode(&self, value: &[u8], mod_revision: i64, clock: &dyn Clock) -> Decoded {
        let set = if self.prefix_layout {
            decode_directive(value, clock, &self.limits)
                .and_then(|d| DirectiveSet::try_from_directives(vec![d]))?
        } else {
            decode_directive_set_with(value, clock, &self.limits)?
        };
        Ok(Arc::new(stamp(set, mod_revision)))
    }

    /// Builds the set to serve from every key's last good value. In the
    /// prefix layout, a key whose directive id is already taken by an earlier
    /// key is left out and reported (`duplicate_id`).
    ///
    /// In the single-key layout the key's last good set is served exactly as
    /// decoded (no copy, no second index build), and an unchanged last good
    /// set comes back as the same `Arc`, so callers can skip the swap.
    pub(crate) fn compose(&mut self) -> Arc<DirectiveSet> {
        self.compose_rejections.clear();
        if !self.prefix_layout {
            return self
                .entries
                .values()
                .find_map(|e| e.good.clone())
                .unwrap_or_else(|| Arc::clone(&self.empty));
        }
        let mut ids = std::collections::HashSet::new();
        let mut all = Vec::new();
        for (key, entry) in &self.entries {
            let Some(good) = &entry.good else { continue };
            let good = good.directives();
            if good.iter().any(|d| ids.contains(d.id.as_str())) {
                self.compose_rejections.push(Rejection {
                    key: String::from_utf8_lossy(key).into_owned(),
                    revision: entry.mod_revision,
                    reason: RejectReason::DuplicateId.slug(),
                    directive_index: None,
                });
                continue;
            }
            ids.extend(good.iter().map(|d| d.id.as_str()));
            all.extend(good.iter().cloned());
        }
        // One signing key for every key's value: the composed set names it.
        let mut key_ids = self
            .entries
            .values()
            .filter_map(|e| e.good.as_ref())
            .map(|g| g.key_id());
        let first = key_ids.next().flatten();
        let one_key = first.filter(|f| key_ids.all(|k| k == Some(*f)));
        let one_key = one_key.map(str::to_owned);
        // Every directive was validated by the decoder and ids are unique, so
        // this cannot fail; an empty set is the fail-safe answer if it did.
        let set = stamp(
            DirectiveSet::try_from_directives(all).unwrap_or_default(),
            self.revision,
        );
        Arc::new(match one_key {
            Some(id) => set.with_key_id(id),
            None => set,
        })
    }

    /// Every standing rejection.
    pub(crate) fn rejections(&self) -> Vec<Rejection> {
        let mut out: Vec<Rejection> = self
            .entries
            .iter()
            .filter_map(|(key, e)| {
                e.rejected.map(|r| Rejection {
                    key: String::from_utf8_lossy(key).into_owned(),
                    revision: e.mod_revision,
                    reason: r.reason.slug(),
                    directive_index: r.directive_index,
                })
            })
            .collect();
        out.extend(self.compose_rejections.iter().cloned());
        out
    }
}
