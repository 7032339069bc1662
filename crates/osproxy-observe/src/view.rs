//! The introspection view: what an operator wants to see of an applied set —
//! every directive's targets, level, sample, flags, absolute expiry and the
//! lifetime it has left ([`DirectiveSet::view`]), and the seed's shape-only
//! [`DirectiveSet::introspect`].

use std::time::Duration;

use osproxy_core::{Clock, Instant};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::encode::{format_rfc3339, insert_identity, set_value};
use crate::set::DirectiveSet;
use crate::timed::TimedDirective;

/// One directive as an operator sees it. Serialises to JSON for the admin
/// endpoint; the wire form for re-publishing is [`crate::encode_directive_set`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DirectiveView {
    /// The directive's id.
    pub id: String,
    /// Level wire name.
    pub level: &'static str,
    /// Tenant target, if set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Index target, if set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    /// Principal target, if set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// Endpoint target, if set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<&'static str>,
    /// Sample rate, per mille.
    pub sample_per_mille: u16,
    /// Ring buffer requested.
    pub ring_buffer: bool,
    /// Capture requested.
    pub capture: bool,
    /// Absolute end of life, RFC 3339 UTC.
    pub expires_at: String,
    /// Whole seconds of life left (0 once expired).
    pub remaining_secs: u64,
    /// Whether the directive has expired.
    pub expired: bool,
    /// The directive's rate budget per second on this instance, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_per_sec: Option<u32>,
    /// Its decisions on this instance since the set was applied.
    pub counts: crate::set::DirectiveCounts,
}

impl DirectiveView {
    /// The view of `d` at the clock's current time. A directive without a
    /// wall-clock expiry shows the one its monotonic expiry means on `clock`.
    pub fn of(d: &TimedDirective, clock: &dyn Clock) -> Self {
        let now = clock.now();
        let remaining: Duration = d.expires_at.saturating_duration_since(now);
        let m = &d.match_;
        DirectiveView {
            id: d.id.clone(),
            level: d.level.wire_name(),
            tenant: m.tenant.as_ref().map(|t| t.to_string()),
            index: m.index.as_ref().map(|t| t.to_string()),
            principal: m.principal.as_ref().map(|t| t.to_string()),
            endpoint: m.endpoint.map(|e| e.wire_name()),
            sample_per_mille: d.sample_per_mille,
            ring_buffer: d.ring_buffer,
            capture: d.capture,
            expires_at: format_rfc3339(d.wall_expiry_or_derive(clock)),
            remaining_secs: remaining.as_secs(),
            expired: !d.is_live(now),
            max_per_sec: d.max_per_sec.map(std::num::NonZeroU32::get),
            counts: crate::set::DirectiveCounts::default(),
        }
    }

    /// The targets as `name=value` items (`tenant`, `index`, `principal`,
    /// `endpoint`, in that order); empty for a directive that matches every
    /// request. The one way every operator surface writes targets.
    pub fn target_items(&self) -> Vec<String> {
        let mut items: Vec<String> = [
            ("tenant", &self.tenant),
            ("index", &self.index),
            ("principal", &self.principal),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.as_ref().map(|v| format!("{name}={v}")))
        .collect();
        if let Some(e) = self.endpoint {
            items.push(format!("endpoint={e}"));
        }
        items
    }

    /// The targets joined by `separator`, or `*` when there are none.
    pub fn targets_text(&self, separator: &str) -> String {
        let items = self.target_items();
        if items.is_empty() {
            "*".to_owned()
        } else {
            items.join(separator)
        }
    }

    /// The requested flags (`capture`, `ring_buffer`), in that order.
    pub fn flag_names(&self) -> Vec<&'static str> {
        [("capture", self.capture), ("ring_buffer", self.ring_buffer)]
            .into_iter()
            .filter_map(|(name, on)| on.then_some(name))
            .collect()
    }
}

impl DirectiveSet {
    /// The introspection view of every directive, in publication order.
    pub fn view(&self, clock: &dyn Clock) -> Vec<DirectiveView> {
        self.directives()
            .iter()
            .enumerate()
            .map(|(pos, d)| DirectiveView {
                counts: self.counts(pos),
                ..DirectiveView::of(d, clock)
            })
            .collect()
    }
}

impl DirectiveSet {
    /// The seed's introspection: `{"directives":[{..}]}` with, per directive,
    /// `id`, `level`, the targets it sets (`tenant`, `index`, `principal`,
    /// `endpoint`), `sample_per_mille`, `ring_buffer`, `capture` and whether
    /// it has `expired` at `now`. [`DirectiveSet::view`] says more (absolute
    /// expiry, remaining lifetime).
    #[must_use]
    pub fn introspect(&self, now: Instant) -> Value {
        let list = self
            .directives()
            .iter()
            .map(|d| {
                let mut o = Map::new();
                insert_identity(&mut o, d);
                o.insert("sample_per_mille".into(), d.sample_per_mille.into());
                o.insert("ring_buffer".into(), d.ring_buffer.into());
                o.insert("capture".into(), d.capture.into());
                o.insert("expired".into(), (!d.is_live(now)).into());
                Value::Object(o)
            })
            .collect();
        set_value(list)
    }
}
