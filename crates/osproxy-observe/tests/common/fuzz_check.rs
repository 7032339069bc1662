//! The decode property checked by the fuzz target
//! (`fuzz/fuzz_targets/decode.rs` includes this very file) and replayed over
//! the checked-in corpus by `tests/fuzz_corpus.rs`.
//!
//! For arbitrary bytes: decoding never panics; when it succeeds, the canonical
//! encoding decodes back to the same set on the same clock, re-encodes to the
//! same bytes, and the indexed evaluator agrees with the linear scan.

use osproxy_core::{ManualClock, RequestId};
use osproxy_observe::{
    decode_directive_set, decode_directive_set_with, encode_directive_set, DecodeLimits,
    RequestAttrs,
};

/// Runs the check; panics on a violated property.
pub fn check_decode(data: &[u8]) {
    let clock = ManualClock::new();
    let Ok(set) = decode_directive_set(data, &clock) else {
        return;
    };
    let encoded = encode_directive_set(&set);
    // The canonical form writes every lifetime as an absolute `expires_at`,
    // which is longer than a small `ttl_secs`: a body just under the size
    // limit can encode to just over it. Size is the only limit lifted here.
    let limits = DecodeLimits {
        max_body_bytes: usize::MAX,
        ..DecodeLimits::default()
    };
    let again = match decode_directive_set_with(&encoded, &clock, &limits) {
        Ok(again) => again,
        Err(e) => panic!("canonical encoding rejected: {e}"),
    };
    assert!(again == set, "decode(encode(set)) != set");
    assert!(
        encode_directive_set(&again) == encoded,
        "encoding is not a fixpoint"
    );

    // The evaluator must agree with the reference scan, for a request shaped
    // after each of the first few directives and for a bare one.
    let id = RequestId::from("fuzz-request");
    for d in set.directives().iter().take(8) {
        let m = &d.match_;
        let mut attrs = RequestAttrs::new(m.endpoint.unwrap_or(osproxy_core::EndpointKind::Search));
        attrs.tenant = m.tenant.as_ref();
        if let Some(index) = &m.index {
            attrs.index = index.as_str();
        }
        if let Some(principal) = &m.principal {
            attrs.principal = principal;
        }
        let now = osproxy_core::Clock::now(&clock);
        assert!(set.decide(&attrs, now, &id) == set.decide_by_scan(&attrs, now, &id));
    }
    let bare = RequestAttrs::new(osproxy_core::EndpointKind::Unknown);
    let now = osproxy_core::Clock::now(&clock);
    assert!(set.decide(&bare, now, &id) == set.decide_by_scan(&bare, now, &id));
}
