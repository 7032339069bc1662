//! Properties over generated inputs: the canonical encoding round-trips, the
//! decoder never panics, and the indexed evaluator always agrees with the
//! linear reference scan.

mod common;

use std::time::Duration;

use common::*;
use osproxy_core::{Clock, EndpointKind, IndexName, ManualClock, PartitionId, PrincipalId};
use osproxy_observe::{
    decode_directive_set, encode_directive_set, encode_directive_set_pretty, format_rfc3339,
    DiagLevel, DirectiveSet, RequestAttrs,
};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// How a generated directive expires.
#[derive(Clone, Debug)]
enum Expiry {
    Ttl(u64),
    /// Nanoseconds relative to the decoding clock's wall time.
    At(i64),
}

#[derive(Clone, Debug)]
struct Spec {
    id: String,
    level: DiagLevel,
    tenant: Option<String>,
    index: Option<String>,
    principal: Option<String>,
    endpoint: Option<EndpointKind>,
    sample: Option<u16>,
    ring_buffer: Option<bool>,
    capture: Option<bool>,
    expiry: Expiry,
}

const MAX_AHEAD_NANOS: i64 = (7 * 24 * 3600 + 300) * 1_000_000_000;

/// A target: mostly from a small pool, so that generated requests match.
fn target() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["acme", "globex", "initech", "t-1"]).prop_map(String::from),
        1 => "\\PC{1,24}",
        1 => "[a-z\"\\\\/\u{0}-\u{1f}\u{e9}\u{1F600}]{1,8}",
        1 => Just("x".repeat(256)),
    ]
}

fn expiry() -> impl Strategy<Value = Expiry> {
    prop_oneof![
        (1u64..=604_800).prop_map(Expiry::Ttl),
        prop_oneof![Just(1u64), Just(60), Just(604_800)].prop_map(Expiry::Ttl),
        (-10 * 24 * 3600 * 1_000_000_000i64..=MAX_AHEAD_NANOS).prop_map(Expiry::At),
        (-5_000_000_000i64..=5_000_000_000).prop_map(Expiry::At),
        Just(Expiry::At(MAX_AHEAD_NANOS)),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        "[A-Za-z0-9._:-]{1,12}|[A-Za-z0-9._:-]{128}",
        prop::sample::select(DiagLevel::ALL.to_vec()),
        prop::option::weighted(0.4, target()),
        prop::option::weighted(0.3, target()),
        prop::option::weighted(0.2, target()),
        prop::option::weighted(0.3, prop::sample::select(EndpointKind::ALL.to_vec())),
        prop::option::of(prop_oneof![Just(0u16), Just(1000), 0u16..=1000]),
        prop::option::of(any::<bool>()),
        prop::option::of(any::<bool>()),
        expiry(),
    )
        .prop_map(
            |(
                id,
                level,
                tenant,
                index,
                principal,
                endpoint,
                sample,
                ring_buffer,
                capture,
                expiry,
            )| {
                Spec {
                    id,
                    level,
                    tenant,
                    index,
                    principal,
                    endpoint,
                    sample,
                    ring_buffer,
                    capture,
                    expiry,
                }
            },
        )
}

/// Directive specs with unique ids.
fn specs(max: usize) -> impl Strategy<Value = Vec<Spec>> {
    prop::collection::vec(spec(), 0..max).prop_map(|mut v| {
        let mut seen = std::collections::HashSet::new();
        v.retain(|s| seen.insert(s.id.clone()));
        v
    })
}

fn to_json(specs: &[Spec], wall: u64) -> Vec<u8> {
    let list: Vec<Value> = specs
        .iter()
        .map(|s| {
            let mut o = Map::new();
            o.insert("id".into(), s.id.clone().into());
            o.insert("level".into(), s.level.wire_name().into());
            for (k, v) in [
                ("tenant", &s.tenant),
                ("index", &s.index),
                ("principal", &s.principal),
            ] {
                if let Some(v) = v {
                    o.insert(k.into(), v.clone().into());
                }
            }
            if let Some(e) = s.endpoint {
                o.insert("endpoint".into(), e.wire_name().into());
            }
            if let Some(x) = s.sample {
                o.insert("sample_per_mille".into(), x.into());
            }
            if let Some(b) = s.ring_buffer {
                o.insert("ring_buffer".into(), b.into());
            }
            if let Some(b) = s.capture {
                o.insert("capture".into(), b.into());
            }
            match s.expiry {
                Expiry::Ttl(t) => {
                    o.insert("ttl_secs".into(), t.into());
                }
                Expiry::At(rel) => {
                    let at = wall.saturating_add_signed(rel);
                    o.insert("expires_at".into(), format_rfc3339(at).into());
                }
            }
            Value::Object(o)
        })
        .collect();
    match serde_json::to_vec(&json!({ "directives": list })) {
        Ok(bytes) => bytes,
        Err(e) => panic!("serialising a generated set: {e}"),
    }
}

