//! Evaluation semantics (SPEC §3): targeting, level precedence, flags, expiry
//! at the boundary, deterministic sampling, and large indexed sets.

mod common;

use std::time::Duration;

use common::*;
use osproxy_core::{
    Clock, EndpointKind, IndexName, ManualClock, PartitionId, PrincipalId, SystemClock,
};
use osproxy_observe::{DiagLevel, DirectiveSet, RequestAttrs, RequestKeys};

const NS: Duration = Duration::from_nanos(1);

fn level_for(set: &DirectiveSet, attrs: &RequestAttrs<'_>, clock: &dyn Clock) -> DiagLevel {
    let id = rid("req-1");
    let level = set.evaluate(attrs, clock.now(), &id);
    assert_eq!(set.decide_by_scan(attrs, clock.now(), &id).level, level);
    // The borrowed-string path decides the same.
    let keys = RequestKeys::from(attrs);
    assert_eq!(
        set.decide_keys(&keys, clock.now(), id.as_str()).level,
        level
    );
    level
}

#[test]
fn unset_targets_are_wildcards_and_set_targets_require_equality() {
    let clock = ManualClock::new();
    let set = decode_ok(
        body_of(&[
            directive("all", r#""level":"Shape","ttl_secs":60"#),
            directive(
                "acme",
                r#""level":"ShapeTiming","ttl_secs":60,"tenant":"acme""#,
            ),
            directive(
                "acme-logs-search",
                r#""level":"ShapeRewriteDiff","ttl_secs":60,"tenant":"acme","index":"logs","endpoint":"Search""#,
            ),
            directive(
                "bob",
                r#""level":"ShapeRewriteDiff","ttl_secs":60,"principal":"bob""#,
            ),
        ]),
        &clock,
    );
    let (acme, globex) = (PartitionId::from("acme"), PartitionId::from("globex"));
    let (logs, metrics) = (IndexName::from("logs"), IndexName::from("metrics"));
    let bob = PrincipalId::from("bob");

    // Only the wildcard applies to a bare request.
    let bare = RequestAttrs::new(EndpointKind::Search);
    assert_eq!(level_for(&set, &bare, &clock), DiagLevel::Shape);
    // A request lacking the tenant never matches a tenant-targeted directive,
    // even when its other attributes match.
    let no_tenant = RequestAttrs::new(EndpointKind::Search).with_index(&logs);
    assert_eq!(level_for(&set, &no_tenant, &clock), DiagLevel::Shape);
    // Another tenant does not match.
    let other = RequestAttrs::new(EndpointKind::Search).with_tenant(&globex);
    assert_eq!(level_for(&set, &other, &clock), DiagLevel::Shape);
    // The tenant matches; the narrower directive needs index and endpoint too.
    let a = RequestAttrs::new(EndpointKind::Search).with_tenant(&acme);
    assert_eq!(level_for(&set, &a, &clock), DiagLevel::ShapeTiming);
    let a_metrics = a.with_index(&metrics);
    assert_eq!(level_for(&set, &a_metrics, &clock), DiagLevel::ShapeTiming);
    let a_logs_count = RequestAttrs::new(EndpointKind::Count)
        .with_tenant(&acme)
        .with_index(&logs);
    assert_eq!(
        level_for(&set, &a_logs_count, &clock),
        DiagLevel::ShapeTiming
    );
    let a_logs_search = a.with_index(&logs);
    assert_eq!(
        level_for(&set, &a_logs_search, &clock),
        DiagLevel::ShapeRewriteDiff
    );
    // Targets are exact: no prefix, no case folding.
    let acme_upper = PartitionId::from("ACME");
    let acme_prefix = PartitionId::from("acme-eu");
    for t in [&acme_upper, &acme_prefix] {
        let r = RequestAttrs::new(EndpointKind::Search).with_tenant(t);
        assert_eq!(level_for(&set, &r, &clock), DiagLevel::Shape);
    }
    // A principal target applies across tenants.
    let b = RequestAttrs::new(EndpointKind::Admin)
        .with_tenant(&globex)
        .with_principal(&bob);
    assert_eq!(level_for(&set, &b, &clock), DiagLevel::ShapeRewriteDiff);
}

#[test]
fn endpoint_only_and_index_only_targets() {
    let clock = ManualClock::new();
    let set = decode_ok(
        body_of(&[
            directive(
                "bulk",
                r#""level":"Shape","ttl_secs":60,"endpoint":"IngestBulk""#,
            ),
            directive(
                "logs",
                r#""level":"ShapeTiming","ttl_secs":60,"index":"logs""#,
            ),
        ]),
        &clock,
    );
    let logs = IndexName::from("logs");
    for e in EndpointKind::ALL {
        let want = if e == EndpointKind::IngestBulk {
            DiagLevel::Shape
        } else {
            DiagLevel::Off
        };
        assert_eq!(level_for(&set, &RequestAttrs::new(e), &clock), want, "{e}");
        let with_logs = RequestAttrs::new(e).with_index(&logs);
        assert_eq!(level_for(&set, &with_logs, &clock), DiagLevel::ShapeTiming);
    }
}

#[test]
fn the_highest_applying_level_wins_and_flags_combine() {
    let clock = ManualClock::new();
    let set = decode_ok(
        body_of(&[
            directive("low", r#""level":"Shape","ttl_secs":60,"capture":true"#),
            directive(
                "high",
                r#""level":"ShapeRewriteDiff","ttl_secs":60,"tenant":"acme""#,
            ),
            directive(
                "mid",
                r#""level":"ShapeTiming","ttl_secs":60,"tenant":"acme","ring_buffer":true"#,
            ),
            directive(
                "off",
                r#""level":"Off","ttl_secs":60,"tenant":"quiet","ring_buffer":true"#,
            ),
        ]),
        &clock,
    );
    let acme = PartitionId::from("acme");
    let quiet = PartitionId::from("quiet");
    let id = rid("r");
    let now = clock.now();

    let a = RequestAttrs::new(EndpointKind::Search).with_tenant(&acme);
    let d = set.decide(&a, now, &id);
    assert_eq!(d.level, DiagLevel::ShapeRewriteDiff);
    assert!(d.ring_buffer && d.capture);
    assert!(set.wants_ring_buffer(&a, now, &id));
    assert!(set.wants_capture(&a, now, &id));

    let bare = RequestAttrs::new(EndpointKind::Search);
    assert_eq!(set.evaluate(&bare, now, &id), DiagLevel::Shape);
    assert!(!set.wants_ring_buffer(&bare, now, &id));
    assert!(set.wants_capture(&bare, now, &id));

    // An `Off` directive cannot lower what another applies, but its flags count.
    let q = RequestAttrs::new(EndpointKind::Search).with_tenant(&quiet);
    let d = set.decide(&q, now, &id);
    assert_eq!(d.level, DiagLevel::Shape);
    assert!(d.ring_buffer && d.capture);

    // Order in the set does not matter.
    let reversed = decode_ok(
        body_of(&[
            directive(
                "mid",
                r#""level":"ShapeTiming","ttl_secs":60,"tenant":"acme","ring_buffer":true"#,
            ),
            directive(
                "high",
                r#""level":"ShapeRewriteDiff","ttl_secs":60,"tenant":"acme""#,
            ),
        ]),
        &clock,
    );
    assert_eq!(reversed.evaluate(&a, now, &id), DiagLevel::ShapeRewriteDiff);
    assert_eq!(
        DiagLevel::ALL.iter().max(),
        Some(&DiagLevel::ShapeRewriteDiff)
    );
}

#[test]
fn expiry_is_exclusive_at_the_boundary_for_ttl() {
    let clock = ManualClock::new();
    let set = decode_ok(body_of(&[valid_directive("ttl")]), &clock);
    let bare = RequestAttrs::new(EndpointKind::Search);
    assert_eq!(level_for(&set, &bare, &clock), DiagLevel::Shape);
    clock.advance(Duration::from_secs(60) - NS);
    assert_eq!(level_for(&set, &bare, &clock), DiagLevel::Shape);
    assert_eq!(set.live_count(clock.now()), 1);
    clock.advance(NS);
    assert_eq!(level_for(&set, &bare, &clock), DiagLevel::Off);
    assert_eq!(set.live_count(clock.now()), 0);
    clock.advance(Duration::from_secs(3600));
    assert_eq!(level_for(&set, &bare, &clock), DiagLevel::Off);
}

#[test]
fn expiry_is_exclusive_at_the_boundary_for_expires_at() {
    let clock = ManualClock::new(); // 2024-01-01T00:00:00Z
    let set = decode_ok(
        body_of(&[
            directive(
                "abs",
                r#""level":"ShapeTiming","expires_at":"2024-01-01T00:00:10.000000001Z""#,
            ),
            directive(
                "late",
                r#""level":"Shape","expires_at":"2024-01-01T01:00:00Z""#,
            ),
        ]),
        &clock,
    );
    let bare = RequestAttrs::new(EndpointKind::Search);
    let abs_end = set.get("abs").unwrap().expires_at;
    assert_eq!(abs_end - clock.now(), Duration::from_nanos(10_000_000_001));
    clock.advance(Duration::from_nanos(10_000_000_000));
    assert_eq!(level_for(&set, &bare, &clock), DiagLevel::ShapeTiming);
    clock.advance(NS);
    assert_eq!(clock.now(), abs_end);
    assert_eq!(level_for(&set, &bare, &clock), DiagLevel::Shape);
}

#[test]
fn an_expiry_in_the_past_is_accepted_but_never_applies() {
    let clock = ManualClock::new();
    clock.advance(Duration::from_secs(3600));
    let set = decode_ok(
        body_of(&[directive(
            "old",
            r#""level":"ShapeRewriteDiff","expires_at":"2024-01-01T00:30:00Z""#,
        )]),
        &clock,
    );
    assert_eq!(set.len(), 1);
    assert!(!set.directives()[0].is_live(clock.now()));
    let bare = RequestAttrs::new(EndpointKind::Search);
    assert_eq!(level_for(&set, &bare, &clock), DiagLevel::Off);
    // Also with the clock's monotonic reading still at its origin, where the
    // conversion from wall to monotonic time saturates.
    let fresh = ManualClock::new();
    let set = decode_ok(
        body_of(&[directive(
            "old",
            r#""level":"Shape","expires_at":"2023-12-31T23:59:59Z""#,
        )]),
        &fresh,
    );
    assert_eq!(level_for(&set, &bare, &fresh), DiagLevel::Off);
}

#[test]
fn a_wall_clock_step_after_decoding_does_not_move_an_expiry() {
    let clock = ManualClock::new();
    let set = decode_ok(body_of(&[valid_directive("d")]), &clock);
    clock.set_unix_nanos(EPOCH_UNIX_NANOS + 3600 * SEC);
    let bare = RequestAttrs::new(EndpointKind::Search);
    assert_eq!(level_for(&set, &bare, &clock), DiagLevel::Shape);
    clock.advance(Duration::from_secs(60));
    assert_eq!(level_for(&set, &bare, &clock), DiagLevel::Off);
}

fn sampled_body(per_mille: u16) -> String {
    body_of(&[directive(
        "s",
        &format!(r#""level":"Shape","ttl_secs":600,"sample_per_mille":{per_mille}"#),
    )])
}

#[test]
fn sampling_is_deterministic_across_separately_decoded_sets() {
    let manual = ManualClock::new();
    let system = SystemClock;
    let a = decode_ok(sampled_body(500), &manual);
    let b = decode_ok(sampled_body(500), &system);
    let bare = RequestAttrs::new(EndpointKind::Search);
    for i in 0..10_000 {
        let id = rid(&format!("req-{i}"));
        let in_a = a.evaluate(&bare, manual.now(), &id) == DiagLevel::Shape;
        let in_b = b.evaluate(&bare, system.now(), &id) == DiagLevel::Shape;
        assert_eq!(in_a, in_b, "req-{i}");
        // And it is the rule of SPEC §3: FNV-1a-64 of the id, modulo 1000.
        assert_eq!(in_a, reference_bucket(&format!("req-{i}")) < 500, "req-{i}");
    }
}

#[test]
fn sampling_rates_hold_over_100k_ids() {
    let clock = ManualClock::new();
    let bare = RequestAttrs::new(EndpointKind::Search);
    let ids: Vec<_> = (0..100_000).map(|i| rid(&format!("{i:08x}-req"))).collect();
    for rate in [0u16, 1, 100, 500, 999, 1000] {
        let set = decode_ok(sampled_body(rate), &clock);
        let hits = ids
            .iter()
            .filter(|id| set.evaluate(&bare, clock.now(), id) == DiagLevel::Shape)
            .count();
        let expected = 100.0 * f64::from(rate);
        match rate {
            0 => assert_eq!(hits, 0),
            1000 => assert_eq!(hits, ids.len()),
            // Within ±2 % of the rate.
            _ if rate >= 100 => {
                let err = (hits as f64 - expected).abs() / expected;
                assert!(
                    err <= 0.02,
                    "rate {rate}: {hits} hits, {:.2} % off",
                    err * 100.0
                );
            }
            _ => assert!(
                (hits as f64 - expected).abs() < 100.0,
                "rate {rate}: {hits}"
            ),
        }
    }
}

#[test]
fn sample_zero_never_applies_and_1000_always_does() {
    let clock = ManualClock::new();
    let never = decode_ok(sampled_body(0), &clock);
    let always = decode_ok(sampled_body(1000), &clock);
    let default = decode_ok(body_of(&[valid_directive("d")]), &clock);
    let bare = RequestAttrs::new(EndpointKind::Search);
    for i in 0..5_000 {
        let id = rid(&format!("x{i}"));
        assert_eq!(never.evaluate(&bare, clock.now(), &id), DiagLevel::Off);
        assert_eq!(always.evaluate(&bare, clock.now(), &id), DiagLevel::Shape);
        assert_eq!(default.evaluate(&bare, clock.now(), &id), DiagLevel::Shape);
    }
    // The empty id is a valid id with a bucket of its own.
    assert_eq!(
        always.evaluate(&bare, clock.now(), &rid("")),
        DiagLevel::Shape
    );
}

#[test]
fn ten_thousand_directives_for_distinct_tenants() {
    let clock = ManualClock::new();
    let items: Vec<String> = (0..10_000)
        .map(|i| {
            let level = if i % 2 == 0 { "Shape" } else { "ShapeTiming" };
            directive(
                &format!("t{i}"),
                &format!(r#""level":"{level}","ttl_secs":600,"tenant":"tenant-{i}""#),
            )
        })
        .collect();
    let set = decode_ok(body_of(&items), &clock);
    assert_eq!(set.len(), 10_000);
    let id = rid("req");
    for (tenant, want) in [
        ("tenant-0", DiagLevel::Shape),
        ("tenant-4321", DiagLevel::ShapeTiming),
        ("tenant-9999", DiagLevel::ShapeTiming),
        ("tenant-10000", DiagLevel::Off),
        ("nobody", DiagLevel::Off),
    ] {
        let t = PartitionId::from(tenant);
        let r = RequestAttrs::new(EndpointKind::Search).with_tenant(&t);
        assert_eq!(set.evaluate(&r, clock.now(), &id), want, "{tenant}");
        assert_eq!(
            set.decide_by_scan(&r, clock.now(), &id).level,
            want,
            "{tenant}"
        );
    }
    let bare = RequestAttrs::new(EndpointKind::Search);
    assert_eq!(set.evaluate(&bare, clock.now(), &id), DiagLevel::Off);
    clock.advance(Duration::from_secs(600));
    let t = PartitionId::from("tenant-0");
    let r = RequestAttrs::new(EndpointKind::Search).with_tenant(&t);
    assert_eq!(set.evaluate(&r, clock.now(), &id), DiagLevel::Off);
}

#[test]
fn the_empty_set_is_off() {
    let clock = ManualClock::new();
    for set in [
        DirectiveSet::new(),
        DirectiveSet::default(),
        decode_ok(body_of::<&str>(&[]), &clock),
    ] {
        assert!(set.is_empty());
        let t = PartitionId::from("acme");
        let r = RequestAttrs::new(EndpointKind::Search).with_tenant(&t);
        let d = set.decide(&r, clock.now(), &rid("r"));
        assert_eq!(d, osproxy_observe::Decision::default());
        assert_eq!(d.level, DiagLevel::Off);
    }
}

#[test]
fn the_view_reports_remaining_lifetime() {
    let clock = ManualClock::new();
    let set = decode_ok(
        body_of(&[directive(
            "v",
            r#""level":"ShapeTiming","ttl_secs":90,"tenant":"acme","sample_per_mille":250"#,
        )]),
        &clock,
    );
    clock.advance(Duration::from_secs(30));
    let view = set.view(&clock);
    assert_eq!(view.len(), 1);
    let v = &view[0];
    assert_eq!(
        (v.id.as_str(), v.level, v.tenant.as_deref()),
        ("v", "ShapeTiming", Some("acme"))
    );
    assert_eq!(
        (v.sample_per_mille, v.remaining_secs, v.expired),
        (250, 60, false)
    );
    assert_eq!(v.expires_at, "2024-01-01T00:01:30Z");
    clock.advance(Duration::from_secs(60));
    let v = &set.view(&clock)[0];
    assert_eq!((v.remaining_secs, v.expired), (0, true));
}
