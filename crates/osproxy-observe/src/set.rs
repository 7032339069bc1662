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

use crate::directive::{DiagLevel, DiagnosticsDirective, RequestAttrs};
use crate::rules::{is_valid_id, is_valid_target, DecodeError, RejectReason};
use crate::sample;
use crate::timed::TimedDirective;

/// The outcome of evaluating one request: the effective level and whether any
/// applying directive asks for the ring buffer or a capture.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// The highest applying level; `Off` when none applies.
    pub level: DiagLevel,
    /// Some applying directive asks for the ring buffer.
    pub ring_buffer: bool,
    /// Some applying directive asks for a body capture.
    pub capture: bool,
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
    EndpointKind::ALL
        .iter()
        .position(|k| *k == e)
        .unwrap_or(EndpointKind::ALL.len() - 1)
}

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
        DirectiveSet {
            directives: directives.into(),
            index,
        }
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
    #[inline]
    pub fn evaluate(&self, attrs: &RequestAttrs<'_>, now: Instant, id: &RequestId) -> DiagLevel {
        if self.directives.is_empty() {
            return DiagLevel::Off;
        }
        self.decide(attrs, now, id).level
    }

    /// Whether any directive applying to the request asks for the ring buffer.
    pub fn wants_ring_buffer(
        &self,
        attrs: &RequestAttrs<'_>,
        now: Instant,
        id: &RequestId,
    ) -> bool {
        self.decide(attrs, now, id).ring_buffer
    }

    /// Whether any directive applying to the request asks for a body capture.
    pub fn wants_capture(&self, attrs: &RequestAttrs<'_>, now: Instant, id: &RequestId) -> bool {
        self.decide(attrs, now, id).capture
    }

    /// Level, ring buffer and capture in one pass over the applying directives.
    #[inline]
    pub fn decide(&self, attrs: &RequestAttrs<'_>, now: Instant, id: &RequestId) -> Decision {
        let mut decision = Decision::default();
        if self.directives.is_empty() || now >= self.index.last_expiry {
            return decision;
        }
        let ix = &self.index;
        let mut request_bucket: Option<u16> = None;
        let candidates = [
            bucket(&ix.by_tenant, attrs.tenant.map(|t| t.as_str())),
            // An absent index ("") or principal (the empty id) is looked up
            // like any other: no decoded directive is filed under "", and an
            // unchecked one that is matches it in the scan too.
            bucket(&ix.by_index, Some(attrs.index)),
            bucket(&ix.by_principal, Some(attrs.principal.as_str())),
            &ix.by_endpoint[endpoint_slot(attrs.endpoint)],
            &ix.wildcard,
        ];
        for &pos in candidates.into_iter().flatten() {
            let Some(d) = self.directives.get(pos as usize) else {
                continue;
            };
            if !d.is_live(now) || !d.match_.matches(attrs) {
                continue;
            }
            if d.sample_per_mille < 1000 {
                let b = *request_bucket.get_or_insert_with(|| sample::bucket(id));
                if !sample::in_sample(b, d.sample_per_mille) {
                    continue;
                }
            }
            decision.level = decision.level.max(d.level);
            decision.ring_buffer |= d.ring_buffer;
            decision.capture |= d.capture;
        }
        decision
    }

    /// The reference semantics: a plain scan over every directive. Slower on
    /// large sets; kept public as the oracle for tests and the baseline for
    /// benchmarks.
    pub fn decide_by_scan(
        &self,
        attrs: &RequestAttrs<'_>,
        now: Instant,
        id: &RequestId,
    ) -> Decision {
        let bucket = sample::bucket(id);
        self.directives
            .iter()
            .filter(|d| {
                d.is_live(now)
                    && d.match_.matches(attrs)
                    && sample::in_sample(bucket, d.sample_per_mille)
            })
            .fold(Decision::default(), |acc, d| Decision {
                level: acc.level.max(d.level),
                ring_buffer: acc.ring_buffer | d.ring_buffer,
                capture: acc.capture | d.capture,
            })
    }
}
