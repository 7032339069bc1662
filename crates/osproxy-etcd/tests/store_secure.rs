//! SPEC §5.11 secure transport: TLS with a custom CA and a client certificate
//! plus etcd user/password auth; the store connects, follows publishes and
//! survives an etcd restart (which invalidates auth tokens). Wrong or missing
//! credentials and TLS material fail `connect` clearly.

mod common;

use std::time::Duration;

use common::*;
use osproxy_etcd::{ConfigError, ConnectCause, EtcdDirectiveStore, EtcdError, Layout, TlsConfig};
use osproxy_test_support::TestPki;

const PASSWORD: &str = "s3cret-Pw";

fn secure_cluster() -> EtcdCluster {
    EtcdCluster::builder()
        .tls(TestPki::generate())
        .auth(PASSWORD)
        .launch()
}

fn tls_for(pki: &TestPki) -> TlsConfig {
    TlsConfig {
        ca_pem: Some(pki.ca_pem().as_bytes().to_vec()),
        client_cert_pem: Some(pki.client_cert_pem().as_bytes().to_vec()),
        client_key_pem: Some(pki.client_key_pem().as_bytes().to_vec()),
        domain_name: None,
    }
}

fn connect_error(err: EtcdError) -> osproxy_etcd::ConnectError {
    match err {
        EtcdError::Connect(e) => e,
        other => panic!("expected EtcdError::Connect, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_auth_connect_follow_publishes_and_survive_a_restart() {
    let cluster = secure_cluster();
    let pki = cluster.pki().expect("tls").clone();
    let key = unique_key("secure");
    cluster.put(&key, &set_body(&["a"], 600));
    let endpoints = cluster.endpoints();
    assert!(endpoints[0].starts_with("https://"));

    let store = quick(&endpoints, Layout::Key(key.clone()))
        .tls(tls_for(&pki))
        .credentials("root", PASSWORD)
        .connect()
        .await
        .expect("connect over TLS with auth");
    assert_eq!(ids(&store), ["a"]);
    // Plain host:port endpoints become https:// with TLS configured.
    let bare: Vec<String> = cluster
        .members()
        .iter()
        .map(|m| m.client_addr().to_string())
        .collect();
    let bare_store = quick(&bare, Layout::Key(key.clone()))
        .tls(tls_for(&pki))
        .credentials("root", PASSWORD)
        .connect()
        .await
        .expect("host:port with TLS");
    assert!(bare_store
        .status()
        .endpoint
        .is_some_and(|e| e.starts_with("https://")));

    cluster.put(&key, &set_body(&["a", "b"], 600));
    wait_ids(&store, &["a", "b"]).await;
    wait_ids(&bare_store, &["a", "b"]).await;

    // A restart invalidates every auth token: the store re-authenticates.
    cluster.member(0).restart();
    wait_status(&store, "the store reconnected", PROMPTLY, |s| {
        s.connected && s.reconnects >= 1
    })
    .await;
    cluster.put(&key, &set_body(&["c"], 600));
    wait_ids_within(&store, &["c"], PROMPTLY).await;
    let status = store.status();
    assert!(
        status.connected && status.last_error.is_none(),
        "{status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_credentials_and_tls_material_fail_connect() {
    let cluster = secure_cluster();
    let pki = cluster.pki().expect("tls").clone();
    let endpoints = cluster.endpoints();
    let key = unique_key("secure-bad");
    let builder = || {
        EtcdDirectiveStore::builder(&endpoints, Layout::Key(key.clone()), clock())
            .connect_timeout(Duration::from_secs(3))
    };

    // Wrong password.
    let err = builder()
        .tls(tls_for(&pki))
        .credentials("root", "wrong")
        .connect()
        .await
        .expect_err("wrong password");
    let text = err.to_string();
    let e = connect_error(err);
    assert!(matches!(e.cause, ConnectCause::Client(_)), "{e:?}");
    assert!(text.contains("authentication failed"), "{text}");
    assert!(text.contains(&endpoints[0]), "{text}");
    assert!(!text.contains("wrong"), "never shows the password: {text}");

    // An unknown user.
    let err = builder()
        .tls(tls_for(&pki))
        .credentials("mallory", PASSWORD)
        .connect()
        .await
        .expect_err("unknown user");
    let text = err.to_string();
    connect_error(err);
    assert!(text.contains("authentication failed"), "{text}");

    // A client certificate of a user etcd does not know, and no password.
    let stranger = pki.issue_client_cert("stranger");
    let err = builder()
        .tls(TlsConfig {
            client_cert_pem: Some(stranger.cert_pem.into_bytes()),
            client_key_pem: Some(stranger.key_pem.into_bytes()),
            ..tls_for(&pki)
        })
        .connect()
        .await
        .expect_err("no credentials");
    let text = err.to_string();
    connect_error(err);
    assert!(text.contains("permission denied"), "{text}");

    // https:// endpoints without TLS configured: a configuration error.
    let err = builder()
        .credentials("root", PASSWORD)
        .connect()
        .await
        .expect_err("https without TLS");
    assert!(
        matches!(err, EtcdError::Config(ConfigError::SchemeMismatch(_))),
        "{err:?}"
    );

    // Plain HTTP to the TLS port.
    let plain = vec![cluster.member(0).client_addr().to_string()];
    let err = EtcdDirectiveStore::builder(&plain, Layout::Key(key.clone()), clock())
        .connect_timeout(Duration::from_secs(3))
        .credentials("root", PASSWORD)
        .connect()
        .await
        .expect_err("plain HTTP to a TLS port");
    connect_error(err);

    // No client certificate, though etcd requires one.
    let err = builder()
        .tls(TlsConfig {
            client_cert_pem: None,
            client_key_pem: None,
            ..tls_for(&pki)
        })
        .credentials("root", PASSWORD)
        .connect()
        .await
        .expect_err("no client certificate");
    connect_error(err);

    // A CA that did not sign the server's certificate.
    let other = TestPki::generate();
    let err = builder()
        .tls(TlsConfig {
            ca_pem: Some(other.ca_pem().as_bytes().to_vec()),
            ..tls_for(&pki)
        })
        .credentials("root", PASSWORD)
        .connect()
        .await
        .expect_err("untrusted server certificate");
    connect_error(err);
}
