//! The signed single-request directive (SPEC §9): [`TokenVerifier`], the
//! concrete [`DirectiveVerifier`], mints nothing and trusts only public keys;
//! [`sign_token`] is the operator's side. [`TokenVerifier::judge`] says why a
//! header value is or is not accepted with a stable [`HeaderVerdict`] slug,
//! for `verify-header` and an explain endpoint.
//!
//! # Token format, version 1
//! ```text
//! v1.<key-id>.<base64url(payload)>.<base64url(signature)>
//! ```
//! - `key-id`: the signing key's id (1–64 chars of `[A-Za-z0-9._-]`);
//! - `payload`: UTF-8 JSON `{"directive": D, "request_id": "…", "iat": "…",
//!   "nbf": "…", "aud": "…"}`, where `D` is one directive object of the wire
//!   format (SPEC §2) with an absolute `expires_at` (no `ttl_secs`), decoded
//!   by the fail-closed decoder, and the others are optional:
//!   - `request_id`: the token applies to that request only;
//!   - `iat` (issued at, RFC 3339): the token's *whole* lifetime,
//!     `expires_at − iat`, must be within the maximum. Without it only the
//!     remaining lifetime can be checked, so a token minted for a year
//!     would pass in its last minutes; a trust store with
//!     `osproxy-require token-iat` refuses tokens without it
//!     (`missing_issued_at`). An `iat` ahead of the verifier's clock (beyond
//!     the skew allowance) is `not_yet_valid`;
//!   - `nbf` (not before, RFC 3339): refused before it (`not_yet_valid`);
//!   - `aud` (audience: the fleet's name, the key id rule): a verifier that
//!     requires an audience (`osproxy-audience` in its trust store, or
//!     [`TokenVerifier::with_audience`]) refuses a token naming another one
//!     or none (`wrong_audience`), so a header minted for one fleet is not
//!     valid on another that trusts the same key;
//! - `signature`: Ed25519 over `"osproxy-directives token v1\0"` followed by
//!   the token's first three dot-separated parts exactly as sent
//!   (`v1.<key-id>.<payload>`), so the version, the key id and every payload
//!   byte are covered.
//!
//! base64url is without padding. A header over [`MAX_HEADER_BYTES`] is
//! refused before any work. The signature is checked before the payload is
//! decoded.
//!
//! # What is refused
//! Anything absent, malformed, signed by an unknown key or wrongly, expired,
//! not yet valid, for another audience, living (since `iat`, or from now
//! when it has none) longer than the maximum (default [`DEFAULT_MAX_TOKEN_LIFETIME`],
//! plus [`DEFAULT_TOKEN_CLOCK_SKEW`] for a signer whose clock runs ahead),
//! or bound to another request. The seed's seam
//! ([`DirectiveVerifier::verify`]) has no request to compare with, so it
//! refuses request-bound tokens (`request_unchecked`); a proxy that knows
//! the request id calls [`TokenVerifier::verify_request`].
//!
//! # Combining with the set
//! [`raise`] folds a verified directive into the set's [`Decision`]: the
//! effective level is the higher of the two, ring buffer and capture are
//! asked for if either asks. Instance ceilings apply to the header's
//! directive too (`osproxy_etcd::trust::clamp_header`).

use std::sync::Arc;
use std::time::Duration;

use osproxy_core::{Clock, Instant, RequestId};
use serde_json::{Map, Value};

use crate::decode::{decode_parsed, parse_rfc3339, DecodeLimits, RejectReason};
use crate::directive::{DiagnosticsDirective, RequestAttrs};
use crate::encode::directive_value;
use crate::encode::format_rfc3339;
use crate::json::{self, Json};
use crate::keys::{b64, is_valid_key_id, unb64, SignatureFault, SignerKey, TrustStore};
use crate::set::Decision;
use crate::timed::TimedDirective;
use crate::token_claims::ClaimRules;
pub use crate::token_claims::TokenClaims;
use crate::verifier::DirectiveVerifier;

