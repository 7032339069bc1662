//! Capture safety (SPEC §8): the local [`Ceilings`] an instance enforces
//! whatever the fleet publishes, and the [`FailsafePolicy`] that withholds
//! the riskiest directives while the store has lost freshness.
//!
//! Both are pure functions over a [`DirectiveSet`], run when a set is
//! applied or when the fail-safe engages or releases — never per request:
//! the request path keeps one atomic load of an already filtered snapshot.
//! - [`clamp`] lowers what a directive asks for to the ceilings and reports
//!   each clamp by directive id ([`ClampedDirective`]); nothing is widened
//!   and nothing is dropped.
//! - [`failsafe_set`] keeps the directives that may go on applying without
//!   confirmation from etcd: at or below the fail-safe level, and asking for
//!   neither capture nor ring buffer. Expiries are the published ones, so a
//!   directive that comes back when freshness returns ends when it always
//!   would have.

use std::time::Duration;

use osproxy_observe::{DiagLevel, DiagnosticsDirective, DirectiveSet, TimedDirective};
use serde::Serialize;

/// The level at or below which directives keep applying in fail-safe, by
/// default: `Shape` records no timings, rewrites or bodies.
pub const DEFAULT_FAILSAFE_LEVEL: DiagLevel = DiagLevel::Shape;

/// What an instance allows whatever the fleet publishes. The default is no
/// ceiling at all. (The lifetime ceiling is `DecodeLimits::max_lifetime`: a
/// directive beyond it is rejected by the decoder, not clamped.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ceilings {
    /// Highest level a directive may apply at; `None`: any.
    pub max_level: Option<DiagLevel>,
    /// Highest `sample_per_mille`; `None`: up to 1000.
    pub max_sample_per_mille: Option<u16>,
    /// Whether a directive may ask for a body capture.
    pub capture_allowed: bool,
    /// Whether a directive may ask for the ring buffer.
    pub ring_buffer_allowed: bool,
}

impl Default for Ceilings {
    fn default() -> Self {
        Ceilings::NONE
    }
}

impl Ceilings {
    /// No ceiling: every directive applies as published.
    pub const NONE: Ceilings = Ceilings {
        max_level: None,
        max_sample_per_mille: None,
        capture_allowed: true,
        ring_buffer_allowed: true,
    };

    /// Whether these ceilings can clamp anything.
    pub fn is_none(&self) -> bool {
        *self == Ceilings::NONE
    }
}

/// One ceiling a directive was clamped to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Clamp {
    /// Its level was lowered to the maximum level.
    Level,
    /// Its `sample_per_mille` was lowered to the maximum.
    SamplePerMille,
    /// Its capture was turned off (not allowed here).
    Capture,
    /// Its ring buffer was turned off (not allowed here).
    RingBuffer,
}

impl Clamp {
    /// Every clamp, in report order.
    pub const ALL: [Clamp; 4] = [
        Clamp::Level,
        Clamp::SamplePerMille,
        Clamp::Capture,
        Clamp::RingBuffer,
    ];

    /// The stable slug (`level`, `sample_per_mille`, `capture`, `ring_buffer`).
    pub fn slug(self) -> &'static str {
        match self {
            Clamp::Level => "level",
            Clamp::SamplePerMille => "sample_per_mille",
            Clamp::Capture => "capture",
            Clamp::RingBuffer => "ring_buffer",
        }
    }
}

/// A directive the instance applies below what was published.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClampedDirective {
    /// The directive's id.
    pub id: String,
    /// The ceilings it was clamped to, in [`Clamp::ALL`] order.
    pub clamps: Vec<Clamp>,
}

