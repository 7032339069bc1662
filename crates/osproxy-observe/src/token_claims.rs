//! The claims of a header token besides its directive (see [`crate::token`]
//! for the format): when it was issued (`iat`), when it starts (`nbf`) and
//! which fleet it is for (`aud`), and the rules a verifier applies to them.
//!
//! Why they exist: a token's lifetime can otherwise only be checked from the
//! moment it is verified, so a token minted for a year passes in its last
//! minutes; and a token for one fleet would pass on every fleet that trusts
//! the same key. A module of its own so that the token module stays the
//! format and the verifier.

use std::time::Duration;

use crate::rules::DecodeLimits;
use crate::timed::TimedDirective;
use crate::token::HeaderVerdict;

/// What a token may say besides its directive and request (see the module
/// docs): when it was issued, when it starts, which fleet it is for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenClaims {
    /// `iat`: when it was minted (nanoseconds since the Unix epoch).
    pub issued_at_unix_nanos: Option<u64>,
    /// `nbf`: not valid before (nanoseconds since the Unix epoch).
    pub not_before_unix_nanos: Option<u64>,
    /// `aud`: the fleet it is for.
    pub audience: Option<String>,
}

impl TokenClaims {
    /// Issued now (`iat` = `now_unix_nanos`), no `nbf`, no audience.
    pub fn issued_at(now_unix_nanos: u64) -> Self {
        TokenClaims {
            issued_at_unix_nanos: Some(now_unix_nanos),
            ..TokenClaims::default()
        }
    }
}

/// What a verifier requires of the claims.
pub(crate) struct ClaimRules<'a> {
    /// The lifetime maximum and the clock skew allowance.
    pub(crate) limits: &'a DecodeLimits,
    /// The audience tokens must name, if any.
    pub(crate) audience: Option<&'a str>,
    /// Whether `iat` is required.
    pub(crate) require_iat: bool,
}

impl ClaimRules<'_> {
    /// The refusal the claims call for, if any: the whole lifetime since
    /// `iat`, a missing `iat`, the audience, `nbf` and `iat` ahead of `now`.
    pub(crate) fn verdict(
        &self,
        directive: &TimedDirective,
        claims: &TokenClaims,
        now: u64,
    ) -> Option<HeaderVerdict> {
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let skew = nanos(self.limits.clock_skew_allowance);
        let max = nanos(self.limits.max_lifetime).saturating_add(skew);
        match (claims.issued_at_unix_nanos, directive.expires_at_unix_nanos) {
            (Some(iat), Some(exp)) if exp.saturating_sub(iat) > max => {
                return Some(HeaderVerdict::LifetimeTooLong)
            }
            (None, _) if self.require_iat => return Some(HeaderVerdict::MissingIssuedAt),
            _ => {}
        }
        if let Some(want) = self.audience {
            if claims.audience.as_deref() != Some(want) {
                return Some(HeaderVerdict::WrongAudience);
            }
        }
        let starts = claims
            .not_before_unix_nanos
            .max(claims.issued_at_unix_nanos);
        if starts.is_some_and(|at| at > now.saturating_add(skew)) {
            return Some(HeaderVerdict::NotYetValid);
        }
        None
    }
}
