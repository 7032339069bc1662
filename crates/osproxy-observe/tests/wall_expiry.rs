//! The wall-clock expiry kept beside each directive ([`TimedDirective`]):
//! decoded sets carry it and never re-derive it; sets built by code (the
//! seed's `from_directives`) have none until anchored, and cannot be encoded
//! for re-publishing by accident.

mod common;

use std::time::Duration;

use common::{body_of, decode_ok, directive, EPOCH_UNIX_NANOS, SEC};
use osproxy_core::{Clock, ManualClock};
use osproxy_observe::{
    decode_directive_set, encode_directive_set, format_rfc3339, DiagLevel, DiagnosticsDirective,
    DirectiveMatch, DirectiveSet, TimedDirective,
};

fn seed_directive(id: &str, clock: &ManualClock, ttl: Duration) -> DiagnosticsDirective {
    DiagnosticsDirective {
        id: id.to_owned(),
        match_: DirectiveMatch::all(),
        level: DiagLevel::Shape,
        sample_per_mille: 1000,
        expires_at: clock.now().saturating_add(ttl),
        ring_buffer: false,
        capture: false,
    }
}

#[test]
fn a_decoded_set_keeps_its_wall_expiry_and_is_never_re_anchored() {
    let clock = ManualClock::new();
    let set = decode_ok(
        body_of(&[directive("a", r#""level":"Shape","ttl_secs":60"#)]),
        &clock,
    );
    let want = Some(EPOCH_UNIX_NANOS + 60 * SEC);
    assert_eq!(set.directives()[0].expires_at_unix_nanos, want);

    // Time passes; anchoring again (or encoding) changes nothing.
    clock.advance(Duration::from_secs(30));
    let again = set.anchored(&clock);
    assert_eq!(again, set);
    assert_eq!(again.directives()[0].expires_at_unix_nanos, want);
    let bytes = encode_directive_set(&set);
    let text = String::from_utf8(bytes.clone()).unwrap_or_default();
    assert!(
        text.contains(&format_rfc3339(EPOCH_UNIX_NANOS + 60 * SEC)),
        "{text}"
    );
    let redecoded = decode_directive_set(&bytes, &clock).unwrap_or_default();
    assert_eq!(redecoded.directives()[0].expires_at_unix_nanos, want);
}

#[test]
fn a_set_built_by_code_has_no_wall_expiry_until_anchored() {
    let clock = ManualClock::new();
    let set =
        DirectiveSet::from_directives(vec![seed_directive("a", &clock, Duration::from_secs(90))]);
    assert_eq!(set.directives()[0].expires_at_unix_nanos, None);

    // Its canonical form has no expiry, so the decoder (and so every
    // publisher) refuses it instead of inventing a lifetime.
    assert_eq!(
        decode_directive_set(&encode_directive_set(&set), &clock).err(),
        Some("missing_expiry")
    );
    // The view derives one from its clock.
    let view = set.view(&clock);
    assert_eq!(
        view[0].expires_at,
        format_rfc3339(EPOCH_UNIX_NANOS + 90 * SEC)
    );
    assert_eq!(view[0].remaining_secs, 90);

    // Anchored on the clock, it encodes and round-trips.
    clock.advance(Duration::from_secs(10));
    let anchored = set.anchored(&clock);
    let wall = Some(EPOCH_UNIX_NANOS + 90 * SEC);
    assert_eq!(anchored.directives()[0].expires_at_unix_nanos, wall);
    let back = decode_directive_set(&encode_directive_set(&anchored), &clock).unwrap_or_default();
    assert_eq!(back, anchored);
}

#[test]
fn a_timed_directive_reads_as_its_directive() {
    let clock = ManualClock::new();
    let d = seed_directive("x", &clock, Duration::from_secs(5));
    let timed = TimedDirective::new(d.clone(), 7);
    assert_eq!(timed.id, "x");
    assert!(timed.is_live(clock.now()));
    assert_eq!(timed.expires_at_unix_nanos, Some(7));
    assert_eq!(TimedDirective::from(d.clone()).expires_at_unix_nanos, None);
    assert_eq!(timed.into_directive(), d);
    assert_eq!(clock.unix_nanos(), EPOCH_UNIX_NANOS);
}