/// The request header that carries a token.
pub const HEADER_NAME: &str = "X-Debug-Directive";
/// The token format version this module reads and writes.
pub const TOKEN_VERSION: &str = "v1";
/// Default longest lifetime a token may grant: 15 minutes.
pub const DEFAULT_MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// Default slack on the maximum for a signer whose clock runs ahead: 30 s.
pub const DEFAULT_TOKEN_CLOCK_SKEW: Duration = Duration::from_secs(30);
/// Longest header value looked at, in bytes.
pub const MAX_HEADER_BYTES: usize = 4096;
/// Longest `request_id` a token may bind to, in bytes.
pub const MAX_BOUND_REQUEST_ID: usize = 256;

/// Domain separation: a signature made for a token is never one for a set.
const CONTEXT: &[u8] = b"osproxy-directives token v1\0";

/// Why a header value is or is not accepted. Each has a stable slug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HeaderVerdict {
    /// Valid, trusted, unexpired, within the maximum, for this request.
    Accepted,
    /// No header value (empty or blank).
    Absent,
    /// Longer than [`MAX_HEADER_BYTES`].
    TooLarge,
    /// Not `v1.<key-id>.<payload>.<signature>` of base64url parts, or the
    /// payload is not the expected JSON object.
    Malformed,
    /// A version other than `v1`.
    UnsupportedVersion,
    /// Signed by a key id this instance does not trust.
    UnknownKey,
    /// The signature does not verify over the token.
    BadSignature,
    /// The payload's directive is refused by the decoder.
    InvalidDirective,
    /// The directive has a relative `ttl_secs` instead of `expires_at`.
    RelativeLifetime,
    /// The directive lives longer than the maximum token lifetime.
    LifetimeTooLong,
    /// The directive has expired.
    Expired,
    /// The token is bound to another request id.
    WrongRequest,
    /// The token is bound to a request id and the caller gave none to
    /// compare with (the seed's `verify`).
    RequestUnchecked,
    /// Its `nbf` (or `iat`) lies ahead of the verifier's clock.
    NotYetValid,
    /// The verifier requires an audience and the token names another one,
    /// or none.
    WrongAudience,
    /// The verifier requires `iat` and the token has none.
    MissingIssuedAt,
}

impl HeaderVerdict {
    /// Every verdict, for tables and metrics.
    pub const ALL: [HeaderVerdict; 16] = [
        HeaderVerdict::Accepted,
        HeaderVerdict::Absent,
        HeaderVerdict::TooLarge,
        HeaderVerdict::Malformed,
        HeaderVerdict::UnsupportedVersion,
        HeaderVerdict::UnknownKey,
        HeaderVerdict::BadSignature,
        HeaderVerdict::InvalidDirective,
        HeaderVerdict::RelativeLifetime,
        HeaderVerdict::LifetimeTooLong,
        HeaderVerdict::Expired,
        HeaderVerdict::WrongRequest,
        HeaderVerdict::RequestUnchecked,
        HeaderVerdict::NotYetValid,
        HeaderVerdict::WrongAudience,
        HeaderVerdict::MissingIssuedAt,
    ];

    /// The stable, value-free slug (`accepted`, `bad_signature`, …).
    pub const fn slug(self) -> &'static str {
        match self {
            HeaderVerdict::Accepted => "accepted",
            HeaderVerdict::Absent => "absent",
            HeaderVerdict::TooLarge => "too_large",
            HeaderVerdict::Malformed => "malformed",
            HeaderVerdict::UnsupportedVersion => "unsupported_version",
            HeaderVerdict::UnknownKey => "unknown_key",
            HeaderVerdict::BadSignature => "bad_signature",
            HeaderVerdict::InvalidDirective => "invalid_directive",
            HeaderVerdict::RelativeLifetime => "relative_lifetime",
            HeaderVerdict::LifetimeTooLong => "lifetime_too_long",
            HeaderVerdict::Expired => "expired",
            HeaderVerdict::WrongRequest => "wrong_request",
            HeaderVerdict::RequestUnchecked => "request_unchecked",
            HeaderVerdict::NotYetValid => "not_yet_valid",
            HeaderVerdict::WrongAudience => "wrong_audience",
            HeaderVerdict::MissingIssuedAt => "missing_issued_at",
        }
    }
}

impl std::fmt::Display for HeaderVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.slug())
    }
}