/// The set as the ceilings allow it, and what was clamped. `None` when
/// nothing needed clamping: the set applies as it is.
pub fn clamp(
    set: &DirectiveSet,
    ceilings: &Ceilings,
) -> Option<(DirectiveSet, Vec<ClampedDirective>)> {
    if ceilings.is_none() {
        return None;
    }
    let mut report = Vec::new();
    let directives: Vec<TimedDirective> = set
        .directives()
        .iter()
        .map(|d| {
            let mut d = d.clone();
            let clamps = clamp_directive(&mut d, ceilings);
            if !clamps.is_empty() {
                report.push(ClampedDirective {
                    id: d.id.clone(),
                    clamps,
                });
            }
            d
        })
        .collect();
    if report.is_empty() {
        return None;
    }
    Some((rebuild(directives, set), report))
}

/// Lowers one directive to the ceilings; the clamps applied, in
/// [`Clamp::ALL`] order (empty: it was within them). The one rule for sets
/// ([`clamp`]) and for single-request directives
/// ([`crate::trust::clamp_header`]).
pub fn clamp_directive(d: &mut DiagnosticsDirective, ceilings: &Ceilings) -> Vec<Clamp> {
    let mut clamps = Vec::new();
    if let Some(max) = ceilings.max_level.filter(|max| d.level > *max) {
        d.level = max;
        clamps.push(Clamp::Level);
    }
    if let Some(max) = ceilings
        .max_sample_per_mille
        .filter(|max| d.sample_per_mille > *max)
    {
        d.sample_per_mille = max;
        clamps.push(Clamp::SamplePerMille);
    }
    if d.capture && !ceilings.capture_allowed {
        d.capture = false;
        clamps.push(Clamp::Capture);
    }
    if d.ring_buffer && !ceilings.ring_buffer_allowed {
        d.ring_buffer = false;
        clamps.push(Clamp::RingBuffer);
    }
    clamps
}

/// When a store without confirmation from etcd withholds its riskiest
/// directives (builder `failsafe`, `serve --failsafe-after`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailsafePolicy {
    /// Time without confirmation from etcd after which the fail-safe engages.
    pub after: Duration,
    /// The highest level that keeps applying while engaged
    /// ([`DEFAULT_FAILSAFE_LEVEL`] by default).
    pub level: DiagLevel,
}

impl FailsafePolicy {
    /// Engages after `after` without confirmation, keeping directives up to
    /// [`DEFAULT_FAILSAFE_LEVEL`].
    pub fn after(after: Duration) -> Self {
        FailsafePolicy {
            after,
            level: DEFAULT_FAILSAFE_LEVEL,
        }
    }
}

/// Whether a directive keeps applying while the fail-safe is engaged.
fn safe_without_freshness(d: &TimedDirective, level: DiagLevel) -> bool {
    d.level <= level && !d.capture && !d.ring_buffer
}

/// The part of `set` that applies while the fail-safe is engaged, and how
/// many directives it withholds. `None` when it withholds nothing.
pub fn failsafe_set(set: &DirectiveSet, level: DiagLevel) -> Option<(DirectiveSet, usize)> {
    let kept: Vec<TimedDirective> = set
        .directives()
        .iter()
        .filter(|d| safe_without_freshness(d, level))
        .cloned()
        .collect();
    let withheld = set.len() - kept.len();
    (withheld > 0).then(|| (rebuild(kept, set), withheld))
}

