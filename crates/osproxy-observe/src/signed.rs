//! Signed directive values (SPEC §9): [`sign_value`] / [`sign_value_v2`]
//! are the publisher's side, [`open_value`] / [`open_signed`] the
//! instance's. A value in either etcd layout (a whole set under one key, or
//! one directive object per key under a prefix) can carry an Ed25519
//! signature over exactly the bytes the instance then decodes and applies,
//! expiries included.
//!
//! # Wire format, version 1
//! ```text
//! osproxy-signed v1 <key-id> <base64url(signature)>\n<payload>
//! ```
//! One header line, then the payload: the unchanged JSON an unsigned value
//! would hold (`{"directives": [...]}`, or one directive object). The
//! signature is Ed25519 over
//! `"osproxy-directives set v1\0" + <etcd key> + "\0" + <payload>`, so it
//! also binds the value to the key it is stored under: a signed value copied
//! to another key (another environment's key, another directive's key in
//! the prefix layout) does not verify. A JSON value never starts with `o`,
//! so signed and unsigned values cannot be confused.
//!
//! # Wire format, version 2: what is signed also says *when* and *which*
//! Version 1 cannot tell an old value from a new one: whoever can write to
//! etcd can put back a value the operator replaced (a capture set turned off
//! an hour ago) and it verifies. Version 2 (the anchors: TUF's and Uptane's
//! anti-rollback) signs a metadata line too:
//! ```text
//! osproxy-signed v2 <key-id> <base64url(signature)>\n<metadata>\n<payload>
//! ```
//! `<metadata>` is one line of canonical JSON, decoded fail-closed with the
//! strict reader ([`SignedMeta`]):
//! `{"note":{…},"seq":N,"signed_at":"<RFC 3339>"}`, where `seq` only grows
//! for a key (single-key layout) or a prefix, `signed_at` is the signer's
//! clock and `note` is the [`PublishNote`] (author, reason) of the write, so
//! a note shown by `history` cannot be forged without the key. The signature
//! is Ed25519 over
//! `"osproxy-directives set v2\0" + <etcd key> + "\0" + <metadata> + "\0" + <payload>`.
//! Instances keep the highest `seq` they accepted and refuse lower ones
//! (`replayed`); that logic lives with the store (osproxy-etcd), which knows
//! the key or prefix and keeps the high-water mark. In the prefix layout one
//! signed manifest ([`crate::manifest`]) carries the sequence for the whole
//! prefix.
//!
//! # Who checks what
//! - With a [`TrustStore`] (opt-in per instance), an unsigned value is
//!   refused (`unsigned`), a malformed header or metadata line or a
//!   signature that does not verify is `bad_signature`, a key id the store
//!   lacks is `unknown_key`, and a v1 value is `legacy_signature` when the
//!   store [requires v2](TrustStore::requiring_signed_v2).
//! - Without one, a signed value's payload is decoded as if unsigned (the
//!   header is not checked), so signing can be rolled out before it is
//!   enforced.
//!
//! Rollout: instances understand v1 and v2 from this version on, so they are
//! upgraded first; then publishers write v2; then the trust stores require
//! it.

use crate::decode::parse_rfc3339;
use crate::encode::format_rfc3339;
use crate::json::{self, Json};
use crate::keys::{b64, is_valid_key_id, unb64, SignatureFault, SignerKey, TrustStore};
use crate::note::{note_from_json, PublishNote, MAX_NOTE_BYTES};
use crate::rules::RejectReason;

/// The first word of a signed value.
pub const SIGNED_TAG: &str = "osproxy-signed";
/// The signed-value format version 1.
pub const SIGNED_VERSION: &str = "v1";
/// The signed-value format version 2 (with [`SignedMeta`]).
pub const SIGNED_VERSION_2: &str = "v2";
/// Longest header line looked at, in bytes (tag, version, key id, 86-char
/// signature and spaces fit in well under this).
pub const MAX_SIGNED_HEADER: usize = 256;
/// Longest metadata line of a v2 value, in bytes (a note of its maximal
/// size, escaped, and the sequence and time fit in well under this).
pub const MAX_SIGNED_META: usize = 2 * MAX_NOTE_BYTES + 256;

/// Domain separation: a signature made for a set is never one for a token,
/// nor a v1 signature one for v2.
const CONTEXT: &[u8] = b"osproxy-directives set v1\0";
const CONTEXT_V2: &[u8] = b"osproxy-directives set v2\0";

/// Which signed format a publisher writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignedFormat {
    /// Version 1: key and payload only (the default, understood by every
    /// instance that checks signatures).
    #[default]
    V1,
    /// Version 2: also a sequence number, the signing time and the note.
    V2,
}

