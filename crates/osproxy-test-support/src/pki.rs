//! A throwaway certificate authority with server and client certificates.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use tempfile::TempDir;

/// Test PKI: a fresh CA, a server certificate valid for `127.0.0.1`, `::1` and
/// `localhost`, and a client certificate with CN `root` (so it also
/// authenticates as etcd's `root` user when etcd runs with
/// `--client-cert-auth` and auth enabled).
///
/// Everything is written as PEM files into a temporary directory that lives as
/// long as the last clone of this handle. Cloning is cheap (shared).
#[derive(Clone)]
pub struct TestPki {
    inner: Arc<Inner>,
}

struct Inner {
    dir: TempDir,
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
    server: ClientCert,
    client: ClientCert,
    issued: AtomicU64,
}

/// A certificate and its private key, as PEM strings and as files.
///
/// Used for the server and client certificates of a [`TestPki`] and for extra
/// client identities from [`TestPki::issue_client_cert`].
#[derive(Clone, Debug)]
pub struct ClientCert {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The PKCS#8 private key, PEM.
    pub key_pem: String,
    /// Where `cert_pem` is written.
    pub cert_path: PathBuf,
    /// Where `key_pem` is written.
    pub key_path: PathBuf,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki")
            .field("dir", &self.dir())
            .finish_non_exhaustive()
    }
}

impl TestPki {
    /// Generates a CA, a server and a `root` client certificate (ECDSA P-256)
    /// and writes them to a new temporary directory. Panics on failure.
    pub fn generate() -> TestPki {
        let dir = tempfile::Builder::new()
            .prefix("osproxy-pki-")
            .tempdir()
            .unwrap_or_else(|e| panic!("TestPki: cannot create a temporary directory: {e}"));

        let ca_key = key_pair();
        let mut ca_params = CertificateParams::default();
        ca_params.distinguished_name = common_name("osproxy test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params
            .self_signed(&ca_key)
            .unwrap_or_else(|e| panic!("TestPki: cannot self-sign the CA: {e}"));
        let ca_pem = ca_cert.pem();
        write(&dir.path().join("ca.pem"), &ca_pem);
        let issuer = Issuer::new(ca_params, ca_key);

        // etcd's embedded gRPC gateway dials the server with the server
        // certificate as its client identity, so it needs clientAuth too.
        let server = issue(
            &issuer,
            dir.path(),
            "server",
            "osproxy test etcd server",
            &["127.0.0.1", "::1", "localhost"],
            &[
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        );
        let client = issue(
            &issuer,
            dir.path(),
            "client",
            "root",
            &[],
            &[ExtendedKeyUsagePurpose::ClientAuth],
        );
        TestPki {
            inner: Arc::new(Inner {
                dir,
                issuer,
                ca_pem,
                server,
                client,
                issued: AtomicU64::new(0),
            }),
        }
    }

    /// Issues one more client certificate, with common name `cn`, signed by
    /// this CA (e.g. to authenticate as a non-root etcd user).
    pub fn issue_client_cert(&self, cn: &str) -> ClientCert {
        let n = self.inner.issued.fetch_add(1, Ordering::Relaxed);
        issue(
            &self.inner.issuer,
            self.dir(),
            &format!("client-{n}"),
            cn,
            &[],
            &[ExtendedKeyUsagePurpose::ClientAuth],
        )
    }

    /// The directory holding every PEM file.
    pub fn dir(&self) -> &Path {
        self.inner.dir.path()
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.inner.ca_pem
    }

    /// Path of the CA certificate file (`ca.pem`).
    pub fn ca_path(&self) -> PathBuf {
        self.dir().join("ca.pem")
    }

    /// The server certificate and key (SANs `127.0.0.1`, `::1`, `localhost`).
    pub fn server(&self) -> &ClientCert {
        &self.inner.server
    }

    /// The server certificate, PEM.
    pub fn server_cert_pem(&self) -> &str {
        &self.inner.server.cert_pem
    }

    /// The server private key, PEM.
    pub fn server_key_pem(&self) -> &str {
        &self.inner.server.key_pem
    }

    /// Path of the server certificate file.
    pub fn server_cert_path(&self) -> &Path {
        &self.inner.server.cert_path
    }

    /// Path of the server private key file.
    pub fn server_key_path(&self) -> &Path {
        &self.inner.server.key_path
    }

    /// The `root` client certificate and key.
    pub fn client(&self) -> &ClientCert {
        &self.inner.client
    }

    /// The client certificate (CN `root`), PEM.
    pub fn client_cert_pem(&self) -> &str {
        &self.inner.client.cert_pem
    }

    /// The client private key, PEM.
    pub fn client_key_pem(&self) -> &str {
        &self.inner.client.key_pem
    }

    /// Path of the client certificate file.
    pub fn client_cert_path(&self) -> &Path {
        &self.inner.client.cert_path
    }

    /// Path of the client private key file.
    pub fn client_key_path(&self) -> &Path {
        &self.inner.client.key_path
    }
}

fn key_pair() -> KeyPair {
    KeyPair::generate().unwrap_or_else(|e| panic!("TestPki: cannot generate a key pair: {e}"))
}

fn common_name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

fn issue(
    issuer: &Issuer<'static, KeyPair>,
    dir: &Path,
    file_stem: &str,
    cn: &str,
    sans: &[&str],
    usages: &[ExtendedKeyUsagePurpose],
) -> ClientCert {
    let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
    let mut params = CertificateParams::new(sans)
        .unwrap_or_else(|e| panic!("TestPki: bad subject alt names for {cn}: {e}"));
    params.distinguished_name = common_name(cn);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = usages.to_vec();
    params.use_authority_key_identifier_extension = true;
    let key = key_pair();
    let cert = params
        .signed_by(&key, issuer)
        .unwrap_or_else(|e| panic!("TestPki: cannot sign the certificate for {cn}: {e}"));
    let out = ClientCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        cert_path: dir.join(format!("{file_stem}.pem")),
        key_path: dir.join(format!("{file_stem}-key.pem")),
    };
    write(&out.cert_path, &out.cert_pem);
    write(&out.key_path, &out.key_pem);
    out
}

fn write(path: &Path, contents: &str) {
    fs::write(path, contents)
        .unwrap_or_else(|e| panic!("TestPki: cannot write {}: {e}", path.display()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_match_the_pem_strings() {
        let pki = TestPki::generate();
        assert!(pki.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(pki.client_key_pem().contains("PRIVATE KEY"));
        let read = |p: &Path| fs::read_to_string(p).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read(&pki.ca_path()), pki.ca_pem());
        assert_eq!(read(pki.server_cert_path()), pki.server_cert_pem());
        assert_eq!(read(pki.server_key_path()), pki.server_key_pem());
        assert_eq!(read(pki.client_cert_path()), pki.client_cert_pem());
        assert_eq!(read(pki.client_key_path()), pki.client_key_pem());
        let extra = pki.issue_client_cert("alice");
        assert_eq!(read(&extra.cert_path), extra.cert_pem);
        assert_ne!(extra.cert_path, pki.client_cert_path());
    }
}
