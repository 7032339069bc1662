//! [`DirectiveSet`]: an immutable, indexed set of directives, and its
//! evaluation against one request.
//!
//! Why an index: a fleet may run thousands of narrowly targeted directives
//! ("tenant X, 10 minutes") while each request matches almost none of them.
//! Each directive is filed under its most selective target (tenant, then
//! index, then principal, then endpoint, else the always-checked wildcard
//! list), so a request inspects only the directives filed under its own
//! attributes: a few hash look-ups whether the set holds 10 directives or
//! 10,000. The set is built once, off the request path, and then shared
//! read-only.

use std::sync::Arc;

use osproxy_core::{Clock, EndpointKind, Instant, RequestId};
use rustc_hash::FxHashMap;

use crate::directive::{AttrView, DiagLevel, DiagnosticsDirective, RequestAttrs, RequestKeys};
use crate::rules::{is_valid_id, is_valid_target, DecodeError, RejectReason};
use crate::sample;
pub use crate::stats::DirectiveCounts;
use crate::stats::{Counted, Stats};
use crate::timed::TimedDirective;

/// The outcome of evaluating one request: the effective level, whether any
/// applying directive asks for the ring buffer or a capture, and where the
/// level came from (provenance, SPEC §8).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// The highest applying level; `Off` when none applies.
    pub level: DiagLevel,
    /// Some applying directive asks for the ring buffer.
    pub ring_buffer: bool,
    /// Some applying directive asks for a body capture.
    pub capture: bool,
    /// The directive that produced `level`: its position in
    /// [`DirectiveSet::directives`] (the first, in publication order, of the
    /// applying directives at that level). `None` when `level` is `Off`.
    /// [`DirectiveSet::winner`] resolves it, so a proxy can stamp the
    /// directive's id on what it records without allocating per request.
    /// (After `token::raise`, a level above `Off` without a winner came from
    /// the request's signed header.)
    pub winner: Option<u32>,
    /// The revision of the set that decided ([`DirectiveSet::revision`]).
    pub revision: Option<u64>,
}

impl Decision {
    /// Folds one applying directive (at `pos`) into the decision.
    #[inline]
    pub(crate) fn add(&mut self, pos: u32, d: &TimedDirective) {
        if d.level > self.level || (d.level == self.level && self.winner.is_some_and(|w| pos < w)) {
            self.level = d.level;
            self.winner = Some(pos);
        }
        self.ring_buffer |= d.ring_buffer;
        self.capture |= d.capture;
    }
}

/// An immutable set of directives with its request index.
///
/// Each directive is held with its wall-clock expiry ([`TimedDirective`]).
/// Equality compares the directives and their wall-clock expiries in order;
/// the index is derived.
#[derive(Clone, Debug, Default)]
pub struct DirectiveSet {
    directives: Arc<[TimedDirective]>,
    index: Index,
    /// Budgets and counters, shared by the set's clones.
    stats: Arc<Stats>,
    /// Where the set came from (an etcd revision, the in-memory store's
    /// counter), when its store says so.
    revision: Option<u64>,
    /// The id of the key that signed the set, when whoever applied it
    /// verified a signature.
    key_id: Option<Arc<str>>,
}

impl PartialEq for DirectiveSet {
    fn eq(&self, other: &Self) -> bool {
        self.directives == other.directives
    }
}

impl Eq for DirectiveSet {}

/// Positions into `directives`, filed by each directive's most selective
/// target.
#[derive(Clone, Debug, Default)]
struct Index {
    by_tenant: FxHashMap<Box<str>, Vec<u32>>,
    by_index: FxHashMap<Box<str>, Vec<u32>>,
    by_principal: FxHashMap<Box<str>, Vec<u32>>,
    by_endpoint: [Vec<u32>; EndpointKind::ALL.len()],
    wildcard: Vec<u32>,
    /// The latest expiry of any directive: at or after it nothing applies.
    last_expiry: Instant,
}

