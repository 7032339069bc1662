//! Signed format v2: the sequence number, the signing time and the note are
//! signed with the key and payload, so changing any of them breaks the
//! signature; v1 values still open; a trust store that requires v2 refuses
//! v1 (`legacy_signature`); a malformed metadata line is `bad_signature`
//! with or without a trust store; the prefix manifest lists exact hashes.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use osproxy_observe::manifest::{value_hash, Manifest};
use osproxy_observe::signed::{
    open_signed, open_value, payload_of, sign_value, sign_value_v2, signed_meta, signing_key_id,
};
use osproxy_observe::{PublishNote, RejectReason, SignedMeta, SignerKey, TrustStore};

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

fn meta(seq: u64) -> SignedMeta {
    SignedMeta {
        seq,
        signed_at_unix_nanos: 1_800_000_000_000_000_000,
        note: PublishNote::new()
            .with_author("alice")
            .unwrap()
            .with_reason("approved by CAB")
            .unwrap()
            .stamped(1_800_000_000_000_000_000),
    }
}

/// The metadata line of a v2 value, and where it sits.
fn meta_line(value: &[u8]) -> (usize, usize) {
    let start = value.iter().position(|&b| b == b'\n').unwrap() + 1;
    let len = value[start..].iter().position(|&b| b == b'\n').unwrap();
    (start, start + len)
}

fn with_meta(value: &[u8], line: &str) -> Vec<u8> {
    let (start, end) = meta_line(value);
    let mut out = value[..start].to_vec();
    out.extend_from_slice(line.as_bytes());
    out.extend_from_slice(&value[end..]);
    out
}

#[test]
fn a_v2_value_round_trips_with_its_metadata() {
    let k = signer("ops-1", 1);
    let t = trust(&[&k]);
    let value = sign_value_v2(&k, KEY, &meta(7), SET);
    assert!(value.starts_with(b"osproxy-signed v2 ops-1 "));
    assert_eq!(signing_key_id(&value), Some("ops-1"));
    let opened = open_signed(&value, KEY, Some(&t)).unwrap();
    assert_eq!(opened.payload, SET);
    assert_eq!(opened.version, Some(2));
    assert_eq!(opened.meta, Some(meta(7)));
    assert_eq!(open_value(&value, KEY, Some(&t)), Ok(SET));
    // Unchecked readers see the payload and the metadata too.
    assert_eq!(payload_of(&value), SET);
    assert_eq!(open_value(&value, KEY, None), Ok(SET));
    assert_eq!(signed_meta(&value), Some(meta(7)));
    // The metadata line is canonical JSON.
    let (start, end) = meta_line(&value);
    assert_eq!(
        std::str::from_utf8(&value[start..end]).unwrap(),
        r#"{"note":{"author":"alice","published_at":"2027-01-15T08:00:00Z","reason":"approved by CAB"},"seq":7,"signed_at":"2027-01-15T08:00:00Z"}"#
    );
    assert_eq!(SignedMeta::decode(&meta(7).encode()), Ok(meta(7)));
}

