//! The rules of the directive format, shared by every module that checks
//! them: the [`RejectReason`]s (with their stable slugs) and [`DecodeError`],
//! the [`DecodeLimits`] and their default constants, and the validity rules
//! for ids and targets ([`is_valid_id`], [`is_valid_target`]).
//!
//! Why a module of its own: the strict JSON reader (`json`), the decoder
//! (`decode`) and the set builder (`set`, which checks programmatic sets with
//! the same rules) all need these, and none of them may depend on another in
//! a circle. This is the leaf they share; it depends on nothing in the crate.
//! The public paths are those of [`crate::decode`], which re-exports it all.

use std::fmt;
use std::time::Duration;

/// Why a directive set was rejected. Each reason has a stable slug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum RejectReason {
    /// The body is larger than [`DecodeLimits::max_body_bytes`].
    TooLarge,
    /// The body is not valid UTF-8.
    InvalidUtf8,
    /// The body is not well-formed JSON.
    MalformedJson,
    /// The body nests deeper than any directive set can.
    TooDeep,
    /// An object repeats a key.
    DuplicateKey,
    /// An object has a key the format does not define.
    UnknownField,
    /// A required key is absent.
    MissingField,
    /// A value has the wrong JSON type.
    WrongType,
    /// More than [`DecodeLimits::max_directives`] directives.
    TooManyDirectives,
    /// An `id` is empty, longer than 128 chars or has a character outside
    /// `[A-Za-z0-9._:-]`.
    InvalidId,
    /// Two directives share an `id`.
    DuplicateId,
    /// `level` is not one of the defined levels.
    InvalidLevel,
    /// `endpoint` is not one of the defined endpoint kinds.
    InvalidEndpoint,
    /// A `tenant`, `index` or `principal` is empty or longer than 256 chars.
    InvalidTarget,
    /// `sample_per_mille` is not an integer in 0–1000.
    SampleOutOfRange,
    /// `ttl_secs` is zero.
    ZeroTtl,
    /// `ttl_secs` is negative or not an integer.
    InvalidTtl,
    /// Neither `ttl_secs` nor `expires_at` is set.
    MissingExpiry,
    /// Both `ttl_secs` and `expires_at` are set.
    ConflictingExpiry,
    /// `expires_at` is not an RFC 3339 timestamp.
    InvalidExpiresAt,
    /// The lifetime exceeds [`DecodeLimits::max_lifetime`].
    LifetimeTooLong,
    /// `max_per_sec` is not an integer in 1–[`MAX_PER_SEC`].
    InvalidMaxPerSec,
    /// A trust store is configured and the value carries no signature
    /// (SPEC §9, [`crate::signed`]).
    Unsigned,
    /// The value's signature is malformed or does not verify over its bytes.
    BadSignature,
    /// The value is signed by a key id the trust store does not hold.
    UnknownKey,
    /// Prefix layout: the key's suffix (after the prefix) is not the id of
    /// the directive it holds.
    KeyIdMismatch,
    /// Prefix layout, signed format v2: the key is not listed in the signed
    /// manifest, or its value's hash differs from the listed one (an old
    /// key mixed in, a deleted key put back).
    NotInManifest,
    /// Signed format v2: the value's sequence number is below the highest
    /// this instance has accepted for its key or prefix (an old value put
    /// back).
    Replayed,
    /// Signed format v2: an instance with no record for the key or prefix
    /// got a value signed longer ago than the longest directive lifetime.
    StaleSignature,
    /// The trust store requires signed format v2 and the value is v1.
    LegacySignature,
}

impl RejectReason {
    /// Every reason, for tables and metrics.
    pub const ALL: [RejectReason; 30] = [
        RejectReason::TooLarge,
        RejectReason::InvalidUtf8,
        RejectReason::MalformedJson,
        RejectReason::TooDeep,
        RejectReason::DuplicateKey,
        RejectReason::UnknownField,
        RejectReason::MissingField,
        RejectReason::WrongType,
        RejectReason::TooManyDirectives,
        RejectReason::InvalidId,
        RejectReason::DuplicateId,
        RejectReason::InvalidLevel,
        RejectReason::InvalidEndpoint,
        RejectReason::InvalidTarget,
        RejectReason::SampleOutOfRange,
        RejectReason::ZeroTtl,
        RejectReason::InvalidTtl,
        RejectReason::MissingExpiry,
        RejectReason::ConflictingExpiry,
        RejectReason::InvalidExpiresAt,
        RejectReason::LifetimeTooLong,
        RejectReason::InvalidMaxPerSec,
        RejectReason::Unsigned,
        RejectReason::BadSignature,
        RejectReason::UnknownKey,
        RejectReason::KeyIdMismatch,
        RejectReason::NotInManifest,
        RejectReason::Replayed,
        RejectReason::StaleSignature,
        RejectReason::LegacySignature,
    ];