/// How a header value was judged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Judgement {
    /// The verdict.
    pub verdict: HeaderVerdict,
    /// The key id the token names, once it is well formed.
    pub key_id: Option<String>,
    /// The directive, once the signature verified and the payload decoded
    /// (also for `expired`, `wrong_request` and `request_unchecked`, to say
    /// what it would have granted).
    pub directive: Option<TimedDirective>,
    /// The request id the token is bound to, if any (signature verified).
    pub bound_request: Option<RequestId>,
    /// For [`HeaderVerdict::InvalidDirective`]: the decoder's reason.
    pub decode_reason: Option<RejectReason>,
}

impl Judgement {
    fn refused(verdict: HeaderVerdict) -> Self {
        Judgement {
            verdict,
            key_id: None,
            directive: None,
            bound_request: None,
            decode_reason: None,
        }
    }

    /// Whether the header is accepted.
    pub fn is_accepted(&self) -> bool {
        self.verdict == HeaderVerdict::Accepted
    }

    /// The directive the header grants, when accepted.
    pub fn accepted_directive(self) -> Option<DiagnosticsDirective> {
        if self.is_accepted() {
            self.directive.map(TimedDirective::into_directive)
        } else {
            None
        }
    }
}

/// Why [`sign_token`] cannot mint a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The directive has no wall-clock expiry (built by code, not decoded).
    #[error("directive has no absolute expiry")]
    MissingExpiry,
    /// The request id is empty or longer than [`MAX_BOUND_REQUEST_ID`].
    #[error("invalid request id")]
    InvalidRequestId,
    /// The audience breaks the key id rule.
    #[error("invalid audience")]
    InvalidAudience,
}

/// Mints a token for `directive` (which needs its wall-clock expiry),
/// optionally bound to one request id.
///
/// # Errors
/// [`TokenError::MissingExpiry`]; [`TokenError::InvalidRequestId`].
pub fn sign_token(
    signer: &SignerKey,
    directive: &TimedDirective,
    request_id: Option<&RequestId>,
) -> Result<String, TokenError> {
    sign_token_with(signer, directive, request_id, &TokenClaims::default())
}

/// As [`sign_token`], with `claims` (`iat`, `nbf`, `aud`): what a minting
/// tool should use, so that verifiers can bound the token's whole lifetime.
///
/// # Errors
/// As [`sign_token`]; [`TokenError::InvalidAudience`].
pub fn sign_token_with(
    signer: &SignerKey,
    directive: &TimedDirective,
    request_id: Option<&RequestId>,
    claims: &TokenClaims,
) -> Result<String, TokenError> {
    if directive.expires_at_unix_nanos.is_none() {
        return Err(TokenError::MissingExpiry);
    }
    let mut payload = Map::new();
    payload.insert("directive".into(), directive_value(directive));
    if let Some(r) = request_id {
        if !valid_request_id(r.as_str()) {
            return Err(TokenError::InvalidRequestId);
        }
        payload.insert("request_id".into(), r.as_str().into());
    }
    if let Some(at) = claims.issued_at_unix_nanos {
        payload.insert("iat".into(), format_rfc3339(at).into());
    }
    if let Some(at) = claims.not_before_unix_nanos {
        payload.insert("nbf".into(), format_rfc3339(at).into());
    }
    if let Some(aud) = &claims.audience {
        if !is_valid_key_id(aud) {
            return Err(TokenError::InvalidAudience);
        }
        payload.insert("aud".into(), aud.as_str().into());
    }
    let payload = Value::Object(payload).to_string();
    let signed = format!(
        "{TOKEN_VERSION}.{}.{}",
        signer.id(),
        b64(payload.as_bytes())
    );
    let signature = signer.sign(&message(&signed));
    Ok(format!("{signed}.{}", b64(&signature.to_bytes())))
}

fn valid_request_id(id: &str) -> bool {
    (1..=MAX_BOUND_REQUEST_ID).contains(&id.len())
}

fn message(signed: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(CONTEXT.len() + signed.len());
    m.extend_from_slice(CONTEXT);
    m.extend_from_slice(signed.as_bytes());
    m
}

/// Verifies `X-Debug-Directive` tokens against a [`TrustStore`]. See the
/// module docs for the format and what is refused.
#[derive(Clone)]
pub struct TokenVerifier {
    trust: Arc<TrustStore>,
    clock: Arc<dyn Clock>,
    limits: DecodeLimits,
    /// Tokens must name this audience (default: the trust store's).
    audience: Option<String>,
    /// Tokens must carry `iat` (default: the trust store's setting).
    require_iat: bool,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("keys", &self.trust.key_ids().collect::<Vec<_>>())
            .field("max_lifetime", &self.limits.max_lifetime)
            .finish()
    }
}

