//! Ed25519 keys named by a key id (SPEC §9): the operator's [`SignerKey`]
//! (private, kept by whoever publishes or mints header tokens) and an
//! instance's [`TrustStore`] (public keys only, so a compromised instance
//! cannot sign anything).
//!
//! Why key ids: keys are rotated by trusting the new key beside the old one,
//! switching the signers over, then removing the old key; a signature names
//! the key that made it, so verification is one map look-up, never a trial
//! of every key.
//!
//! # File formats (one line each, text, base64url without padding)
//! ```text
//! osproxy-ed25519-private <key-id> <32-byte seed>
//! osproxy-ed25519-public <key-id> <32-byte public key>
//! ```
//! A trust store file holds any number of public-key lines; blank lines and
//! lines starting with `#` are ignored. A key id is 1–64 chars of
//! `[A-Za-z0-9._-]`. Two optional setting lines tighten what the store
//! accepts (each at most once):
//! ```text
//! osproxy-require signed-v2
//! osproxy-require token-iat
//! osproxy-audience <fleet-name>
//! ```
//! The first refuses signed values of format v1 (`legacy_signature`): set it
//! once every publisher writes v2 (see [`crate::signed`]). The second
//! refuses header tokens without an issued-at time, the third header tokens
//! that do not name this audience (see [`crate::token`]); a fleet name
//! follows the key id rule.

use std::collections::BTreeMap;
use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

/// The first word of a private key line.
pub const PRIVATE_KEY_TAG: &str = "osproxy-ed25519-private";
/// The first word of a public key line.
pub const PUBLIC_KEY_TAG: &str = "osproxy-ed25519-public";
/// The first word of a trust store's "require" setting line.
pub const REQUIRE_TAG: &str = "osproxy-require";
/// The first word of a trust store's audience setting line.
pub const AUDIENCE_TAG: &str = "osproxy-audience";
/// Longest key id, in bytes.
pub const MAX_KEY_ID_LEN: usize = 64;
/// Most keys a trust store holds (bounded work on a hostile file).
pub const MAX_TRUSTED_KEYS: usize = 256;

/// Why a key or trust store could not be read. Value-free: a message never
/// echoes key material.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A line is not `<tag> <key-id> <base64url>`, or has the wrong tag.
    #[error("malformed key line")]
    Malformed,
    /// The key id is empty, too long or has a character outside
    /// `[A-Za-z0-9._-]`.
    #[error("invalid key id")]
    InvalidKeyId,
    /// The key bytes are not base64url of 32 bytes, or not a valid Ed25519
    /// public key.
    #[error("invalid key bytes")]
    InvalidKey,
    /// A trust store names the same key id twice.
    #[error("duplicate key id in trust store")]
    DuplicateKeyId,
    /// A trust store holds more than [`MAX_TRUSTED_KEYS`] keys.
    #[error("too many keys in trust store")]
    TooManyKeys,
    /// The operating system's random source failed (key generation).
    #[error("no randomness available")]
    NoRandomness,
    /// A setting line is unknown, repeated or has an invalid value.
    #[error("invalid trust store setting")]
    InvalidSetting,
}

impl KeyError {
    /// The stable slug (`malformed_key`, `invalid_key_id`, …).
    pub fn slug(self) -> &'static str {
        match self {
            KeyError::Malformed => "malformed_key",
            KeyError::InvalidKeyId => "invalid_key_id",
            KeyError::InvalidKey => "invalid_key",
            KeyError::DuplicateKeyId => "duplicate_key_id",
            KeyError::TooManyKeys => "too_many_keys",
            KeyError::NoRandomness => "no_randomness",
            KeyError::InvalidSetting => "invalid_setting",
        }
    }
}

/// Whether `id` is a valid key id: 1–64 chars of `[A-Za-z0-9._-]`.
pub fn is_valid_key_id(id: &str) -> bool {
    (1..=MAX_KEY_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A private signing key and its key id.
#[derive(Clone)]
pub struct SignerKey {
    id: String,
    key: SigningKey,
}

impl fmt::Debug for SignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key material.
        f.debug_struct("SignerKey").field("id", &self.id).finish()
    }
}