    /// The stable, value-free slug (`unknown_field`, `zero_ttl`, …).
    pub const fn slug(self) -> &'static str {
        match self {
            RejectReason::TooLarge => "too_large",
            RejectReason::InvalidUtf8 => "invalid_utf8",
            RejectReason::MalformedJson => "malformed_json",
            RejectReason::TooDeep => "too_deep",
            RejectReason::DuplicateKey => "duplicate_key",
            RejectReason::UnknownField => "unknown_field",
            RejectReason::MissingField => "missing_field",
            RejectReason::WrongType => "wrong_type",
            RejectReason::TooManyDirectives => "too_many_directives",
            RejectReason::InvalidId => "invalid_id",
            RejectReason::DuplicateId => "duplicate_id",
            RejectReason::InvalidLevel => "invalid_level",
            RejectReason::InvalidEndpoint => "invalid_endpoint",
            RejectReason::InvalidTarget => "invalid_target",
            RejectReason::SampleOutOfRange => "sample_out_of_range",
            RejectReason::ZeroTtl => "zero_ttl",
            RejectReason::InvalidTtl => "invalid_ttl",
            RejectReason::MissingExpiry => "missing_expiry",
            RejectReason::ConflictingExpiry => "conflicting_expiry",
            RejectReason::InvalidExpiresAt => "invalid_expires_at",
            RejectReason::LifetimeTooLong => "lifetime_too_long",
            RejectReason::InvalidMaxPerSec => "invalid_max_per_sec",
            RejectReason::Unsigned => "unsigned",
            RejectReason::BadSignature => "bad_signature",
            RejectReason::UnknownKey => "unknown_key",
            RejectReason::KeyIdMismatch => "key_id_mismatch",
            RejectReason::NotInManifest => "not_in_manifest",
            RejectReason::Replayed => "replayed",
            RejectReason::StaleSignature => "stale_signature",
            RejectReason::LegacySignature => "legacy_signature",
        }
    }

    /// The reason with this slug, if any.
    pub fn from_slug(slug: &str) -> Option<Self> {
        RejectReason::ALL.into_iter().find(|r| r.slug() == slug)
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.slug())
    }
}

/// A rejected directive set: the reason, and which directive (0-based index in
/// the `directives` array) caused it when one did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub struct DecodeError {
    /// Why the set was rejected.
    pub reason: RejectReason,
    /// The offending directive's position, when the fault is in one directive.
    pub directive_index: Option<usize>,
}

impl DecodeError {
    /// A rejection not tied to one directive.
    pub fn whole(reason: RejectReason) -> Self {
        DecodeError {
            reason,
            directive_index: None,
        }
    }

    /// A rejection caused by directive number `index`.
    pub fn at(reason: RejectReason, index: usize) -> Self {
        DecodeError {
            reason,
            directive_index: Some(index),
        }
    }

    /// The reason's stable slug.
    pub fn slug(&self) -> &'static str {
        self.reason.slug()
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.directive_index {
            Some(i) => write!(f, "directive set rejected: {} (directive {i})", self.reason),
            None => write!(f, "directive set rejected: {}", self.reason),
        }
    }
}

impl From<RejectReason> for DecodeError {
    fn from(reason: RejectReason) -> Self {
        DecodeError::whole(reason)
    }
}

/// The limits a decoder enforces. [`Default`] is the product contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest accepted body. Default 1 MiB.
    pub max_body_bytes: usize,
    /// Most directives in one set. Default 10,000.
    pub max_directives: usize,
    /// Longest lifetime a directive may ask for. Default 7 days.
    pub max_lifetime: Duration,
    /// Extra slack on [`max_lifetime`](Self::max_lifetime) for `expires_at`,
    /// so that a publisher whose clock runs ahead of this instance's does not
    /// get a maximal directive rejected here. Default 5 minutes.
    pub clock_skew_allowance: Duration,
}

/// Default body limit: 1 MiB.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Default directive count limit.
pub const MAX_DIRECTIVES: usize = 10_000;
/// Default lifetime cap: 7 days.
pub const MAX_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
/// Largest `max_per_sec` a directive may ask for (a budget of a billion
/// requests per second per instance is no budget).
pub const MAX_PER_SEC: u32 = 1_000_000_000;
/// Longest `id`, in chars.
pub const MAX_ID_LEN: usize = 128;
/// Longest `tenant`, `index` or `principal`, in chars.
pub const MAX_TARGET_LEN: usize = 256;

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_body_bytes: MAX_BODY_BYTES,
            max_directives: MAX_DIRECTIVES,
            max_lifetime: MAX_LIFETIME,
            clock_skew_allowance: Duration::from_secs(300),
        }
    }
}

/// Whether `id` is 1–128 chars of `[A-Za-z0-9._:-]`.
pub fn is_valid_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Whether `value` is an acceptable `tenant`, `index` or `principal`.
pub fn is_valid_target(value: &str) -> bool {
    (1..=MAX_TARGET_LEN).contains(&value.chars().count())
}
