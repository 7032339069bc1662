//! Header token claims: `iat` bounds a token's whole lifetime (a year-long
//! token is refused even in its last minutes), `nbf` and a future `iat` are
//! not yet valid, an audience required by the trust store (or the verifier)
//! refuses tokens for another fleet or for none, and a trust store can
//! require `iat`. Tokens without claims keep working where nothing is
//! required.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use osproxy_core::{Clock, ManualClock};
use osproxy_observe::token::{sign_token, sign_token_with, TokenClaims, TokenError};
use osproxy_observe::{
    decode_directive, DecodeLimits, HeaderVerdict, SignerKey, TimedDirective, TokenVerifier,
    TrustStore,
};

const MINUTE: u64 = 60 * 1_000_000_000;

fn signer() -> SignerKey {
    SignerKey::from_seed("ops-1", [1; 32]).unwrap()
}

fn store(extra: &str) -> TrustStore {
    TrustStore::parse(&format!("{}{extra}", signer().to_public_line())).unwrap()
}

/// A directive decoded on `clock`, living `ttl` seconds from now, with no
/// lifetime cap (the decode here only builds the token).
fn directive(clock: &ManualClock, ttl: u64) -> TimedDirective {
    let body = format!(r#"{{"id":"t","level":"ShapeTiming","ttl_secs":{ttl}}}"#);
    let limits = DecodeLimits {
        max_lifetime: Duration::from_secs(400 * 24 * 3600),
        ..DecodeLimits::default()
    };
    decode_directive(body.as_bytes(), clock, &limits).unwrap()
}

fn verdict(verifier: &TokenVerifier, token: &str) -> HeaderVerdict {
    verifier.judge(token, None).verdict
}

#[test]
fn a_year_long_token_is_refused_even_in_its_last_minutes() {
    let clock = Arc::new(ManualClock::new());
    let verifier = TokenVerifier::new(store(""), clock.clone());
    let minted_at = clock.unix_nanos();
    let year = directive(&clock, 365 * 24 * 3600);
    let with_iat =
        sign_token_with(&signer(), &year, None, &TokenClaims::issued_at(minted_at)).unwrap();
    let without = sign_token(&signer(), &year, None).unwrap();
    assert_eq!(
        verdict(&verifier, &with_iat),
        HeaderVerdict::LifetimeTooLong
    );
    // Its last ten minutes: the remaining lifetime is within the maximum,
    // the whole one is not.
    clock.advance(Duration::from_secs(365 * 24 * 3600 - 600));
    assert_eq!(
        verdict(&verifier, &with_iat),
        HeaderVerdict::LifetimeTooLong
    );
    // Without `iat` only the remaining lifetime is known: accepted, which
    // is why a trust store can require `iat`.
    assert_eq!(verdict(&verifier, &without), HeaderVerdict::Accepted);
    let strict = TokenVerifier::new(store("osproxy-require token-iat\n"), clock.clone());
    assert_eq!(verdict(&strict, &without), HeaderVerdict::MissingIssuedAt);
    let strict_too = TokenVerifier::new(store(""), clock.clone()).requiring_issued_at();
    assert_eq!(
        verdict(&strict_too, &without),
        HeaderVerdict::MissingIssuedAt
    );

    // A token within the maximum since its `iat` is accepted by both.
    let now = clock.unix_nanos();
    let short = sign_token_with(
        &signer(),
        &directive(&clock, 600),
        None,
        &TokenClaims::issued_at(now),
    )
    .unwrap();
    assert_eq!(verdict(&verifier, &short), HeaderVerdict::Accepted);
    assert_eq!(verdict(&strict, &short), HeaderVerdict::Accepted);
    // 15 minutes plus the 30 s skew is the default maximum since `iat`.
    let edge = |secs| {
        sign_token_with(
            &signer(),
            &directive(&clock, secs),
            None,
            &TokenClaims::issued_at(now),
        )
        .unwrap()
    };
    assert_eq!(
        verdict(&verifier, &edge(15 * 60 + 30)),
        HeaderVerdict::Accepted
    );
    // (Issued a minute before the directive's clock, so its whole lifetime
    // is one minute longer than its remaining one.)
    let early = sign_token_with(
        &signer(),
        &directive(&clock, 15 * 60),
        None,
        &TokenClaims::issued_at(now - MINUTE),
    )
    .unwrap();
    assert_eq!(verdict(&verifier, &early), HeaderVerdict::LifetimeTooLong);
}

#[test]
fn a_token_is_not_valid_before_nbf_nor_its_iat() {
    let clock = Arc::new(ManualClock::new());
    let verifier = TokenVerifier::new(store(""), clock.clone());
    let now = clock.unix_nanos();
    let later = TokenClaims {
        issued_at_unix_nanos: Some(now),
        not_before_unix_nanos: Some(now + 5 * MINUTE),
        audience: None,
    };
    let token = sign_token_with(&signer(), &directive(&clock, 600), None, &later).unwrap();
    assert_eq!(verdict(&verifier, &token), HeaderVerdict::NotYetValid);
    // Within the clock skew allowance (30 s) of nbf it is valid.
    clock.advance(Duration::from_secs(5 * 60 - 30));
    assert_eq!(verdict(&verifier, &token), HeaderVerdict::Accepted);
    // An `iat` in the future is a token minted ahead of time: not yet.
    let now = clock.unix_nanos();
    let ahead = sign_token_with(
        &signer(),
        &directive(&clock, 600),
        None,
        &TokenClaims::issued_at(now + 2 * MINUTE),
    )
    .unwrap();
    assert_eq!(verdict(&verifier, &ahead), HeaderVerdict::NotYetValid);
    clock.advance(Duration::from_secs(120));
    assert_eq!(verdict(&verifier, &ahead), HeaderVerdict::Accepted);
}

#[test]
fn a_required_audience_refuses_other_fleets_and_tokens_without_one() {
    let clock = Arc::new(ManualClock::new());
    let now = clock.unix_nanos();
    let for_fleet = |aud: Option<&str>| {
        sign_token_with(
            &signer(),
            &directive(&clock, 600),
            None,
            &TokenClaims {
                issued_at_unix_nanos: Some(now),
                not_before_unix_nanos: None,
                audience: aud.map(str::to_owned),
            },
        )
        .unwrap()
    };
    let prod = for_fleet(Some("prod-eu"));
    let staging = for_fleet(Some("staging"));
    let none = for_fleet(None);
    let strict = TokenVerifier::new(store("osproxy-audience prod-eu\n"), clock.clone());
    assert_eq!(verdict(&strict, &prod), HeaderVerdict::Accepted);
    assert_eq!(verdict(&strict, &staging), HeaderVerdict::WrongAudience);
    assert_eq!(verdict(&strict, &none), HeaderVerdict::WrongAudience);
    // The verifier can say it too.
    let by_code = TokenVerifier::new(store(""), clock.clone()).with_audience("staging");
    assert_eq!(verdict(&by_code, &staging), HeaderVerdict::Accepted);
    assert_eq!(verdict(&by_code, &prod), HeaderVerdict::WrongAudience);
    // Without a required audience any is accepted.
    let open = TokenVerifier::new(store(""), clock.clone());
    for t in [&prod, &staging, &none] {
        assert_eq!(verdict(&open, t), HeaderVerdict::Accepted);
    }
    // Minting refuses an audience that breaks the key id rule.
    let bad = TokenClaims {
        audience: Some("prod eu".into()),
        ..TokenClaims::default()
    };
    assert_eq!(
        sign_token_with(&signer(), &directive(&clock, 600), None, &bad),
        Err(TokenError::InvalidAudience)
    );
}

#[test]
fn the_new_verdicts_have_distinct_slugs() {
    let slugs: Vec<&str> = [
        HeaderVerdict::NotYetValid,
        HeaderVerdict::WrongAudience,
        HeaderVerdict::MissingIssuedAt,
    ]
    .iter()
    .map(|v| v.slug())
    .collect();
    assert_eq!(
        slugs,
        ["not_yet_valid", "wrong_audience", "missing_issued_at"]
    );
    assert!(HeaderVerdict::ALL.contains(&HeaderVerdict::MissingIssuedAt));
}
