//! Real etcd processes, TLS material and network faults for osproxy tests and
//! benchmarks.
//!
//! # Why this crate exists
//!
//! The etcd-backed watch cache must survive things a mock cannot fake
//! faithfully: a member dying mid-watch, a compaction overtaking a slow watcher,
//! a cluster wiped and re-created under the same address (revisions go back to
//! 1), a process frozen by `SIGSTOP`, a half-open TCP connection. This crate runs
//! the real thing — Debian's `etcd` 3.4 (`/usr/bin/etcd`, package
//! `etcd-server`) and `etcdctl` (package `etcd-client`) — on loopback ports and
//! throwaway data directories, and gives tests a small, blocking control
//! surface over it. It never skips: when etcd is not installed it panics with
//! the install command, so a missing dependency cannot pass for a green run.
//!
//! # What is in it
//!
//! * [`EtcdCluster`] / [`EtcdMember`]: launch 1..n members (optionally with
//!   TLS and `root` password auth), write "with another tool" through
//!   [`EtcdCluster::etcdctl`], inject faults (`kill`, `stop`/`cont`,
//!   `restart`, `restart_empty`, `stop_all`/`start_all`), `compact`, `defrag`.
//!   Everything is torn down on drop, also when the test panics. Set
//!   `OSPROXY_ETCD_KEEP=1` to keep the data directories (and logs) for a
//!   post-mortem.
//! * [`TestPki`]: a throwaway CA plus server and client certificates, as PEM
//!   strings and files.
//! * [`TcpForwarder`]: a loopback TCP proxy that can freeze (silent half-open
//!   connections), thaw, cut (abrupt close) and be re-targeted; it runs on its
//!   own thread and runtime, so it works from sync code and any test runtime.
//! * [`Browser`]: a headless Chromium driven over the DevTools protocol
//!   (pipes, no port), with a temporary profile, killed by pid on drop,
//!   for the operator page's real-browser tests.
//! * [`OtlpReceiver`]: a real OTLP/HTTP trace receiver (protobuf and JSON,
//!   decoded with the `opentelemetry-proto` types) on a loopback port.
//! * [`unique_key`], [`wait_until`], [`wait_within`], [`eventually`], [`poll_within`]: per-test
//!   key names and bounded polling instead of sleeps.
//! * [`fixtures`]: what the test crates share beyond that — directive bodies
//!   ([`fixtures::set_body`], [`fixtures::directive_body`]), etcd read-backs
//!   ([`fixtures::mod_revision`], [`fixtures::lease_count`]), one cluster per
//!   test binary ([`fixtures::shared_cluster`]), an endpoint nobody listens
//!   on, and the [`fixtures::PROMPTLY`] bound.
//!
//! # Blocking
//!
//! The cluster API is synchronous: launching or restarting a member blocks
//! until etcd reports healthy (bounded, 30 s by default). Call it from
//! `#[tokio::test(flavor = "multi_thread")]` tests (the other worker keeps
//! async code running) or wrap it in `tokio::task::spawn_blocking` when
//! something on the same runtime must make progress meanwhile.
//!
//! # Example
//!
//! ```no_run
//! use osproxy_test_support::{unique_key, EtcdCluster, TcpForwarder, TestPki};
//!
//! // One plain member, a key written "by another tool".
//! let cluster = EtcdCluster::single();
//! let key = unique_key("example");
//! cluster.etcdctl(&["put", &key, "v1"]);
//! assert_eq!(cluster.get(&key).as_deref(), Some("v1"));
//!
//! // Put a fault-injecting proxy between the client under test and etcd.
//! let proxy = TcpForwarder::start(cluster.member(0).client_addr());
//! let _endpoint_for_the_client = proxy.endpoint(); // "127.0.0.1:PORT"
//! proxy.freeze(); // connections stay open, no byte moves
//! proxy.thaw();
//! proxy.cut(); // every open connection is closed abruptly
//!
//! // Faults on the server side.
//! cluster.member(0).kill();
//! cluster.member(0).restart(); // same data, same ports
//! cluster.restart_empty(); // brand-new cluster: revision back to 1
//!
//! // Three members with TLS and auth.
//! let secure = EtcdCluster::builder()
//!     .members(3)
//!     .tls(TestPki::generate())
//!     .auth("s3cret")
//!     .launch();
//! assert!(secure.endpoints()[0].starts_with("https://127.0.0.1:"));
//! ```
#![deny(missing_docs)]

mod binaries;
mod browser;
mod cluster;
pub mod fixtures;
mod forwarder;
mod keys;
mod otlp;
mod pki;
mod ports;
mod proxy;
mod wait;

pub use binaries::{etcd_release, etcd_version, ETCD_BIN_DIR_VAR, ETCD_NOT_FOUND};
pub use browser::{Browser, Tab, CHROMIUM_NOT_FOUND, CHROMIUM_VAR};
pub use cluster::{EtcdCluster, EtcdClusterBuilder, EtcdMember, MemberStatus, KEEP_ENV};
pub use forwarder::TcpForwarder;
pub use keys::unique_key;
pub use otlp::{attr_int, attr_str, OtlpEncoding, OtlpReceiver};
pub use pki::{ClientCert, TestPki};
pub use proxy::EtcdProxy;
pub use wait::{eventually, poll_within, wait_until, wait_within};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_handles_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<EtcdCluster>();
        check::<EtcdMember>();
        check::<TcpForwarder>();
        check::<TestPki>();
    }
}
