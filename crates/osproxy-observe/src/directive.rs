//! The domain types: [`DiagnosticsDirective`] (what to record, for whom, until
//! when), its targets [`DirectiveMatch`], its [`DiagLevel`], and the request
//! side, [`RequestAttrs`].
//!
//! The fields are public and the seed's, so code may build any directive;
//! the decoder and [`crate::DirectiveSet::try_from_directives`] are the ways
//! in that check them (valid id, targets and sample within bounds), and
//! evaluation is well defined either way.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use osproxy_core::{EndpointKind, IndexName, Instant, PartitionId, PrincipalId, RequestId};

use crate::sample;

/// How much diagnostic detail to record, ordered from least to most.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum DiagLevel {
    /// Record nothing extra.
    #[default]
    Off,
    /// Record the request's shape.
    Shape,
    /// Shape plus per-phase timings.
    ShapeTiming,
    /// Shape, timings and the diff of any rewrite the proxy applied.
    ShapeRewriteDiff,
}

impl DiagLevel {
    /// Every level, low to high.
    pub const ALL: [DiagLevel; 4] = [
        DiagLevel::Off,
        DiagLevel::Shape,
        DiagLevel::ShapeTiming,
        DiagLevel::ShapeRewriteDiff,
    ];

    /// The stable wire name.
    pub const fn wire_name(self) -> &'static str {
        match self {
            DiagLevel::Off => "Off",
            DiagLevel::Shape => "Shape",
            DiagLevel::ShapeTiming => "ShapeTiming",
            DiagLevel::ShapeRewriteDiff => "ShapeRewriteDiff",
        }
    }

    /// The stable wire name (the seed's name for [`DiagLevel::wire_name`]);
    /// round-trips with [`DiagLevel::from_name`].
    #[must_use]
    pub fn as_str(self) -> &'static str {
        self.wire_name()
    }

    /// The level with this wire name, or `None` when the name is not one
    /// (fail-closed; the same as `str::parse`).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        DiagLevel::ALL.into_iter().find(|l| l.wire_name() == name)
    }
}

impl fmt::Display for DiagLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.wire_name())
    }
}

/// A string that is not the wire name of any [`DiagLevel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownLevel;

impl fmt::Display for UnknownLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown diagnostics level")
    }
}

impl std::error::Error for UnknownLevel {}

impl FromStr for DiagLevel {
    type Err = UnknownLevel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DiagLevel::from_name(s).ok_or(UnknownLevel)
    }
}

/// The targets of a directive. An unset target is a wildcard; every set target
/// must equal the request's attribute for the directive to apply.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct DirectiveMatch {
    /// Exact tenant, or any.
    pub tenant: Option<PartitionId>,
    /// Exact index, or any.
    pub index: Option<IndexName>,
    /// Exact principal, or any.
    pub principal: Option<PrincipalId>,
    /// Exact endpoint kind, or any.
    pub endpoint: Option<EndpointKind>,
}

impl DirectiveMatch {
    /// The match of every request: no target set (the same as `default()`).
    #[must_use]
    pub fn all() -> Self {
        DirectiveMatch::default()
    }

    /// Narrows the match to `tenant` (builder style).
    #[must_use]
    pub fn for_tenant(mut self, tenant: PartitionId) -> Self {
        self.tenant = Some(tenant);
        self
    }

    /// Narrows the match to `index` (builder style).
    #[must_use]
    pub fn for_index(mut self, index: IndexName) -> Self {
        self.index = Some(index);
        self
    }

    /// Narrows the match to `principal` (builder style).
    #[must_use]
    pub fn for_principal(mut self, principal: PrincipalId) -> Self {
        self.principal = Some(principal);
        self
    }

    /// Narrows the match to `endpoint` (builder style).
    #[must_use]
    pub fn for_endpoint(mut self, endpoint: EndpointKind) -> Self {
        self.endpoint = Some(endpoint);
        self
    }

    /// Whether every set target equals the request's attribute.
    #[inline]
    pub fn matches(&self, attrs: &RequestAttrs<'_>) -> bool {
        self.tenant.as_ref().is_none_or(|t| attrs.tenant == Some(t))
            && self.matches_besides_tenant(attrs)
    }

