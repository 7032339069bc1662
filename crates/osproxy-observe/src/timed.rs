//! [`TimedDirective`]: a directive together with its absolute end of life on
//! the wall clock, the unit a [`crate::DirectiveSet`] holds.
//!
//! Why beside the directive and not in it: the seed's
//! [`DiagnosticsDirective`] has exactly seven public fields, and its expiry is
//! a monotonic [`Instant`], which means nothing outside this process. A
//! fleet needs the wall-clock moment (SPEC §2: a directive ends at the same
//! moment on every instance, and re-publishing never extends it), so the
//! decoder records it here, and the encoder, the introspection view and the
//! publishers read it from here.
//!
//! A directive built by code (the seed's
//! [`crate::DirectiveSet::from_directives`], or [`From<DiagnosticsDirective>`])
//! has no wall-clock expiry (`None`): it evaluates normally, the view derives
//! one from its clock, and the canonical encoding leaves `expires_at` out, so
//! the decoder (and with it every publisher) refuses such a set with
//! `missing_expiry` rather than guessing a lifetime. Anchor it first with
//! [`crate::DirectiveSet::anchored`]. Decoded directives always have one, and
//! it is never re-derived.

use std::num::NonZeroU32;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use osproxy_core::{Clock, Instant};

use crate::directive::DiagnosticsDirective;

/// A directive and its absolute wall-clock end of life. Derefs to the
/// [`DiagnosticsDirective`], so `entry.id`, `entry.level` or
/// `entry.is_live(now)` read the directive.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TimedDirective {
    /// The directive.
    pub directive: DiagnosticsDirective,
    /// The directive's end of life as wall-clock nanoseconds since the Unix
    /// epoch: what is shared across the fleet and re-published. `None` for a
    /// directive built by code rather than decoded (see the module docs).
    pub expires_at_unix_nanos: Option<u64>,
    /// The directive's rate budget (wire field `max_per_sec`, SPEC §8): on
    /// each instance at most this many requests per second receive its
    /// effect; beyond it a request evaluates as if it did not apply. `None`:
    /// no budget. Beside the directive for the same reason as the expiry:
    /// the seed's [`DiagnosticsDirective`] has exactly seven fields.
    pub max_per_sec: Option<NonZeroU32>,
}

impl TimedDirective {
    /// The directive with a known wall-clock end of life.
    pub fn new(directive: DiagnosticsDirective, expires_at_unix_nanos: u64) -> Self {
        TimedDirective {
            directive,
            expires_at_unix_nanos: Some(expires_at_unix_nanos),
            max_per_sec: None,
        }
    }

    /// The same directive with a rate budget (`None`: none).
    #[must_use]
    pub fn with_max_per_sec(mut self, max_per_sec: Option<NonZeroU32>) -> Self {
        self.max_per_sec = max_per_sec;
        self
    }

    /// The wall-clock end of life: the recorded one, or else the one the
    /// monotonic expiry means on `clock` right now.
    pub fn wall_expiry_or_derive(&self, clock: &dyn Clock) -> u64 {
        self.expires_at_unix_nanos
            .unwrap_or_else(|| wall_of(self.directive.expires_at, clock))
    }

    /// The directive without its wall-clock expiry.
    pub fn into_directive(self) -> DiagnosticsDirective {
        self.directive
    }
}

impl From<DiagnosticsDirective> for TimedDirective {
    /// A directive with no wall-clock expiry (`None`).
    fn from(directive: DiagnosticsDirective) -> Self {
        TimedDirective {
            directive,
            expires_at_unix_nanos: None,
            max_per_sec: None,
        }
    }
}

impl Deref for TimedDirective {
    type Target = DiagnosticsDirective;
    #[inline]
    fn deref(&self) -> &DiagnosticsDirective {
        &self.directive
    }
}

impl DerefMut for TimedDirective {
    #[inline]
    fn deref_mut(&mut self) -> &mut DiagnosticsDirective {
        &mut self.directive
    }
}

/// The wall-clock time that monotonic `at` corresponds to on `clock` now.
fn wall_of(at: Instant, clock: &dyn Clock) -> u64 {
    let (mono, wall) = (clock.now(), clock.unix_nanos());
    if at >= mono {
        wall.saturating_add(nanos(at.saturating_duration_since(mono)))
    } else {
        wall.saturating_sub(nanos(mono.saturating_duration_since(at)))
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use osproxy_core::ManualClock;

    use super::*;
    use crate::directive::{DiagLevel, DirectiveMatch};

    fn directive(expires_at: Instant) -> DiagnosticsDirective {
        DiagnosticsDirective {
            id: "d".to_owned(),
            match_: DirectiveMatch::all(),
            level: DiagLevel::Shape,
            sample_per_mille: 1000,
            expires_at,
            ring_buffer: false,
            capture: false,
        }
    }

    #[test]
    fn a_recorded_wall_expiry_wins_and_a_missing_one_is_derived() {
        let clock = ManualClock::new();
        clock.advance(Duration::from_secs(100));
        let now = clock.now();
        let wall = clock.unix_nanos();
        let ahead = TimedDirective::from(directive(now.saturating_add(Duration::from_secs(5))));
        assert_eq!(ahead.wall_expiry_or_derive(&clock), wall + 5_000_000_000);
        let behind = TimedDirective::from(directive(Instant::from_nanos(
            now.as_nanos() - 7_000_000_000,
        )));
        assert_eq!(behind.wall_expiry_or_derive(&clock), wall - 7_000_000_000);
        let recorded = TimedDirective::new(directive(now), 42);
        assert_eq!(recorded.wall_expiry_or_derive(&clock), 42);
        assert_eq!(recorded.id, "d");
    }
}