#[test]
fn tampering_with_seq_note_or_time_breaks_the_signature() {
    let k = signer("ops-1", 1);
    let t = trust(&[&k]);
    let value = sign_value_v2(&k, KEY, &meta(7), SET);
    let line = String::from_utf8(meta(7).encode()).unwrap();
    let forged = [
        line.replace(r#""seq":7"#, r#""seq":9"#),
        line.replace("alice", "mallory"),
        line.replace("approved by CAB", "approved by nobody"),
        line.replace(r#""signed_at":"2027"#, r#""signed_at":"2028"#),
    ];
    for f in &forged {
        assert_ne!(f, &line);
        let tampered = with_meta(&value, f);
        assert_eq!(
            open_value(&tampered, KEY, Some(&t)),
            Err(RejectReason::BadSignature),
            "{f}"
        );
        // Without a trust store the (well-formed) metadata is not checked.
        assert_eq!(open_value(&tampered, KEY, None), Ok(SET));
    }
    // Another key, another payload: as in v1.
    assert_eq!(
        open_value(&value, b"/osproxy/other", Some(&t)),
        Err(RejectReason::BadSignature)
    );
    let (_, end) = meta_line(&value);
    let mut swapped = value[..=end].to_vec();
    swapped.extend_from_slice(br#"{"directives":[]}"#);
    assert_eq!(
        open_value(&swapped, KEY, Some(&t)),
        Err(RejectReason::BadSignature)
    );
    // A v1 signature over the same key and payload is not a v2 signature.
    let v1 = sign_value(&k, KEY, SET);
    let header_v1 = &v1[..v1.iter().position(|&b| b == b'\n').unwrap()];
    let header_v2 = String::from_utf8(header_v1.to_vec())
        .unwrap()
        .replace(" v1 ", " v2 ");
    let mut mixed = header_v2.into_bytes();
    mixed.push(b'\n');
    mixed.extend_from_slice(line.as_bytes());
    mixed.push(b'\n');
    mixed.extend_from_slice(SET);
    assert_eq!(
        open_value(&mixed, KEY, Some(&t)),
        Err(RejectReason::BadSignature)
    );
}

#[test]
fn malformed_metadata_is_refused_even_unchecked() {
    let k = signer("ops-1", 1);
    let value = sign_value_v2(&k, KEY, &meta(7), SET);
    let line = String::from_utf8(meta(7).encode()).unwrap();
    for bad in [
        "{}".to_owned(),
        "not json".to_owned(),
        line.replace(r#""seq":7"#, r#""seq":-1"#),
        line.replace(r#""seq":7"#, r#""seq":"7""#),
        line.replace(r#""seq":7"#, r#""seq":7,"seq":8"#),
        line.replace(r#","seq":7"#, ""),
        line.replace(
            r#""signed_at":"2027-01-15T08:00:00Z""#,
            r#""signed_at":"soon""#,
        ),
        line.replace("alice", "a;b"),
        line.replace(r#""seq":7"#, r#""seq":7,"extra":1"#),
    ] {
        let v = with_meta(&value, &bad);
        assert_eq!(
            open_value(&v, KEY, None),
            Err(RejectReason::BadSignature),
            "{bad}"
        );
        assert_eq!(signed_meta(&v), None, "{bad}");
    }
    // No metadata line at all, or one beyond the bound.
    assert_eq!(
        open_value(b"osproxy-signed v2 ops-1 AAAA\n{}", KEY, None),
        Err(RejectReason::BadSignature)
    );
    let (start, _) = meta_line(&value);
    let mut long = value[..start].to_vec();
    long.extend(std::iter::repeat_n(b' ', 20_000));
    long.extend_from_slice(b"\n{}");
    assert_eq!(
        open_value(&long, KEY, None),
        Err(RejectReason::BadSignature)
    );
}

#[test]
fn v1_still_opens_until_the_store_requires_v2() {
    let k = signer("ops-1", 1);
    let t = trust(&[&k]);
    let v1 = sign_value(&k, KEY, SET);
    let opened = open_signed(&v1, KEY, Some(&t)).unwrap();
    assert_eq!(
        (opened.payload, opened.version, opened.meta),
        (SET, Some(1), None)
    );
    let strict = t.clone().requiring_signed_v2();
    assert_eq!(
        open_value(&v1, KEY, Some(&strict)),
        Err(RejectReason::LegacySignature)
    );
    assert_eq!(
        open_value(&sign_value_v2(&k, KEY, &meta(1), SET), KEY, Some(&strict)),
        Ok(SET)
    );
    // Unsigned stays unsigned; the file setting means the same.
    assert_eq!(
        open_value(SET, KEY, Some(&strict)),
        Err(RejectReason::Unsigned)
    );
    let from_file = TrustStore::parse(&format!(
        "{}osproxy-require signed-v2\n",
        k.to_public_line()
    ))
    .unwrap();
    assert_eq!(
        open_value(&v1, KEY, Some(&from_file)),
        Err(RejectReason::LegacySignature)
    );
}

#[test]
fn rotation_works_in_v2_too() {
    let old = signer("ops-1", 1);
    let new = signer("ops-2", 2);
    let both = trust(&[&old, &new]);
    let only_new = trust(&[&new]);
    let by_old = sign_value_v2(&old, KEY, &meta(3), SET);
    let by_new = sign_value_v2(&new, KEY, &meta(4), SET);
    assert_eq!(open_value(&by_old, KEY, Some(&both)), Ok(SET));
    assert_eq!(open_value(&by_new, KEY, Some(&both)), Ok(SET));
    assert_eq!(
        open_value(&by_old, KEY, Some(&only_new)),
        Err(RejectReason::UnknownKey)
    );
    assert_eq!(open_value(&by_new, KEY, Some(&only_new)), Ok(SET));
}

#[test]
fn a_manifest_admits_exactly_the_listed_bytes() {
    let k = signer("ops-1", 1);
    let a = sign_value_v2(&k, b"/p/a", &meta(2), br#"{"id":"a"}"#);
    let old_a = sign_value_v2(&k, b"/p/a", &meta(1), br#"{"id":"a"}"#);
    let mut m = Manifest::new();
    m.insert("a", &a);
    assert!(m.admits("a", &value_hash(&a)));
    assert!(!m.admits("a", &value_hash(&old_a)), "an older value of a");
    assert!(!m.admits("b", &value_hash(&a)), "a key not listed");
    let limits = osproxy_observe::DecodeLimits::default();
    assert_eq!(Manifest::decode(&m.encode(), &limits), Ok(m));
}
