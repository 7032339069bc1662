//! Fixtures the test crates share: directive bodies, what etcd holds at a
//! key, one cluster per test binary, an endpoint nobody listens on.
//!
//! Why here: the etcd store's tests, the publisher's and the binary's end to
//! end tests all build the same bodies and read etcd back the same way; one
//! copy keeps them from drifting. Bodies are JSON text (this crate does not
//! depend on the directive model), in the wire format of SPEC §2.

use std::sync::OnceLock;
use std::time::Duration;

use crate::cluster::EtcdCluster;

/// A generous bound for anything that should happen "promptly" on a loaded
/// 2-core machine, for [`eventually`](crate::eventually) and
/// [`wait_until`](crate::wait_until).
pub const PROMPTLY: Duration = Duration::from_secs(20);

/// A directive set body with one directive per id: level `ShapeTiming`,
/// tenant `t-<id>`, living `ttl` seconds (`ttl_secs`).
///
/// ```
/// let body = osproxy_test_support::fixtures::set_body(&["a"], 60);
/// assert_eq!(
///     body,
///     r#"{"directives":[{"id":"a","level":"ShapeTiming","tenant":"t-a","ttl_secs":60}]}"#
/// );
/// ```
pub fn set_body(ids: &[&str], ttl: u64) -> String {
    let list: Vec<String> = ids
        .iter()
        .map(|id| {
            format!(r#"{{"id":"{id}","level":"ShapeTiming","tenant":"t-{id}","ttl_secs":{ttl}}}"#)
        })
        .collect();
    format!(r#"{{"directives":[{}]}}"#, list.join(","))
}

/// One directive object, the value of one key in the prefix layout: level
/// `Shape`, tenant `t-<id>`, living `ttl` seconds.
pub fn directive_body(id: &str, ttl: u64) -> String {
    format!(r#"{{"id":"{id}","level":"Shape","tenant":"t-{id}","ttl_secs":{ttl}}}"#)
}

/// The modification revision of `key` (0 when absent), read with etcdctl.
///
/// Panics when etcdctl fails or prints something that is not JSON.
pub fn mod_revision(cluster: &EtcdCluster, key: &str) -> i64 {
    let out = cluster.etcdctl(&["get", key, "--write-out=json"]);
    let v: serde_json::Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("etcdctl get {key} printed no JSON ({e}): {out}"));
    v["kvs"][0]["mod_revision"].as_i64().unwrap_or(0)
}

/// How many leases etcd holds (the count `etcdctl lease list` prints).
///
/// Panics when the output does not start with `found N leases`.
pub fn lease_count(cluster: &EtcdCluster) -> usize {
    let out = cluster.etcdctl(&["lease", "list"]);
    out.lines()
        .next()
        .and_then(|l| l.strip_prefix("found "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected lease list output: {out}"))
}

/// One single-member etcd shared by every test of this test binary (each
/// test uses its own keys: [`unique_key`](crate::unique_key)). Launched on
/// first use; it is never dropped, and the cluster's watchdog stops it when
/// the test process exits.
///
/// Launching blocks: call it from a blocking context (in an async test,
/// through `tokio::task::spawn_blocking`).
pub fn shared_cluster() -> &'static EtcdCluster {
    static CLUSTER: OnceLock<EtcdCluster> = OnceLock::new();
    CLUSTER.get_or_init(EtcdCluster::single)
}

/// `127.0.0.1:PORT` for a loopback port that was free a moment ago and that
/// nothing listens on: a connection to it is refused at once.
///
/// Panics when no port can be bound.
pub fn unused_endpoint() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot bind a loopback port: {e}"));
    format!("127.0.0.1:{port}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_have_the_wire_shape() {
        assert_eq!(set_body(&[], 5), r#"{"directives":[]}"#);
        assert_eq!(
            set_body(&["a", "b"], 5),
            concat!(
                r#"{"directives":[{"id":"a","level":"ShapeTiming","tenant":"t-a","ttl_secs":5},"#,
                r#"{"id":"b","level":"ShapeTiming","tenant":"t-b","ttl_secs":5}]}"#
            )
        );
        assert_eq!(
            directive_body("x", 7),
            r#"{"id":"x","level":"Shape","tenant":"t-x","ttl_secs":7}"#
        );
    }

    #[test]
    fn an_unused_endpoint_refuses_connections() {
        let endpoint = unused_endpoint();
        assert!(endpoint.starts_with("127.0.0.1:"), "{endpoint}");
        assert!(std::net::TcpStream::connect(&endpoint).is_err());
    }
}
