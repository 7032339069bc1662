//! The recorder's own records: what it keeps of a recorded request while the
//! request runs, and the documents and spans it builds from them when the
//! request ends.
//!
//! Every output (the break-glass tape, the diagnostic sink, OTLP spans) is
//! built from these records and nothing else, so each carries exactly the
//! same shape-only content and the same provenance.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use osproxy_core::Instant;
use osproxy_observe::DiagLevel;
use serde_json::{json, Map, Value};
use tracing_core::Level;

use crate::shape::FieldShape;

/// The attribute names every record carries (OpenTelemetry's feature-flag
/// conventions beside our own).
pub mod attr {
    /// The id of the directive that decided the request's level.
    pub const DIRECTIVE_ID: &str = "osproxy.directive.id";
    /// The revision of the directive set that decided.
    pub const DIRECTIVE_REVISION: &str = "osproxy.directive.revision";
    /// The id of the key that signed the set, when it was signed.
    pub const DIRECTIVE_KEY_ID: &str = "osproxy.directive.key_id";
    /// The level the request was recorded at.
    pub const LEVEL: &str = "osproxy.diag.level";
    /// The name of OpenTelemetry's flag-evaluation event.
    pub const FLAG_EVALUATION: &str = "feature_flag.evaluation";
    /// The flag (directive) key.
    pub const FLAG_KEY: &str = "feature_flag.key";
    /// The flag set's version (the set's revision).
    pub const FLAG_VERSION: &str = "feature_flag.version";
    /// The flag set's id.
    pub const FLAG_SET_ID: &str = "feature_flag.set.id";
    /// The variant the evaluation chose (the level's wire name).
    pub const FLAG_VARIANT: &str = "feature_flag.result.variant";
    /// Why: `targeting_match`, or `split` for a sampled directive.
    pub const FLAG_REASON: &str = "feature_flag.result.reason";
}

/// Which directive decided, as stamped on every record of the request.
#[derive(Clone, Debug)]
pub(crate) struct Provenance {
    pub(crate) directive_id: String,
    pub(crate) revision: Option<u64>,
    pub(crate) key_id: Option<String>,
    pub(crate) level: DiagLevel,
    pub(crate) sampled: bool,
    pub(crate) set_id: &'static str,
}

impl Provenance {
    fn reason(&self) -> &'static str {
        if self.sampled {
            "split"
        } else {
            "targeting_match"
        }
    }

    fn revision_string(&self) -> String {
        self.revision.map(|r| r.to_string()).unwrap_or_default()
    }

    fn stamp_json(&self, obj: &mut Map<String, Value>) {
        obj.insert(attr::DIRECTIVE_ID.into(), self.directive_id.clone().into());
        obj.insert(attr::DIRECTIVE_REVISION.into(), json!(self.revision));
        if let Some(k) = &self.key_id {
            obj.insert(attr::DIRECTIVE_KEY_ID.into(), k.clone().into());
        }
        obj.insert(attr::LEVEL.into(), self.level.wire_name().into());
    }

    fn evaluation_json(&self) -> Value {
        json!({
            attr::FLAG_KEY: self.directive_id,
            attr::FLAG_VERSION: self.revision_string(),
            attr::FLAG_SET_ID: self.set_id,
            attr::FLAG_VARIANT: self.level.wire_name(),
            attr::FLAG_REASON: self.reason(),
        })
    }

    fn otel_attributes(&self, out: &mut Vec<KeyValue>) {
        out.push(KeyValue::new(attr::DIRECTIVE_ID, self.directive_id.clone()));
        if let Some(r) = self.revision {
            out.push(KeyValue::new(
                attr::DIRECTIVE_REVISION,
                i64::try_from(r).unwrap_or(i64::MAX),
            ));
        }
        if let Some(k) = &self.key_id {
            out.push(KeyValue::new(attr::DIRECTIVE_KEY_ID, k.clone()));
        }
        out.push(KeyValue::new(attr::LEVEL, self.level.wire_name()));
    }

    fn otel_evaluation(&self, at: SystemTime) -> opentelemetry::trace::Event {
        opentelemetry::trace::Event::new(
            attr::FLAG_EVALUATION,
            at,
            vec![
                KeyValue::new(attr::FLAG_KEY, self.directive_id.clone()),
                KeyValue::new(attr::FLAG_VERSION, self.revision_string()),
                KeyValue::new(attr::FLAG_SET_ID, self.set_id),
                KeyValue::new(attr::FLAG_VARIANT, self.level.wire_name()),
                KeyValue::new(attr::FLAG_REASON, self.reason()),
            ],
            0,
        )
    }
}

