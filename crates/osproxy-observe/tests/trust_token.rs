//! The signed single-request directive: what `TokenVerifier` accepts, every
//! tampering it refuses with its slug, key rotation, no panic on any input,
//! and how an accepted directive raises a request's decision.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use osproxy_core::{Clock, EndpointKind, ManualClock, PartitionId, RequestId};
use osproxy_observe::token::{raise, sign_token, MAX_HEADER_BYTES};
use osproxy_observe::{
    decode_directive, DecodeLimits, DiagLevel, DirectiveVerifier, HeaderVerdict, RequestAttrs,
    SignerKey, TimedDirective, TokenVerifier, TrustStore,
};
use proptest::prelude::*;

fn key(id: &str, seed: u8) -> SignerKey {
    SignerKey::from_seed(id, [seed; 32]).unwrap()
}

fn trusting(keys: &[&SignerKey]) -> TrustStore {
    let mut store = TrustStore::new();
    for k in keys {
        store.trust(k).unwrap();
    }
    store
}

/// A directive decoded on `clock` living `ttl` seconds.
fn directive(clock: &ManualClock, ttl: u64) -> TimedDirective {
    let body =
        format!(r#"{{"id":"trace-1","level":"ShapeTiming","tenant":"acme","ttl_secs":{ttl}}}"#);
    let limits = DecodeLimits::default();
    decode_directive(body.as_bytes(), clock, &limits).unwrap()
}

struct World {
    clock: Arc<ManualClock>,
    signer: SignerKey,
    verifier: TokenVerifier,
}

fn world() -> World {
    let clock = Arc::new(ManualClock::new());
    let signer = key("ops-1", 1);
    let verifier = TokenVerifier::new(trusting(&[&signer]), clock.clone());
    World {
        clock,
        signer,
        verifier,
    }
}

fn verdict(w: &World, token: &str, request: Option<&str>) -> HeaderVerdict {
    let request = request.map(RequestId::from);
    w.verifier.judge(token, request.as_ref()).verdict
}

#[test]
fn a_token_signed_with_a_trusted_key_is_accepted() {
    let w = world();
    let d = directive(&w.clock, 600);
    let token = sign_token(&w.signer, &d, None).unwrap();
    assert!(token.starts_with("v1.ops-1."), "{token}");
    let got = w.verifier.verify(&token).expect("accepted");
    assert_eq!(got.id, "trace-1");
    assert_eq!(got.level, DiagLevel::ShapeTiming);
    assert_eq!(got.expires_at, d.expires_at);
    let j = w.verifier.judge(&token, None);
    assert_eq!(j.verdict.slug(), "accepted");
    assert_eq!(j.key_id.as_deref(), Some("ops-1"));
    // Surrounding whitespace, as HTTP stacks may leave it, is fine.
    assert!(w.verifier.verify(&format!(" {token} ")).is_some());
}

#[test]
fn a_request_bound_token_applies_to_that_request_only() {
    let w = world();
    let d = directive(&w.clock, 60);
    let token = sign_token(&w.signer, &d, Some(&RequestId::from("req-42"))).unwrap();
    assert_eq!(verdict(&w, &token, Some("req-42")), HeaderVerdict::Accepted);
    assert!(w
        .verifier
        .verify_request(&token, &RequestId::from("req-42"))
        .is_some());
    assert_eq!(
        verdict(&w, &token, Some("req-43")),
        HeaderVerdict::WrongRequest
    );
    // The seed's seam cannot compare: refused, never granted to any request.
    assert_eq!(verdict(&w, &token, None), HeaderVerdict::RequestUnchecked);
    assert!(w.verifier.verify(&token).is_none());
}

/// Replaces part `i` (0-based, dot-separated) of a token.
fn with_part(token: &str, i: usize, part: &str) -> String {
    let mut parts: Vec<&str> = token.split('.').collect();
    parts[i] = part;
    parts.join(".")
}

fn flip_char(s: &str, at: usize) -> String {
    let mut b = s.as_bytes().to_vec();
    b[at] = if b[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(b).unwrap()
}

#[test]
fn every_tampering_is_refused_with_its_slug() {
    let mut w = world();
    // A second trusted key, so a renamed key id names a key that exists.
    let second = key("ops-2", 2);
    w.verifier = TokenVerifier::new(trusting(&[&w.signer, &second]), w.clock.clone());
    let token = sign_token(
        &w.signer,
        &directive(&w.clock, 600),
        Some(&RequestId::from("r1")),
    )
    .unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let payload = parts[2];
    let signature = parts[3];
    let other = key("ops-3", 3);
    let unknown = sign_token(&other, &directive(&w.clock, 600), None).unwrap();
    // A payload edited by a client: re-encoded with a higher level.
    let decoded = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    let edited = URL_SAFE_NO_PAD.encode(decoded.replace("ShapeTiming", "ShapeRewriteDiff"));
    let cases: Vec<(&str, String, HeaderVerdict)> = vec![
        (
            "payload byte",
            with_part(&token, 2, &flip_char(payload, 5)),
            HeaderVerdict::BadSignature,
        ),
        (
            "payload edited",
            with_part(&token, 2, &edited),
            HeaderVerdict::BadSignature,
        ),
        (
            "signature byte",
            with_part(&token, 3, &flip_char(signature, 10)),
            HeaderVerdict::BadSignature,
        ),
        (
            "key id renamed",
            with_part(&token, 1, "ops-2"),
            HeaderVerdict::BadSignature,
        ),
        (
            "key id unknown",
            with_part(&token, 1, "nobody"),
            HeaderVerdict::UnknownKey,
        ),
        ("unknown key", unknown, HeaderVerdict::UnknownKey),
        (
            "truncated",
            token[..token.len() - 5].to_owned(),
            HeaderVerdict::Malformed,
        ),
        (
            "truncated to three parts",
            parts[..3].join("."),
            HeaderVerdict::Malformed,
        ),
        (
            "oversized",
            format!("{token}{}", "A".repeat(MAX_HEADER_BYTES)),
            HeaderVerdict::TooLarge,
        ),
        (
            "non-base64 signature",
            with_part(&token, 3, "not*base64!"),
            HeaderVerdict::Malformed,
        ),
        (
            "non-base64 payload",
            with_part(&token, 2, "%%%"),
            HeaderVerdict::BadSignature,
        ),
        (
            "version",
            with_part(&token, 0, "v2"),
            HeaderVerdict::UnsupportedVersion,
        ),
        (
            "garbage version",
            with_part(&token, 0, "x"),
            HeaderVerdict::Malformed,
        ),
        (
            "bad key id",
            with_part(&token, 1, "a/b"),
            HeaderVerdict::Malformed,
        ),
        ("five parts", format!("{token}.x"), HeaderVerdict::Malformed),
        ("empty", String::new(), HeaderVerdict::Absent),
        ("blank", "   ".to_owned(), HeaderVerdict::Absent),
        ("wrong request", token.clone(), HeaderVerdict::WrongRequest),
    ];
    for (name, value, want) in cases {
        assert_eq!(verdict(&w, &value, Some("r2")), want, "{name}");
        if name != "wrong request" {
            assert_ne!(
                verdict(&w, &value, Some("r1")),
                HeaderVerdict::Accepted,
                "{name}"
            );
        }
    }
    assert_eq!(verdict(&w, &token, Some("r1")), HeaderVerdict::Accepted);
}

#[test]
fn expiry_is_enforced_and_the_maximum_too() {
    let w = world();
    let short = sign_token(&w.signer, &directive(&w.clock, 60), None).unwrap();
    assert_eq!(verdict(&w, &short, None), HeaderVerdict::Accepted);
    w.clock.advance(Duration::from_secs(60));
    assert_eq!(verdict(&w, &short, None), HeaderVerdict::Expired);
    // 15 minutes is the default maximum (plus 30 s of clock skew).
    let max = sign_token(&w.signer, &directive(&w.clock, 15 * 60 + 30), None).unwrap();
    assert_eq!(verdict(&w, &max, None), HeaderVerdict::Accepted);
    let long = sign_token(&w.signer, &directive(&w.clock, 15 * 60 + 31), None).unwrap();
    assert_eq!(verdict(&w, &long, None), HeaderVerdict::LifetimeTooLong);
    let day = sign_token(&w.signer, &directive(&w.clock, 86_400), None).unwrap();
    assert_eq!(verdict(&w, &day, None), HeaderVerdict::LifetimeTooLong);
    // Configurable.
    let wider = TokenVerifier::new(trusting(&[&w.signer]), w.clock.clone())
        .with_max_lifetime(Duration::from_secs(86_400));
    assert!(wider.verify(&day).is_some());
    let narrow = TokenVerifier::new(trusting(&[&w.signer]), w.clock.clone())
        .with_max_lifetime(Duration::from_secs(30))
        .with_clock_skew(Duration::ZERO);
    assert_eq!(narrow.judge(&short, None).verdict, HeaderVerdict::Expired);
    assert_eq!(
        narrow.judge(&max, None).verdict,
        HeaderVerdict::LifetimeTooLong
    );
}

/// Signs an arbitrary payload the way `sign_token` does, to reach the
/// checks behind the signature.
fn signed_payload(signer_seed: u8, payload: &str) -> String {
    // `sign_token` only signs well-formed payloads; this follows the
    // documented format by hand.
    let signer = key("ops-1", signer_seed);
    let signed = format!("v1.ops-1.{}", URL_SAFE_NO_PAD.encode(payload));
    let mut message = b"osproxy-directives token v1\0".to_vec();
    message.extend_from_slice(signed.as_bytes());
    let signature = ed25519_sign(&signer, &message);
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn ed25519_sign(signer: &SignerKey, message: &[u8]) -> Vec<u8> {
    use ed25519_dalek::{Signer, SigningKey};
    let line = signer.to_private_line();
    let seed = URL_SAFE_NO_PAD
        .decode(line.trim().rsplit(' ').next().unwrap())
        .unwrap();
    let key = SigningKey::from_bytes(&seed.try_into().unwrap());
    key.sign(message).to_bytes().to_vec()
}

#[test]
fn a_signed_payload_still_goes_through_the_fail_closed_decoder() {
    let w = world();
    let at = osproxy_observe::format_rfc3339(w.clock.unix_nanos() + 60_000_000_000);
    let ok = format!(r#"{{"directive":{{"id":"a","level":"Shape","expires_at":"{at}"}}}}"#);
    assert_eq!(
        verdict(&w, &signed_payload(1, &ok), None),
        HeaderVerdict::Accepted
    );
    let cases = [
        (
            r#"{"directive":{"id":"a","level":"Shape","ttl_secs":60}}"#.to_owned(),
            HeaderVerdict::RelativeLifetime,
        ),
        (
            format!(r#"{{"directive":{{"id":"a","level":"Loud","expires_at":"{at}"}}}}"#),
            HeaderVerdict::InvalidDirective,
        ),
        (
            format!(
                r#"{{"directive":{{"id":"a","level":"Shape","tennant":"x","expires_at":"{at}"}}}}"#
            ),
            HeaderVerdict::InvalidDirective,
        ),
        (
            format!(
                r#"{{"directive":{{"id":"a","level":"Shape","expires_at":"{at}"}},"extra":1}}"#
            ),
            HeaderVerdict::Malformed,
        ),
        (
            format!(
                r#"{{"directive":{{"id":"a","level":"Shape","expires_at":"{at}"}},"request_id":""}}"#
            ),
            HeaderVerdict::Malformed,
        ),
        (
            format!(
                r#"{{"directive":{{"id":"a","level":"Shape","expires_at":"{at}"}},"directive":{{}}}}"#
            ),
            HeaderVerdict::Malformed,
        ),
        ("[]".to_owned(), HeaderVerdict::Malformed),
        ("{}".to_owned(), HeaderVerdict::Malformed),
        ("not json".to_owned(), HeaderVerdict::Malformed),
    ];
    for (payload, want) in &cases {
        assert_eq!(
            verdict(&w, &signed_payload(1, payload), None),
            *want,
            "{payload}"
        );
    }
    let invalid = w.verifier.judge(&signed_payload(1, &cases[2].0), None);
    assert_eq!(
        invalid.decode_reason.map(|r| r.slug()),
        Some("unknown_field")
    );
}

#[test]
fn keys_rotate_old_and_new_trusted_then_old_removed() {
    let clock = Arc::new(ManualClock::new());
    let old = key("ops-2025", 3);
    let new = key("ops-2026", 4);
    let d = directive(&clock, 300);
    let by_old = sign_token(&old, &d, None).unwrap();
    let by_new = sign_token(&new, &d, None).unwrap();
    let only_old = TokenVerifier::new(trusting(&[&old]), clock.clone());
    assert!(only_old.verify(&by_old).is_some());
    assert_eq!(
        only_old.judge(&by_new, None).verdict,
        HeaderVerdict::UnknownKey
    );
    let both = TokenVerifier::new(trusting(&[&old, &new]), clock.clone());
    assert!(both.verify(&by_old).is_some());
    assert!(both.verify(&by_new).is_some());
    let mut store = trusting(&[&old, &new]);
    assert!(store.remove("ops-2025"));
    let only_new = TokenVerifier::new(store, clock.clone());
    assert_eq!(
        only_new.judge(&by_old, None).verdict,
        HeaderVerdict::UnknownKey
    );
    assert!(only_new.verify(&by_new).is_some());
}

#[test]
fn an_accepted_directive_raises_the_request_to_the_higher_level() {
    let w = world();
    let token = sign_token(
        &w.signer,
        &directive(&w.clock, 60),
        Some(&RequestId::from("req-7")),
    )
    .unwrap();
    let request = RequestId::from("req-7");
    let header = w.verifier.verify_request(&token, &request);
    let acme = PartitionId::from("acme");
    let attrs = RequestAttrs::new(EndpointKind::Search).with_tenant(&acme);
    let set = osproxy_observe::DirectiveSet::new();
    let base = set.decide(&attrs, w.clock.now(), &request);
    assert_eq!(base.level, DiagLevel::Off);
    let raised = raise(base, header.as_ref(), &attrs, w.clock.now(), &request);
    assert_eq!(raised.level, DiagLevel::ShapeTiming);
    // Its targets still apply: another tenant is not raised.
    let other = PartitionId::from("other");
    let elsewhere = RequestAttrs::new(EndpointKind::Search).with_tenant(&other);
    let not = raise(base, header.as_ref(), &elsewhere, w.clock.now(), &request);
    assert_eq!(not.level, DiagLevel::Off);
    // A higher set decision is kept.
    let high = osproxy_observe::Decision {
        level: DiagLevel::ShapeRewriteDiff,
        ..base
    };
    assert_eq!(
        raise(high, header.as_ref(), &attrs, w.clock.now(), &request).level,
        DiagLevel::ShapeRewriteDiff
    );
}

#[test]
fn every_verdict_has_a_distinct_slug() {
    let slugs: std::collections::BTreeSet<&str> =
        HeaderVerdict::ALL.iter().map(|v| v.slug()).collect();
    assert_eq!(slugs.len(), HeaderVerdict::ALL.len());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn arbitrary_headers_never_panic_and_are_refused(value in ".{0,300}") {
        let w = world();
        prop_assert!(w.verifier.verify(&value).is_none());
        let _ = w.verifier.judge(&value, Some(&RequestId::from("r")));
    }

    #[test]
    fn mutated_tokens_never_panic_and_never_raise_the_level(
        at in 0usize..400, byte in any::<u8>(), cut in 0usize..400,
    ) {
        let w = world();
        let token = sign_token(&w.signer, &directive(&w.clock, 60), None).unwrap();
        let mut bytes = token.clone().into_bytes();
        let at = at % bytes.len();
        bytes[at] = byte;
        bytes.truncate(cut.max(1).min(bytes.len()));
        let mutated = String::from_utf8_lossy(&bytes).into_owned();
        let got = w.verifier.verify(&mutated);
        if mutated.trim() != token {
            prop_assert!(got.is_none(), "accepted a mutation: {mutated}");
        }
    }
}