impl SignerKey {
    /// A new key from the operating system's random source.
    ///
    /// # Errors
    /// [`KeyError::InvalidKeyId`]; [`KeyError::NoRandomness`].
    pub fn generate(id: &str) -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|_| KeyError::NoRandomness)?;
        Self::from_seed(id, seed)
    }

    /// The key of this 32-byte seed.
    ///
    /// # Errors
    /// [`KeyError::InvalidKeyId`].
    pub fn from_seed(id: &str, seed: [u8; 32]) -> Result<Self, KeyError> {
        if !is_valid_key_id(id) {
            return Err(KeyError::InvalidKeyId);
        }
        Ok(SignerKey {
            id: id.to_owned(),
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// Reads a private key line (`osproxy-ed25519-private <id> <seed>`).
    ///
    /// # Errors
    /// [`KeyError::Malformed`], [`KeyError::InvalidKeyId`],
    /// [`KeyError::InvalidKey`].
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let (id, bytes) = parse_line(text.trim(), PRIVATE_KEY_TAG)?;
        Self::from_seed(id, bytes)
    }

    /// The private key line, to be stored with 0600 permissions.
    pub fn to_private_line(&self) -> String {
        format!(
            "{PRIVATE_KEY_TAG} {} {}\n",
            self.id,
            URL_SAFE_NO_PAD.encode(self.key.to_bytes())
        )
    }

    /// The public key line, for trust stores.
    pub fn to_public_line(&self) -> String {
        format!(
            "{PUBLIC_KEY_TAG} {} {}\n",
            self.id,
            URL_SAFE_NO_PAD.encode(self.key.verifying_key().to_bytes())
        )
    }

    /// The key id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The public half.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// Signs `message` (callers add their own domain-separation context).
    pub(crate) fn sign(&self, message: &[u8]) -> Signature {
        self.key.sign(message)
    }
}

/// The public keys an instance trusts, by key id. Several at once, so keys
/// can be rotated without a gap.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustStore {
    keys: BTreeMap<String, VerifyingKey>,
    /// Refuse signed format v1 (see [`crate::signed`]).
    require_v2: bool,
    /// Header tokens must name this audience (see [`crate::token`]).
    audience: Option<String>,
    /// Header tokens must carry `iat` (see [`crate::token`]).
    require_token_iat: bool,
}

impl TrustStore {
    /// An empty store (trusts nothing).
    pub fn new() -> Self {
        TrustStore::default()
    }

    /// Reads a trust store file: public-key lines; blank lines and `#`
    /// comments ignored.
    ///
    /// # Errors
    /// The first bad line's [`KeyError`]; [`KeyError::DuplicateKeyId`];
    /// [`KeyError::TooManyKeys`].
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let mut store = TrustStore::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if store.parse_setting(line)? {
                continue;
            }
            let (id, bytes) = parse_line(line, PUBLIC_KEY_TAG)?;
            let key = VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::InvalidKey)?;
            store.insert(id, key)?;
        }
        Ok(store)
    }

    /// Applies a setting line; whether `line` was one.
    fn parse_setting(&mut self, line: &str) -> Result<bool, KeyError> {
        let mut words = line.split(' ');
        let tag = words.next();
        let (value, rest) = (words.next(), words.next());
        match (tag, value, rest) {
            (Some(REQUIRE_TAG), Some("signed-v2"), None) if !self.require_v2 => {
                self.require_v2 = true;
            }
            (Some(REQUIRE_TAG), Some("token-iat"), None) if !self.require_token_iat => {
                self.require_token_iat = true;
            }
            (Some(AUDIENCE_TAG), Some(name), None) if self.audience.is_none() => {
                self.require_audience(name)?;
            }
            (Some(REQUIRE_TAG | AUDIENCE_TAG), _, _) => return Err(KeyError::InvalidSetting),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Refuses signed values of format v1 from now on (`legacy_signature`):
    /// the last step of moving a fleet to v2 (see [`crate::signed`]).
    #[must_use]
    pub fn requiring_signed_v2(mut self) -> Self {
        self.require_v2 = true;
        self
    }

    /// Whether signed format v1 is refused.
    pub fn requires_signed_v2(&self) -> bool {
        self.require_v2
    }

    /// Refuses header tokens without `iat` (`missing_issued_at`; see
    /// [`crate::token`]).
    #[must_use]
    pub fn requiring_token_iat(mut self) -> Self {
        self.require_token_iat = true;
        self
    }

    /// Whether header tokens must carry `iat`.
    pub fn requires_token_iat(&self) -> bool {
        self.require_token_iat
    }

    /// Accepts a header token only when it names `audience` (this fleet's
    /// name; see [`crate::token`]).
    ///
    /// # Errors
    /// [`KeyError::InvalidSetting`] when the name breaks the key id rule.
    pub fn require_audience(&mut self, audience: &str) -> Result<(), KeyError> {
        if !is_valid_key_id(audience) {
            return Err(KeyError::InvalidSetting);
        }
        self.audience = Some(audience.to_owned());
        Ok(())
    }

    /// The audience header tokens must name, when one is required.
    pub fn required_audience(&self) -> Option<&str> {
        self.audience.as_deref()
    }

    /// Trusts `key` under `id`.
    ///
    /// # Errors
    /// [`KeyError::InvalidKeyId`], [`KeyError::DuplicateKeyId`],
    /// [`KeyError::TooManyKeys`].
    pub fn insert(&mut self, id: &str, key: VerifyingKey) -> Result<(), KeyError> {
        if !is_valid_key_id(id) {
            return Err(KeyError::InvalidKeyId);
        }
        if self.keys.contains_key(id) {
            return Err(KeyError::DuplicateKeyId);
        }
        if self.keys.len() >= MAX_TRUSTED_KEYS {
            return Err(KeyError::TooManyKeys);
        }
        self.keys.insert(id.to_owned(), key);
        Ok(())
    }

    /// Trusts the public half of `signer`.
    ///
    /// # Errors
    /// As [`insert`](Self::insert).
    pub fn trust(&mut self, signer: &SignerKey) -> Result<(), KeyError> {
        self.insert(signer.id(), signer.verifying_key())
    }

    /// Stops trusting `id`; whether it was trusted.
    pub fn remove(&mut self, id: &str) -> bool {
        self.keys.remove(id).is_some()
    }

    /// The trusted key ids.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// How many keys are trusted.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks `signature` over `message` with the key named `id`.
    pub(crate) fn check(
        &self,
        id: &str,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureFault> {
        let key = self.keys.get(id).ok_or(SignatureFault::UnknownKey)?;
        let bytes: [u8; 64] = signature
            .try_into()
            .map_err(|_| SignatureFault::BadSignature)?;
        key.verify_strict(message, &Signature::from_bytes(&bytes))
            .map_err(|_| SignatureFault::BadSignature)
    }
}

/// Why a signature check failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SignatureFault {
    /// No trusted key has this id.
    UnknownKey,
    /// The signature does not verify (or is not 64 bytes).
    BadSignature,
}

/// Splits `<tag> <id> <base64url of 32 bytes>`.
fn parse_line<'a>(line: &'a str, tag: &str) -> Result<(&'a str, [u8; 32]), KeyError> {
    let mut words = line.split(' ');
    let (Some(t), Some(id), Some(b64), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Err(KeyError::Malformed);
    };
    if t != tag {
        return Err(KeyError::Malformed);
    }
    if !is_valid_key_id(id) {
        return Err(KeyError::InvalidKeyId);
    }
    // 32 bytes are 43 base64 chars; refuse anything longer before decoding.
    if b64.len() != 43 {
        return Err(KeyError::InvalidKey);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(b64)
        .map_err(|_| KeyError::InvalidKey)?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| KeyError::InvalidKey)?;
    Ok((id, bytes))
}