impl TokenVerifier {
    /// A verifier trusting `trust`, reading time from `clock`, with the
    /// default maximum lifetime and clock skew.
    pub fn new(trust: TrustStore, clock: Arc<dyn Clock>) -> Self {
        TokenVerifier {
            audience: trust.required_audience().map(str::to_owned),
            require_iat: trust.requires_token_iat(),
            trust: Arc::new(trust),
            clock,
            limits: DecodeLimits {
                max_lifetime: DEFAULT_MAX_TOKEN_LIFETIME,
                clock_skew_allowance: DEFAULT_TOKEN_CLOCK_SKEW,
                max_body_bytes: MAX_HEADER_BYTES,
                ..DecodeLimits::default()
            },
        }
    }

    /// The longest lifetime a token may grant (counted from when it is
    /// verified; plus the clock skew allowance).
    #[must_use]
    pub fn with_max_lifetime(mut self, max: Duration) -> Self {
        self.limits.max_lifetime = max;
        self
    }

    /// The slack for signers whose clock runs ahead.
    #[must_use]
    pub fn with_clock_skew(mut self, skew: Duration) -> Self {
        self.limits.clock_skew_allowance = skew;
        self
    }

    /// Accepts only tokens naming `audience` (this fleet's name), whatever
    /// the trust store says.
    #[must_use]
    pub fn with_audience(mut self, audience: &str) -> Self {
        self.audience = Some(audience.to_owned());
        self
    }

    /// Refuses tokens without `iat` (`missing_issued_at`), whatever the
    /// trust store says: once every minting tool writes it.
    #[must_use]
    pub fn requiring_issued_at(mut self) -> Self {
        self.require_iat = true;
        self
    }

    /// The trusted keys.
    pub fn trust_store(&self) -> &TrustStore {
        &self.trust
    }

    /// The directive a header grants to request `request`, or `None`.
    pub fn verify_request(
        &self,
        header_value: &str,
        request: &RequestId,
    ) -> Option<DiagnosticsDirective> {
        self.judge(header_value, Some(request)).accepted_directive()
    }

    /// Judges a header value, for request `request` when known. Bounded
    /// work: at most [`MAX_HEADER_BYTES`] are looked at, one signature check.
    pub fn judge(&self, header_value: &str, request: Option<&RequestId>) -> Judgement {
        let value = header_value.trim();
        if value.is_empty() {
            return Judgement::refused(HeaderVerdict::Absent);
        }
        if value.len() > MAX_HEADER_BYTES {
            return Judgement::refused(HeaderVerdict::TooLarge);
        }
        let Some((signed, signature)) = value.rsplit_once('.') else {
            return Judgement::refused(HeaderVerdict::Malformed);
        };
        let mut parts = signed.split('.');
        let (Some(version), Some(key_id), Some(payload), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Judgement::refused(HeaderVerdict::Malformed);
        };
        if version != TOKEN_VERSION {
            let versioned = version.len() > 1
                && version.starts_with('v')
                && version[1..].bytes().all(|b| b.is_ascii_digit());
            return Judgement::refused(if versioned {
                HeaderVerdict::UnsupportedVersion
            } else {
                HeaderVerdict::Malformed
            });
        }
        if !is_valid_key_id(key_id) {
            return Judgement::refused(HeaderVerdict::Malformed);
        }
        let mut out = Judgement::refused(HeaderVerdict::Malformed);
        out.key_id = Some(key_id.to_owned());
        let Some(signature) = unb64(signature).filter(|s| s.len() == 64) else {
            return out;
        };
        if let Err(fault) = self.trust.check(key_id, &message(signed), &signature) {
            out.verdict = match fault {
                SignatureFault::UnknownKey => HeaderVerdict::UnknownKey,
                SignatureFault::BadSignature => HeaderVerdict::BadSignature,
            };
            return out;
        }
        let Some(payload) = unb64(payload) else {
            return out;
        };
        let (directive, bound, claims) = match self.payload(&payload) {
            Ok(parts) => parts,
            Err((verdict, reason)) => {
                out.verdict = verdict;
                out.decode_reason = reason;
                return out;
            }
        };
        let now = self.clock.unix_nanos();
        let rules = ClaimRules {
            limits: &self.limits,
            audience: self.audience.as_deref(),
            require_iat: self.require_iat,
        };
        out.verdict = if let Some(verdict) = rules.verdict(&directive, &claims, now) {
            verdict
        } else if directive.expires_at_unix_nanos.is_none_or(|at| at <= now) {
            HeaderVerdict::Expired
        } else {
            match (&bound, request) {
                (Some(b), Some(r)) if b != r => HeaderVerdict::WrongRequest,
                (Some(_), None) => HeaderVerdict::RequestUnchecked,
                _ => HeaderVerdict::Accepted,
            }
        };
        out.directive = Some(directive);
        out.bound_request = bound;
        out
    }

