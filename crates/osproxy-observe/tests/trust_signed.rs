//! Signed directive values: the signature covers exactly the payload the
//! instance decodes and the key it is stored under; with a trust store an
//! unsigned, wrongly signed or unknown-key value is refused with its slug;
//! without one a signed value's payload is applied as is.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use osproxy_observe::signed::{is_signed, open_value, payload_of, sign_value, signing_key_id};
use osproxy_observe::{RejectReason, SignerKey, TrustStore};
use proptest::prelude::*;

const KEY: &[u8] = b"/osproxy/directives";
const SET: &[u8] =
    br#"{"directives":[{"id":"a","level":"Shape","expires_at":"2030-01-01T00:00:00Z"}]}"#;

fn signer(id: &str, seed: u8) -> SignerKey {
    SignerKey::from_seed(id, [seed; 32]).unwrap()
}

fn trust(keys: &[&SignerKey]) -> TrustStore {
    let mut t = TrustStore::new();
    for k in keys {
        t.trust(k).unwrap();
    }
    t
}

#[test]
fn a_signed_value_opens_to_exactly_its_payload() {
    let k = signer("ops-1", 1);
    let value = sign_value(&k, KEY, SET);
    assert!(is_signed(&value));
    assert_eq!(signing_key_id(&value), Some("ops-1"));
    let t = trust(&[&k]);
    assert_eq!(open_value(&value, KEY, Some(&t)), Ok(SET));
    // Without a trust store the payload applies as is (roll out first).
    assert_eq!(open_value(&value, KEY, None), Ok(SET));
    assert_eq!(payload_of(&value), SET);
    assert_eq!(payload_of(SET), SET);
    // Deterministic: the same bytes sign the same, so re-publishing is a no-op.
    assert_eq!(sign_value(&k, KEY, SET), value);
}

#[test]
fn refusals_have_their_own_slugs() {
    let k = signer("ops-1", 1);
    let other = signer("ops-2", 2);
    let t = trust(&[&k]);
    let value = sign_value(&k, KEY, SET);
    let slug = |v: &[u8], key: &[u8]| {
        open_value(v, key, Some(&t))
            .map(|_| ())
            .map_err(RejectReason::slug)
    };
    assert_eq!(slug(SET, KEY), Err("unsigned"));
    assert_eq!(slug(&sign_value(&other, KEY, SET), KEY), Err("unknown_key"));
    // Signed for other bytes: another payload under this header.
    let header_end = value.iter().position(|&b| b == b'\n').unwrap() + 1;
    let mut swapped = value[..header_end].to_vec();
    swapped.extend_from_slice(br#"{"directives":[]}"#);
    assert_eq!(slug(&swapped, KEY), Err("bad_signature"));
    let mut longer = value.clone();
    longer.extend_from_slice(b" ");
    assert_eq!(slug(&longer, KEY), Err("bad_signature"));
    let mut flipped = value.clone();
    let last = flipped.len() - 3;
    flipped[last] ^= 1;
    assert_eq!(slug(&flipped, KEY), Err("bad_signature"));
    // Moved to another key: the key is covered too.
    assert_eq!(slug(&value, b"/osproxy/other"), Err("bad_signature"));
    // Malformed headers.
    for bad in [
        &b"osproxy-signed v1 ops-1\n{}"[..],
        b"osproxy-signed v2 ops-1 AAAA\n{}",
        b"osproxy-signed v1 ops-1 %%%\n{}",
        b"osproxy-signed no newline at all",
    ] {
        assert_eq!(slug(bad, KEY), Err("bad_signature"), "{bad:?}");
        assert_eq!(open_value(bad, KEY, None), Err(RejectReason::BadSignature));
    }
}

#[test]
fn rotation_trusts_old_and_new_then_new_only() {
    let old = signer("k-2025", 5);
    let new = signer("k-2026", 6);
    let by_old = sign_value(&old, KEY, SET);
    let by_new = sign_value(&new, KEY, SET);
    let mut t = trust(&[&old, &new]);
    assert!(open_value(&by_old, KEY, Some(&t)).is_ok());
    assert!(open_value(&by_new, KEY, Some(&t)).is_ok());
    t.remove("k-2025");
    assert_eq!(
        open_value(&by_old, KEY, Some(&t)),
        Err(RejectReason::UnknownKey)
    );
    assert!(open_value(&by_new, KEY, Some(&t)).is_ok());
}

proptest! {
    #[test]
    fn arbitrary_values_never_panic(value in proptest::collection::vec(any::<u8>(), 0..400),
                                    signed in any::<bool>()) {
        let k = signer("ops-1", 1);
        let t = trust(&[&k]);
        let value = if signed {
            let mut v = b"osproxy-signed v1 ops-1 ".to_vec();
            v.extend_from_slice(&value);
            v
        } else {
            value
        };
        prop_assert!(open_value(&value, KEY, Some(&t)).is_err());
        let _ = open_value(&value, KEY, None);
        let _ = payload_of(&value);
    }
}
