//! [`Manifest`]: the prefix layout's list of live directive keys, signed
//! once for the whole prefix (format v2, [`crate::signed`]).
//!
//! Why: in the prefix layout each key is signed on its own, so a signature
//! alone cannot say which keys belong together *now*. Whoever can write to
//! etcd could mix an old, still unexpired signed key with the current ones,
//! or put back a key the operator deleted. The publisher therefore writes,
//! in the same transaction as every change, one signed manifest naming every
//! live directive key with the SHA-256 of its stored value (signature header
//! included); instances that enforce v2 serve a key only when the current
//! manifest lists it with that hash (`not_in_manifest` otherwise), and the
//! manifest's sequence number guards the whole prefix against replay.
//!
//! # Where and what
//! The manifest lives at the key equal to the prefix itself (e.g.
//! `/osproxy/directives/`): inside the watched range, so it arrives in the
//! same watch response as the keys it lists, and never a directive key (an
//! id is never empty). Its value is a v2-signed value whose payload is
//! ```text
//! {"keys":{"<id>":"<64 lowercase hex digits>",…}}
//! ```
//! decoded fail-closed with the strict JSON reader: every id valid, every
//! hash 32 bytes of lowercase hex, at most [`DecodeLimits::max_directives`]
//! entries. Keys are named by their suffix (the directive id), so a
//! manifest cannot name a key outside its prefix.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::json::{self, Json};
use crate::rules::{is_valid_id, DecodeLimits, RejectReason, MAX_ID_LEN};

/// The SHA-256 of a stored value.
pub type ValueHash = [u8; 32];

/// The hash a manifest lists for a stored value (all its bytes).
pub fn value_hash(value: &[u8]) -> ValueHash {
    Sha256::digest(value).into()
}

/// The signed list of a prefix's live keys (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    keys: BTreeMap<String, ValueHash>,
}

impl Manifest {
    /// An empty manifest (nothing may serve).
    pub fn new() -> Self {
        Manifest::default()
    }

    /// Lists the key of directive `id` with the stored `value`.
    pub fn insert(&mut self, id: &str, value: &[u8]) {
        self.keys.insert(id.to_owned(), value_hash(value));
    }

    /// Whether the key of directive `id` may hold `hash`.
    pub fn admits(&self, id: &str, hash: &ValueHash) -> bool {
        self.keys.get(id) == Some(hash)
    }

    /// The listed ids.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// How many keys are listed.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is listed.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The canonical payload (ids in order).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = String::from("{\"keys\":{");
        for (i, (id, hash)) in self.keys.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            // Valid ids need no escaping (`[A-Za-z0-9._:-]`).
            let _ = write!(out, "\"{id}\":\"{}\"", hex(hash));
        }
        out.push_str("}}");
        out.into_bytes()
    }

    /// Decodes a manifest payload, fail-closed (see the module docs).
    ///
    /// # Errors
    /// `too_large`, `invalid_utf8`, the strict reader's faults,
    /// `wrong_type`, `unknown_field`, `missing_field`, `invalid_id`,
    /// `too_many_directives`; a malformed hash is `wrong_type`.
    pub fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<Manifest, RejectReason> {
        // An entry is at most a quoted id, a colon, a quoted hash, a comma.
        let max = limits.max_directives.saturating_mul(MAX_ID_LEN + 72) + 64;
        if bytes.len() > max {
            return Err(RejectReason::TooLarge);
        }
        let text = std::str::from_utf8(bytes).map_err(|_| RejectReason::InvalidUtf8)?;
        let Json::Object(fields) = json::parse(text)? else {
            return Err(RejectReason::WrongType);
        };
        let mut keys = None;
        for (key, value) in fields {
            match (key.as_str(), value) {
                ("keys", Json::Object(entries)) => keys = Some(entries),
                ("keys", _) => return Err(RejectReason::WrongType),
                _ => return Err(RejectReason::UnknownField),
            }
        }
        let entries = keys.ok_or(RejectReason::MissingField)?;
        if entries.len() > limits.max_directives {
            return Err(RejectReason::TooManyDirectives);
        }
        let mut manifest = Manifest::new();
        for (id, hash) in entries {
            if !is_valid_id(&id) {
                return Err(RejectReason::InvalidId);
            }
            let Json::String(hash) = hash else {
                return Err(RejectReason::WrongType);
            };
            let hash = unhex(&hash).ok_or(RejectReason::WrongType)?;
            manifest.keys.insert(id, hash);
        }
        Ok(manifest)
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// 64 lowercase hex digits → 32 bytes.
fn unhex(text: &str) -> Option<ValueHash> {
    let digits = text.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_manifest_round_trips_and_admits_only_listed_hashes() {
        let mut m = Manifest::new();
        m.insert("b", b"value b");
        m.insert("a", b"value a");
        let bytes = m.encode();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.starts_with("{\"keys\":{\"a\":\""), "{text}");
        let again = Manifest::decode(&bytes, &DecodeLimits::default()).unwrap();
        assert_eq!(again, m);
        assert!(again.admits("a", &value_hash(b"value a")));
        assert!(!again.admits("a", &value_hash(b"value b")));
        assert!(!again.admits("c", &value_hash(b"value a")));
        assert_eq!(again.ids().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(
            Manifest::decode(b"{\"keys\":{}}", &DecodeLimits::default()).unwrap(),
            Manifest::new()
        );
    }

    #[test]
    fn a_bad_manifest_is_refused_with_its_slug() {
        let h = "ab".repeat(32);
        let cases: [(String, &str); 9] = [
            ("{".into(), "malformed_json"),
            ("[]".into(), "wrong_type"),
            ("{}".into(), "missing_field"),
            ("{\"keys\":{},\"x\":1}".into(), "unknown_field"),
            (format!("{{\"keys\":[\"{h}\"]}}"), "wrong_type"),
            (format!("{{\"keys\":{{\"a/b\":\"{h}\"}}}}"), "invalid_id"),
            ("{\"keys\":{\"a\":\"AB\"}}".into(), "wrong_type"),
            (
                format!("{{\"keys\":{{\"a\":\"{}\"}}}}", "AB".repeat(32)),
                "wrong_type",
            ),
            (
                format!("{{\"keys\":{{\"a\":\"{h}\",\"a\":\"{h}\"}}}}"),
                "duplicate_key",
            ),
        ];
        for (body, slug) in cases {
            let e = Manifest::decode(body.as_bytes(), &DecodeLimits::default()).unwrap_err();
            assert_eq!(e.slug(), slug, "{body}");
        }
        let limits = DecodeLimits {
            max_directives: 1,
            ..DecodeLimits::default()
        };
        let two = format!("{{\"keys\":{{\"a\":\"{h}\",\"b\":\"{h}\"}}}}");
        assert_eq!(
            Manifest::decode(two.as_bytes(), &limits).unwrap_err(),
            RejectReason::TooManyDirectives
        );
        let huge = vec![b' '; 1_000];
        assert_eq!(
            Manifest::decode(&huge, &limits).unwrap_err(),
            RejectReason::TooLarge
        );
    }
}