fn decoded(specs: &[Spec], clock: &ManualClock) -> DirectiveSet {
    let body = to_json(specs, clock.unix_nanos());
    match decode_directive_set(&body, clock) {
        Ok(set) => set,
        Err(e) => panic!("generated set rejected: {e}"),
    }
}

/// A request: attributes drawn from the same small pools as the targets.
#[derive(Clone, Debug)]
struct Req {
    tenant: Option<PartitionId>,
    index: Option<IndexName>,
    principal: Option<PrincipalId>,
    endpoint: EndpointKind,
    id: String,
    /// How far the clock moves before evaluating.
    advance_nanos: u64,
}

fn request() -> impl Strategy<Value = Req> {
    let pooled = || prop::sample::select(vec!["acme", "globex", "initech", "t-1", "other"]);
    (
        prop::option::weighted(0.8, pooled()),
        prop::option::weighted(0.6, pooled()),
        prop::option::weighted(0.5, pooled()),
        prop::sample::select(EndpointKind::ALL.to_vec()),
        "\\PC{0,16}",
        prop_oneof![
            Just(0u64),
            0u64..=10_000_000_000,
            0u64..=(8 * 24 * 3600 * 1_000_000_000),
        ],
    )
        .prop_map(|(t, i, p, endpoint, id, advance_nanos)| Req {
            tenant: t.map(PartitionId::from),
            index: i.map(IndexName::from),
            principal: p.map(PrincipalId::from),
            endpoint,
            id,
            advance_nanos,
        })
}

fn attrs(r: &Req) -> RequestAttrs<'_> {
    let anonymous = RequestAttrs::new(r.endpoint).principal;
    RequestAttrs {
        tenant: r.tenant.as_ref(),
        index: r.index.as_ref().map_or("", IndexName::as_str),
        principal: r.principal.as_ref().unwrap_or(anonymous),
        endpoint: r.endpoint,
    }
}

