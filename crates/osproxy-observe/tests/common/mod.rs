//! Helpers shared by the integration tests of `osproxy-observe`.
//!
//! Each test file compiles this module separately and uses only part of it.
#![allow(dead_code)]

pub mod fuzz_check;

use std::time::Duration;

use osproxy_core::{Clock, ManualClock, RequestId};
use osproxy_observe::{
    decode_directive_set, decode_directive_set_detailed, DecodeError, DirectiveSet,
};

/// The wall time a `ManualClock::new()` starts at: 2024-01-01T00:00:00Z.
pub const EPOCH_UNIX_NANOS: u64 = 1_704_067_200 * 1_000_000_000;

/// One second, in nanoseconds.
pub const SEC: u64 = 1_000_000_000;

/// Seven days, the default lifetime cap.
pub const SEVEN_DAYS: Duration = Duration::from_secs(7 * 24 * 3600);

/// Decodes `body` on a fresh `ManualClock`.
pub fn decode(body: impl AsRef<[u8]>) -> Result<DirectiveSet, DecodeError> {
    decode_directive_set_detailed(body.as_ref(), &ManualClock::new())
}

/// Decodes `body` on `clock`, panicking with the slug on rejection.
pub fn decode_ok(body: impl AsRef<[u8]>, clock: &dyn Clock) -> DirectiveSet {
    match decode_directive_set(body.as_ref(), clock) {
        Ok(set) => set,
        Err(e) => panic!("expected a valid set, got {e}"),
    }
}

/// `{"directives":[<items joined by ','>]}`.
pub fn body_of<S: AsRef<str>>(items: &[S]) -> String {
    let items: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
    format!(r#"{{"directives":[{}]}}"#, items.join(","))
}

/// A directive object: `{"id":<id>,<fields>}` (fields without braces).
pub fn directive(id: &str, fields: &str) -> String {
    if fields.is_empty() {
        format!(r#"{{"id":"{id}"}}"#)
    } else {
        format!(r#"{{"id":"{id}",{fields}}}"#)
    }
}

/// A minimal valid directive with this id: level `Shape`, ttl 60 s, no targets.
pub fn valid_directive(id: &str) -> String {
    directive(id, r#""level":"Shape","ttl_secs":60"#)
}

/// A body whose directive number 1 is `{"id":"d1",<fields>}`, after one valid
/// directive at index 0, so that rejections report `directive_index == Some(1)`.
pub fn second_directive(fields: &str) -> String {
    body_of(&[valid_directive("d0"), directive("d1", fields)])
}

/// A body whose directive number 1 is the raw JSON `item`.
pub fn second_raw(item: &str) -> String {
    body_of(&[valid_directive("d0"), item.to_owned()])
}

/// A request id.
pub fn rid(s: &str) -> RequestId {
    RequestId::from(s)
}

/// A reference FNV-1a-64, written independently of the crate's, so tests pin
/// the sampling rule of SPEC §3 rather than the implementation.
pub fn reference_bucket(id: &str) -> u16 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in id.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    u16::try_from(h % 1000).unwrap_or(u16::MAX)
}
