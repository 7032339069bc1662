//! [`Liveness`]: when a watch must be asked whether it is alive, and when it
//! must be given up (SPEC §5.5, §5.12), as a pure timer machine. The shell
//! passes the time in and sleeps until [`Liveness::next`]; nothing here reads
//! a clock.
//!
//! After `progress_every` of silence the watch is asked for progress. An
//! endpoint that does not answer within the grace (etcd's grpc-proxy never
//! does, etcd-io/etcd#19710) is probed with a liveness read instead, then and
//! at every later silence of this connection. Any watch message, or a read
//! that confirms freshness, restarts the silence. `stale_after` of silence
//! without a confirmation gives the connection up.

use std::time::Duration;

use tokio::time::Instant;

/// Longest wait for a progress reply before the liveness read takes over.
pub(crate) const PROGRESS_GRACE: Duration = Duration::from_secs(1);

/// The wait for a progress reply: [`PROGRESS_GRACE`], or a third of the gap
/// between the progress interval and the staleness bound when that is
/// shorter, so the read still has time to answer before `stale_after`.
pub(crate) fn progress_grace(progress_every: Duration, stale_after: Duration) -> Duration {
    PROGRESS_GRACE.min(stale_after.saturating_sub(progress_every) / 3)
}

/// What is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Send a progress request on the watch stream.
    RequestProgress,
    /// Run a liveness read (answered by [`Liveness::stale_at`] or stale).
    Read,
    /// No confirmation for `stale_after`: drop the connection.
    Stale,
}

/// Where the probe of the current silence is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Probe {
    /// Nothing asked since the last confirmation.
    Idle,
    /// A progress request is out, sent at `since`.
    AwaitingProgress { since: Instant },
}

/// The liveness timers of one watch connection.
#[derive(Clone, Debug)]
pub(crate) struct Liveness {
    progress_every: Duration,
    stale_after: Duration,
    grace: Duration,
    last_confirmed: Instant,
    probe: Probe,
    /// Whether this connection answers progress requests: assumed until one
    /// goes unanswered, never asked again after that.
    answers_progress: bool,
}

impl Liveness {
    /// A connection confirmed at `now` (the watch was just established).
    pub(crate) fn new(now: Instant, progress_every: Duration, stale_after: Duration) -> Liveness {
        Liveness {
            progress_every,
            stale_after,
            grace: progress_grace(progress_every, stale_after),
            last_confirmed: now,
            probe: Probe::Idle,
            answers_progress: true,
        }
    }

    /// The moment the connection is given up without a confirmation.
    pub(crate) fn stale_at(&self) -> Instant {
        self.last_confirmed + self.stale_after
    }

    /// Whether progress requests are answered on this connection (false
    /// once one went unanswered).
    pub(crate) fn answers_progress(&self) -> bool {
        self.answers_progress
    }

    /// The next deadline and what is due then.
    pub(crate) fn next(&self) -> (Instant, Action) {
        let probe = match self.probe {
            Probe::Idle if self.answers_progress => (
                self.last_confirmed + self.progress_every,
                Action::RequestProgress,
            ),
            Probe::Idle => (self.last_confirmed + self.progress_every, Action::Read),
            Probe::AwaitingProgress { since } => (since + self.grace, Action::Read),
        };
        let stale = (self.stale_at(), Action::Stale);
        if stale.0 <= probe.0 {
            stale
        } else {
            probe
        }
    }

    /// A watch message arrived (events or a progress reply): confirmed.
    pub(crate) fn on_message(&mut self, now: Instant) {
        self.last_confirmed = now;
        self.probe = Probe::Idle;
    }

    /// A liveness read confirmed freshness.
    pub(crate) fn on_read_confirmed(&mut self, now: Instant) {
        self.on_message(now);
    }

    /// What is due at `now`, if the deadline of [`next`](Self::next) has
    /// come (`None` when woken early). A read that replaces an unanswered
    /// progress request marks the connection as one that does not answer
    /// them.
    pub(crate) fn fire(&mut self, now: Instant) -> Option<Action> {
        if now >= self.stale_at() {
            return Some(Action::Stale);
        }
        let (at, action) = self.next();
        if now < at {
            return None;
        }
        match action {
            Action::RequestProgress => self.probe = Probe::AwaitingProgress { since: now },
            Action::Read => {
                if matches!(self.probe, Probe::AwaitingProgress { .. }) {
                    self.answers_progress = false;
                }
                self.probe = Probe::Idle;
            }
            Action::Stale => {}
        }
        Some(action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn an_answering_endpoint_is_only_asked_for_progress() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0, S(10), S(15));
        assert_eq!(l.next(), (at(t0, 10_000), Action::RequestProgress));
        assert_eq!(l.fire(at(t0, 10_000)), Some(Action::RequestProgress));
        // The reply comes 5 ms later: the silence restarts.
        l.on_message(at(t0, 10_005));
        assert!(l.answers_progress());
        assert_eq!(l.next(), (at(t0, 20_005), Action::RequestProgress));
    }

    #[test]
    fn an_unanswered_progress_request_switches_the_connection_to_reads() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0, S(10), S(15));
        assert_eq!(l.fire(at(t0, 10_000)), Some(Action::RequestProgress));
        assert_eq!(l.next(), (at(t0, 11_000), Action::Read));
        assert_eq!(l.fire(at(t0, 11_000)), Some(Action::Read));
        assert!(!l.answers_progress());
        l.on_read_confirmed(at(t0, 11_002));
        // From now on: straight to the read at each silence.
        assert_eq!(l.next(), (at(t0, 21_002), Action::Read));
        assert_eq!(l.fire(at(t0, 21_002)), Some(Action::Read));
    }

    #[test]
    fn no_confirmation_within_the_bound_is_stale() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0, S(1), S(3));
        assert_eq!(l.fire(at(t0, 1_000)), Some(Action::RequestProgress));
        assert_eq!(l.fire(at(t0, 1_667)), Some(Action::Read));
        // The read (awaited by the shell until the bound) never answers.
        assert_eq!(l.stale_at(), at(t0, 3_000));
        assert_eq!(l.fire(at(t0, 3_000)), Some(Action::Stale));
    }

    #[test]
    fn an_early_wake_does_nothing_and_an_overslept_bound_is_stale() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0, S(10), S(15));
        assert_eq!(l.fire(at(t0, 5_000)), None);
        assert_eq!(l.next(), (at(t0, 10_000), Action::RequestProgress));
        // Overslept past the bound: stale wins over the probe.
        assert_eq!(l.fire(at(t0, 16_000)), Some(Action::Stale));
    }

    #[test]
    fn the_grace_leaves_the_read_time_before_the_bound() {
        assert_eq!(progress_grace(S(10), S(15)), PROGRESS_GRACE);
        assert_eq!(progress_grace(S(1), S(3)), S(2) / 3);
        assert_eq!(progress_grace(S(3), S(3)), Duration::ZERO);
    }
}
