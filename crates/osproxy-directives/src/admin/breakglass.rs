//! `GET /admin/breakglass`: the instance's break-glass tape, newest first.
//!
//! The tape holds the recorder's own shape-only documents (ids, names,
//! sizes, durations), so serving it reveals no request value. Each entry
//! gets the `/admin/explain` query that re-asks, now, why that request was
//! recorded; the query is built from the entry's ids, percent-encoded.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::state::AdminState;

pub(crate) async fn get_breakglass(State(state): State<AdminState>) -> Json<Value> {
    let Some(tape) = state.options().breakglass.as_ref() else {
        return Json(json!({ "enabled": false, "capacity": 0, "entries": [] }));
    };
    let mut entries = tape.snapshot();
    entries.reverse();
    for entry in &mut entries {
        let link = explain_link(entry);
        if let Some(obj) = entry.as_object_mut() {
            obj.insert("explain".into(), link.into());
        }
    }
    Json(json!({
        "enabled": true,
        "capacity": tape.capacity(),
        "entries": entries,
    }))
}

/// `/admin/explain?…` for the request an entry records.
fn explain_link(entry: &Value) -> String {
    let mut query = String::new();
    for name in ["tenant", "index", "principal", "endpoint", "request_id"] {
        let Some(v) = entry.get(name).and_then(Value::as_str) else {
            continue;
        };
        if v.is_empty() {
            continue;
        }
        query.push(if query.is_empty() { '?' } else { '&' });
        query.push_str(name);
        query.push('=');
        encode_into(&mut query, v);
    }
    format!("/admin/explain{query}")
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode_into(out: &mut String, v: &str) {
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_link_names_the_request_and_encodes_it() {
        let entry = json!({"tenant": "acme co", "index": "", "principal": "a&b",
            "endpoint": "search", "request_id": "r/1"});
        assert_eq!(
            explain_link(&entry),
            "/admin/explain?tenant=acme%20co&principal=a%26b&endpoint=search&request_id=r%2F1"
        );
    }
}
