//! Trust on an instance (SPEC §9): the single-request directive under this
//! instance's ceilings ([`clamp_header`]) and the whole per-request decision
//! with a header ([`decide_with_header`]); the header's verdict for an
//! explain endpoint comes from [`TokenVerifier::judge`].
//!
//! Signed directive sets are enforced by the store itself: see
//! [`EtcdStoreBuilder::trust_store`](crate::EtcdStoreBuilder::trust_store).

use osproxy_core::{Instant, RequestId};
use osproxy_observe::token::raise;
use osproxy_observe::{Decision, DiagnosticsDirective, DirectiveSet, RequestAttrs, TokenVerifier};

use crate::safety::{clamp_directive, Ceilings, Clamp};

/// The header's directive as this instance's ceilings allow it, and the
/// clamps applied (the same rule as for published sets).
pub fn clamp_header(
    mut directive: DiagnosticsDirective,
    ceilings: &Ceilings,
) -> (DiagnosticsDirective, Vec<Clamp>) {
    let clamps = clamp_directive(&mut directive, ceilings);
    (directive, clamps)
}

/// One request's decision: the served set's, raised by a verified
/// `X-Debug-Directive` header (`None` when the request has none) to the
/// higher of the two, with the header's directive within `ceilings`. The
/// set is the served snapshot, already within the ceilings.
pub fn decide_with_header(
    set: &DirectiveSet,
    verifier: &TokenVerifier,
    header: Option<&str>,
    ceilings: &Ceilings,
    attrs: &RequestAttrs<'_>,
    now: Instant,
    request: &RequestId,
) -> Decision {
    let decision = set.decide(attrs, now, request);
    let Some(header) = header else {
        return decision;
    };
    let granted = verifier
        .verify_request(header, request)
        .map(|d| clamp_header(d, ceilings).0);
    raise(decision, granted.as_ref(), attrs, now, request)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use osproxy_core::{Clock, EndpointKind, ManualClock};
    use osproxy_observe::token::sign_token;
    use osproxy_observe::{decode_directive, DecodeLimits, DiagLevel, SignerKey, TrustStore};

    use super::*;

    #[test]
    fn a_header_raises_the_decision_within_the_ceilings() {
        let clock = Arc::new(ManualClock::new());
        let signer = SignerKey::from_seed("k", [9; 32]).unwrap();
        let mut trust = TrustStore::new();
        trust.trust(&signer).unwrap();
        let verifier = TokenVerifier::new(trust, clock.clone());
        let body = br#"{"id":"t","level":"ShapeRewriteDiff","capture":true,"ttl_secs":60}"#;
        let d = decode_directive(body, clock.as_ref(), &DecodeLimits::default()).unwrap();
        let request = RequestId::from("req-1");
        let token = sign_token(&signer, &d, Some(&request)).unwrap();
        let set = DirectiveSet::new();
        let attrs = RequestAttrs::new(EndpointKind::Search);
        let now = clock.now();
        let none = Ceilings::NONE;
        let decide = |h: Option<&str>, c: &Ceilings, r: &RequestId| {
            decide_with_header(&set, &verifier, h, c, &attrs, now, r)
        };
        let raised = decide(Some(&token), &none, &request);
        assert_eq!(raised.level, DiagLevel::ShapeRewriteDiff);
        assert!(raised.capture);
        assert_eq!(decide(None, &none, &request).level, DiagLevel::Off);
        let other = RequestId::from("req-2");
        assert_eq!(decide(Some(&token), &none, &other).level, DiagLevel::Off);
        let strict = Ceilings {
            max_level: Some(DiagLevel::Shape),
            capture_allowed: false,
            ..Ceilings::NONE
        };
        let capped = decide(Some(&token), &strict, &request);
        assert_eq!(capped.level, DiagLevel::Shape);
        assert!(!capped.capture);
        let (_, clamps) = clamp_header(d.directive.clone(), &strict);
        assert_eq!(clamps, [Clamp::Level, Clamp::Capture]);
    }
}
