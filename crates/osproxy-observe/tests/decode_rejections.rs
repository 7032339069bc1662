//! Every way a directive set is rejected (SPEC §2, fail-closed), with its
//! stable slug and the position of the offending directive.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use osproxy_core::ManualClock;
use osproxy_observe::{decode_directive_set_with, DecodeLimits, RejectReason};

/// Marks values that must never appear in an error's text.
const SECRET: &str = "SECRETVALUE";

struct Case {
    name: &'static str,
    body: Vec<u8>,
    reason: RejectReason,
    slug: &'static str,
    index: Option<usize>,
}

fn case(
    name: &'static str,
    body: impl Into<Vec<u8>>,
    slug: &'static str,
    reason: RejectReason,
    index: Option<usize>,
) -> Case {
    Case {
        name,
        body: body.into(),
        reason,
        slug,
        index,
    }
}

const AT1: Option<usize> = Some(1);
const WHOLE: Option<usize> = None;

/// `"level":"Shape","ttl_secs":60` plus `extra`.
fn with(extra: &str) -> String {
    format!(r#""level":"Shape","ttl_secs":60,{extra}"#)
}

fn table() -> Vec<Case> {
    use RejectReason as R;
    let long_id = "a".repeat(129);
    let long_target = format!("{SECRET}{}", "t".repeat(257 - SECRET.len()));
    let mut padded = body_of(&[valid_directive("d0")]).into_bytes();
    padded.resize(1024 * 1024 + 1, b' ');
    let too_many = body_of(&vec!["{}"; 10_001]);

    vec![
        // --- the body as a whole ---
        case("over 1 MiB", padded, "too_large", R::TooLarge, WHOLE),
        case(
            "invalid utf-8",
            b"{\"directives\":[{\"id\":\"\xff\"}]}".to_vec(),
            "invalid_utf8",
            R::InvalidUtf8,
            WHOLE,
        ),
        case("empty body", "", "malformed_json", R::MalformedJson, WHOLE),
        case(
            "truncated",
            r#"{"directives":["#,
            "malformed_json",
            R::MalformedJson,
            WHOLE,
        ),
        case(
            "trailing comma",
            r#"{"directives":[],}"#,
            "malformed_json",
            R::MalformedJson,
            WHOLE,
        ),
        case(
            "trailing bytes",
            r#"{"directives":[]} {}"#,
            "malformed_json",
            R::MalformedJson,
            WHOLE,
        ),
        case(
            "single quotes",
            "{'directives':[]}",
            "malformed_json",
            R::MalformedJson,
            WHOLE,
        ),
        case(
            "number overflow",
            r#"{"directives":[],"x":1e999}"#,
            "malformed_json",
            R::MalformedJson,
            WHOLE,
        ),
        case(
            "100k open brackets",
            "[".repeat(100_000),
            "too_deep",
            R::TooDeep,
            WHOLE,
        ),
        case(
            "100k open braces",
            r#"{"a":"#.repeat(100_000),
            "too_deep",
            R::TooDeep,
            WHOLE,
        ),
        case(
            "deep inside a directive",
            second_directive(&with(&format!(
                r#""tenant":{}1{}"#,
                "[".repeat(40),
                "]".repeat(40)
            ))),
            "too_deep",
            R::TooDeep,
            WHOLE,
        ),
        case("top level array", "[]", "wrong_type", R::WrongType, WHOLE),
        case(
            "top level string",
            r#""directives""#,
            "wrong_type",
            R::WrongType,
            WHOLE,
        ),
        case("top level null", "null", "wrong_type", R::WrongType, WHOLE),
        case(
            "directives not an array",
            r#"{"directives":{}}"#,
            "wrong_type",
            R::WrongType,
            WHOLE,
        ),
        case(
            "directives null",
            r#"{"directives":null}"#,
            "wrong_type",
            R::WrongType,
            WHOLE,
        ),
        case(
            "missing directives",
            "{}",
            "missing_field",
            R::MissingField,
            WHOLE,
        ),
        case(
            "unknown top-level field",
            format!(r#"{{"directives":[],"{SECRET}":1}}"#),
            "unknown_field",
            R::UnknownField,
            WHOLE,
        ),
        case(
            "top-level typo",
            r#"{"directive":[]}"#,
            "unknown_field",
            R::UnknownField,
            WHOLE,
        ),
        case(
            "duplicate top-level key",
            r#"{"directives":[],"directives":[]}"#,
            "duplicate_key",
            R::DuplicateKey,
            WHOLE,
        ),
        case(
            "10,001 directives",
            too_many,
            "too_many_directives",
            R::TooManyDirectives,
            WHOLE,
        ),
        // --- one directive (index 1, after a valid one) ---
        case(
            "directive is a number",
            second_raw("1"),
            "wrong_type",
            R::WrongType,
            AT1,
        ),
        case(
            "directive is an array",
            second_raw("[]"),
            "wrong_type",
            R::WrongType,
            AT1,
        ),
        case(
            "directive is null",
            second_raw("null"),
            "wrong_type",
            R::WrongType,
            AT1,
        ),
        case(
            "typo tennant",
            second_directive(&with(&format!(r#""tennant":"{SECRET}""#))),
            "unknown_field",
            R::UnknownField,
            AT1,
        ),
        case(
            "unknown field in directive",
            second_directive(&with(r#""verbose":true"#)),
            "unknown_field",
            R::UnknownField,
            AT1,
        ),
        // The strict JSON reader finds duplicate keys before any directive is
        // looked at, so the rejection is not tied to a position.
        case(
            "duplicate key in directive",
            second_directive(&with(&format!(r#""tenant":"a","tenant":"{SECRET}""#))),
            "duplicate_key",
            R::DuplicateKey,
            WHOLE,
        ),
        case(
            "duplicate id key",
            second_raw(r#"{"id":"x","id":"y","level":"Shape","ttl_secs":60}"#),
            "duplicate_key",
            R::DuplicateKey,
            WHOLE,
        ),
        case(
            "missing id",
            second_raw(r#"{"level":"Shape","ttl_secs":60}"#),
            "missing_field",
            R::MissingField,
            AT1,
        ),
        case(
            "missing level",
            second_directive(r#""ttl_secs":60"#),
            "missing_field",
            R::MissingField,
            AT1,
        ),
        // wrong types, one per field
        case(
            "id not a string",
            second_raw(r#"{"id":7,"level":"Shape","ttl_secs":60}"#),
            "wrong_type",
            R::WrongType,
            AT1,
        ),
        case(
            "level not a string",
            second_directive(r#""level":2,"ttl_secs":60"#),
            "wrong_type",
            R::WrongType,
            AT1,
        ),
        case(
            "ttl_secs a string",
            second_directive(r#""level":"Shape","ttl_secs":"60""#),
            "wrong_type",
            R::WrongType,
            AT1,
        ),
        case(
            "ttl_secs null",
            second_directive(r#""level":"Shape","ttl_secs":null"#),
            "wrong_type",
            R::WrongType,
            AT1,
        ),
        case(
            "expires_at a number",
            second_directive(r#""level":"Shape","expires_at":1704067260"#),
            "wrong_type",
            R::WrongType,
            AT1,
        ),
        case(
            "tenant a number",
            second_directive(&with(r#""tenant":1"#)),
            "wrong_type",
            R::WrongType,
            AT1,
        ),
        case(
            "index a bool",
            second_directive(&with(r#""index":true"#)),
            "wrong_type",
            R::WrongType,
            AT1,
        ),
        case(
            "principal null",
            second_directive(&with(r#""principal":null"#)),
            "wrong_type",
            R::WrongType,
            AT1,
        ),
        case(
            "principal an array",
            second_directive(&with(&format!(r#""principal":["{SECRET}"]"#))),
            "wrong_type",
            R::WrongType,
            AT1,
        ),
        case(
            "endpoint a number",
            second_directive(&with(r#""endpoint":3"#)),
            "wrong_type",
            R::WrongType,
            AT1,
        ),
        case(
            "sample a string",
            second_directive(&with(r#""sample_per_mille":"500""#)),
            "wrong_type",
            R::WrongType,
            AT1,
        ),
        case(
            "ring_buffer a string",
            second_directive(&with(r#""ring_buffer":"true""#)),
            "wrong_type",
            R::WrongType,
            AT1,
        ),
        case(
            "capture a number",
            second_directive(&with(r#""capture":1"#)),
            "wrong_type",
            R::WrongType,
            AT1,
        ),
        // sample range
        case(
            "sample 1001",
            second_directive(&with(r#""sample_per_mille":1001"#)),
            "sample_out_of_range",
            R::SampleOutOfRange,
            AT1,
        ),
        case(
            "sample -1",
            second_directive(&with(r#""sample_per_mille":-1"#)),
            "sample_out_of_range",
            R::SampleOutOfRange,
            AT1,
        ),
        case(
            "sample 2.5",
            second_directive(&with(r#""sample_per_mille":2.5"#)),
            "sample_out_of_range",
            R::SampleOutOfRange,
            AT1,
        ),
        case(
            "sample 1e3",
            second_directive(&with(r#""sample_per_mille":1e3"#)),
            "sample_out_of_range",
            R::SampleOutOfRange,
            AT1,
        ),
        case(
            "sample 2^64",
            second_directive(&with(r#""sample_per_mille":18446744073709551616"#)),
            "sample_out_of_range",
            R::SampleOutOfRange,
            AT1,
        ),
        // ttl
        case(
            "zero ttl",
            second_directive(r#""level":"Shape","ttl_secs":0"#),
            "zero_ttl",
            R::ZeroTtl,
            AT1,
        ),
        case(
            "negative ttl",
            second_directive(r#""level":"Shape","ttl_secs":-5"#),
            "invalid_ttl",
            R::InvalidTtl,
            AT1,
        ),
        case(
            "float ttl",
            second_directive(r#""level":"Shape","ttl_secs":1.5"#),
            "invalid_ttl",
            R::InvalidTtl,
            AT1,
        ),
        case(
            "integral float ttl",
            second_directive(r#""level":"Shape","ttl_secs":60.0"#),
            "invalid_ttl",
            R::InvalidTtl,
            AT1,
        ),
        case(
            "exponent ttl",
            second_directive(r#""level":"Shape","ttl_secs":6e1"#),
            "invalid_ttl",
            R::InvalidTtl,
            AT1,
        ),
        // expiry
        case(
            "no expiry",
            second_directive(r#""level":"Shape""#),
            "missing_expiry",
            R::MissingExpiry,
            AT1,
        ),
        case(
            "both expiries",
            second_directive(
                r#""level":"Shape","ttl_secs":60,"expires_at":"2024-01-01T00:01:00Z""#,
            ),
            "conflicting_expiry",
            R::ConflictingExpiry,
            AT1,
        ),
        case(
            "expires_at words",
            second_directive(r#""level":"Shape","expires_at":"tomorrow""#),
            "invalid_expires_at",
            R::InvalidExpiresAt,
            AT1,
        ),
        case(
            "expires_at date only",
            second_directive(r#""level":"Shape","expires_at":"2024-01-02""#),
            "invalid_expires_at",
            R::InvalidExpiresAt,
            AT1,
        ),
        case(
            "expires_at no offset",
            second_directive(r#""level":"Shape","expires_at":"2024-01-02T00:00:00""#),
            "invalid_expires_at",
            R::InvalidExpiresAt,
            AT1,
        ),
        case(
            "expires_at month 13",
            second_directive(r#""level":"Shape","expires_at":"2024-13-01T00:00:00Z""#),
            "invalid_expires_at",
            R::InvalidExpiresAt,
            AT1,
        ),
        case(
            "expires_at empty",
            second_directive(r#""level":"Shape","expires_at":"""#),
            "invalid_expires_at",
            R::InvalidExpiresAt,
            AT1,
        ),
        case(
            "expires_at before epoch",
            second_directive(r#""level":"Shape","expires_at":"1969-12-31T23:59:59Z""#),
            "invalid_expires_at",
            R::InvalidExpiresAt,
            AT1,
        ),
        case(
            "ttl over 7 days",
            second_directive(r#""level":"Shape","ttl_secs":604801"#),
            "lifetime_too_long",
            R::LifetimeTooLong,
            AT1,
        ),
        case(
            "ttl u64::MAX",
            second_directive(r#""level":"Shape","ttl_secs":18446744073709551615"#),
            "lifetime_too_long",
            R::LifetimeTooLong,
            AT1,
        ),
        // 7 days + the 5 minute skew allowance + 1 s after 2024-01-01T00:00:00Z.
        case(
            "expires_at over 7 days",
            second_directive(r#""level":"Shape","expires_at":"2024-01-08T00:05:01Z""#),
            "lifetime_too_long",
            R::LifetimeTooLong,
            AT1,
        ),
        case(
            "expires_at years ahead",
            second_directive(r#""level":"Shape","expires_at":"2030-01-01T00:00:00Z""#),
            "lifetime_too_long",
            R::LifetimeTooLong,
            AT1,
        ),
        // max_per_sec (SPEC §8)
        case(
            "max_per_sec zero",
            second_directive(&with(r#""max_per_sec":0"#)),
            "invalid_max_per_sec",
            R::InvalidMaxPerSec,
            AT1,
        ),
        case(
            "max_per_sec negative",
            second_directive(&with(r#""max_per_sec":-1"#)),
            "invalid_max_per_sec",
            R::InvalidMaxPerSec,
            AT1,
        ),
        case(
            "max_per_sec fractional",
            second_directive(&with(r#""max_per_sec":1.5"#)),
            "invalid_max_per_sec",
            R::InvalidMaxPerSec,
            AT1,
        ),
        case(
            "max_per_sec over a billion",
            second_directive(&with(r#""max_per_sec":1000000001"#)),
            "invalid_max_per_sec",
            R::InvalidMaxPerSec,
            AT1,
        ),
        case(
            "max_per_sec string",
            second_directive(&with(r#""max_per_sec":"100""#)),
            "wrong_type",
            R::WrongType,
            AT1,
        ),
        // ids
        case(
            "duplicate id",
            body_of(&[valid_directive("d0"), valid_directive("d0")]),
            "duplicate_id",
            R::DuplicateId,
            AT1,
        ),
        case(
            "empty id",
            second_raw(r#"{"id":"","level":"Shape","ttl_secs":60}"#),
            "invalid_id",
            R::InvalidId,
            AT1,
        ),
        case(
            "129-char id",
            body_of(&[valid_directive("d0"), valid_directive(&long_id)]),
            "invalid_id",
            R::InvalidId,
            AT1,
        ),
        case(
            "id with space",
            body_of(&[
                valid_directive("d0"),
                valid_directive(&format!("{SECRET} x")),
            ]),
            "invalid_id",
            R::InvalidId,
            AT1,
        ),
        case(
            "id with slash",
            body_of(&[
                valid_directive("d0"),
                valid_directive(&format!("{SECRET}/x")),
            ]),
            "invalid_id",
            R::InvalidId,
            AT1,
        ),
        case(
            "id with non-ascii",
            body_of(&[valid_directive("d0"), valid_directive("caf\u{e9}")]),
            "invalid_id",
            R::InvalidId,
            AT1,
        ),
        case(
            "id with escape",
            body_of(&[valid_directive("d0"), valid_directive(r"a\nb")]),
            "invalid_id",
            R::InvalidId,
            AT1,
        ),
        // targets
        case(
            "empty tenant",
            second_directive(&with(r#""tenant":"""#)),
            "invalid_target",
            R::InvalidTarget,
            AT1,
        ),
        case(
            "257-char tenant",
            second_directive(&with(&format!(r#""tenant":"{long_target}""#))),
            "invalid_target",
            R::InvalidTarget,
            AT1,
        ),
        case(
            "empty index",
            second_directive(&with(r#""index":"""#)),
            "invalid_target",
            R::InvalidTarget,
            AT1,
        ),
        case(
            "257-char principal",
            second_directive(&with(&format!(r#""principal":"{long_target}""#))),
            "invalid_target",
            R::InvalidTarget,
            AT1,
        ),
        // level and endpoint
        case(
            "level lower case",
            second_directive(r#""level":"shape","ttl_secs":60"#),
            "invalid_level",
            R::InvalidLevel,
            AT1,
        ),
        case(
            "level unknown",
            second_directive(&format!(r#""level":"{SECRET}","ttl_secs":60"#)),
            "invalid_level",
            R::InvalidLevel,
            AT1,
        ),
        case(
            "level empty",
            second_directive(r#""level":"","ttl_secs":60"#),
            "invalid_level",
            R::InvalidLevel,
            AT1,
        ),
        case(
            "endpoint lower case",
            second_directive(&with(r#""endpoint":"search""#)),
            "invalid_endpoint",
            R::InvalidEndpoint,
            AT1,
        ),
        case(
            "endpoint unknown",
            second_directive(&with(&format!(r#""endpoint":"{SECRET}""#))),
            "invalid_endpoint",
            R::InvalidEndpoint,
            AT1,
        ),
    ]
}

#[test]
fn every_rejection_has_its_slug_and_position() {
    let mut failures = Vec::new();
    for c in table() {
        match decode(&c.body) {
            Ok(_) => failures.push(format!("{}: accepted", c.name)),
            Err(e) => {
                if e.reason != c.reason || e.directive_index != c.index {
                    failures.push(format!(
                        "{}: got {:?} at {:?}, want {:?} at {:?}",
                        c.name, e.reason, e.directive_index, c.reason, c.index
                    ));
                }
                if e.slug() != c.slug || c.reason.slug() != c.slug {
                    failures.push(format!("{}: slug {} != {}", c.name, e.slug(), c.slug));
                }
                if RejectReason::from_slug(c.slug) != Some(c.reason) {
                    failures.push(format!("{}: from_slug({}) broken", c.name, c.slug));
                }
                let text = e.to_string();
                if !text.contains(c.slug) {
                    failures.push(format!("{}: display {text:?} lacks the slug", c.name));
                }
                if let Some(i) = c.index {
                    if !text.contains(&format!("directive {i}")) {
                        failures.push(format!("{}: display {text:?} lacks the position", c.name));
                    }
                }
                for shown in [text, format!("{e:?}")] {
                    if shown.contains(SECRET) || shown.contains("tennant") || shown.contains("caf")
                    {
                        failures.push(format!("{}: error text {shown:?} echoes a value", c.name));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_table_covers_every_reason() {
    let covered: BTreeSet<RejectReason> = table().iter().map(|c| c.reason).collect();
    // The signature layer's reasons come from `signed`, not the decoder
    // (tests/trust_signed.rs covers them).
    // So do the layout's and anti-rollback's (tests in osproxy-etcd and
    // tests/trust_signed.rs).
    let signature = [
        RejectReason::Unsigned,
        RejectReason::BadSignature,
        RejectReason::UnknownKey,
        RejectReason::KeyIdMismatch,
        RejectReason::NotInManifest,
        RejectReason::Replayed,
        RejectReason::StaleSignature,
        RejectReason::LegacySignature,
    ];
    let all: BTreeSet<RejectReason> = RejectReason::ALL
        .into_iter()
        .filter(|r| !signature.contains(r))
        .collect();
    let missing: Vec<_> = all.difference(&covered).collect();
    assert!(missing.is_empty(), "no case for {missing:?}");
    // Slugs are distinct and round-trip.
    let slugs: BTreeSet<&str> = RejectReason::ALL.iter().map(|r| r.slug()).collect();
    assert_eq!(slugs.len(), RejectReason::ALL.len());
    for r in RejectReason::ALL {
        assert_eq!(RejectReason::from_slug(r.slug()), Some(r));
        assert_eq!(r.to_string(), r.slug());
    }
    assert_eq!(RejectReason::from_slug("no_such_reason"), None);
}

#[test]
fn the_boundaries_are_accepted() {
    let accepted = [
        body_of::<&str>(&[]),
        body_of(&[valid_directive(&"a".repeat(128))]),
        body_of(&[valid_directive("A-z_0.9:x")]),
        second_directive(&with(&format!(r#""tenant":"{}""#, "t".repeat(256)))),
        // 256 chars of two bytes each: the limit counts chars, not bytes.
        second_directive(&with(&format!(r#""index":"{}""#, "\u{e9}".repeat(256)))),
        second_directive(&with(r#""sample_per_mille":0"#)),
        second_directive(&with(r#""sample_per_mille":1000"#)),
        second_directive(&with(r#""max_per_sec":1"#)),
        second_directive(&with(r#""max_per_sec":1000000000"#)),
        second_directive(r#""level":"Shape","ttl_secs":1"#),
        second_directive(r#""level":"Shape","ttl_secs":604800"#),
        // Exactly 7 days plus the skew allowance.
        second_directive(r#""level":"Shape","expires_at":"2024-01-08T00:05:00Z""#),
        // In the past: accepted (it simply never applies).
        second_directive(r#""level":"Shape","expires_at":"2023-06-01T00:00:00Z""#),
        // Other offsets and lower-case separators are RFC 3339 too.
        second_directive(r#""level":"Shape","expires_at":"2024-01-01T02:00:00+01:00""#),
        second_directive(r#""level":"Off","expires_at":"2024-01-01t00:10:00.5z""#),
        second_directive(&with(
            r#""ring_buffer":false,"capture":true,"endpoint":"DeleteByQuery""#,
        )),
    ];
    for body in accepted {
        if let Err(e) = decode(&body) {
            panic!("rejected with {e}: {}", &body[..body.len().min(200)]);
        }
    }
}

#[test]
fn the_limits_are_exact() {
    // 10,000 directives are fine, 10,001 are not (checked in the table).
    let items: Vec<String> = (0..10_000)
        .map(|i| valid_directive(&format!("d{i}")))
        .collect();
    let set = decode(body_of(&items)).unwrap();
    assert_eq!(set.len(), 10_000);

    // Exactly 1 MiB is fine.
    let mut body = body_of(&[valid_directive("d0")]).into_bytes();
    body.resize(1024 * 1024, b'\n');
    assert_eq!(decode(&body).unwrap().len(), 1);

    // A 16-deep document nests too deep for a directive set but is well-formed;
    // the nesting limit is hit only past that.
    let nested = format!("{}{}", "[".repeat(16), "]".repeat(16));
    assert_eq!(decode(nested).unwrap_err().reason, RejectReason::WrongType);
}

#[test]
fn limits_are_configurable() {
    let clock = ManualClock::new();
    let hour = DecodeLimits {
        max_lifetime: Duration::from_secs(3600),
        clock_skew_allowance: Duration::ZERO,
        ..DecodeLimits::default()
    };
    let ttl = |t: u64| second_directive(&format!(r#""level":"Shape","ttl_secs":{t}"#));
    let at = |s: &str| second_directive(&format!(r#""level":"Shape","expires_at":"{s}""#));

    assert!(decode_directive_set_with(ttl(3600).as_bytes(), &clock, &hour).is_ok());
    let e = decode_directive_set_with(ttl(3601).as_bytes(), &clock, &hour).unwrap_err();
    assert_eq!(
        (e.reason, e.directive_index),
        (RejectReason::LifetimeTooLong, Some(1))
    );
    assert!(
        decode_directive_set_with(at("2024-01-01T01:00:00Z").as_bytes(), &clock, &hour).is_ok()
    );
    let e = decode_directive_set_with(at("2024-01-01T01:00:01Z").as_bytes(), &clock, &hour)
        .unwrap_err();
    assert_eq!(e.reason, RejectReason::LifetimeTooLong);

    // The skew allowance applies to `expires_at` only.
    let skewed = DecodeLimits {
        clock_skew_allowance: Duration::from_secs(60),
        ..hour
    };
    assert!(
        decode_directive_set_with(at("2024-01-01T01:01:00Z").as_bytes(), &clock, &skewed).is_ok()
    );
    assert!(decode_directive_set_with(ttl(3660).as_bytes(), &clock, &skewed).is_err());

    // A longer cap than the default admits what the default rejects.
    let month = DecodeLimits {
        max_lifetime: Duration::from_secs(30 * 24 * 3600),
        ..DecodeLimits::default()
    };
    assert!(decode(ttl(604_801)).is_err());
    assert!(decode_directive_set_with(ttl(604_801).as_bytes(), &clock, &month).is_ok());

    // Count and size limits.
    let two = DecodeLimits {
        max_directives: 2,
        ..DecodeLimits::default()
    };
    let three = body_of(&[
        valid_directive("a"),
        valid_directive("b"),
        valid_directive("c"),
    ]);
    assert_eq!(
        decode_directive_set_with(three.as_bytes(), &clock, &two).unwrap_err(),
        RejectReason::TooManyDirectives.into()
    );
    let small = DecodeLimits {
        max_body_bytes: 10,
        ..DecodeLimits::default()
    };
    assert_eq!(
        decode_directive_set_with(three.as_bytes(), &clock, &small)
            .unwrap_err()
            .reason,
        RejectReason::TooLarge
    );
}

#[test]
fn the_first_fault_wins_and_earlier_directives_do_not_survive() {
    // Directive 0 is fine, 1 and 2 are both bad: the error names 1.
    let body = body_of(&[
        valid_directive("ok"),
        directive("bad", r#""level":"Shape","ttl_secs":0"#),
        directive("worse", r#""level":"Nope","ttl_secs":60"#),
    ]);
    let e = decode(body).unwrap_err();
    assert_eq!(
        (e.reason, e.directive_index),
        (RejectReason::ZeroTtl, Some(1))
    );
}