/// One event, as a shape.
#[derive(Debug)]
pub(crate) struct EventRec {
    pub(crate) name: &'static str,
    pub(crate) target: &'static str,
    pub(crate) level: Level,
    pub(crate) fields: Vec<FieldShape>,
    pub(crate) at: Instant,
}

/// One span, as a shape, with its timing.
#[derive(Debug)]
pub(crate) struct SpanRec {
    pub(crate) span_id: u64,
    pub(crate) parent_id: u64,
    pub(crate) name: &'static str,
    pub(crate) target: &'static str,
    pub(crate) level: Level,
    pub(crate) fields: Vec<FieldShape>,
    pub(crate) events: Vec<EventRec>,
    pub(crate) start: Instant,
    pub(crate) end: Instant,
    pub(crate) busy: Duration,
    pub(crate) entered: Option<Instant>,
}

impl SpanRec {
    pub(crate) fn enter(&mut self, now: Instant) {
        self.entered.get_or_insert(now);
    }

    pub(crate) fn exit(&mut self, now: Instant) {
        if let Some(at) = self.entered.take() {
            self.busy += now.saturating_duration_since(at);
        }
    }

    fn total(&self) -> Duration {
        self.end.saturating_duration_since(self.start)
    }

    fn idle(&self) -> Duration {
        self.total().saturating_sub(self.busy)
    }

    fn to_json(&self, timing: bool, origin: Instant) -> Value {
        let mut v = json!({
            "span_id": format!("{:016x}", self.span_id),
            "parent_span_id": format!("{:016x}", self.parent_id),
            "name": self.name,
            "target": self.target,
            "level": self.level.as_str(),
            "fields": self.fields.iter().map(FieldShape::to_json).collect::<Vec<_>>(),
            "events": self.events.iter().map(|e| event_json(e, origin)).collect::<Vec<_>>(),
            "start_offset_ns": nanos(self.start.saturating_duration_since(origin)),
            "duration_ns": nanos(self.total()),
        });
        if let (true, Some(obj)) = (timing, v.as_object_mut()) {
            obj.insert("busy_ns".into(), nanos(self.busy).into());
            obj.insert("idle_ns".into(), nanos(self.idle()).into());
        }
        v
    }
}

