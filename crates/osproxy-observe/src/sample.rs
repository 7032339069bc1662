//! Deterministic sampling: the same request id lands in the same bucket on
//! every instance, so a sampled request is traced fleet-wide or nowhere.

use osproxy_core::RequestId;

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a, 64-bit, over `bytes`.
#[inline]
pub fn fnv1a_64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET_BASIS, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(FNV_PRIME)
    })
}

/// The request's sample bucket, 0–999: FNV-1a-64 of its id modulo 1000.
#[inline]
pub fn bucket(id: &RequestId) -> u16 {
    bucket_of(id.as_str())
}

/// [`bucket`] of a request id held as a plain string.
#[inline]
pub fn bucket_of(id: &str) -> u16 {
    // The remainder is below 1000, so it always fits.
    (fnv1a_64(id.as_bytes()) % 1000) as u16
}

/// Whether a request in `bucket` is inside a sample of `per_mille`.
#[inline]
pub fn in_sample(bucket: u16, per_mille: u16) -> bool {
    bucket < per_mille
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_reference_vectors() {
        // Published FNV-1a 64-bit test vectors.
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a_64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn bucket_bounds() {
        assert!(in_sample(0, 1));
        assert!(!in_sample(0, 0));
        assert!(in_sample(999, 1000));
        assert!(bucket(&RequestId::from("anything")) < 1000);
    }
}
