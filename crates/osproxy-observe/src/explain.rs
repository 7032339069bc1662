//! [`DirectiveSet::explain`]: why a request decides the way it does, for
//! every directive of the set (SPEC §8, "every decision can be explained").
//!
//! It answers the two questions an operator asks: "why did request r-42
//! record timings?" (which directives applied, which one won) and "is my
//! directive matching anything?" (which of its targets failed, its sample
//! bucket against its rate, its expiry, its budget). It only looks: no budget
//! is used and nothing is counted, so asking never changes what the next
//! request gets. Its [`Explanation::decision`] is what
//! [`DirectiveSet::decide`] returns for the same request at the same moment
//! (a property test holds them together).

use osproxy_core::{Instant, RequestId};

use crate::directive::{DiagLevel, RequestAttrs};
use crate::sample;
use crate::set::{Decision, DirectiveCounts, DirectiveSet};

/// How one target of a directive compares with the request: `None` when the
/// directive does not set it (a wildcard), else whether it matched.
pub type TargetMatch = Option<bool>;

/// One directive's part in a decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectiveExplanation {
    /// Its position in [`DirectiveSet::directives`].
    pub position: usize,
    /// Its id.
    pub id: String,
    /// Its level (as this instance applies it: after any clamp).
    pub level: DiagLevel,
    /// Its `tenant` target against the request.
    pub tenant: TargetMatch,
    /// Its `index` target against the request.
    pub index: TargetMatch,
    /// Its `principal` target against the request.
    pub principal: TargetMatch,
    /// Its `endpoint` target against the request.
    pub endpoint: TargetMatch,
    /// Every target it sets matched.
    pub matched: bool,
    /// Its sample rate; the request's bucket is [`Explanation::bucket`].
    pub sample_per_mille: u16,
    /// The request is in its sample.
    pub in_sample: bool,
    /// It has not expired at `now`.
    pub live: bool,
    /// Its wall-clock end of life, when known.
    pub expires_at_unix_nanos: Option<u64>,
    /// Its budget: `(admitted in this second, max_per_sec)`; `None` without
    /// one.
    pub budget: Option<(u32, u32)>,
    /// Its budget has room for this request (`true` without a budget).
    pub within_budget: bool,
    /// It applies: live, matched, in sample, within budget.
    pub applies: bool,
    /// It produced the decision's level.
    pub winner: bool,
    /// Its counters on this instance since the set was applied.
    pub counts: DirectiveCounts,
}

/// A request's decision, directive by directive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    /// What [`DirectiveSet::decide`] returns for this request now.
    pub decision: Decision,
    /// The request id's sample bucket (FNV-1a-64 of the id, modulo 1000):
    /// in a directive's sample when below its `sample_per_mille`.
    pub bucket: u16,
    /// Every directive of the set, in publication order.
    pub directives: Vec<DirectiveExplanation>,
}

impl DirectiveSet {
    /// Explains the decision for a request at `now`, for every directive
    /// (see the module docs). Costs a scan of the set: an operator's call,
    /// not the request path's.
    pub fn explain(&self, attrs: &RequestAttrs<'_>, now: Instant, id: &RequestId) -> Explanation {
        let bucket = sample::bucket(id);
        let mut directives = Vec::with_capacity(self.len());
        for (position, d) in self.directives().iter().enumerate() {
            let m = &d.match_;
            let tenant = m
                .tenant
                .as_ref()
                .map(|t| attrs.tenant.is_some_and(|r| r == t));
            let index = m.index.as_ref().map(|i| i.as_str() == attrs.index);
            let principal = m.principal.as_ref().map(|p| p == attrs.principal);
            let endpoint = m.endpoint.map(|e| e == attrs.endpoint);
            let matched = [tenant, index, principal, endpoint]
                .into_iter()
                .all(|t| t != Some(false));
            debug_assert_eq!(matched, m.matches(attrs));
            let in_sample = sample::in_sample(bucket, d.sample_per_mille);
            let live = d.is_live(now);
            let budget = self.budget_use(position, now);
            let within_budget = budget.is_none_or(|(used, max)| used < max);
            directives.push(DirectiveExplanation {
                position,
                id: d.id.clone(),
                level: d.level,
                tenant,
                index,
                principal,
                endpoint,
                matched,
                sample_per_mille: d.sample_per_mille,
                in_sample,
                live,
                expires_at_unix_nanos: d.expires_at_unix_nanos,
                budget,
                within_budget,
                applies: live && matched && in_sample && within_budget,
                winner: false,
                counts: self.counts(position),
            });
        }
        let mut decision = Decision {
            revision: self.revision(),
            ..Decision::default()
        };
        for e in directives.iter().filter(|e| e.applies) {
            if let Some(d) = self.directives().get(e.position) {
                decision.add(u32::try_from(e.position).unwrap_or(u32::MAX), d);
            }
        }
        if let Some(w) = decision.winner {
            if let Some(e) = directives.get_mut(w as usize) {
                e.winner = true;
            }
        }
        Explanation {
            decision,
            bucket,
            directives,
        }
    }
}