/// A set from directives taken from a valid set (clamping only lowers
/// values, filtering only removes): the checks cannot fail, and if they
/// ever did the result fails closed (empty). It keeps `from`'s revision, so
/// decisions still name the publish they came from.
fn rebuild(directives: Vec<TimedDirective>, from: &DirectiveSet) -> DirectiveSet {
    let set = DirectiveSet::try_from_directives(directives).unwrap_or_default();
    match from.revision() {
        Some(r) => set.with_revision(r),
        None => set,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use osproxy_core::{EndpointKind, Instant, RequestId};
    use osproxy_observe::{DiagnosticsDirective, DirectiveMatch, RequestAttrs};

    fn directive(
        id: &str,
        level: DiagLevel,
        sample: u16,
        capture: bool,
        ring: bool,
    ) -> TimedDirective {
        TimedDirective::new(
            DiagnosticsDirective {
                id: id.into(),
                match_: DirectiveMatch::all(),
                level,
                sample_per_mille: sample,
                expires_at: Instant::from_nanos(1_000_000_000_000),
                ring_buffer: ring,
                capture,
            },
            7_000_000_000 + u64::from(sample),
        )
    }

    fn set(ds: Vec<TimedDirective>) -> DirectiveSet {
        DirectiveSet::try_from_directives(ds).unwrap()
    }

    #[test]
    fn no_ceiling_clamps_nothing() {
        let s = set(vec![directive(
            "a",
            DiagLevel::ShapeRewriteDiff,
            1000,
            true,
            true,
        )]);
        assert!(clamp(&s, &Ceilings::default()).is_none());
        let loose = Ceilings {
            max_level: Some(DiagLevel::ShapeRewriteDiff),
            max_sample_per_mille: Some(1000),
            ..Ceilings::NONE
        };
        assert!(clamp(&s, &loose).is_none());
    }

    #[test]
    fn each_ceiling_lowers_and_is_reported_per_directive() {
        let s = set(vec![
            directive("hot", DiagLevel::ShapeRewriteDiff, 500, true, true),
            directive("ok", DiagLevel::Shape, 10, false, false),
        ]);
        let ceilings = Ceilings {
            max_level: Some(DiagLevel::ShapeTiming),
            max_sample_per_mille: Some(100),
            capture_allowed: false,
            ring_buffer_allowed: false,
        };
        let (clamped, report) = clamp(&s, &ceilings).unwrap();
        assert_eq!(
            report,
            vec![ClampedDirective {
                id: "hot".into(),
                clamps: Clamp::ALL.to_vec()
            }]
        );
        assert_eq!(clamped.len(), 2, "nothing is dropped");
        let hot = clamped.get("hot").unwrap();
        assert_eq!(
            (
                hot.level,
                hot.sample_per_mille,
                hot.capture,
                hot.ring_buffer
            ),
            (DiagLevel::ShapeTiming, 100, false, false)
        );
        // Expiries are the published ones.
        assert_eq!(
            hot.expires_at_unix_nanos,
            s.get("hot").unwrap().expires_at_unix_nanos
        );
        assert_eq!(hot.expires_at, s.get("hot").unwrap().expires_at);
        assert_eq!(clamped.get("ok"), s.get("ok"));
        let attrs = RequestAttrs::new(EndpointKind::Search);
        let d = clamped.decide(&attrs, Instant::from_nanos(0), &RequestId::from("r"));
        assert!(d.level <= DiagLevel::ShapeTiming && !d.capture && !d.ring_buffer);
    }

    #[test]
    fn failsafe_keeps_only_low_levels_without_capture_or_ring_buffer() {
        let s = set(vec![
            directive("shape", DiagLevel::Shape, 1000, false, false),
            directive("timing", DiagLevel::ShapeTiming, 1000, false, false),
            directive("capture", DiagLevel::Shape, 1000, true, false),
            directive("ring", DiagLevel::Off, 1000, false, true),
        ]);
        let (safe, withheld) = failsafe_set(&s, DiagLevel::Shape).unwrap();
        assert_eq!(withheld, 3);
        let ids: Vec<&str> = safe.directives().iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["shape"]);
        assert_eq!(safe.get("shape"), s.get("shape"));
        let (safe, withheld) = failsafe_set(&s, DiagLevel::ShapeRewriteDiff).unwrap();
        assert_eq!((safe.len(), withheld), (2, 2));
        let plain = set(vec![directive(
            "shape",
            DiagLevel::Shape,
            1000,
            false,
            false,
        )]);
        assert!(failsafe_set(&plain, DiagLevel::Shape).is_none());
        assert!(failsafe_set(&DirectiveSet::new(), DiagLevel::Off).is_none());
    }
}