impl Index {
    fn build(directives: &[TimedDirective]) -> Index {
        let mut index = Index::default();
        for (pos, d) in directives.iter().enumerate() {
            // At most MAX_DIRECTIVES entries are ever built by the decoder;
            // a programmatic set beyond u32::MAX positions cannot be allocated.
            let pos = u32::try_from(pos).unwrap_or(u32::MAX);
            let m = &d.match_;
            if let Some(t) = &m.tenant {
                file_under(&mut index.by_tenant, t.as_str(), pos);
            } else if let Some(i) = &m.index {
                file_under(&mut index.by_index, i.as_str(), pos);
            } else if let Some(p) = &m.principal {
                file_under(&mut index.by_principal, p.as_str(), pos);
            } else if let Some(e) = m.endpoint {
                index.by_endpoint[endpoint_slot(e)].push(pos);
            } else {
                index.wildcard.push(pos);
            }
            index.last_expiry = index.last_expiry.max(d.expires_at);
        }
        index
    }
}

/// Files position `pos` under `key` in one of the target maps.
fn file_under(map: &mut FxHashMap<Box<str>, Vec<u32>>, key: &str, pos: u32) {
    map.entry(key.into()).or_default().push(pos);
}

fn endpoint_slot(e: EndpointKind) -> usize {
    // `ALL` lists the kinds in declaration order (a test holds it to that),
    // so a kind's discriminant is its slot.
    e as usize
}

/// The index's buckets for one request.
///
/// Slot 0 holds those filed under the request's tenant (so their tenant needs
/// no compare); then those filed under its index, principal and endpoint, and
/// the wildcards.
struct Candidates<'a>([&'a [u32]; 5]);

/// Looks `key` up in `map`, skipping the hash when the map is empty.
#[inline]
fn bucket<'m>(map: &'m FxHashMap<Box<str>, Vec<u32>>, key: Option<&str>) -> &'m [u32] {
    match key {
        Some(k) if !map.is_empty() => map.get(k).map_or(&[], Vec::as_slice),
        _ => &[],
    }
}

impl DirectiveSet {
    /// The empty set: every request evaluates to `Off`.
    pub fn new() -> Self {
        DirectiveSet::default()
    }

    /// Builds a set from directives as they are, without checking them (the
    /// seed's constructor). Evaluation stays well defined whatever they hold:
    /// a `sample_per_mille` above 1000 means always, an empty index or
    /// principal target matches only requests without one, and
    /// [`DirectiveSet::get`] finds the first of duplicated ids. Use
    /// [`DirectiveSet::try_from_directives`] to have them checked as the
    /// decoder checks them.
    ///
    /// The directives have no wall-clock expiry (see [`crate::timed`]): the
    /// set evaluates normally, but [`DirectiveSet::anchored`] must give it
    /// one before it can be encoded for re-publishing.
    #[must_use]
    pub fn from_directives(directives: Vec<DiagnosticsDirective>) -> Self {
        DirectiveSet::from_timed(directives.into_iter().map(TimedDirective::from).collect())
    }

    /// Builds a set from directives with their wall-clock expiries, without
    /// checking them.
    fn from_timed(directives: Vec<TimedDirective>) -> Self {
        let index = Index::build(&directives);
        let stats = Arc::new(Stats::new(&directives));
        DirectiveSet {
            directives: directives.into(),
            index,
            stats,
            revision: None,
            key_id: None,
        }
    }

    /// The same set, stamped with the revision it was published at (the
    /// stores do this when they apply a set; [`Decision::revision`] reports
    /// it). Not part of equality.
    #[must_use]
    pub fn with_revision(mut self, revision: u64) -> Self {
        self.revision = Some(revision);
        self
    }

    /// The revision the set was published at, when its store stamped one.
    pub fn revision(&self) -> Option<u64> {
        self.revision
    }

    /// The same set, stamped with the id of the key whose signature was
    /// verified on it. Whoever applies a signed set stamps it (a store that
    /// checks signatures), so that what is recorded under the set can name
    /// the key; an unsigned set has none. Not part of equality.
    #[must_use]
    pub fn with_key_id(mut self, key_id: impl Into<Arc<str>>) -> Self {
        self.key_id = Some(key_id.into());
        self
    }

    /// The id of the key that signed the set, when it was signed and its
    /// store stamped it ([`DirectiveSet::with_key_id`]).
    pub fn key_id(&self) -> Option<&str> {
        self.key_id.as_deref()
    }

    /// Whether some directive is alive at `now` with a level above `Off`:
    /// while none is, nothing can be recorded and a recorder may switch
    /// itself off entirely.
    pub fn any_live_above_off(&self, now: Instant) -> bool {
        now < self.index.last_expiry
            && self
                .directives
                .iter()
                .any(|d| d.is_live(now) && d.level > DiagLevel::Off)
    }