fn assert_agrees(set: &DirectiveSet, r: &Req, now: osproxy_core::Instant) {
    let a = attrs(r);
    let id = rid(&r.id);
    let fast = set.decide(&a, now, &id);
    let slow = set.decide_by_scan(&a, now, &id);
    assert_eq!(fast, slow, "decide vs scan for {r:?}");
    assert_eq!(set.evaluate(&a, now, &id), slow.level);
    assert_eq!(set.wants_ring_buffer(&a, now, &id), slow.ring_buffer);
    assert_eq!(set.wants_capture(&a, now, &id), slow.capture);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn canonical_encoding_round_trips(specs in specs(12), advance in 0u64..=(30 * 24 * 3600)) {
        let clock = ManualClock::new();
        let set = decoded(&specs, &clock);
        prop_assert_eq!(set.len(), specs.len());
        let bytes = encode_directive_set(&set);
        let again = decode_directive_set(&bytes, &clock).unwrap();
        prop_assert_eq!(&again, &set);
        // Deterministic: same set, same bytes, however often encoded.
        prop_assert_eq!(encode_directive_set(&again), bytes.clone());
        prop_assert_eq!(encode_directive_set(&set.clone()), bytes.clone());
        // The pretty form decodes to the same set.
        let pretty = decode_directive_set(&encode_directive_set_pretty(&set), &clock).unwrap();
        prop_assert_eq!(&pretty, &set);
        // Re-reading the canonical form later never extends a lifetime: the
        // expiries are absolute, so the set is the same one.
        clock.advance(Duration::from_secs(advance));
        let later = decode_directive_set(&bytes, &clock).unwrap();
        prop_assert_eq!(&later, &set);
    }

    #[test]
    fn decode_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_directive_set(&bytes, &ManualClock::new());
        fuzz_check::check_decode(&bytes);
    }

    #[test]
    fn decode_never_panics_on_json_ish_text(
        text in "[\\[\\]{}\":,. 0-9eE+\\-a-z_\\\\]{0,200}",
    ) {
        fuzz_check::check_decode(text.as_bytes());
    }

    #[test]
    fn decode_never_panics_on_mutated_valid_bodies(
        specs in specs(4),
        cuts in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
    ) {
        let mut body = to_json(&specs, ManualClock::new().unix_nanos());
        for (at, byte, op) in cuts {
            let i = at.index(body.len() + 1);
            match op {
                0 => body.insert(i, byte),
                1 if i < body.len() => { body.remove(i); }
                _ if i < body.len() => body[i] = byte,
                _ => {}
            }
        }
        fuzz_check::check_decode(&body);
    }

    #[test]
    fn evaluation_agrees_with_the_linear_scan(
        specs in specs(40),
        reqs in prop::collection::vec(request(), 1..16),
    ) {
        let clock = ManualClock::new();
        let set = decoded(&specs, &clock);
        let start = clock.now();
        for r in &reqs {
            assert_agrees(&set, r, start + Duration::from_nanos(r.advance_nanos));
        }
        // Exactly at and just before every expiry, where off-by-one errors live.
        for d in set.directives().iter().take(8) {
            for now in [d.expires_at - Duration::from_nanos(1), d.expires_at] {
                for r in &reqs {
                    assert_agrees(&set, r, now);
                }
            }
        }
    }

    /// `explain` (which only looks) names the same decision `decide` (which
    /// admits against budgets and counts) then returns, request after
    /// request, with small budgets that run out along the way; and the
    /// counters add up to what was decided.
    #[test]
    fn explain_agrees_with_decide(
        specs in specs(24),
        budgets in prop::collection::vec(prop::option::of(1u32..4), 24),
        reqs in prop::collection::vec(request(), 1..24),
        rounds in 1usize..4,
    ) {
        let clock = ManualClock::new();
        let plain = decoded(&specs, &clock);
        let set = DirectiveSet::try_from_directives(
            plain
                .directives()
                .iter()
                .zip(&budgets)
                .map(|(d, b)| d.clone().with_max_per_sec(b.and_then(std::num::NonZeroU32::new)))
                .collect(),
        )
        .unwrap()
        .with_revision(7);
        let start = clock.now();
        let mut applied = vec![0u64; set.len()];
        for _ in 0..rounds {
            for r in &reqs {
                let now = start + Duration::from_nanos(r.advance_nanos % 2_000_000_000);
                let (a, id) = (attrs(r), rid(&r.id));
                let e = set.explain(&a, now, &id);
                let d = set.decide(&a, now, &id);
                prop_assert_eq!(e.decision, d, "explain vs decide for {:?}", r);
                prop_assert_eq!(d.revision, Some(7));
                prop_assert_eq!(e.directives.len(), set.len());
                for x in e.directives.iter().filter(|x| x.applies) {
                    applied[x.position] += 1;
                }
                if let Some(w) = set.winner(&d) {
                    prop_assert_eq!(w.level, d.level);
                    prop_assert!(e.directives.iter().any(|x| x.winner && x.id == w.id));
                }
            }
        }
        for (pos, want) in applied.iter().enumerate() {
            prop_assert_eq!(set.counts(pos).applied, *want);
        }
    }

    #[test]
    fn evaluation_of_the_empty_set_is_off(r in request()) {
        let set = DirectiveSet::new();
        let now = ManualClock::new().now() + Duration::from_nanos(r.advance_nanos);
        assert_agrees(&set, &r, now);
        prop_assert_eq!(set.evaluate(&attrs(&r), now, &rid(&r.id)), DiagLevel::Off);
    }
}

/// The canonical form writes a lifetime as an absolute `expires_at`, which is
/// longer than a short `ttl_secs`: a body just under the 1 MiB limit can
/// encode to just over it. Anyone re-publishing a decoded set (the CLI's
/// TTL-to-expiry conversion, an admin GET then POST) must validate the
/// re-encoded body, not the original.
#[test]
fn canonical_form_of_a_near_limit_ttl_body_can_exceed_the_body_limit() {
    let clock = ManualClock::new();
    let items: Vec<String> = (0..10_000)
        .map(|i| valid_directive(&format!("{i:0>60}")))
        .collect();
    let body = body_of(&items);
    assert!(body.len() <= 1024 * 1024, "{}", body.len());
    let set = decode_ok(&body, &clock);
    let encoded = encode_directive_set(&set);
    assert!(encoded.len() > 1024 * 1024);
    assert_eq!(
        decode_directive_set(&encoded, &clock).unwrap_err(),
        osproxy_observe::RejectReason::TooLarge.slug()
    );
    fuzz_check::check_decode(body.as_bytes());
}
