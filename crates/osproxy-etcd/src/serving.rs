//! [`Serving`]: what a store hands its readers, between the watch core's
//! composed set and the atomic snapshot (SPEC §8). The watcher applies each
//! composed set here; the set is clamped to the local [`Ceilings`] once, and
//! the fail-safe swaps in its filtered part when it engages and the whole
//! set when it releases. Readers never see any of it: per request they load
//! one snapshot, as before.
//!
//! The decisions are pure (`crate::safety`, `crate::follow::failsafe`);
//! this is the shell that keeps their state, swaps and reports in
//! [`StoreStatus`](crate::StoreStatus).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use osproxy_observe::{DirectiveSet, SharedDirectiveSet};
use tokio::time::Instant as TokioInstant;
use tracing::{info, warn};

use crate::follow::failsafe::{Failsafe, Switch};
use crate::safety::{clamp, failsafe_set, Ceilings, FailsafePolicy};
use crate::status::StatusCell;

/// The served set's state; shared by the watcher and its fail-safe timer.
pub(crate) struct Serving {
    shared: SharedDirectiveSet,
    status: Arc<StatusCell>,
    ceilings: Ceilings,
    policy: Option<FailsafePolicy>,
    state: Mutex<State>,
}

struct State {
    /// The last set the core composed, as it composed it.
    composed: Arc<DirectiveSet>,
    /// That set within the ceilings: what serves while fresh.
    full: Arc<DirectiveSet>,
    failsafe: Option<Failsafe>,
}

