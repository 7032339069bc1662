//! [`AppliedState`]: the watcher's record of what it has applied, key by key,
//! and the composition of the served [`DirectiveSet`] from it.
//!
//! Why per key: each key keeps its *last good* decoded value, so a malformed
//! publish is rejected alone while the previous value keeps serving (SPEC §5.3,
//! §5.10). And each key remembers the exact value and revisions it decoded, so
//! a re-read after a reconnect that finds the same revision neither re-decodes
//! (which would re-anchor `ttl_secs` expiries, SPEC §5.7) nor re-swaps the
//! snapshot.
//!
//! In the prefix layout each key must hold the directive its suffix names
//! (`key_id_mismatch` otherwise), and the key equal to the prefix is never a
//! directive: it holds the signed manifest of signed format v2. With a trust
//! store, anti-rollback ([`super::rollback`]) refuses an old value of the
//! single key (`replayed`), and once a manifest has been accepted a prefix
//! key serves only while the manifest lists its value's hash
//! (`not_in_manifest`). That check runs in [`AppliedState::compose`], after
//! a whole watch response is applied: one transaction's keys and manifest
//! arrive in one response, so a legitimate publish is never judged half
//! applied.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use osproxy_core::Clock;
use osproxy_observe::manifest::{value_hash, Manifest, ValueHash};
use osproxy_observe::signed::{open_signed, signing_key_id, Opened};
use osproxy_observe::{
    decode_directive, decode_directive_set_with, DecodeError, DecodeLimits, DirectiveSet,
    RejectReason, TrustStore,
};