    /// [`DirectiveMatch::matches`] without the tenant: for a directive found
    /// under the request's own tenant, whose tenant is already known equal.
    #[inline]
    pub(crate) fn matches_besides_tenant(&self, attrs: &RequestAttrs<'_>) -> bool {
        self.index
            .as_ref()
            .is_none_or(|i| i.as_str() == attrs.index)
            && self.principal.as_ref().is_none_or(|p| p == attrs.principal)
            && self.endpoint.is_none_or(|e| e == attrs.endpoint)
    }

    /// [`DirectiveMatch::matches`] for attributes borrowed as plain strings.
    #[inline]
    pub fn matches_keys(&self, keys: &RequestKeys<'_>) -> bool {
        self.tenant
            .as_ref()
            .is_none_or(|t| keys.tenant == Some(t.as_str()))
            && self.matches_keys_besides_tenant(keys)
    }

    #[inline]
    fn matches_keys_besides_tenant(&self, keys: &RequestKeys<'_>) -> bool {
        self.index.as_ref().is_none_or(|i| i.as_str() == keys.index)
            && self
                .principal
                .as_ref()
                .is_none_or(|p| p.as_str() == keys.principal)
            && self.endpoint.is_none_or(|e| e == keys.endpoint)
    }

    /// Whether no target is set (the directive applies to every request).
    pub fn is_wildcard(&self) -> bool {
        self.tenant.is_none()
            && self.index.is_none()
            && self.principal.is_none()
            && self.endpoint.is_none()
    }
}

/// One directive: record `level` detail for requests matching `match_`,
/// sampled at `sample_per_mille`, until `expires_at`.
///
/// Exactly the seed's seven fields, so seed programs build it by struct
/// literal. Its fleet-wide wall-clock expiry is kept beside it, in
/// [`crate::TimedDirective`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DiagnosticsDirective {
    /// Unique id within its set: 1–128 chars of `[A-Za-z0-9._:-]`.
    pub id: String,
    /// Which requests it targets.
    pub match_: DirectiveMatch,
    /// The detail to record.
    pub level: DiagLevel,
    /// Share of matching requests in the sample, 0–1000 (1000 and above:
    /// always).
    pub sample_per_mille: u16,
    /// End of life on the local monotonic timeline; the directive applies
    /// strictly before this instant.
    pub expires_at: Instant,
    /// Also keep matching requests in the in-memory ring buffer.
    pub ring_buffer: bool,
    /// Also capture matching request bodies.
    pub capture: bool,
}

impl DiagnosticsDirective {
    /// Whether the directive is still alive at `now`.
    #[inline]
    pub fn is_live(&self, now: Instant) -> bool {
        now < self.expires_at
    }

    /// This directive's level if it applies to the request at `now`
    /// (unexpired, every set target matches, the request is in its sample),
    /// else `None`. The seed's way to fold a single-request directive (see
    /// [`crate::DirectiveVerifier`]) into an evaluation.
    #[must_use]
    pub fn level_if_applies(
        &self,
        attrs: &RequestAttrs<'_>,
        now: Instant,
        request: &RequestId,
    ) -> Option<DiagLevel> {
        let applies = self.is_live(now)
            && self.match_.matches(attrs)
            && sample::in_sample(sample::bucket(request), self.sample_per_mille);
        applies.then_some(self.level)
    }
}

/// The principal of a request whose caller is not known: the empty id, which
/// no decoded directive targets (targets are 1–256 chars).
static ANONYMOUS: LazyLock<PrincipalId> = LazyLock::new(|| PrincipalId::from(""));

/// The attributes of one request, borrowed from the proxy's own request state
/// so that evaluation allocates nothing.
///
/// The fields are exactly the seed's: only the tenant is optional (it is known
/// only after partition resolution). A request without an index has
/// `index: ""`, and one whose caller is unknown has the empty principal: the
/// decoder never accepts an empty target, so neither ever matches a targeted
/// directive. The builders ([`RequestAttrs::new`] and `with_*`) fill these
/// for you.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestAttrs<'a> {
    /// The resolved tenant, when the request has one.
    pub tenant: Option<&'a PartitionId>,
    /// The logical index from the request path; `""` when there is none.
    pub index: &'a str,
    /// The authenticated principal; the empty id when unknown.
    pub principal: &'a PrincipalId,
    /// The endpoint kind.
    pub endpoint: EndpointKind,
}