    /// The latest expiry of any directive (`Instant::ZERO`-like when empty):
    /// at or after it nothing applies.
    pub fn last_expiry(&self) -> Instant {
        self.index.last_expiry
    }

    /// The directive a decision's level came from ([`Decision::winner`]).
    pub fn winner(&self, decision: &Decision) -> Option<&TimedDirective> {
        decision
            .winner
            .and_then(|pos| self.directives.get(pos as usize))
    }

    /// The counters of the directive at `position` on this instance since
    /// the set was applied (every [`DirectiveSet::decide`] and
    /// [`DirectiveSet::evaluate`] counts).
    pub fn counts(&self, position: usize) -> DirectiveCounts {
        self.stats.counts(position)
    }

    /// Requests admitted by the budget of the directive at `position` in
    /// `now`'s second, and its `max_per_sec`; `None` without a budget.
    pub fn budget_use(&self, position: usize, now: Instant) -> Option<(u32, u32)> {
        self.stats.budget(position).map(|b| (b.used(now), b.max()))
    }

    /// The same set with every missing wall-clock expiry derived from
    /// `clock` (the wall time its monotonic expiry means now); recorded ones,
    /// and so every decoded one, are kept as they are (SPEC §2: never
    /// re-anchored).
    #[must_use]
    pub fn anchored(&self, clock: &dyn Clock) -> DirectiveSet {
        if self
            .directives
            .iter()
            .all(|d| d.expires_at_unix_nanos.is_some())
        {
            return self.clone();
        }
        let directives = self
            .directives
            .iter()
            .map(|d| TimedDirective::new(d.directive.clone(), d.wall_expiry_or_derive(clock)))
            .collect();
        DirectiveSet::from_timed(directives)
    }

    /// Builds a set from already-typed directives (with their wall-clock
    /// expiries, as [`crate::decode_directive`] returns them), checking what
    /// the decoder checks of the set as a whole (ids valid and unique,
    /// targets and sample within bounds).
    ///
    /// # Errors
    /// [`RejectReason::InvalidId`], [`RejectReason::DuplicateId`],
    /// [`RejectReason::InvalidTarget`] or [`RejectReason::SampleOutOfRange`],
    /// with the position of the first offending directive.
    pub fn try_from_directives(directives: Vec<TimedDirective>) -> Result<Self, DecodeError> {
        let mut seen = rustc_hash::FxHashSet::default();
        for (i, d) in directives.iter().enumerate() {
            if !is_valid_id(&d.id) {
                return Err(DecodeError::at(RejectReason::InvalidId, i));
            }
            if !seen.insert(d.id.as_str()) {
                return Err(DecodeError::at(RejectReason::DuplicateId, i));
            }
            let m = &d.match_;
            let targets = [
                m.tenant.as_ref().map(|t| t.as_str()),
                m.index.as_ref().map(|t| t.as_str()),
                m.principal.as_ref().map(|t| t.as_str()),
            ];
            if targets.into_iter().flatten().any(|t| !is_valid_target(t)) {
                return Err(DecodeError::at(RejectReason::InvalidTarget, i));
            }
            if d.sample_per_mille > 1000 {
                return Err(DecodeError::at(RejectReason::SampleOutOfRange, i));
            }
        }
        Ok(DirectiveSet::from_timed(directives))
    }

    /// Number of directives, expired ones included.
    pub fn len(&self) -> usize {
        self.directives.len()
    }

    /// Whether the set holds no directive.
    pub fn is_empty(&self) -> bool {
        self.directives.is_empty()
    }

    /// The directives with their wall-clock expiries, in publication order.
    pub fn directives(&self) -> &[TimedDirective] {
        &self.directives
    }

    /// The directive with this id.
    pub fn get(&self, id: &str) -> Option<&TimedDirective> {
        self.directives.iter().find(|d| d.id == id)
    }

    /// Number of directives still alive at `now`.
    pub fn live_count(&self, now: Instant) -> usize {
        self.directives.iter().filter(|d| d.is_live(now)).count()
    }

