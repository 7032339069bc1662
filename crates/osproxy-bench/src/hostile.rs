//! Hostile and extreme bodies within the decoder's limits (SPEC §5.13): each
//! at most [`MAX_BODY_BYTES`], each built to hit one costly path of a JSON
//! decoder, beside [`valid_full_set`], the valid set of nearly the same size
//! that their cost is compared with.
//!
//! `src/bin/decode_cost.rs` times them as ratios against the valid set in one
//! run; `tests/hostile_shapes.rs` checks that each is refused with its slug
//! (and that the valid ones decode).

use std::fmt::Write as _;

use osproxy_observe::decode::{MAX_BODY_BYTES, MAX_DIRECTIVES};

/// One shape: a name for tables, the body, and the slug the decoder must
/// answer with (`None`: the body is valid).
#[derive(Clone, Debug)]
pub struct Shape {
    /// Short stable name (`wide_object`, `long_string`, …).
    pub name: &'static str,
    /// What it stresses, for the report.
    pub what: &'static str,
    /// The body, at most [`MAX_BODY_BYTES`].
    pub body: Vec<u8>,
    /// The expected rejection slug, `None` when the body is valid.
    pub expect: Option<&'static str>,
}

/// Distinct keys of the wide objects: the reproduction.
pub const WIDE_KEYS: usize = 80_000;

/// A valid set of [`MAX_DIRECTIVES`] directives padded to just under
/// [`MAX_BODY_BYTES`]: the baseline every shape is measured against.
pub fn valid_full_set() -> Vec<u8> {
    // Each directive's fixed part is about 75 bytes; pad the tenant so the
    // whole body ends just under the limit.
    let fixed = directive(0, "").len() + 1;
    // (The tenant also carries the index: up to 4 more digits.)
    let pad = (MAX_BODY_BYTES - 64) / MAX_DIRECTIVES - fixed - 4;
    let tenant = "t".repeat(pad.max(1));
    let mut body = String::from("{\"directives\":[");
    for i in 0..MAX_DIRECTIVES {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&directive(i, &format!("{tenant}{i}")));
    }
    body.push_str("]}");
    body.into_bytes()
}

fn directive(i: usize, tenant: &str) -> String {
    format!(
        "{{\"id\":\"d-{i:05}\",\"level\":\"ShapeTiming\",\"tenant\":\"{tenant}\",\"ttl_secs\":3600,\"sample_per_mille\":100}}"
    )
}

/// `{"k0":0,"k1":0,…}` with `n` distinct keys, and `tail` appended inside.
fn wide(n: usize, tail: &str) -> String {
    let mut s = String::with_capacity(n * 10);
    s.push('{');
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "\"k{i}\":0");
    }
    s.push_str(tail);
    s.push('}');
    s
}

/// Every shape, the valid baseline first.
pub fn shapes() -> Vec<Shape> {
    let filler = MAX_BODY_BYTES - 128;
    let mut out = vec![
        Shape {
            name: "valid_full_set",
            what: "baseline: 10,000 valid directives, just under 1 MiB",
            body: valid_full_set(),
            expect: None,
        },
        Shape {
            name: "valid_small_directives",
            what: "10,000 minimal valid directives",
            body: {
                let list: Vec<String> = (0..MAX_DIRECTIVES)
                    .map(|i| format!("{{\"id\":\"{i}\",\"level\":\"Shape\",\"ttl_secs\":60}}"))
                    .collect();
                format!("{{\"directives\":[{}]}}", list.join(",")).into_bytes()
            },
            expect: None,
        },
        Shape {
            name: "wide_object",
            what: "one object of 80,000 distinct keys (the root)",
            body: wide(WIDE_KEYS, "").into_bytes(),
            expect: Some("unknown_field"),
        },
        Shape {
            name: "wide_directive",
            what: "one directive object of 80,000 distinct keys",
            body: format!("{{\"directives\":[{}]}}", wide(WIDE_KEYS, "")).into_bytes(),
            expect: Some("unknown_field"),
        },
        Shape {
            name: "wide_object_dup_last",
            what: "80,000 distinct keys, then a repeat of the first",
            body: wide(WIDE_KEYS, ",\"k0\":0").into_bytes(),
            expect: Some("duplicate_key"),
        },
        Shape {
            name: "long_string",
            what: "one ~1 MiB plain string (a tenant)",
            body: format!(
                "{{\"directives\":[{{\"id\":\"a\",\"level\":\"Shape\",\"ttl_secs\":60,\"tenant\":\"{}\"}}]}}",
                "x".repeat(filler)
            )
            .into_bytes(),
            expect: Some("invalid_target"),
        },
        Shape {
            name: "escaped_string",
            what: "one string of ~170,000 \\u escapes",
            body: format!(
                "{{\"directives\":[{{\"id\":\"a\",\"level\":\"Shape\",\"ttl_secs\":60,\"tenant\":\"{}\"}}]}}",
                "\\u00e9".repeat(filler / 6)
            )
            .into_bytes(),
            expect: Some("invalid_target"),
        },
        Shape {
            name: "deep_arrays",
            what: "arrays nested to the depth limit, repeated to ~1 MiB",
            body: {
                // Root object (1) + directives array (2) + 14 = 16 levels.
                let one = format!("{}{}", "[".repeat(14), "]".repeat(14));
                let n = filler / (one.len() + 1);
                format!("{{\"directives\":[{}]}}", vec![one; n].join(",")).into_bytes()
            },
            expect: Some("too_many_directives"),
        },
        Shape {
            name: "too_deep",
            what: "~1 MiB of '[' (nesting far past the limit)",
            body: "[".repeat(filler).into_bytes(),
            expect: Some("too_deep"),
        },
        Shape {
            name: "many_empty_items",
            what: "~350,000 empty objects in the list",
            body: {
                let n = filler / 3;
                format!("{{\"directives\":[{}]}}", vec!["{}"; n].join(",")).into_bytes()
            },
            expect: Some("too_many_directives"),
        },
        Shape {
            name: "many_numbers",
            what: "~100,000 long floats in the list",
            body: {
                let one = "1.2345678901234567e-300";
                let n = filler / (one.len() + 1);
                format!("{{\"directives\":[{}]}}", vec![one; n].join(",")).into_bytes()
            },
            expect: Some("too_many_directives"),
        },
        Shape {
            name: "duplicate_id_last",
            what: "10,000 valid directives, the last repeating the first id",
            body: {
                let mut list: Vec<String> = (0..MAX_DIRECTIVES - 1)
                    .map(|i| directive(i, "t"))
                    .collect();
                list.push(directive(0, "u"));
                format!("{{\"directives\":[{}]}}", list.join(",")).into_bytes()
            },
            expect: Some("duplicate_id"),
        },
    ];
    for s in &mut out {
        debug_assert!(s.body.len() <= MAX_BODY_BYTES, "{} too large", s.name);
        s.body.shrink_to_fit();
    }
    out
}