fn event_json(e: &EventRec, origin: Instant) -> Value {
    json!({
        "name": e.name,
        "target": e.target,
        "level": e.level.as_str(),
        "fields": e.fields.iter().map(FieldShape::to_json).collect::<Vec<_>>(),
        "offset_ns": nanos(e.at.saturating_duration_since(origin)),
    })
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The request's identity, read from its span's fields (ids only).
#[derive(Debug, Default)]
pub(crate) struct Identity {
    pub(crate) tenant: Option<String>,
    pub(crate) index: String,
    pub(crate) principal: String,
    pub(crate) endpoint: &'static str,
    pub(crate) request_id: String,
}

/// A recorded request, finished: its own span, its descendants (in the order
/// they closed) and its provenance.
#[derive(Debug)]
pub(crate) struct RequestRec {
    pub(crate) trace_id: u128,
    pub(crate) identity: Identity,
    pub(crate) provenance: Provenance,
    pub(crate) root: SpanRec,
    pub(crate) children: Vec<SpanRec>,
    /// Wall-clock time of `root.start`, in Unix nanoseconds.
    pub(crate) start_unix_nanos: u64,
    /// Descendants not kept because the request hit its span cap.
    pub(crate) dropped_spans: u32,
}

impl RequestRec {
    fn timing(&self) -> bool {
        self.provenance.level >= DiagLevel::ShapeTiming
    }

    /// The explanation document for the tape and the sink.
    pub(crate) fn document(&self) -> Value {
        let origin = self.root.start;
        let timing = self.timing();
        let mut doc = Map::new();
        doc.insert("trace_id".into(), format!("{:032x}", self.trace_id).into());
        doc.insert("request_id".into(), self.identity.request_id.clone().into());
        doc.insert("tenant".into(), json!(self.identity.tenant));
        doc.insert("index".into(), self.identity.index.clone().into());
        doc.insert("principal".into(), self.identity.principal.clone().into());
        doc.insert("endpoint".into(), self.identity.endpoint.into());
        doc.insert("start_unix_nanos".into(), self.start_unix_nanos.into());
        self.provenance.stamp_json(&mut doc);
        doc.insert(
            attr::FLAG_EVALUATION.into(),
            self.provenance.evaluation_json(),
        );
        doc.insert("request".into(), self.root.to_json(timing, origin));
        doc.insert(
            "spans".into(),
            self.children
                .iter()
                .map(|s| s.to_json(timing, origin))
                .collect::<Vec<_>>()
                .into(),
        );
        doc.insert("dropped_spans".into(), self.dropped_spans.into());
        Value::Object(doc)
    }

    fn wall(&self, at: Instant) -> SystemTime {
        let offset = at.saturating_duration_since(self.root.start);
        SystemTime::UNIX_EPOCH + Duration::from_nanos(self.start_unix_nanos) + offset
    }

    /// The request's spans as OpenTelemetry span data, root first.
    pub(crate) fn spans(&self, scope: &InstrumentationScope) -> Vec<SpanData> {
        let mut out = Vec::with_capacity(1 + self.children.len());
        out.push(self.span_data(&self.root, true, scope));
        for child in &self.children {
            out.push(self.span_data(child, false, scope));
        }
        out
    }

    fn span_data(&self, s: &SpanRec, root: bool, scope: &InstrumentationScope) -> SpanData {
        let mut attributes = Vec::with_capacity(8 + 2 * s.fields.len());
        self.provenance.otel_attributes(&mut attributes);
        attributes.push(KeyValue::new("code.namespace", s.target));
        attributes.push(KeyValue::new("osproxy.span.level", s.level.as_str()));
        if root {
            attributes.push(KeyValue::new(
                "osproxy.request.id",
                self.identity.request_id.clone(),
            ));
            if let Some(t) = &self.identity.tenant {
                attributes.push(KeyValue::new("osproxy.request.tenant", t.clone()));
            }
            attributes.push(KeyValue::new(
                "osproxy.request.endpoint",
                self.identity.endpoint,
            ));
        }
        if self.timing() {
            attributes.push(KeyValue::new("busy_ns", to_i64(s.busy)));
            attributes.push(KeyValue::new("idle_ns", to_i64(s.idle())));
        }
        for f in &s.fields {
            push_field(&mut attributes, "field", f);
        }
        let mut events = Vec::with_capacity(s.events.len() + 1);
        if root {
            events.push(self.provenance.otel_evaluation(self.wall(s.start)));
        }
        for e in &s.events {
            let mut attrs = vec![
                KeyValue::new("code.namespace", e.target),
                KeyValue::new("level", e.level.as_str()),
            ];
            for f in &e.fields {
                push_field(&mut attrs, "field", f);
            }
            events.push(opentelemetry::trace::Event::new(
                e.name,
                self.wall(e.at),
                attrs,
                0,
            ));
        }
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(self.trace_id),
                SpanId::from(s.span_id),
                TraceFlags::SAMPLED,
                false,
                TraceState::NONE,
            ),
            parent_span_id: SpanId::from(s.parent_id),
            parent_span_is_remote: false,
            span_kind: if root {
                SpanKind::Server
            } else {
                SpanKind::Internal
            },
            name: Cow::Borrowed(s.name),
            start_time: self.wall(s.start),
            end_time: self.wall(s.end),
            attributes,
            dropped_attributes_count: 0,
            events: {
                let mut e = SpanEvents::default();
                e.events = events;
                e
            },
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: scope.clone(),
        }
    }
}

fn to_i64(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// A field as attributes: `field.<name>.size` (and `.type`) always, the value
/// only when declared safe.
fn push_field(out: &mut Vec<KeyValue>, prefix: &str, f: &FieldShape) {
    let size = i64::try_from(f.size).unwrap_or(i64::MAX);
    out.push(KeyValue::new(format!("{prefix}.{}.size", f.name), size));
    out.push(KeyValue::new(format!("{prefix}.{}.type", f.name), f.kind));
    if let Some(v) = &f.value {
        let key = format!("{prefix}.{}", f.name);
        let kv = match v {
            Value::Bool(b) => KeyValue::new(key, *b),
            Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => KeyValue::new(key, i),
                (None, Some(x)) => KeyValue::new(key, x),
                _ => KeyValue::new(key, n.to_string()),
            },
            Value::String(s) => KeyValue::new(key, s.clone()),
            other => KeyValue::new(key, other.to_string()),
        };
        out.push(kv);
    }
}
