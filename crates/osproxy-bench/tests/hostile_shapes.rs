//! Each hostile shape of `osproxy_bench::hostile` stays within the body
//! limit and is refused with its own slug; the valid ones decode. Their cost
//! is measured, as ratios, by `src/bin/decode_cost.rs` (no timing here).

use osproxy_bench::hostile::{shapes, WIDE_KEYS};
use osproxy_core::ManualClock;
use osproxy_observe::decode::MAX_BODY_BYTES;
use osproxy_observe::decode_directive_set;

#[test]
fn every_shape_is_within_the_limit_and_gets_its_slug() {
    let clock = ManualClock::new();
    let shapes = shapes();
    assert!(shapes.len() >= 10);
    for s in &shapes {
        assert!(
            s.body.len() <= MAX_BODY_BYTES,
            "{}: {} bytes",
            s.name,
            s.body.len()
        );
        let got = decode_directive_set(&s.body, &clock)
            .err()
            .map(|e| e.slug());
        assert_eq!(got, s.expect, "{}", s.name);
    }
}

#[test]
fn the_baseline_is_a_full_valid_set_near_the_limit() {
    let clock = ManualClock::new();
    let base = &shapes()[0];
    assert_eq!(base.expect, None);
    assert!(
        base.body.len() > MAX_BODY_BYTES * 9 / 10,
        "{}",
        base.body.len()
    );
    let set = decode_directive_set(&base.body, &clock).unwrap();
    assert_eq!(set.len(), osproxy_observe::decode::MAX_DIRECTIVES);
}

#[test]
fn the_wide_object_is_the_issues_reproduction() {
    let wide = shapes()
        .into_iter()
        .find(|s| s.name == "wide_object")
        .unwrap();
    let keys = wide.body.iter().filter(|&&b| b == b':').count();
    assert_eq!(keys, WIDE_KEYS);
}
