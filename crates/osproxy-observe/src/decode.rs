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

use std::time::Duration;

use osproxy_core::{Clock, EndpointKind, IndexName, PartitionId, PrincipalId};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::directive::{DiagLevel, DiagnosticsDirective, DirectiveMatch};
use crate::json::{self, Json};
pub use crate::rules::{
    is_valid_id, is_valid_target, DecodeError, DecodeLimits, RejectReason, MAX_BODY_BYTES,
    MAX_DIRECTIVES, MAX_ID_LEN, MAX_LIFETIME, MAX_PER_SEC, MAX_TARGET_LEN,
};
use crate::set::DirectiveSet;
use crate::timed::TimedDirective;

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
    let Json::Object(fields) = parse_body(bytes, limits)? else {
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
    let anchor = Anchor::now(clock);
    let directives = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| decode_one(item, anchor, limits).map_err(|r| DecodeError::at(r, i)))
        .collect::<Result<Vec<_>, _>>()?;
    DirectiveSet::try_from_directives(directives)
}

/// The first steps of every decode: the size limit, UTF-8, then the strict
/// JSON parse.
fn parse_body(bytes: &[u8], limits: &DecodeLimits) -> Result<Json, DecodeError> {
    if bytes.len() > limits.max_body_bytes {
        return Err(RejectReason::TooLarge.into());
    }
    let text = std::str::from_utf8(bytes).map_err(|_| RejectReason::InvalidUtf8)?;
    Ok(json::parse(text)?)
}

/// The moment a body is decoded, on both timelines.
#[derive(Clone, Copy)]
struct Anchor {
    mono: osproxy_core::Instant,
    wall: u64,
}

impl Anchor {
    /// `clock`'s current time on both timelines.
    fn now(clock: &dyn Clock) -> Self {
        Anchor {
            mono: clock.now(),
            wall: clock.unix_nanos(),
        }
    }
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
    max_per_sec: Option<Json>,
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
                "max_per_sec" => &mut raw.max_per_sec,
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
    let max_per_sec = raw.max_per_sec.map(max_per_sec).transpose()?;
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
    Ok(TimedDirective::new(directive, expires_at_unix_nanos).with_max_per_sec(max_per_sec))
}

fn max_per_sec(v: Json) -> Result<std::num::NonZeroU32, RejectReason> {
    let Json::Number(n) = v else {
        return Err(RejectReason::WrongType);
    };
    n.as_u64()
        .filter(|&m| m <= u64::from(MAX_PER_SEC))
        .and_then(|m| u32::try_from(m).ok())
        .and_then(std::num::NonZeroU32::new)
        .ok_or(RejectReason::InvalidMaxPerSec)
}

/// Decodes one already parsed directive object anchored at `clock`'s now
/// (the token payload's directive goes through here, [`crate::token`]).
pub(crate) fn decode_parsed(
    value: Json,
    clock: &dyn Clock,
    limits: &DecodeLimits,
) -> Result<TimedDirective, RejectReason> {
    decode_one(value, Anchor::now(clock), limits)
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
    let value = parse_body(bytes, limits)?;
    decode_one(value, Anchor::now(clock), limits).map_err(|r| DecodeError::at(r, 0))
}
