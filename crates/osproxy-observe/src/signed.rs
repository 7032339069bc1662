//! Signed directive values (SPEC §9): [`sign_value`] is the publisher's
//! side, [`open_value`] the instance's. A value in either etcd layout (a
//! whole set under one key, or one directive object per key under a prefix)
//! can carry an Ed25519 signature over exactly the bytes the instance then
//! decodes and applies, expiries included.
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
//! # Who checks what
//! - With a [`TrustStore`] (opt-in per instance), an unsigned value is
//!   refused (`unsigned`), a malformed header or a signature that does not
//!   verify is `bad_signature`, a key id the store lacks is `unknown_key`.
//! - Without one, a signed value's payload is decoded as if unsigned (the
//!   header is not checked), so signing can be rolled out before it is
//!   enforced.

use crate::keys::{b64, is_valid_key_id, unb64, SignatureFault, SignerKey, TrustStore};
use crate::rules::RejectReason;

/// The first word of a signed value.
pub const SIGNED_TAG: &str = "osproxy-signed";
/// The signed-value format version.
pub const SIGNED_VERSION: &str = "v1";
/// Longest header line looked at, in bytes (tag, version, key id, 86-char
/// signature and spaces fit in well under this).
pub const MAX_SIGNED_HEADER: usize = 256;

/// Domain separation: a signature made for a set is never one for a token.
const CONTEXT: &[u8] = b"osproxy-directives set v1\0";

/// Signs `payload`, to be stored under `etcd_key`: the bytes to write.
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

/// Whether `value` carries a signature header.
pub fn is_signed(value: &[u8]) -> bool {
    value.starts_with(SIGNED_TAG.as_bytes()) && value.get(SIGNED_TAG.len()) == Some(&b' ')
}

/// The key id a signed value names, if it is well formed.
pub fn signing_key_id(value: &[u8]) -> Option<&str> {
    split(value).ok().map(|s| s.key_id)
}

/// The payload of `value` read from `etcd_key`: checked against `trust`
/// when given, else only unwrapped (see the module docs).
///
/// # Errors
/// [`RejectReason::Unsigned`], [`RejectReason::BadSignature`],
/// [`RejectReason::UnknownKey`]; without a trust store, only
/// `bad_signature` for a signed value whose header is malformed.
pub fn open_value<'a>(
    value: &'a [u8],
    etcd_key: &[u8],
    trust: Option<&TrustStore>,
) -> Result<&'a [u8], RejectReason> {
    if !is_signed(value) {
        return match trust {
            Some(_) => Err(RejectReason::Unsigned),
            None => Ok(value),
        };
    }
    let parts = split(value)?;
    if let Some(trust) = trust {
        trust
            .check(
                parts.key_id,
                &message(etcd_key, parts.payload),
                &parts.signature,
            )
            .map_err(|f| match f {
                SignatureFault::UnknownKey => RejectReason::UnknownKey,
                SignatureFault::BadSignature => RejectReason::BadSignature,
            })?;
    }
    Ok(parts.payload)
}

/// The payload of a value, signed or not, without any check (for tools that
/// only read: `get`, diffs, the publisher's view of the live set).
pub fn payload_of(value: &[u8]) -> &[u8] {
    open_value(value, b"", None).unwrap_or(value)
}

struct Parts<'a> {
    key_id: &'a str,
    signature: Vec<u8>,
    payload: &'a [u8],
}

fn split(value: &[u8]) -> Result<Parts<'_>, RejectReason> {
    let bad = RejectReason::BadSignature;
    let head = &value[..value.len().min(MAX_SIGNED_HEADER)];
    let end = head.iter().position(|&b| b == b'\n').ok_or(bad)?;
    let line = std::str::from_utf8(&value[..end]).map_err(|_| bad)?;
    let mut words = line.split(' ');
    let (Some(SIGNED_TAG), Some(SIGNED_VERSION), Some(key_id), Some(sig), None) = (
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
    Ok(Parts {
        key_id,
        signature,
        payload: &value[end + 1..],
    })
}

fn message(etcd_key: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(CONTEXT.len() + etcd_key.len() + 1 + payload.len());
    m.extend_from_slice(CONTEXT);
    m.extend_from_slice(etcd_key);
    m.push(0);
    m.extend_from_slice(payload);
    m
}
