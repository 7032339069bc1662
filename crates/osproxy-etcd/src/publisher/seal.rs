//! Sealing what the publisher writes: signed format v1 or v2
//! (`osproxy_observe::signed`), and the v2 sequence number.
//!
//! Why the sequence is `max(live sequence, live revision) + 1`: it must grow
//! with every write of the key or prefix, and every write compares-and-swaps
//! on the live revision, so two publishers can never both build on the same
//! live value. Taking the live value's own sequence keeps it growing across
//! an etcd rebuilt from a backup (revisions start afresh, the values carry
//! their sequences); taking the live revision keeps it above any value
//! someone wrote around the signers (a garbage value at revision R, or a
//! deleted manifest, cannot reset the sequence below what instances hold).

use etcd_client::KeyValue;
use osproxy_observe::signed::{payload_of, sign_value_v2, signed_meta, signing_key_id};
use osproxy_observe::{PublishNote, SignedFormat, SignedMeta};

use super::live::Live;
use super::Publisher;
use crate::config::Layout;

impl Publisher {
    /// Whether this publisher writes signed format v2.
    pub(super) fn signs_v2(&self) -> bool {
        self.signer.is_some() && self.format == SignedFormat::V2
    }

    /// The value whose sequence the next write must exceed: the key, or
    /// the prefix's manifest.
    pub(super) fn sequenced<'a>(&self, live: &'a Live) -> Option<&'a KeyValue> {
        match &self.layout {
            Layout::Key(_) => live.kvs.first(),
            Layout::Prefix(p) => live.kvs.iter().find(|kv| kv.key() == p.as_bytes()),
        }
    }

    /// The metadata of the next v2 write over `live` (see the module docs).
    pub(super) fn next_meta(&self, live: &Live, note: &PublishNote) -> SignedMeta {
        let live_seq = self
            .sequenced(live)
            .and_then(|kv| signed_meta(kv.value()))
            .map_or(0, |m| m.seq);
        let revision = u64::try_from(live.revision).unwrap_or(0);
        let now = self.now();
        SignedMeta {
            seq: live_seq.max(revision).saturating_add(1),
            signed_at_unix_nanos: now,
            note: note.clone().stamped(now),
        }
    }

    /// `payload` signed in format v2 with `meta` for `key`; unsigned when no
    /// signer is set (callers ask only when [`signs_v2`](Self::signs_v2)).
    pub(super) fn seal_v2(&self, key: &[u8], payload: &[u8], meta: &SignedMeta) -> Vec<u8> {
        match &self.signer {
            Some(signer) => sign_value_v2(signer, key, meta, payload),
            None => payload.to_vec(),
        }
    }

    /// Whether a live prefix key already holds `payload` in format v2,
    /// signed by this publisher's key: then it is kept as is (and listed in
    /// the new manifest) rather than rewritten.
    pub(super) fn holds_v2(&self, live_value: &[u8], payload: &[u8]) -> bool {
        let Some(signer) = &self.signer else {
            return false;
        };
        signed_meta(live_value).is_some()
            && signing_key_id(live_value) == Some(signer.id())
            && payload_of(live_value) == payload
    }

    /// The bytes of a key-layout write: v2 over `live`, else as
    /// [`seal`](Self::seal) makes them.
    pub(super) fn seal_key(
        &self,
        key: &str,
        payload: Vec<u8>,
        live: &Live,
        note: &PublishNote,
    ) -> Vec<u8> {
        if self.signs_v2() {
            let meta = self.next_meta(live, note);
            self.seal_v2(key.as_bytes(), &payload, &meta)
        } else {
            self.seal(key.as_bytes(), payload)
        }
    }
}