impl Serving {
    /// Serves `shared` (empty so far) under `ceilings`, with the fail-safe
    /// timer (if any) started at `now`.
    pub(crate) fn new(
        shared: SharedDirectiveSet,
        status: Arc<StatusCell>,
        ceilings: Ceilings,
        policy: Option<FailsafePolicy>,
        now: TokioInstant,
    ) -> Self {
        let empty = shared.load_full();
        Serving {
            shared,
            status,
            ceilings,
            state: Mutex::new(State {
                composed: Arc::clone(&empty),
                full: empty,
                failsafe: policy.map(|p| Failsafe::new(p.after, now)),
            }),
            policy,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update leaves the state consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The last set applied, as composed (before the ceilings).
    #[cfg(test)]
    pub(crate) fn composed(&self) -> Arc<DirectiveSet> {
        Arc::clone(&self.lock().composed)
    }

    /// Applies a newly composed set: clamps it, records the clamps, and
    /// swaps in what may serve now.
    pub(crate) fn apply(&self, composed: Arc<DirectiveSet>) {
        let (full, clamped) = match clamp(&composed, &self.ceilings) {
            Some((set, report)) => (Arc::new(set), report),
            None => (Arc::clone(&composed), Vec::new()),
        };
        if !clamped.is_empty() {
            let ids = clamped.len();
            info!(directives = ids, "directives clamped to the local ceilings");
        }
        let mut state = self.lock();
        state.composed = composed;
        state.full = full;
        let engaged = state.failsafe.is_some_and(|f| f.is_engaged());
        let withheld = self.serve(&state, engaged);
        drop(state);
        self.status.update(|s| {
            s.clamped = clamped;
            if engaged {
                s.failsafe_withheld = withheld;
            }
        });
    }

    /// Swaps in the whole set, or its fail-safe part; returns how many
    /// directives that withholds.
    fn serve(&self, state: &State, engaged: bool) -> usize {
        let level = self.policy.map(|p| p.level);
        match level
            .filter(|_| engaged)
            .and_then(|l| failsafe_set(&state.full, l))
        {
            Some((safe, withheld)) => {
                self.shared.store(Arc::new(safe));
                withheld
            }
            None => {
                self.shared.store(Arc::clone(&state.full));
                0
            }
        }
    }

    /// When the fail-safe timer should next fire, if it runs.
    pub(crate) fn due_at(&self) -> Option<TokioInstant> {
        self.lock().failsafe.and_then(|f| f.due_at())
    }

    /// etcd confirmed freshness at `now` (transport time); returns whether
    /// that released the fail-safe.
    pub(crate) fn confirmed(&self, now: TokioInstant) -> bool {
        let mut state = self.lock();
        let Some(failsafe) = state.failsafe.as_mut() else {
            return false;
        };
        if failsafe.on_confirmed(now) == Some(Switch::Release) {
            self.serve(&state, false);
            drop(state);
            self.status.update(|s| {
                s.failsafe = false;
                s.failsafe_since_unix_nanos = None;
                s.failsafe_withheld = 0;
            });
            info!("fail-safe released: etcd confirmed freshness; the whole set applies again");
            return true;
        }
        false
    }

    /// The fail-safe timer fired at `now` (transport time); `wall` is the
    /// directive clock's wall time, for the status.
    pub(crate) fn fire(&self, now: TokioInstant, wall: u64) {
        let mut state = self.lock();
        let Some(failsafe) = state.failsafe.as_mut() else {
            return;
        };
        if failsafe.fire(now) == Some(Switch::Engage) {
            let withheld = self.serve(&state, true);
            drop(state);
            self.status.update(|s| {
                s.failsafe = true;
                s.failsafe_since_unix_nanos = Some(wall);
                s.failsafe_withheld = withheld;
            });
            warn!(
                withheld,
                "fail-safe engaged: no confirmation from etcd within failsafe_after; directives above the fail-safe level, capture and ring buffer stop applying"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use osproxy_core::ManualClock;
    use osproxy_observe::{decode_directive_set, DiagLevel};

    use super::*;

    const AFTER: Duration = Duration::from_secs(30);

    fn serving(ceilings: Ceilings, t0: TokioInstant) -> (Serving, SharedDirectiveSet) {
        let shared = SharedDirectiveSet::default();
        let policy = FailsafePolicy::after(AFTER);
        let s = Serving::new(
            shared.clone(),
            Arc::new(StatusCell::new()),
            ceilings,
            Some(policy),
            t0,
        );
        (s, shared)
    }

    fn composed() -> Arc<DirectiveSet> {
        let body = br#"{"directives":[
          {"id":"shape","level":"Shape","ttl_secs":600},
          {"id":"cap","level":"ShapeRewriteDiff","capture":true,"ttl_secs":600}
        ]}"#;
        Arc::new(decode_directive_set(body, &ManualClock::new()).unwrap())
    }

    fn ids(shared: &SharedDirectiveSet) -> Vec<String> {
        let set = shared.load_full();
        set.directives().iter().map(|d| d.id.clone()).collect()
    }

    #[test]
    fn engaging_serves_the_safe_part_and_releasing_the_very_same_set() {
        let t0 = TokioInstant::now();
        let (s, shared) = serving(Ceilings::NONE, t0);
        let set = composed();
        s.apply(Arc::clone(&set));
        assert!(
            Arc::ptr_eq(&shared.load_full(), &set),
            "no ceiling: served as is"
        );
        assert_eq!(s.due_at(), Some(t0 + AFTER));
        s.fire(t0 + AFTER, 42);
        assert_eq!(ids(&shared), ["shape"]);
        let st = s.status.snapshot(&ManualClock::new());
        assert_eq!(
            (
                st.failsafe,
                st.failsafe_since_unix_nanos,
                st.failsafe_withheld
            ),
            (true, Some(42), 1)
        );
        assert!(s.confirmed(t0 + 2 * AFTER));
        // The same Arc: expiries exactly as they were, nothing re-anchored.
        assert!(Arc::ptr_eq(&shared.load_full(), &set));
        let st = s.status.snapshot(&ManualClock::new());
        assert_eq!((st.failsafe, st.failsafe_since_unix_nanos), (false, None));
        assert!(!s.confirmed(t0 + 2 * AFTER), "released once");
    }

    #[test]
    fn a_set_applied_while_engaged_serves_filtered_and_clamped() {
        let t0 = TokioInstant::now();
        let ceilings = Ceilings {
            max_level: Some(DiagLevel::ShapeTiming),
            ..Ceilings::NONE
        };
        let (s, shared) = serving(ceilings, t0);
        s.fire(t0 + AFTER, 1);
        s.apply(composed());
        assert_eq!(ids(&shared), ["shape"]);
        assert_eq!(s.status.snapshot(&ManualClock::new()).clamped.len(), 1);
        s.confirmed(t0 + AFTER);
        let served = shared.load_full();
        let cap = served.get("cap").unwrap();
        assert_eq!((cap.level, cap.capture), (DiagLevel::ShapeTiming, true));
        // The composed set stays what the core composed, for change checks.
        assert_eq!(
            s.composed().get("cap").unwrap().level,
            DiagLevel::ShapeRewriteDiff
        );
    }
}