    /// The effective level for a request: the highest level among the
    /// directives that apply to it at `now`, `Off` when none does.
    ///
    /// Counts like [`DirectiveSet::decide`]. Only the empty-set check is
    /// inlined into the caller: the counted decision behind it is a call, so
    /// the caller's loop keeps its registers while nothing is active.
    #[inline]
    pub fn evaluate(&self, attrs: &RequestAttrs<'_>, now: Instant, id: &RequestId) -> DiagLevel {
        if self.directives.is_empty() {
            return DiagLevel::Off;
        }
        self.evaluate_non_empty(attrs, now, id)
    }

    #[inline(never)]
    fn evaluate_non_empty(
        &self,
        attrs: &RequestAttrs<'_>,
        now: Instant,
        id: &RequestId,
    ) -> DiagLevel {
        // Split in two calls so that the common miss (nothing filed where the
        // request could match) returns before the frame the decision needs.
        match self.candidates(attrs, now) {
            None => DiagLevel::Off,
            Some(candidates) => self.evaluate_among(&candidates, attrs, now, id),
        }
    }

    #[inline(never)]
    fn evaluate_among(
        &self,
        candidates: &Candidates<'_>,
        attrs: &RequestAttrs<'_>,
        now: Instant,
        id: &RequestId,
    ) -> DiagLevel {
        self.decide_among(candidates, attrs, now, id.as_str(), true)
            .level
    }

    /// Whether any directive applying to the request asks for the ring
    /// buffer. Looks only: no budget is used and nothing is counted.
    pub fn wants_ring_buffer(
        &self,
        attrs: &RequestAttrs<'_>,
        now: Instant,
        id: &RequestId,
    ) -> bool {
        self.decide_with(attrs, now, id.as_str(), false).ring_buffer
    }

    /// Whether any directive applying to the request asks for a body
    /// capture. Looks only: no budget is used and nothing is counted.
    pub fn wants_capture(&self, attrs: &RequestAttrs<'_>, now: Instant, id: &RequestId) -> bool {
        self.decide_with(attrs, now, id.as_str(), false).capture
    }

    /// [`DirectiveSet::decide`] over attributes borrowed as plain strings
    /// (and the request id as one): the same decision, counted the same way,
    /// for callers that hold no id newtypes (a `tracing` recorder reading
    /// span fields) and would otherwise allocate them per request.
    #[inline]
    pub fn decide_keys(&self, keys: &RequestKeys<'_>, now: Instant, id: &str) -> Decision {
        self.decide_with(keys, now, id, true)
    }

    /// Level, ring buffer and capture in one pass over the applying
    /// directives: the per-request call. It is also the accounting one: each
    /// call admits the request against the budgets of the directives it
    /// matches (`max_per_sec`) and adds to their counters, so call it once
    /// per request ([`DirectiveSet::evaluate`] is `decide(..).level`;
    /// [`DirectiveSet::wants_ring_buffer`] and
    /// [`DirectiveSet::wants_capture`] only look).
    ///
    /// ```
    /// use osproxy_core::{Clock, EndpointKind, ManualClock, PartitionId, RequestId};
    /// use osproxy_observe::{decode_directive_set, DiagLevel, RequestAttrs};
    ///
    /// let clock = ManualClock::new();
    /// let set = decode_directive_set(br#"{"directives":[
    ///     {"id":"acme-timing","level":"ShapeTiming","tenant":"acme","ttl_secs":600},
    ///     {"id":"acme-tape","level":"Shape","tenant":"acme","ring_buffer":true,"ttl_secs":600}]}"#,
    ///     &clock)?;
    /// let acme = PartitionId::from("acme");
    /// let attrs = RequestAttrs::new(EndpointKind::Search).with_tenant(&acme);
    /// let d = set.decide(&attrs, clock.now(), &RequestId::from("req-1"));
    /// // The highest level wins; ring buffer and capture are or-ed over the applying directives.
    /// assert_eq!((d.level, d.ring_buffer, d.capture), (DiagLevel::ShapeTiming, true, false));
    /// // The winner, to stamp on what is recorded.
    /// assert_eq!(set.winner(&d).map(|w| w.directive.id.as_str()), Some("acme-timing"));
    ///
    /// let other = PartitionId::from("globex");
    /// let attrs = RequestAttrs::new(EndpointKind::Search).with_tenant(&other);
    /// assert_eq!(set.decide(&attrs, clock.now(), &RequestId::from("req-2")).level, DiagLevel::Off);
    /// # Ok::<(), &'static str>(())
    /// ```
    #[inline]
    pub fn decide(&self, attrs: &RequestAttrs<'_>, now: Instant, id: &RequestId) -> Decision {
        self.decide_with(attrs, now, id.as_str(), true)
    }

