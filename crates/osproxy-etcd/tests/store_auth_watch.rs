//! The auth-scoped watch (GHSA-xg4h-6gfc-h4m8) with TLS and auth: a user
//! granted read on one key only must not be fed other keys' events, and a
//! store connected as that user follows its key and keeps working (the
//! store never depends on being fed other keys: its watch is its key).
//!
//! Where versions differ: before the fix (etcd 3.6.14 and 3.7.1; neither
//! 3.4 nor 3.5.1 has it), etcd checks a watch's permission on its start key
//! only, so a watch "from this key to the end of the keyspace"
//! (`WithFromKey`) by that user is fed every later key's events. From
//! 3.6.14 / 3.7.1 on, etcd checks the whole range and refuses that watch
//! (it is cancelled at creation with "permission denied"). The test checks
//! the behaviour of the version it runs against, so a matrix run shows both.

mod common;

use std::time::Duration;

use common::*;
use etcd_client::{Certificate, ConnectOptions, Identity, TlsOptions, WatchOptions};
use osproxy_etcd::{Layout, TlsConfig};
use osproxy_test_support::{etcd_release, ClientCert, TestPki};
use tokio::time::timeout;

const ROOT_PASSWORD: &str = "s3cret-Pw";
const READER: &str = "reader";
const READER_PASSWORD: &str = "r3ader-Pw";
/// How long one read of the raw watch stream may take.
const WATCH_READ: Duration = Duration::from_secs(10);

/// Whether the etcd in use checks a watch's whole key range against the
/// user's permissions (the GHSA-xg4h-6gfc-h4m8 fix: 3.6.14 and 3.7.1; the
/// 3.4 and 3.5 releases of the matrix predate it).
fn watch_range_is_checked() -> bool {
    match etcd_release() {
        (3, minor, _) if minor <= 5 => false,
        (3, 6, patch) => patch >= 14,
        (3, 7, patch) => patch >= 1,
        _ => true,
    }
}

/// TLS settings presenting `cert` (the reader's own certificate, so that
/// nothing authenticates as `root` by certificate).
fn tls_for(pki: &TestPki, cert: &ClientCert) -> TlsConfig {
    TlsConfig {
        ca_pem: Some(pki.ca_pem().as_bytes().to_vec()),
        client_cert_pem: Some(cert.cert_pem.as_bytes().to_vec()),
        client_key_pem: Some(cert.key_pem.as_bytes().to_vec()),
        domain_name: None,
    }
}

/// A plain etcd-client connection as the reader, for the raw watch.
async fn reader_client(
    endpoints: &[String],
    pki: &TestPki,
    cert: &ClientCert,
) -> etcd_client::Client {
    let tls = TlsOptions::new()
        .ca_certificate(Certificate::from_pem(pki.ca_pem()))
        .identity(Identity::from_pem(&cert.cert_pem, &cert.key_pem));
    let options = ConnectOptions::new()
        .with_user(READER, READER_PASSWORD)
        .with_tls(tls)
        .with_connect_timeout(Duration::from_secs(5));
    etcd_client::Client::connect(endpoints, Some(options))
        .await
        .unwrap_or_else(|e| panic!("the reader cannot connect: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_of_one_key_is_fed_only_that_key_and_its_store_keeps_working() {
    let cluster = EtcdCluster::builder()
        .tls(TestPki::generate())
        .auth(ROOT_PASSWORD)
        .launch();
    let pki = cluster.pki().expect("tls").clone();
    let key = unique_key("auth-watch");
    // Sorts after `key`: inside a watch from `key` to the end of the keyspace.
    let other = format!("{key}~other");
    let role = format!("{READER}-one-key");
    cluster.etcdctl(&["role", "add", &role]);
    cluster.etcdctl(&["role", "grant-permission", &role, "read", &key]);
    cluster.etcdctl(&["user", "add", &format!("{READER}:{READER_PASSWORD}")]);
    cluster.etcdctl(&["user", "grant-role", READER, &role]);
    cluster.put(&key, &set_body(&["a"], 600));
    cluster.put(&other, "not the reader's");
    let cert = pki.issue_client_cert(READER);

    // The store, connected as the reader, serves its key.
    let store = connect_watching(
        quick(&cluster.endpoints(), Layout::Key(key.clone()))
            .tls(tls_for(&pki, &cert))
            .credentials(READER, READER_PASSWORD),
    )
    .await;
    assert_eq!(ids(&store), ["a"]);

    // The reader may not read the other key at all.
    let mut client = reader_client(&cluster.endpoints(), &pki, &cert).await;
    let denied = client
        .get(other.as_str(), None)
        .await
        .expect_err("the reader reads only its key");
    assert!(denied.to_string().contains("permission denied"), "{denied}");

    // A watch from the reader's key to the end of the keyspace.
    let mut watch = client
        .watch(key.as_str(), Some(WatchOptions::new().with_from_key()))
        .await
        .expect("the watch stream opens");
    let created = timeout(WATCH_READ, watch.message())
        .await
        .expect("etcd answers the watch creation")
        .expect("the watch stream")
        .expect("a creation response");
    assert!(created.created(), "{created:?}");
    if watch_range_is_checked() {
        assert!(
            created.canceled() && created.cancel_reason().contains("permission denied"),
            "etcd {:?} has the GHSA-xg4h-6gfc-h4m8 fix and refuses a from-key watch \
             beyond the reader's key: {created:?}",
            etcd_release()
        );
    } else {
        assert!(!created.canceled(), "{created:?}");
    }

    // Writes to the other key, then to the reader's own.
    cluster.put(&other, "still not the reader's");
    cluster.put(&key, &set_body(&["a", "b"], 600));
    wait_ids(&store, &["a", "b"]).await;

    if !watch_range_is_checked() {
        // Unfixed etcd: the from-key watch is fed the other key's event
        // before the reader's own, the leak the advisory describes.
        let mut keys = Vec::new();
        while !keys.contains(&key) {
            let response = timeout(WATCH_READ, watch.message())
                .await
                .expect("an event within the bound")
                .expect("the watch stream")
                .expect("a response");
            for event in response.events() {
                let kv = event.kv().expect("an event carries its key");
                keys.push(String::from_utf8_lossy(kv.key()).into_owned());
            }
        }
        assert_eq!(
            keys,
            [other.clone(), key.clone()],
            "etcd {:?} predates the fix: the other key's event leaks",
            etcd_release()
        );
    }

    // The store keeps working as the reader: across a restart, which
    // invalidates its token, it re-authenticates and follows its key.
    cluster.member(0).restart();
    wait_status(&store, "the store reconnected", PROMPTLY, |s| {
        s.connected && s.reconnects >= 1
    })
    .await;
    cluster.put(&other, "never the reader's");
    cluster.put(&key, &set_body(&["c"], 600));
    wait_ids_within(&store, &["c"], PROMPTLY).await;
    let status = store.status();
    assert!(
        status.connected && status.last_error.is_none() && status.rejected.is_empty(),
        "{status:?}"
    );
}
