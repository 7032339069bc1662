//! The single-request channel's cost (SPEC §9): `TokenVerifier::verify` of a
//! valid `X-Debug-Directive` header (one Ed25519 verification plus the
//! payload through the fail-closed decoder), and of garbage of the same size
//! (refused before any cryptography), plus the signed-value check an
//! instance with a trust store runs once per etcd value.
//!
//! Run with `cargo bench -p osproxy-bench --bench trust`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use osproxy_core::{ManualClock, RequestId};
use osproxy_observe::signed::{open_value, sign_value};
use osproxy_observe::token::sign_token;
use osproxy_observe::{
    decode_directive, DecodeLimits, DirectiveVerifier, SignerKey, TokenVerifier, TrustStore,
};

fn verify(c: &mut Criterion) {
    let clock = Arc::new(ManualClock::new());
    let signer = SignerKey::from_seed("ops-1", [1; 32]).unwrap();
    let mut trust = TrustStore::new();
    trust.trust(&signer).unwrap();
    // Rotation in progress: a second trusted key (look-up is by id).
    trust
        .trust(&SignerKey::from_seed("ops-2", [2; 32]).unwrap())
        .unwrap();
    let verifier = TokenVerifier::new(trust.clone(), clock.clone());
    let body = br#"{"id":"trace","level":"ShapeTiming","tenant":"acme","endpoint":"Search","ttl_secs":600}"#;
    let directive = decode_directive(body, clock.as_ref(), &DecodeLimits::default()).unwrap();
    let unbound = sign_token(&signer, &directive, None).unwrap();
    let request = RequestId::from("req-42");
    let bound = sign_token(&signer, &directive, Some(&request)).unwrap();
    assert!(verifier.verify(&unbound).is_some());
    assert!(verifier.verify_request(&bound, &request).is_some());
    let garbage: String = "x".repeat(unbound.len());
    assert!(verifier.verify(&garbage).is_none());
    let mut forged = unbound.clone();
    forged.replace_range(20..21, if &unbound[20..21] == "A" { "B" } else { "A" });
    assert!(verifier.verify(&forged).is_none());

    let mut g = c.benchmark_group("verify_header");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    g.bench_function("valid", |b| b.iter(|| verifier.verify(black_box(&unbound))));
    g.bench_function("valid_bound_to_request", |b| {
        b.iter(|| verifier.verify_request(black_box(&bound), &request))
    });
    g.bench_function("garbage", |b| {
        b.iter(|| verifier.verify(black_box(&garbage)))
    });
    g.bench_function("bad_signature", |b| {
        b.iter(|| verifier.verify(black_box(&forged)))
    });
    g.bench_function("absent", |b| b.iter(|| verifier.verify(black_box(""))));
    g.finish();

    let set = osproxy_bench::distinct_tenants_body(100, false);
    let key = b"/osproxy/directives";
    let value = sign_value(&signer, key, &set);
    let mut g = c.benchmark_group("signed_value");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    g.bench_function("open_100_directives", |b| {
        b.iter(|| {
            open_value(black_box(&value), key, Some(&trust))
                .unwrap()
                .len()
        })
    });
    g.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