impl<'a> RequestAttrs<'a> {
    /// Attributes with only the endpoint kind set: no tenant, no index (`""`)
    /// and the empty (anonymous) principal.
    #[inline]
    pub fn new(endpoint: EndpointKind) -> Self {
        RequestAttrs {
            tenant: None,
            index: "",
            principal: &ANONYMOUS,
            endpoint,
        }
    }

    /// Sets the tenant.
    #[inline]
    #[must_use]
    pub fn with_tenant(mut self, tenant: &'a PartitionId) -> Self {
        self.tenant = Some(tenant);
        self
    }

    /// Sets the index.
    #[inline]
    #[must_use]
    pub fn with_index(mut self, index: &'a IndexName) -> Self {
        self.index = index.as_str();
        self
    }

    /// Sets the index from a plain string (`""` for none).
    #[inline]
    #[must_use]
    pub fn with_index_str(mut self, index: &'a str) -> Self {
        self.index = index;
        self
    }

    /// Sets the principal.
    #[inline]
    #[must_use]
    pub fn with_principal(mut self, principal: &'a PrincipalId) -> Self {
        self.principal = principal;
        self
    }
}

/// The attributes of one request as plain borrowed strings: what a recorder
/// reads off a `tracing` span's fields, where no id newtype exists and
/// building one would allocate. Evaluates exactly like [`RequestAttrs`] with
/// the same strings ([`crate::DirectiveSet::decide_keys`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestKeys<'a> {
    /// The resolved tenant, when the request has one.
    pub tenant: Option<&'a str>,
    /// The logical index; `""` when there is none.
    pub index: &'a str,
    /// The authenticated principal; `""` when unknown.
    pub principal: &'a str,
    /// The endpoint kind.
    pub endpoint: EndpointKind,
}

impl<'a> RequestKeys<'a> {
    /// Keys with only the endpoint kind set.
    #[inline]
    pub fn new(endpoint: EndpointKind) -> Self {
        RequestKeys {
            tenant: None,
            index: "",
            principal: "",
            endpoint,
        }
    }
}

impl<'a> From<&RequestAttrs<'a>> for RequestKeys<'a> {
    #[inline]
    fn from(a: &RequestAttrs<'a>) -> Self {
        RequestKeys {
            tenant: a.tenant.map(PartitionId::as_str),
            index: a.index,
            principal: a.principal.as_str(),
            endpoint: a.endpoint,
        }
    }
}

/// What the set's index and matcher read of a request: implemented by both
/// attribute forms so one decision body serves both (monomorphised, so the
/// [`RequestAttrs`] path is the code it was).
pub(crate) trait AttrView {
    fn tenant_key(&self) -> Option<&str>;
    fn index_key(&self) -> &str;
    fn principal_key(&self) -> &str;
    fn endpoint_kind(&self) -> EndpointKind;
    fn matched_by(&self, m: &DirectiveMatch) -> bool;
    fn matched_besides_tenant(&self, m: &DirectiveMatch) -> bool;
}

impl AttrView for RequestAttrs<'_> {
    #[inline(always)]
    fn tenant_key(&self) -> Option<&str> {
        self.tenant.map(PartitionId::as_str)
    }
    #[inline(always)]
    fn index_key(&self) -> &str {
        self.index
    }
    #[inline(always)]
    fn principal_key(&self) -> &str {
        self.principal.as_str()
    }
    #[inline(always)]
    fn endpoint_kind(&self) -> EndpointKind {
        self.endpoint
    }
    #[inline(always)]
    fn matched_by(&self, m: &DirectiveMatch) -> bool {
        m.matches(self)
    }
    #[inline(always)]
    fn matched_besides_tenant(&self, m: &DirectiveMatch) -> bool {
        m.matches_besides_tenant(self)
    }
}

impl AttrView for RequestKeys<'_> {
    #[inline(always)]
    fn tenant_key(&self) -> Option<&str> {
        self.tenant
    }
    #[inline(always)]
    fn index_key(&self) -> &str {
        self.index
    }
    #[inline(always)]
    fn principal_key(&self) -> &str {
        self.principal
    }
    #[inline(always)]
    fn endpoint_kind(&self) -> EndpointKind {
        self.endpoint
    }
    #[inline(always)]
    fn matched_by(&self, m: &DirectiveMatch) -> bool {
        m.matches_keys(self)
    }
    #[inline(always)]
    fn matched_besides_tenant(&self, m: &DirectiveMatch) -> bool {
        m.matches_keys_besides_tenant(self)
    }
}
