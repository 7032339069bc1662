//! Per-test names: [`unique_key`] for etcd keys, and the suffix cluster
//! tokens share with it.

use std::sync::atomic::{AtomicU64, Ordering};

/// A key unique to this call, under `/osproxy-test/<prefix>/`.
///
/// The shape is `/osproxy-test/<prefix>/<pid>-<counter>-<random>`: unique
/// across tests of one process (counter), across processes (pid) and across
/// runs against a reused cluster (random).
pub fn unique_key(prefix: &str) -> String {
    format!("/osproxy-test/{prefix}/{}", unique_suffix())
}

/// `<pid>-<counter>-<random hex>`, used for keys and cluster tokens.
pub(crate) fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let r: u32 = rand::random();
    format!("{}-{n}-{r:08x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_keys_differ_and_have_the_documented_shape() {
        let a = unique_key("shape");
        let b = unique_key("shape");
        assert_ne!(a, b);
        let prefix = "/osproxy-test/shape/";
        assert!(a.starts_with(prefix), "{a}");
        let parts: Vec<&str> = a[prefix.len()..].split('-').collect();
        assert_eq!(parts.len(), 3, "{a}");
        assert_eq!(parts[0], std::process::id().to_string());
    }
}
