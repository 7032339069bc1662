//! A strict JSON reader: parses into a small tree and rejects what
//! `serde_json::Value` would silently accept — duplicated object keys (last one
//! wins there) and deep nesting beyond [`MAX_DEPTH`].
//!
//! Work is linear in the input whatever its shape (SPEC §5.13): the parse is
//! serde_json's (one pass, no backtracking), nesting is cut at [`MAX_DEPTH`]
//! before the stack grows, and each object's duplicate-key check costs O(1)
//! per key (a short scan for the handful of keys a directive has, a hash set
//! beyond that), so an object of 80,000 distinct keys costs about what 80,000
//! array items do instead of the 3.2 billion comparisons that a scan against
//! every earlier key makes. The whole body is parsed before any rule of the
//! format is applied, so the precedence of faults is fixed: syntax, then
//! depth, then duplicate keys, then the format's rules. `osproxy-bench`'s
//! `decode_cost` times each hostile shape against a valid set of the same
//! size (BENCHMARKS.md).
//!
//! Why a tree of our own: the directive decoder must name *why* it rejects a
//! body with a stable slug, and serde's derive reports duplicates and
//! unknowns as free text. Parsing into this tree first, then converting with
//! explicit checks, keeps every rejection typed.

use std::cell::Cell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::rules::RejectReason;

/// Deepest nesting accepted. A valid directive set nests three levels
/// (object → array → object); anything far deeper is hostile or broken.
pub(crate) const MAX_DEPTH: usize = 16;

/// A parsed JSON value; objects keep their keys in document order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    /// The JSON type's name, for nothing but debugging.
    #[cfg(test)]
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "bool",
            Json::Number(_) => "number",
            Json::String(_) => "string",
            Json::Array(_) => "array",
            Json::Object(_) => "object",
        }
    }
}

/// Parses `text` strictly.
pub(crate) fn parse(text: &str) -> Result<Json, RejectReason> {
    let failure = Cell::new(None);
    let mut de = serde_json::Deserializer::from_str(text);
    let seed = Node {
        depth: 0,
        failure: &failure,
    };
    let value = seed.deserialize(&mut de);
    let value = match value {
        Ok(v) => de.end().map(|()| v),
        Err(e) => Err(e),
    };
    value.map_err(|_| failure.get().unwrap_or(RejectReason::MalformedJson))
}

/// One node of the parse, carrying the depth and the side channel through
/// which a typed rejection escapes serde's stringly error.
#[derive(Clone, Copy)]
struct Node<'f> {
    depth: usize,
    failure: &'f Cell<Option<RejectReason>>,
}

impl Node<'_> {
    fn fail<E: de::Error>(&self, reason: RejectReason) -> E {
        // Keep the first (innermost) reason: outer frames only propagate it.
        if self.failure.get().is_none() {
            self.failure.set(Some(reason));
        }
        E::custom(reason.slug())
    }

    fn child<E: de::Error>(&self) -> Result<Self, E> {
        if self.depth + 1 > MAX_DEPTH {
            return Err(self.fail(RejectReason::TooDeep));
        }
        Ok(Node {
            depth: self.depth + 1,
            failure: self.failure,
        })
    }
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Json;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Json, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Json, E> {
        serde_json::Number::from_f64(v)
            .map(Json::Number)
            .ok_or_else(|| self.fail(RejectReason::MalformedJson))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let child = self.child()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(child)? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let child = self.child()?;
        let mut entries: Vec<(String, Json)> = Vec::new();
        let mut seen = SeenKeys::default();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(&entries, &key) {
                return Err(self.fail(RejectReason::DuplicateKey));
            }
            let value = map.next_value_seed(child)?;
            entries.push((key, value));
        }
        Ok(Json::Object(entries))
    }
}

/// Objects with at most this many keys are checked for duplicates by a scan:
/// every object of a valid directive set is that small, and a scan of a few
/// short keys beats hashing them.
const SCAN_KEYS: usize = 12;

/// The duplicate-key check of one object, O(1) per key: a scan of the
/// entries while the object is small, a hash set once it grows past
/// [`SCAN_KEYS`] (std's randomly keyed SipHash, so crafted keys cannot make
/// the set degrade to a list).
#[derive(Default)]
struct SeenKeys {
    large: Option<HashSet<String>>,
}

impl SeenKeys {
    /// Records `key`; false when the object already has it. `entries` are
    /// the object's entries so far, each key recorded here before.
    fn insert(&mut self, entries: &[(String, Json)], key: &str) -> bool {
        if let Some(set) = &mut self.large {
            return set.insert(key.to_owned());
        }
        if entries.iter().any(|(k, _)| k == key) {
            return false;
        }
        if entries.len() + 1 > SCAN_KEYS {
            let mut set: HashSet<String> = entries.iter().map(|(k, _)| k.clone()).collect();
            set.insert(key.to_owned());
            self.large = Some(set);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_values_in_order() {
        let v = parse(r#"{"b":[1,-2,3.5,"x",true,null],"a":{}}"#).unwrap();
        let Json::Object(entries) = v else {
            panic!("not an object")
        };
        assert_eq!(entries[0].0, "b");
        assert_eq!(entries[1].0, "a");
        assert_eq!(entries[0].1.kind(), "array");
    }

    #[test]
    fn duplicate_keys_are_rejected_at_any_depth() {
        assert_eq!(parse(r#"{"a":1,"a":2}"#), Err(RejectReason::DuplicateKey));
        assert_eq!(
            parse(r#"{"x":[{"k":1,"k":1}]}"#),
            Err(RejectReason::DuplicateKey)
        );
    }

    /// The same answer on both sides of the scan/hash switch: a duplicate of
    /// the first key, of a key seen before the switch, of one after it, and
    /// none at all.
    #[test]
    fn duplicate_check_is_exact_in_large_objects() {
        let object = |keys: &[usize]| {
            let body: Vec<String> = keys.iter().map(|k| format!("\"k{k}\":0")).collect();
            format!("{{{}}}", body.join(","))
        };
        for n in [SCAN_KEYS - 1, SCAN_KEYS, SCAN_KEYS + 1, 1000] {
            let distinct: Vec<usize> = (0..n).collect();
            assert!(parse(&object(&distinct)).is_ok(), "{n} distinct keys");
            for dup in [0, n / 2, n - 1] {
                let mut keys = distinct.clone();
                keys.push(dup);
                assert_eq!(
                    parse(&object(&keys)),
                    Err(RejectReason::DuplicateKey),
                    "{n} keys, then a repeat of k{dup}"
                );
            }
        }
    }

    #[test]
    fn deep_nesting_is_rejected_without_overflow() {
        let deep = "[".repeat(100_000);
        assert_eq!(parse(&deep), Err(RejectReason::TooDeep));
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn syntax_errors_and_trailing_bytes_are_malformed() {
        for bad in ["", "{", r#"{"a":}"#, "{} {}", "nul", r#"{"a":1,}"#] {
            assert_eq!(parse(bad), Err(RejectReason::MalformedJson), "{bad}");
        }
    }
}