    #[inline(always)]
    fn decide_with<A: AttrView>(
        &self,
        attrs: &A,
        now: Instant,
        id: &str,
        account: bool,
    ) -> Decision {
        match self.candidates(attrs, now) {
            None => Decision {
                revision: self.revision,
                ..Decision::default()
            },
            Some(candidates) => self.decide_among(&candidates, attrs, now, id, account),
        }
    }

    /// Where directives that could apply to the request are filed; `None`
    /// when nothing can apply (the set is empty or past its last expiry, or
    /// nothing is filed where the request could match).
    #[inline(always)]
    fn candidates<A: AttrView>(&self, attrs: &A, now: Instant) -> Option<Candidates<'_>> {
        if self.directives.is_empty() || now >= self.index.last_expiry {
            return None;
        }
        let ix = &self.index;
        let candidates = Candidates([
            bucket(&ix.by_tenant, attrs.tenant_key()),
            // An absent index ("") or principal (the empty id) is looked up
            // like any other: no decoded directive is filed under "", and an
            // unchecked one that is matches it in the scan too.
            bucket(&ix.by_index, Some(attrs.index_key())),
            bucket(&ix.by_principal, Some(attrs.principal_key())),
            &ix.by_endpoint[endpoint_slot(attrs.endpoint_kind())],
            &ix.wildcard,
        ]);
        let none = candidates.0.iter().all(|c| c.is_empty());
        (!none).then_some(candidates)
    }

    /// The decision among `candidates`: admits and counts when `account`.
    #[inline(always)]
    fn decide_among<A: AttrView>(
        &self,
        candidates: &Candidates<'_>,
        attrs: &A,
        now: Instant,
        id: &str,
        account: bool,
    ) -> Decision {
        let mut decision = Decision {
            revision: self.revision,
            ..Decision::default()
        };
        let mut request_bucket: Option<u16> = None;
        for (slot, filed) in candidates.0.iter().enumerate() {
            // A directive is filed under its tenant when it has one: those
            // in slot 0 were found under the request's tenant.
            let tenant_known = slot == 0;
            for &pos in *filed {
                let Some(d) = self.directives.get(pos as usize) else {
                    continue;
                };
                if !d.is_live(now) {
                    continue;
                }
                let matched = if tenant_known {
                    attrs.matched_besides_tenant(&d.match_)
                } else {
                    attrs.matched_by(&d.match_)
                };
                if !matched {
                    continue;
                }
                let at = pos as usize;
                if d.sample_per_mille < 1000 {
                    let b = *request_bucket.get_or_insert_with(|| sample::bucket_of(id));
                    if !sample::in_sample(b, d.sample_per_mille) {
                        if account {
                            self.stats.count(at, Counted::SampledOut);
                        }
                        continue;
                    }
                }
                if let Some(budget) = self.stats.budget(at) {
                    let admitted = if account {
                        budget.try_take(now)
                    } else {
                        budget.has_room(now)
                    };
                    if !admitted {
                        if account {
                            self.stats.count(at, Counted::OverBudget);
                        }
                        continue;
                    }
                }
                if account {
                    self.stats.count(at, Counted::Applied);
                }
                decision.add(pos, d);
            }
        }
        decision
    }

    /// The reference semantics: a plain scan over every directive, without
    /// budgets or counters (they are state, not semantics; it only looks).
    /// Slower on large sets; kept public as the oracle for tests and the
    /// baseline for benchmarks.
    pub fn decide_by_scan(
        &self,
        attrs: &RequestAttrs<'_>,
        now: Instant,
        id: &RequestId,
    ) -> Decision {
        let bucket = sample::bucket(id);
        let mut decision = Decision {
            revision: self.revision,
            ..Decision::default()
        };
        for (pos, d) in self.directives.iter().enumerate() {
            if d.is_live(now)
                && d.match_.matches(attrs)
                && sample::in_sample(bucket, d.sample_per_mille)
            {
                decision.add(u32::try_from(pos).unwrap_or(u32::MAX), d);
            }
        }
        decision
    }
}
