//! `serve --etcd`'s capture-safety flags (SPEC §8): the fail-safe and the
//! local ceilings, turned into the etcd store's builder options.
//!
//! The binary's fail-safe default is [`DEFAULT_SERVE_FAILSAFE_AFTER`] (the
//! library's is off): an instance that cannot hear from the fleet for a
//! minute is one its operators cannot switch off, so it stops recording
//! timings, rewrites, bodies and ring buffers until it hears again. A minute
//! is four staleness bounds (15 s): a silent connection is detected, replaced
//! after the longest backoff (10 s) and re-read (5 s) well within it, so an
//! ordinary reconnect or an etcd leader election never trips it.
//! `--failsafe-after off` keeps the seed's semantics (the last good set
//! keeps serving).

use std::time::Duration;

use clap::Args;
use osproxy_etcd::{Ceilings, EtcdStoreBuilder};
use osproxy_observe::DiagLevel;

use super::common::{meaningless_flag, CliError};
use crate::duration::{duration_default, parse_duration, DurationError};

/// `serve`'s default `--failsafe-after` (the module docs say why).
pub const DEFAULT_SERVE_FAILSAFE_AFTER: Duration = Duration::from_secs(60);

/// A `--failsafe-after` value: a duration, or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailsafeAfter(pub Option<Duration>);

/// Parses `off` or a duration (`30s`, `2m`, …). A zero duration parses:
/// the store's options refuse it, the one place that rule lives.
///
/// # Errors
/// A [`DurationError`] for anything else.
pub fn parse_failsafe_after(s: &str) -> Result<FailsafeAfter, DurationError> {
    if s.trim() == "off" {
        return Ok(FailsafeAfter(None));
    }
    parse_duration(s).map(|d| FailsafeAfter(Some(d)))
}

/// Parses a level name (`Off`, `Shape`, `ShapeTiming`, `ShapeRewriteDiff`).
///
/// # Errors
/// A message listing the levels.
pub fn parse_level(s: &str) -> Result<DiagLevel, String> {
    DiagLevel::from_name(s.trim())
        .ok_or_else(|| "expected Off, Shape, ShapeTiming or ShapeRewriteDiff".to_owned())
}

/// Capture-safety options of `serve --etcd`.
#[derive(Args, Debug, Clone)]
pub struct SafetyArgs {
    /// Fail-safe: after this long without confirmation from etcd, directives
    /// above --failsafe-level, and any asking for capture or ring buffer,
    /// stop applying on this instance until etcd confirms again (then they
    /// apply with their original expiries). `off`: the last good set keeps
    /// serving.
    #[arg(long, default_value = duration_default!(DEFAULT_SERVE_FAILSAFE_AFTER), value_parser = parse_failsafe_after, value_name = "DURATION|off", help_heading = "capture safety")]
    pub failsafe_after: FailsafeAfter,
    /// The highest level that keeps applying while the fail-safe is engaged
    /// [default: Shape]. Refused with `--failsafe-after off`, where it would
    /// mean nothing.
    #[arg(long, value_parser = parse_level, value_name = "LEVEL", help_heading = "capture safety")]
    pub failsafe_level: Option<DiagLevel>,
    /// Ceiling: directives above this level apply at it (clamped, reported).
    #[arg(long, value_parser = parse_level, value_name = "LEVEL", requires = "etcd", help_heading = "capture safety")]
    pub max_level: Option<DiagLevel>,
    /// Ceiling: a higher sample_per_mille applies as this (clamped, reported).
    #[arg(long, value_parser = clap::value_parser!(u16).range(0..=1000), value_name = "N", requires = "etcd", help_heading = "capture safety")]
    pub max_sample_per_mille: Option<u16>,
    /// Ceiling: no body capture on this instance (directives asking for one
    /// apply without it; clamped, reported).
    #[arg(long, requires = "etcd", help_heading = "capture safety")]
    pub deny_capture: bool,
    /// Ceiling: no ring buffer on this instance (clamped, reported).
    #[arg(long, requires = "etcd", help_heading = "capture safety")]
    pub deny_ring_buffer: bool,
}

impl SafetyArgs {
    /// The local ceilings these flags set.
    pub fn ceilings(&self) -> Ceilings {
        Ceilings {
            max_level: self.max_level,
            max_sample_per_mille: self.max_sample_per_mille,
            capture_allowed: !self.deny_capture,
            ring_buffer_allowed: !self.deny_ring_buffer,
        }
    }

    /// `builder` with the fail-safe and the ceilings (the fail-safe level
    /// only when given: the store's default otherwise).
    pub fn apply(&self, builder: EtcdStoreBuilder) -> EtcdStoreBuilder {
        let mut builder = builder.ceilings(self.ceilings());
        if let Some(after) = self.failsafe_after.0 {
            builder = builder.failsafe_after(after);
        }
        match self.failsafe_level {
            Some(level) => builder.failsafe_level(level),
            None => builder,
        }
    }

    /// Refuses a flag another flag makes meaningless.
    ///
    /// # Errors
    /// `meaningless_flag` for `--failsafe-level` with `--failsafe-after off`.
    pub fn validate(&self) -> Result<(), CliError> {
        if self.failsafe_after.0.is_none() && self.failsafe_level.is_some() {
            return Err(meaningless_flag(
                "--failsafe-level",
                "with --failsafe-after off (the fail-safe never engages)",
                "drop --failsafe-level, or give --failsafe-after a duration",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failsafe_after_is_a_duration_or_off() {
        assert_eq!(parse_failsafe_after("off"), Ok(FailsafeAfter(None)));
        assert_eq!(
            parse_failsafe_after("90s"),
            Ok(FailsafeAfter(Some(Duration::from_secs(90))))
        );
        // Zero is the store options' to refuse (serve's tests show it).
        assert_eq!(
            parse_failsafe_after("0s"),
            Ok(FailsafeAfter(Some(Duration::ZERO)))
        );
        assert!(parse_failsafe_after("never").is_err());
    }

    #[test]
    fn levels_parse_by_their_wire_names() {
        assert_eq!(parse_level("ShapeTiming"), Ok(DiagLevel::ShapeTiming));
        assert!(parse_level("shape_timing").is_err());
    }
}
