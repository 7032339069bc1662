//! The one decoder: untrusted bytes → [`DirectiveSet`], fail-closed.
//!
//! Every channel (admin endpoint, etcd value, CLI validation) calls
//! [`decode_directive_set`], so a directive means the same thing however it
//! arrives. Anything unexpected rejects the **whole** set with a
//! [`RejectReason`] whose [`slug`](RejectReason::slug) is stable and never
//! echoes the offending value (values may carry tenant names or secrets, and
//! error text ends up in logs and metrics labels).
//!
//! Relative lifetimes (`ttl_secs`) are anchored at decode time on the given
//! clock; absolute ones (`expires_at`, RFC 3339) are converted from the wall
//! clock to the monotonic timeline once, here, so evaluation never reads the
//! wall clock.

use std::fmt;
use std::time::Duration;

use osproxy_core::{Clock, EndpointKind, IndexName, PartitionId, PrincipalId};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::directive::{DiagLevel, DiagnosticsDirective, DirectiveMatch};
use crate::json::{self, Json};
use crate::set::DirectiveSet;
use crate::timed::TimedDirective;

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
}

impl RejectReason {
    /// Every reason, for tables and metrics.
    pub const ALL: [RejectReason; 21] = [
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

/// Decodes a directive set with the default [`DecodeLimits`] (the seed's
/// signature).
///
/// `ttl_secs` lifetimes are anchored at `clock`'s current time.
///
/// # Errors
/// The first fault's stable, value-free slug (`"unknown_field"`,
/// `"zero_ttl"`, …; see [`RejectReason::slug`]); the set is all or nothing.
/// [`decode_directive_set_detailed`] also names the offending directive.
pub fn decode_directive_set(body: &[u8], clock: &dyn Clock) -> Result<DirectiveSet, &'static str> {
    decode_directive_set_detailed(body, clock).map_err(|e| e.slug())
}

/// Decodes a directive set with the default [`DecodeLimits`], reporting the
/// whole [`DecodeError`].
///
/// # Errors
/// A [`DecodeError`] naming the first fault found; the set is all or nothing.
pub fn decode_directive_set_detailed(
    bytes: &[u8],
    clock: &dyn Clock,
) -> Result<DirectiveSet, DecodeError> {
    decode_directive_set_with(bytes, clock, &DecodeLimits::default())
}

/// Decodes a directive set with explicit limits.
///
/// # Errors
/// A [`DecodeError`] naming the first fault found; the set is all or nothing.
pub fn decode_directive_set_with(
    bytes: &[u8],
    clock: &dyn Clock,
    limits: &DecodeLimits,
) -> Result<DirectiveSet, DecodeError> {
    if bytes.len() > limits.max_body_bytes {
        return Err(RejectReason::TooLarge.into());
    }
    let text = std::str::from_utf8(bytes).map_err(|_| RejectReason::InvalidUtf8)?;
    let root = json::parse(text)?;
    let Json::Object(fields) = root else {
        return Err(RejectReason::WrongType.into());
    };
    let mut list = None;
    for (key, value) in fields {
        match key.as_str() {
            "directives" => list = Some(value),
            _ => return Err(RejectReason::UnknownField.into()),
        }
    }
    let Json::Array(items) = list.ok_or(RejectReason::MissingField)? else {
        return Err(RejectReason::WrongType.into());
    };
    if items.len() > limits.max_directives {
        return Err(RejectReason::TooManyDirectives.into());
    }
    let anchor = Anchor {
        mono: clock.now(),
        wall: clock.unix_nanos(),
    };
    let directives = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| decode_one(item, anchor, limits).map_err(|r| DecodeError::at(r, i)))
        .collect::<Result<Vec<_>, _>>()?;
    DirectiveSet::try_from_directives(directives)
}

/// The moment a body is decoded, on both timelines.
#[derive(Clone, Copy)]
struct Anchor {
    mono: osproxy_core::Instant,
    wall: u64,
}

/// The raw, still-unvalidated fields of one directive.
#[derive(Default)]
struct RawDirective {
    id: Option<Json>,
    level: Option<Json>,
    ttl_secs: Option<Json>,
    expires_at: Option<Json>,
    tenant: Option<Json>,
    index: Option<Json>,
    principal: Option<Json>,
    endpoint: Option<Json>,
    sample_per_mille: Option<Json>,
    ring_buffer: Option<Json>,
    capture: Option<Json>,
}

impl TryFrom<Json> for RawDirective {
    type Error = RejectReason;
    fn try_from(value: Json) -> Result<Self, RejectReason> {
        let Json::Object(fields) = value else {
            return Err(RejectReason::WrongType);
        };
        let mut raw = RawDirective::default();
        for (key, value) in fields {
            let slot = match key.as_str() {
                "id" => &mut raw.id,
                "level" => &mut raw.level,
                "ttl_secs" => &mut raw.ttl_secs,
                "expires_at" => &mut raw.expires_at,
                "tenant" => &mut raw.tenant,
                "index" => &mut raw.index,
                "principal" => &mut raw.principal,
                "endpoint" => &mut raw.endpoint,
                "sample_per_mille" => &mut raw.sample_per_mille,
                "ring_buffer" => &mut raw.ring_buffer,
                "capture" => &mut raw.capture,
                _ => return Err(RejectReason::UnknownField),
            };
            *slot = Some(value);
        }
        Ok(raw)
    }
}