use super::rollback::HighWater;
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
    /// Prefix layout with a trust store: the hash of the value `good` came
    /// from, checked against the signed manifest.
    good_hash: Option<ValueHash>,
    /// The newest value of this key the signed manifest listed, kept while
    /// the manifest still lists it: a value the manifest does not list (an
    /// older one put back) is refused and this one keeps serving.
    admitted: Option<(Arc<DirectiveSet>, ValueHash)>,
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
    /// Prefix layout: the prefix, so that a key whose suffix is not its
    /// directive's id is refused (`key_id_mismatch`). `None`: not checked
    /// (the model simulation's arbitrary keys).
    prefix: Option<Vec<u8>>,
    /// Anti-rollback (signed format v2): the highest sequence accepted for
    /// the key or prefix.
    high: HighWater,
    /// Prefix layout: the last good signed manifest, which gates every key
    /// once there is one (or once the trust store requires v2).
    manifest: Option<Manifest>,
    /// `not_in_manifest` rejections already counted, by key and revision.
    counted: BTreeSet<(Vec<u8>, i64)>,
    /// Rejections found by the last composition and not counted before.
    fresh: Vec<RejectReason>,
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
            prefix: None,
            high: HighWater::default(),
            manifest: None,
            counted: BTreeSet::new(),
            fresh: Vec::new(),
        }
    }

    /// Starts from this high-water mark (read from the state directory).
    pub(crate) fn set_high_water(&mut self, high: HighWater) {
        self.high = high;
    }

    /// Rejections the last [`compose`](Self::compose) found that were not
    /// counted before (`not_in_manifest`), for the rejection counters.
    pub(crate) fn take_fresh_rejections(&mut self) -> Vec<RejectReason> {
        std::mem::take(&mut self.fresh)
    }

    /// Whether `key` is the prefix layout's manifest key (the prefix itself).
    fn is_manifest_key(&self, key: &[u8]) -> bool {
        self.prefix_layout && self.prefix.as_deref() == Some(key)
    }

    /// How old a value may be signed when it is news (see
    /// [`HighWater::judge`]): the longest lifetime and the skew allowance.
    fn max_signature_age(&self) -> std::time::Duration {
        self.limits
            .max_lifetime
            .saturating_add(self.limits.clock_skew_allowance)
    }

    /// Anti-rollback for the single-key layout, with a trust store: a v2
    /// value's sequence against the mark; a v1 value once there is a mark.
    fn guard_single(&self, opened: &Opened<'_>, clock: &dyn Clock) -> Result<(), RejectReason> {
        if self.trust.is_none() || self.prefix_layout {
            return Ok(());
        }
        match &opened.meta {
            Some(meta) => self
                .high
                .judge(meta, clock.unix_nanos(), self.max_signature_age()),
            None if opened.version.is_some() && self.high.get().is_some() => {
                Err(RejectReason::LegacySignature)
            }
            None => Ok(()),
        }
    }

    /// Applies a put of the prefix layout's manifest key: with a trust store
    /// it must be a v2 value, not replayed nor stale, holding a valid
    /// manifest; the last good manifest stays otherwise. Never a directive.
    fn put_manifest(
        &mut self,
        kv: Kv,
        clock: &dyn Clock,
        rejected: &mut Vec<RejectReason>,
    ) -> Outcome {
        let checked = match &self.trust {
            None => Ok(None),
            Some(trust) => open_signed(&kv.value, &kv.key, Some(trust)).and_then(|o| {
                let meta = o.meta.ok_or(RejectReason::LegacySignature)?;
                self.high
                    .judge(&meta, clock.unix_nanos(), self.max_signature_age())?;
                let manifest = Manifest::decode(o.payload, &self.limits)?;
                Ok(Some((meta.seq, manifest)))
            }),
        };
        let rejection = match checked {
            Ok(Some((seq, manifest))) => {
                self.high.raise(seq);
                self.manifest = Some(manifest);
                None
            }
            Ok(None) => None,
            Err(r) => {
                rejected.push(r);
                Some(DecodeError::whole(r))
            }
        };
        self.entries.insert(
            kv.key,
            Entry {
                mod_revision: kv.mod_revision,
                create_revision: kv.create_revision,
                value: kv.value,
                good: None,
                rejected: rejection,
                good_hash: None,
                admitted: None,
            },
        );
        Outcome::Changed
    }

    /// Checks, in the prefix layout, that each key under `prefix` holds the
    /// directive its suffix names.
    pub(crate) fn set_prefix(&mut self, prefix: &str) {
        self.prefix = Some(prefix.as_bytes().to_vec());
    }

    /// `key_id_mismatch` when `key`'s suffix after the prefix is not the id
    /// of the one directive `set` holds. Checked after the (shared) decode:
    /// the decode depends on the bytes only, this on the store's prefix.
    fn check_key_id(&self, key: &[u8], set: &DirectiveSet) -> Result<(), DecodeError> {
        let Some(prefix) = self.prefix.as_deref().filter(|_| self.prefix_layout) else {
            return Ok(());
        };
        let suffix = key.strip_prefix(prefix).unwrap_or(key);
        match set.directives() {
            [d] if d.id.as_bytes() == suffix => Ok(()),
            _ => Err(DecodeError::whole(RejectReason::KeyIdMismatch)),
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
        if self.is_manifest_key(&kv.key) {
            return self.put_manifest(kv, clock, rejected);
        }
        let opened = open_signed(&kv.value, &kv.key, self.trust.as_deref())
            .and_then(|o| self.guard_single(&o, clock).map(|()| o));
        let accepted_seq = opened
            .as_ref()
            .ok()
            .and_then(|o| o.meta.as_ref())
            .map(|m| m.seq);
        let decoded = match opened {
            // The signature is this store's to check (its trust store); the
            // decode of what it opened is shared.
            Err(e) => Err(e.into()),
            Ok(Opened { payload, .. }) => match &self.shared {
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
        let decoded = decoded.and_then(|set| self.check_key_id(&kv.key, &set).map(|()| set));
        let previous = self.entries.get(&kv.key);
        let previous_good = previous.and_then(|p| p.good.clone());
        let previous_hash = previous.and_then(|p| p.good_hash);
        let admitted = previous.and_then(|p| p.admitted.clone());
        let decoded = decoded.map(|d| self.stamp_key_id(d, &kv.value));
        let entry = match decoded {
            Ok(directives) => {
                if !self.prefix_layout {
                    if let Some(seq) = accepted_seq.filter(|_| self.trust.is_some()) {
                        self.high.raise(seq);
                    }
                }
                let gated = self.prefix_layout && self.trust.is_some();
                Entry {
                    mod_revision: kv.mod_revision,
                    create_revision: kv.create_revision,
                    good_hash: gated.then(|| value_hash(&kv.value)),
                    value: kv.value,
                    good: Some(directives),
                    rejected: None,
                    admitted,
                }
            }
            Err(e) => {
                rejected.push(e.reason);
                Entry {
                    mod_revision: kv.mod_revision,
                    create_revision: kv.create_revision,
                    value: kv.value,
                    good: previous_good,
                    rejected: Some(e),
                    good_hash: previous_hash,
                    admitted,
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
        // With a trust store and a signed manifest (or v2 required, or a
        // high-water mark from a manifest seen before), a key serves only
        // when the manifest lists it with its value's hash. Evaluated here,
        // after a whole watch response is applied, so the keys and the
        // manifest of one transaction are judged together.
        let gated = self.trust.as_ref().is_some_and(|t| {
            self.manifest.is_some() || t.requires_signed_v2() || self.high.get().is_some()
        });
        let no_manifest = Manifest::new();
        let manifest = self.manifest.as_ref().unwrap_or(&no_manifest);
        let prefix = self.prefix.as_deref().unwrap_or_default();
        let mut unlisted = BTreeSet::new();
        for (key, entry) in self.entries.iter_mut() {
            let Some(good) = entry.good.clone() else {
                continue;
            };
            let serve = if gated {
                let id = key
                    .strip_prefix(prefix)
                    .and_then(|id| std::str::from_utf8(id).ok());
                let admits = |h: &ValueHash| id.is_some_and(|id| manifest.admits(id, h));
                match entry.good_hash {
                    Some(h) if admits(&h) => {
                        entry.admitted = Some((Arc::clone(&good), h));
                        good
                    }
                    _ => {
                        self.compose_rejections.push(Rejection {
                            key: String::from_utf8_lossy(key).into_owned(),
                            revision: entry.mod_revision,
                            reason: RejectReason::NotInManifest.slug(),
                            directive_index: None,
                        });
                        unlisted.insert((key.clone(), entry.mod_revision));
                        match &entry.admitted {
                            Some((set, h)) if admits(h) => Arc::clone(set),
                            _ => continue,
                        }
                    }
                }
            } else {
                good
            };
            let serve = serve.directives();
            if serve.iter().any(|d| ids.contains(&d.id)) {
                self.compose_rejections.push(Rejection {
                    key: String::from_utf8_lossy(key).into_owned(),
                    revision: entry.mod_revision,
                    reason: RejectReason::DuplicateId.slug(),
                    directive_index: None,
                });
                continue;
            }
            ids.extend(serve.iter().map(|d| d.id.clone()));
            all.extend(serve.iter().cloned());
        }
        let fresh = unlisted.difference(&self.counted).count();
        self.fresh
            .extend(std::iter::repeat_n(RejectReason::NotInManifest, fresh));
        self.counted = unlisted;
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