/// What a v2 value signs besides its key and payload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SignedMeta {
    /// Grows with every write of the key (single-key layout) or prefix.
    pub seq: u64,
    /// When it was signed (nanoseconds since the Unix epoch, signer's clock).
    pub signed_at_unix_nanos: u64,
    /// Who wrote it and why.
    pub note: PublishNote,
}

impl SignedMeta {
    /// The canonical metadata line (without its newline): keys in
    /// alphabetical order, no spaces.
    pub fn encode(&self) -> Vec<u8> {
        let note = self.note.encode();
        let mut out = Vec::with_capacity(note.len() + 64);
        out.extend_from_slice(b"{\"note\":");
        out.extend_from_slice(&note);
        out.extend_from_slice(
            format!(
                ",\"seq\":{},\"signed_at\":\"{}\"}}",
                self.seq,
                format_rfc3339(self.signed_at_unix_nanos)
            )
            .as_bytes(),
        );
        out
    }

    /// Decodes a metadata line, fail-closed: exactly the three keys, a
    /// non-negative integer `seq`, an RFC 3339 `signed_at`, a valid note.
    ///
    /// # Errors
    /// [`RejectReason::BadSignature`] for anything else (a signer never
    /// writes it).
    pub fn decode(bytes: &[u8]) -> Result<SignedMeta, RejectReason> {
        let bad = RejectReason::BadSignature;
        if bytes.len() > MAX_SIGNED_META {
            return Err(bad);
        }
        let text = std::str::from_utf8(bytes).map_err(|_| bad)?;
        let Json::Object(fields) = json::parse(text).map_err(|_| bad)? else {
            return Err(bad);
        };
        let (mut seq, mut at, mut note) = (None, None, None);
        for (key, value) in fields {
            match (key.as_str(), value) {
                ("seq", Json::Number(n)) => seq = Some(n.as_u64().ok_or(bad)?),
                ("signed_at", Json::String(s)) => {
                    at = Some(parse_rfc3339(&s).map_err(|_| bad)?);
                }
                ("note", v @ Json::Object(_)) => note = Some(note_from_json(v).map_err(|_| bad)?),
                _ => return Err(bad),
            }
        }
        match (seq, at, note) {
            (Some(seq), Some(signed_at_unix_nanos), Some(note)) => Ok(SignedMeta {
                seq,
                signed_at_unix_nanos,
                note,
            }),
            _ => Err(bad),
        }
    }
}

/// Signs `payload` in format v1, to be stored under `etcd_key`: the bytes
/// to write.
pub fn sign_value(signer: &SignerKey, etcd_key: &[u8], payload: &[u8]) -> Vec<u8> {
    let signature = signer.sign(&message(etcd_key, payload)).to_bytes();
    let header = format!(
        "{SIGNED_TAG} {SIGNED_VERSION} {} {}\n",
        signer.id(),
        b64(&signature)
    );
    let mut out = Vec::with_capacity(header.len() + payload.len());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(payload);
    out
}

/// Signs `payload` with `meta` in format v2, to be stored under `etcd_key`:
/// the bytes to write.
pub fn sign_value_v2(
    signer: &SignerKey,
    etcd_key: &[u8],
    meta: &SignedMeta,
    payload: &[u8],
) -> Vec<u8> {
    let meta = meta.encode();
    let signature = signer
        .sign(&message_v2(etcd_key, &meta, payload))
        .to_bytes();
    let header = format!(
        "{SIGNED_TAG} {SIGNED_VERSION_2} {} {}\n",
        signer.id(),
        b64(&signature)
    );
    let mut out = Vec::with_capacity(header.len() + meta.len() + 1 + payload.len());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&meta);
    out.push(b'\n');
    out.extend_from_slice(payload);
    out
}

/// Whether `value` carries a signature header.
pub fn is_signed(value: &[u8]) -> bool {
    value.starts_with(SIGNED_TAG.as_bytes()) && value.get(SIGNED_TAG.len()) == Some(&b' ')
}

/// The key id a signed value names, if it is well formed.
pub fn signing_key_id(value: &[u8]) -> Option<&str> {
    split(value).ok().map(|s| s.key_id)
}

/// The metadata of a v2 value, unchecked (no signature verified): for tools
/// that only read, and for the publisher's next sequence number.
pub fn signed_meta(value: &[u8]) -> Option<SignedMeta> {
    split(value)
        .ok()
        .and_then(|p| p.meta)
        .and_then(|m| SignedMeta::decode(m).ok())
}

/// What [`open_signed`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opened<'a> {
    /// The bytes to decode.
    pub payload: &'a [u8],
    /// The value's format: `None` unsigned, `Some(1)` or `Some(2)`.
    pub version: Option<u8>,
    /// A v2 value's metadata (verified when a trust store was given).
    pub meta: Option<SignedMeta>,
}

