//! Who may drive a running `serve`: the token read from a file, TLS on the
//! admin listener (a real rustls client trusting the test CA), `/metrics`
//! behind the token on request, and the start-up refusals for an exposed
//! listener without TLS.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use common::*;
use osproxy_test_support::TestPki;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

const TOKEN: &str = "admin-access-token-0123456789abcdef";

fn private_file(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path.to_str().unwrap().to_owned()
}

/// One HTTP/1.1 request over TLS to `port` on 127.0.0.1, trusting `ca_pem`
/// only: the status code and body.
async fn https(port: u16, ca_pem: &str, request: &str) -> (u16, String) {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let code = answer
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exposed_listener_speaks_tls_and_wants_the_token() {
    let pki = TestPki::generate();
    let dir = tempfile::tempdir().unwrap();
    let token = private_file(dir.path(), "admin.token", &format!("{TOKEN}\n"));
    let cert = pki.server().cert_path.to_str().unwrap().to_owned();
    let key = private_file(dir.path(), "admin.key", &pki.server().key_pem);
    // Exposed without TLS: refused (the token would travel in clear).
    let clear = run(&["serve", "--listen", "0.0.0.0:0", "--token-file", &token]);
    clear.expect_code(2);
    // A token file others can read: refused.
    let shared = dir.path().join("shared.token");
    std::fs::write(&shared, TOKEN).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o644)).unwrap();
    run(&["serve", "--token-file", shared.to_str().unwrap()]).expect_code(2);

    let serve = Serve::start_exact(&[
        "serve",
        "--listen",
        "0.0.0.0:0",
        "--token-file",
        &token,
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--metrics-need-token",
    ]);
    assert!(serve.url.starts_with("https://0.0.0.0:"), "{}", serve.url);
    let port: u16 = serve.url.rsplit(':').next().unwrap().parse().unwrap();
    let ca = pki.ca_pem().to_owned();
    let get = |path: &str, auth: bool| {
        let mut req =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
        if auth {
            req.push_str(&format!("Authorization: Bearer {TOKEN}\r\n"));
        }
        req.push_str("\r\n");
        req
    };
    assert_eq!(https(port, &ca, &get("/healthz", false)).await.0, 200);
    assert_eq!(
        https(port, &ca, &get("/admin/directives", false)).await.0,
        401
    );
    assert_eq!(
        https(port, &ca, &get("/admin/directives", true)).await.0,
        200
    );
    assert_eq!(https(port, &ca, &get("/metrics", false)).await.0, 401);
    let (code, metrics) = https(port, &ca, &get("/metrics", true)).await;
    assert_eq!(code, 200);
    assert!(metrics.contains("osproxy_directives_ready 1"), "{metrics}");
    // Plain HTTP on the TLS port gets no answer an HTTP client would take.
    let plain = reqwest::get(
        serve
            .at("/healthz")
            .replace("https://0.0.0.0", "http://127.0.0.1"),
    )
    .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
}