    /// Decodes a verified payload: the directive, the bound request id and
    /// the claims.
    #[allow(clippy::type_complexity)]
    fn payload(
        &self,
        payload: &[u8],
    ) -> Result<
        (TimedDirective, Option<RequestId>, TokenClaims),
        (HeaderVerdict, Option<RejectReason>),
    > {
        let malformed = (HeaderVerdict::Malformed, None);
        let text = std::str::from_utf8(payload).map_err(|_| malformed)?;
        let Ok(Json::Object(fields)) = json::parse(text) else {
            return Err(malformed);
        };
        let (mut directive, mut bound) = (None, None);
        let mut claims = TokenClaims::default();
        for (key, value) in fields {
            match (key.as_str(), value) {
                ("directive", v @ Json::Object(_)) => directive = Some(v),
                ("request_id", Json::String(s)) if valid_request_id(&s) => {
                    bound = Some(RequestId::from(s.as_str()));
                }
                ("iat", Json::String(s)) => {
                    claims.issued_at_unix_nanos = Some(parse_rfc3339(&s).map_err(|_| malformed)?);
                }
                ("nbf", Json::String(s)) => {
                    claims.not_before_unix_nanos = Some(parse_rfc3339(&s).map_err(|_| malformed)?);
                }
                ("aud", Json::String(s)) if is_valid_key_id(&s) => claims.audience = Some(s),
                _ => return Err(malformed),
            }
        }
        let directive = directive.ok_or(malformed)?;
        if let Json::Object(fields) = &directive {
            if fields.iter().any(|(k, _)| k == "ttl_secs") {
                return Err((HeaderVerdict::RelativeLifetime, None));
            }
        }
        match decode_parsed(directive, self.clock.as_ref(), &self.limits) {
            Ok(d) => Ok((d, bound, claims)),
            Err(RejectReason::LifetimeTooLong) => Err((HeaderVerdict::LifetimeTooLong, None)),
            Err(r) => Err((HeaderVerdict::InvalidDirective, Some(r))),
        }
    }
}

impl DirectiveVerifier for TokenVerifier {
    /// The directive of an accepted, unbound token (a bound one needs
    /// [`TokenVerifier::verify_request`]).
    fn verify(&self, header_value: &str) -> Option<DiagnosticsDirective> {
        self.judge(header_value, None).accepted_directive()
    }
}

/// Folds a single-request directive into the set's decision: the higher
/// level wins, ring buffer and capture if either asks. The header's
/// directive counts only if it applies to the request at `now` (targets,
/// sample, expiry: [`DiagnosticsDirective::level_if_applies`]). When the
/// header's level is the higher, the decision's
/// [`winner`](Decision::winner) is `None` (no directive of the set produced
/// it): a level above `Off` without a winner came from the header.
pub fn raise(
    decision: Decision,
    header: Option<&DiagnosticsDirective>,
    attrs: &RequestAttrs<'_>,
    now: Instant,
    request: &RequestId,
) -> Decision {
    let Some(d) = header else {
        return decision;
    };
    match d.level_if_applies(attrs, now, request) {
        None => decision,
        Some(level) => Decision {
            level: decision.level.max(level),
            ring_buffer: decision.ring_buffer || d.ring_buffer,
            capture: decision.capture || d.capture,
            winner: if level > decision.level {
                None
            } else {
                decision.winner
            },
            revision: decision.revision,
        },
    }
}