/// Base64url without padding, as every trust format here uses it.
pub(crate) fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url without padding; `None` when it is not.
pub(crate) fn unb64(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn key_lines_round_trip_and_the_store_checks_by_id() {
        let signer = SignerKey::from_seed("ops-1", [7; 32]).unwrap();
        let again = SignerKey::parse(&signer.to_private_line()).unwrap();
        assert_eq!(again.verifying_key(), signer.verifying_key());
        assert_eq!(again.id(), "ops-1");
        assert!(!format!("{signer:?}").contains(&b64(&[7; 32])));
        let text = format!("# fleet keys\n\n{}", signer.to_public_line());
        let store = TrustStore::parse(&text).unwrap();
        assert_eq!(store.key_ids().collect::<Vec<_>>(), ["ops-1"]);
        assert!(!store.requires_signed_v2());
        assert_eq!(store.required_audience(), None);
        let strict = format!(
            "{text}osproxy-require signed-v2\nosproxy-require token-iat\nosproxy-audience prod-eu\n"
        );
        let strict = TrustStore::parse(&strict).unwrap();
        assert!(strict.requires_signed_v2());
        assert!(strict.requires_token_iat());
        assert_eq!(strict.required_audience(), Some("prod-eu"));
        assert_eq!(strict.key_ids().collect::<Vec<_>>(), ["ops-1"]);
        let sig = signer.sign(b"m").to_bytes();
        assert_eq!(store.check("ops-1", b"m", &sig), Ok(()));
        assert_eq!(
            store.check("ops-1", b"n", &sig),
            Err(SignatureFault::BadSignature)
        );
        assert_eq!(
            store.check("ops-2", b"m", &sig),
            Err(SignatureFault::UnknownKey)
        );
        assert_eq!(
            store.check("ops-1", b"m", &sig[..63]),
            Err(SignatureFault::BadSignature)
        );
    }

    #[test]
    fn bad_key_lines_are_refused_with_their_slug() {
        let signer = SignerKey::from_seed("k", [1; 32]).unwrap();
        let public = signer.to_public_line();
        let cases = [
            (
                public.replace(PUBLIC_KEY_TAG, PRIVATE_KEY_TAG),
                KeyError::Malformed,
            ),
            ("osproxy-ed25519-public k".to_owned(), KeyError::Malformed),
            (public.replace(" k ", " k/1 "), KeyError::InvalidKeyId),
            (format!("{PUBLIC_KEY_TAG} k AAAA"), KeyError::InvalidKey),
            (format!("{public}{public}"), KeyError::DuplicateKeyId),
        ];
        for (text, want) in cases {
            assert_eq!(TrustStore::parse(&text), Err(want), "{text}");
        }
        assert_eq!(SignerKey::parse(&public).unwrap_err(), KeyError::Malformed);
        for bad in [
            "osproxy-require signed-v3",
            "osproxy-require signed-v2 now",
            "osproxy-require signed-v2\nosproxy-require signed-v2",
            "osproxy-audience",
            "osproxy-audience a/b",
            "osproxy-audience a\nosproxy-audience b",
        ] {
            assert_eq!(
                TrustStore::parse(bad),
                Err(KeyError::InvalidSetting),
                "{bad}"
            );
        }
        assert!(SignerKey::generate("fresh").is_ok());
        assert_eq!(SignerKey::generate("").unwrap_err(), KeyError::InvalidKeyId);
    }
}
