//! Jittered exponential backoff for reconnects.
//!
//! Why jitter: after an etcd restart every instance of a fleet reconnects at
//! once; randomising each delay within its step spreads that thundering herd.
//! Why a reset: a store that was healthy for a while should retry a fresh
//! failure quickly, not resume from the 10 s ceiling of an old outage.

use std::time::Duration;

use rand::Rng;

use crate::error::ConfigError;

/// Default first reconnect delay.
pub const DEFAULT_BACKOFF_INITIAL: Duration = Duration::from_millis(100);
/// Default largest reconnect delay.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Bounds of the reconnect delay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// First delay. Default [`DEFAULT_BACKOFF_INITIAL`] (100 ms).
    pub initial: Duration,
    /// Largest delay. Default [`DEFAULT_BACKOFF_MAX`] (10 s).
    pub max: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            initial: DEFAULT_BACKOFF_INITIAL,
            max: DEFAULT_BACKOFF_MAX,
        }
    }
}

impl BackoffPolicy {
    /// Validates the bounds.
    ///
    /// # Errors
    /// [`ConfigError::Range`] when `initial` is zero or above `max`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.initial.is_zero() {
            return Err(ConfigError::Range {
                option: "backoff initial delay",
                why: "must be above zero",
            });
        }
        if self.initial > self.max {
            return Err(ConfigError::Range {
                option: "backoff initial delay",
                why: "must not exceed the maximum delay",
            });
        }
        Ok(())
    }
}

/// The backoff state of one reconnect loop.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: BackoffPolicy,
    failures: u32,
}

impl Backoff {
    /// A fresh backoff.
    pub fn new(policy: BackoffPolicy) -> Self {
        Backoff {
            policy,
            failures: 0,
        }
    }

    /// The ceiling of the next delay: `initial × 2^failures`, capped at `max`.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.failures.min(31)).unwrap_or(u32::MAX);
        self.policy
            .initial
            .checked_mul(factor)
            .unwrap_or(self.policy.max)
            .min(self.policy.max)
    }

    /// The next delay: uniformly random in `[ceiling/2, ceiling]`, and one
    /// more failure counted.
    pub fn next_delay(&mut self) -> Duration {
        self.next_delay_at(rand::rng().random_range(0.0..=1.0))
    }

    /// The next delay at `jitter` (in `[0, 1]`, clamped) of its spread: what
    /// [`next_delay`](Self::next_delay) does with a random jitter, for a
    /// caller that brings its own (a replayable simulation).
    pub(crate) fn next_delay_at(&mut self, jitter: f64) -> Duration {
        let ceiling = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        let half = ceiling / 2;
        let spread = ceiling.saturating_sub(half);
        half + spread.mul_f64(jitter.clamp(0.0, 1.0))
    }

    /// Forgets past failures after a success.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Failures since the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_exponentially_within_jitter_and_cap() {
        let policy = BackoffPolicy::default();
        let mut b = Backoff::new(policy);
        let mut ceilings = Vec::new();
        for _ in 0..12 {
            let ceiling = b.ceiling();
            let d = b.next_delay();
            assert!(
                d >= ceiling / 2 && d <= ceiling,
                "{d:?} outside [{ceiling:?}/2, {ceiling:?}]"
            );
            ceilings.push(ceiling);
        }
        assert_eq!(ceilings[0], Duration::from_millis(100));
        assert_eq!(ceilings[1], Duration::from_millis(200));
        assert_eq!(ceilings[3], Duration::from_millis(800));
        assert_eq!(*ceilings.last().unwrap(), Duration::from_secs(10));
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(100));
    }

    #[test]
    fn never_overflows() {
        let mut b = Backoff::new(BackoffPolicy::default());
        for _ in 0..10_000 {
            assert!(b.next_delay() <= Duration::from_secs(10));
        }
    }

    #[test]
    fn invalid_bounds_are_rejected() {
        let zero = BackoffPolicy {
            initial: Duration::ZERO,
            max: Duration::from_secs(1),
        };
        assert!(zero.validate().is_err());
        let inverted = BackoffPolicy {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(1),
        };
        assert!(inverted.validate().is_err());
        assert!(BackoffPolicy::default().validate().is_ok());
    }
}
