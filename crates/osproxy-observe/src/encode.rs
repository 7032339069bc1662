//! The canonical encoder: [`DirectiveSet`] → the wire format of SPEC §2.
//!
//! Canonical means deterministic: fixed key order, defaults omitted, and every
//! lifetime written as an absolute `expires_at` (the decoded wall-clock one,
//! never re-derived), so that
//! `decode(encode(set)) == set` and a set read from one instance can be
//! re-published verbatim without extending any directive.

use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::directive::DiagnosticsDirective;
use crate::set::DirectiveSet;
use crate::timed::TimedDirective;

/// Encodes `set` compactly.
pub fn encode_directive_set(set: &DirectiveSet) -> Vec<u8> {
    // Serialising a `Value` built from strings, numbers and booleans cannot fail.
    serde_json::to_vec(&to_value(set)).unwrap_or_default()
}

/// Encodes `set` indented, for humans and files.
pub fn encode_directive_set_pretty(set: &DirectiveSet) -> Vec<u8> {
    serde_json::to_vec_pretty(&to_value(set)).unwrap_or_default()
}

/// The set as a JSON value (`{"directives":[…]}`).
pub fn to_value(set: &DirectiveSet) -> Value {
    set_value(set.directives().iter().map(directive_value).collect())
}

/// `{"directives":[<list>]}`: the envelope of the wire form, also used by
/// the introspection views.
pub(crate) fn set_value(list: Vec<Value>) -> Value {
    let mut root = Map::new();
    root.insert("directives".into(), Value::Array(list));
    Value::Object(root)
}

/// Writes `id`, `level` and the targets `d` sets (`tenant`, `index`,
/// `principal`, `endpoint`) into `o`, in the canonical key order; the one
/// shape the wire form and the introspection views share.
pub(crate) fn insert_identity(o: &mut Map<String, Value>, d: &DiagnosticsDirective) {
    o.insert("id".into(), d.id.clone().into());
    o.insert("level".into(), d.level.wire_name().into());
    let m = &d.match_;
    if let Some(t) = &m.tenant {
        o.insert("tenant".into(), t.as_str().into());
    }
    if let Some(i) = &m.index {
        o.insert("index".into(), i.as_str().into());
    }
    if let Some(p) = &m.principal {
        o.insert("principal".into(), p.as_str().into());
    }
    if let Some(e) = m.endpoint {
        o.insert("endpoint".into(), e.wire_name().into());
    }
}

/// One directive in canonical form.
///
/// A directive without a wall-clock expiry (built by code, never decoded or
/// anchored: see [`crate::timed`]) is written without `expires_at`, so the
/// decoder refuses it (`missing_expiry`) instead of giving it a lifetime it
/// never had.
pub fn directive_value(d: &TimedDirective) -> Value {
    let mut o = Map::new();
    insert_identity(&mut o, d);
    if d.sample_per_mille != 1000 {
        o.insert("sample_per_mille".into(), d.sample_per_mille.into());
    }
    if d.ring_buffer {
        o.insert("ring_buffer".into(), true.into());
    }
    if d.capture {
        o.insert("capture".into(), true.into());
    }
    if let Some(m) = d.max_per_sec {
        o.insert("max_per_sec".into(), m.get().into());
    }
    if let Some(wall) = d.expires_at_unix_nanos {
        o.insert("expires_at".into(), format_rfc3339(wall).into());
    }
    Value::Object(o)
}

/// Formats nanoseconds since the Unix epoch as RFC 3339 UTC (`…Z`), with as
/// many fractional digits as needed to be exact.
pub fn format_rfc3339(unix_nanos: u64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_nanos))
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}