fn decode_one(
    value: Json,
    anchor: Anchor,
    limits: &DecodeLimits,
) -> Result<TimedDirective, RejectReason> {
    let raw = RawDirective::try_from(value)?;
    let id = string(raw.id.ok_or(RejectReason::MissingField)?)?;
    if !is_valid_id(&id) {
        return Err(RejectReason::InvalidId);
    }
    let level = string(raw.level.ok_or(RejectReason::MissingField)?)?
        .parse::<DiagLevel>()
        .map_err(|_| RejectReason::InvalidLevel)?;
    let match_ = DirectiveMatch {
        tenant: raw.tenant.map(target).transpose()?.map(PartitionId::from),
        index: raw.index.map(target).transpose()?.map(IndexName::from),
        principal: raw
            .principal
            .map(target)
            .transpose()?
            .map(PrincipalId::from),
        endpoint: raw
            .endpoint
            .map(|v| {
                string(v)?
                    .parse::<EndpointKind>()
                    .map_err(|_| RejectReason::InvalidEndpoint)
            })
            .transpose()?,
    };
    let sample_per_mille = match raw.sample_per_mille {
        None => 1000,
        Some(v) => sample(v)?,
    };
    let ring_buffer = raw.ring_buffer.map(boolean).transpose()?.unwrap_or(false);
    let capture = raw.capture.map(boolean).transpose()?.unwrap_or(false);
    let expires_at_unix_nanos = match (raw.ttl_secs, raw.expires_at) {
        (None, None) => return Err(RejectReason::MissingExpiry),
        (Some(_), Some(_)) => return Err(RejectReason::ConflictingExpiry),
        (Some(ttl), None) => {
            let ttl = ttl_secs(ttl)?;
            if Duration::from_secs(ttl) > limits.max_lifetime {
                return Err(RejectReason::LifetimeTooLong);
            }
            anchor
                .wall
                .saturating_add(ttl.saturating_mul(1_000_000_000))
        }
        (None, Some(at)) => {
            let at = parse_rfc3339(&string(at)?)?;
            let lifetime = Duration::from_nanos(at.saturating_sub(anchor.wall));
            if lifetime
                > limits
                    .max_lifetime
                    .saturating_add(limits.clock_skew_allowance)
            {
                return Err(RejectReason::LifetimeTooLong);
            }
            at
        }
    };
    let expires_at = if expires_at_unix_nanos >= anchor.wall {
        anchor.mono + Duration::from_nanos(expires_at_unix_nanos - anchor.wall)
    } else {
        anchor.mono - Duration::from_nanos(anchor.wall - expires_at_unix_nanos)
    };
    let directive = DiagnosticsDirective {
        id,
        match_,
        level,
        sample_per_mille,
        expires_at,
        ring_buffer,
        capture,
    };
    Ok(TimedDirective::new(directive, expires_at_unix_nanos))
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

fn string(v: Json) -> Result<String, RejectReason> {
    match v {
        Json::String(s) => Ok(s),
        _ => Err(RejectReason::WrongType),
    }
}

fn target(v: Json) -> Result<String, RejectReason> {
    let s = string(v)?;
    if is_valid_target(&s) {
        Ok(s)
    } else {
        Err(RejectReason::InvalidTarget)
    }
}

fn boolean(v: Json) -> Result<bool, RejectReason> {
    match v {
        Json::Bool(b) => Ok(b),
        _ => Err(RejectReason::WrongType),
    }
}

fn sample(v: Json) -> Result<u16, RejectReason> {
    let Json::Number(n) = v else {
        return Err(RejectReason::WrongType);
    };
    n.as_u64()
        .filter(|&s| s <= 1000)
        .and_then(|s| u16::try_from(s).ok())
        .ok_or(RejectReason::SampleOutOfRange)
}

fn ttl_secs(v: Json) -> Result<u64, RejectReason> {
    let Json::Number(n) = v else {
        return Err(RejectReason::WrongType);
    };
    match n.as_u64() {
        Some(0) => Err(RejectReason::ZeroTtl),
        Some(t) => Ok(t),
        None => Err(RejectReason::InvalidTtl),
    }
}

/// Parses an RFC 3339 timestamp to nanoseconds since the Unix epoch.
///
/// # Errors
/// [`RejectReason::InvalidExpiresAt`] when it is not RFC 3339 or lies before
/// the epoch.
pub fn parse_rfc3339(s: &str) -> Result<u64, RejectReason> {
    let at = OffsetDateTime::parse(s, &Rfc3339).map_err(|_| RejectReason::InvalidExpiresAt)?;
    u64::try_from(at.unix_timestamp_nanos()).map_err(|_| RejectReason::InvalidExpiresAt)
}

/// Decodes a single directive object (the value of one key in the etcd prefix
/// layout), with the same rules as one entry of a set; the result carries its
/// wall-clock expiry.
///
/// # Errors
/// A [`DecodeError`] naming the fault; the directive index is always 0.
pub fn decode_directive(
    bytes: &[u8],
    clock: &dyn Clock,
    limits: &DecodeLimits,
) -> Result<TimedDirective, DecodeError> {
    if bytes.len() > limits.max_body_bytes {
        return Err(RejectReason::TooLarge.into());
    }
    let text = std::str::from_utf8(bytes).map_err(|_| RejectReason::InvalidUtf8)?;
    let value = json::parse(text)?;
    let anchor = Anchor {
        mono: clock.now(),
        wall: clock.unix_nanos(),
    };
    decode_one(value, anchor, limits).map_err(|r| DecodeError::at(r, 0))
}
