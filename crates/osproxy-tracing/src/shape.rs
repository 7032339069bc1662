//! What a record may hold of a field: its name, its type and its size, and
//! its value only when the service declared the field safe.
//!
//! Why a visitor and not a redaction pass: a value that is never copied out
//! of the span cannot leak later. The visitor measures strings and
//! formatted values with a counting writer (no allocation) and keeps a value
//! only for a name in the declared-safe list; numbers are treated like
//! strings, since a number can be an id.

use std::fmt::{self, Write as _};

use serde_json::{json, Value};
use tracing_core::field::{Field, Visit};

/// One field's shape.
#[derive(Clone, Debug)]
pub(crate) struct FieldShape {
    pub(crate) name: &'static str,
    pub(crate) kind: &'static str,
    pub(crate) size: usize,
    /// Only for a declared-safe field.
    pub(crate) value: Option<Value>,
}

impl FieldShape {
    pub(crate) fn to_json(&self) -> Value {
        let mut v = json!({ "name": self.name, "type": self.kind, "size": self.size });
        if let (Some(value), Some(obj)) = (&self.value, v.as_object_mut()) {
            obj.insert("value".into(), value.clone());
        }
        v
    }
}

/// Counts the bytes a `Debug`/`Display` value formats to, keeping none.
struct Count(usize);

impl fmt::Write for Count {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 += s.len();
        Ok(())
    }
}

/// Collects the shapes of a span's or an event's fields.
pub(crate) struct ShapeVisitor<'a> {
    pub(crate) safe: &'a [&'static str],
    pub(crate) out: &'a mut Vec<FieldShape>,
}

impl ShapeVisitor<'_> {
    fn is_safe(&self, field: &Field) -> bool {
        self.safe.contains(&field.name())
    }

    fn push(&mut self, field: &Field, kind: &'static str, size: usize, value: Option<Value>) {
        self.out.push(FieldShape {
            name: field.name(),
            kind,
            size,
            value,
        });
    }
}

impl Visit for ShapeVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let v = self.is_safe(field).then(|| Value::from(value));
        self.push(field, "str", value.len(), v);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        let v = self.is_safe(field).then(|| Value::from(value));
        self.push(field, "i64", 8, v);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        let v = self.is_safe(field).then(|| Value::from(value));
        self.push(field, "u64", 8, v);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        let v = self.is_safe(field).then(|| Value::from(value));
        self.push(field, "f64", 8, v);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        let v = self.is_safe(field).then(|| Value::from(value));
        self.push(field, "bool", 1, v);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.is_safe(field) {
            let mut s = String::new();
            let _ = write!(s, "{value:?}");
            let size = s.len();
            self.push(field, "debug", size, Some(Value::from(s)));
        } else {
            let mut count = Count(0);
            let _ = write!(count, "{value:?}");
            self.push(field, "debug", count.0, None);
        }
    }
}

/// The request span's identity fields, read into per-thread buffers that
/// keep their capacity, so reading them allocates nothing once warm.
#[derive(Default)]
pub(crate) struct Keys {
    pub(crate) tenant: String,
    pub(crate) has_tenant: bool,
    pub(crate) index: String,
    pub(crate) principal: String,
    pub(crate) endpoint: String,
    pub(crate) request_id: String,
}

impl Keys {
    pub(crate) fn clear(&mut self) {
        self.tenant.clear();
        self.has_tenant = false;
        self.index.clear();
        self.principal.clear();
        self.endpoint.clear();
        self.request_id.clear();
    }

    fn slot(&mut self, name: &str) -> Option<&mut String> {
        match name {
            "tenant" => {
                self.has_tenant = true;
                Some(&mut self.tenant)
            }
            "index" => Some(&mut self.index),
            "principal" => Some(&mut self.principal),
            "endpoint" => Some(&mut self.endpoint),
            "request_id" => Some(&mut self.request_id),
            _ => None,
        }
    }
}

impl Visit for Keys {
    fn record_str(&mut self, field: &Field, value: &str) {
        if let Some(slot) = self.slot(field.name()) {
            slot.push_str(value);
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if let Some(slot) = self.slot(field.name()) {
            let _ = write!(slot, "{value}");
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if let Some(slot) = self.slot(field.name()) {
            let _ = write!(slot, "{value}");
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if let Some(slot) = self.slot(field.name()) {
            let _ = write!(slot, "{value:?}");
        }
    }
}
