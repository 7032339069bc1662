//! [`Failsafe`]: when a store that has heard nothing from etcd for too long
//! must engage its fail-safe, and when it may release it (SPEC §8), as a
//! pure timer machine. The shell passes transport time in, sleeps until
//! [`Failsafe::due_at`] and swaps the served set on each [`Switch`]; what
//! the fail-safe withholds is `crate::safety::failsafe_set`.
//!
//! Every confirmation from etcd (a read, a watch message, a liveness read)
//! restarts the wait; `after` without one engages; the next confirmation
//! releases.

use std::time::Duration;

use tokio::time::Instant;

/// A change of the fail-safe the shell must carry out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Switch {
    /// Freshness lost for `after`: serve the fail-safe part of the set.
    Engage,
    /// Freshness is back: serve the whole set again.
    Release,
}

/// The fail-safe timer of one store.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Failsafe {
    after: Duration,
    last_confirmed: Instant,
    engaged: bool,
}

impl Failsafe {
    /// A timer started at `now` (the store's start counts as confirmed: the
    /// first read confirms right after).
    pub(crate) fn new(after: Duration, now: Instant) -> Self {
        Failsafe {
            after,
            last_confirmed: now,
            engaged: false,
        }
    }

    /// Whether the fail-safe is engaged.
    pub(crate) fn is_engaged(&self) -> bool {
        self.engaged
    }

    /// When [`fire`](Self::fire) should next be called; `None` while
    /// engaged (only a confirmation releases it).
    pub(crate) fn due_at(&self) -> Option<Instant> {
        (!self.engaged).then(|| self.last_confirmed + self.after)
    }

    /// etcd confirmed freshness at `now`.
    pub(crate) fn on_confirmed(&mut self, now: Instant) -> Option<Switch> {
        self.last_confirmed = self.last_confirmed.max(now);
        if self.engaged {
            self.engaged = false;
            return Some(Switch::Release);
        }
        None
    }

    /// The timer fired at `now`: engages once `after` passed without a
    /// confirmation (an early or repeated call changes nothing).
    pub(crate) fn fire(&mut self, now: Instant) -> Option<Switch> {
        if self.engaged || now < self.last_confirmed + self.after {
            return None;
        }
        self.engaged = true;
        Some(Switch::Engage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AFTER: Duration = Duration::from_secs(30);

    #[test]
    fn engages_only_after_the_full_wait_without_confirmation() {
        let t0 = Instant::now();
        let mut f = Failsafe::new(AFTER, t0);
        assert_eq!(f.due_at(), Some(t0 + AFTER));
        assert_eq!(f.fire(t0 + AFTER - Duration::from_millis(1)), None);
        // A confirmation moves the deadline.
        assert_eq!(f.on_confirmed(t0 + Duration::from_secs(10)), None);
        assert_eq!(f.due_at(), Some(t0 + Duration::from_secs(40)));
        assert_eq!(f.fire(t0 + AFTER), None, "an early wake-up changes nothing");
        assert_eq!(f.fire(t0 + Duration::from_secs(40)), Some(Switch::Engage));
        assert!(f.is_engaged());
        assert_eq!(f.due_at(), None);
        assert_eq!(f.fire(t0 + Duration::from_secs(99)), None, "engages once");
    }

    #[test]
    fn the_next_confirmation_releases_and_restarts_the_wait() {
        let t0 = Instant::now();
        let mut f = Failsafe::new(AFTER, t0);
        assert_eq!(f.fire(t0 + AFTER), Some(Switch::Engage));
        let back = t0 + Duration::from_secs(100);
        assert_eq!(f.on_confirmed(back), Some(Switch::Release));
        assert!(!f.is_engaged());
        assert_eq!(f.due_at(), Some(back + AFTER));
        assert_eq!(f.on_confirmed(back), None);
        // A confirmation stamped earlier (out of order) never moves it back.
        assert_eq!(f.on_confirmed(t0), None);
        assert_eq!(f.due_at(), Some(back + AFTER));
    }
}