/// The payload of `value` read from `etcd_key`: checked against `trust`
/// when given, else only unwrapped (see the module docs).
///
/// # Errors
/// [`RejectReason::Unsigned`], [`RejectReason::BadSignature`],
/// [`RejectReason::UnknownKey`], [`RejectReason::LegacySignature`]; without
/// a trust store, only `bad_signature` for a signed value whose header is
/// malformed.
pub fn open_value<'a>(
    value: &'a [u8],
    etcd_key: &[u8],
    trust: Option<&TrustStore>,
) -> Result<&'a [u8], RejectReason> {
    open_signed(value, etcd_key, trust).map(|o| o.payload)
}

/// As [`open_value`], also returning the format and a v2 value's metadata.
///
/// # Errors
/// As [`open_value`].
pub fn open_signed<'a>(
    value: &'a [u8],
    etcd_key: &[u8],
    trust: Option<&TrustStore>,
) -> Result<Opened<'a>, RejectReason> {
    if !is_signed(value) {
        return match trust {
            Some(_) => Err(RejectReason::Unsigned),
            None => Ok(Opened {
                payload: value,
                version: None,
                meta: None,
            }),
        };
    }
    let parts = split(value)?;
    let meta = match parts.meta {
        // Decoded even unchecked: a malformed line is a malformed value.
        Some(m) => Some(SignedMeta::decode(m)?),
        None => None,
    };
    if let Some(trust) = trust {
        if parts.meta.is_none() && trust.requires_signed_v2() {
            return Err(RejectReason::LegacySignature);
        }
        let signed = match parts.meta {
            Some(m) => message_v2(etcd_key, m, parts.payload),
            None => message(etcd_key, parts.payload),
        };
        trust
            .check(parts.key_id, &signed, &parts.signature)
            .map_err(|f| match f {
                SignatureFault::UnknownKey => RejectReason::UnknownKey,
                SignatureFault::BadSignature => RejectReason::BadSignature,
            })?;
    }
    Ok(Opened {
        payload: parts.payload,
        version: Some(if meta.is_some() { 2 } else { 1 }),
        meta,
    })
}

/// The payload of a value, signed or not, without any check (for tools that
/// only read: `get`, diffs, the publisher's view of the live set).
pub fn payload_of(value: &[u8]) -> &[u8] {
    open_value(value, b"", None).unwrap_or(value)
}

struct Parts<'a> {
    key_id: &'a str,
    signature: Vec<u8>,
    /// The metadata line (v2 only).
    meta: Option<&'a [u8]>,
    payload: &'a [u8],
}

fn split(value: &[u8]) -> Result<Parts<'_>, RejectReason> {
    let bad = RejectReason::BadSignature;
    let end = line_end(value, 0, MAX_SIGNED_HEADER).ok_or(bad)?;
    let line = std::str::from_utf8(&value[..end]).map_err(|_| bad)?;
    let mut words = line.split(' ');
    let (Some(SIGNED_TAG), Some(version), Some(key_id), Some(sig), None) = (
        words.next(),
        words.next(),
        words.next(),
        words.next(),
        words.next(),
    ) else {
        return Err(bad);
    };
    if !is_valid_key_id(key_id) {
        return Err(bad);
    }
    let signature = unb64(sig).filter(|s| s.len() == 64).ok_or(bad)?;
    let (meta, payload) = match version {
        SIGNED_VERSION => (None, &value[end + 1..]),
        SIGNED_VERSION_2 => {
            let meta_end = line_end(value, end + 1, MAX_SIGNED_META).ok_or(bad)?;
            (Some(&value[end + 1..meta_end]), &value[meta_end + 1..])
        }
        _ => return Err(bad),
    };
    Ok(Parts {
        key_id,
        signature,
        meta,
        payload,
    })
}

/// The position of the first `\n` at or after `from`, looking at most
/// `max` bytes (bounded work on a hostile value).
fn line_end(value: &[u8], from: usize, max: usize) -> Option<usize> {
    let rest = value.get(from..)?;
    let head = &rest[..rest.len().min(max + 1)];
    head.iter().position(|&b| b == b'\n').map(|i| from + i)
}

fn message(etcd_key: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(CONTEXT.len() + etcd_key.len() + 1 + payload.len());
    m.extend_from_slice(CONTEXT);
    m.extend_from_slice(etcd_key);
    m.push(0);
    m.extend_from_slice(payload);
    m
}

fn message_v2(etcd_key: &[u8], meta: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut m =
        Vec::with_capacity(CONTEXT_V2.len() + etcd_key.len() + 1 + meta.len() + 1 + payload.len());
    m.extend_from_slice(CONTEXT_V2);
    m.extend_from_slice(etcd_key);
    m.push(0);
    m.extend_from_slice(meta);
    m.push(0);
    m.extend_from_slice(payload);
    m
}
