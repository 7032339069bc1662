//! Who may drive a `serve` instance: the admin token (and the name bound to
//! it), the host names it answers for, TLS, and the rules that tie them to
//! the listen address and to signing — validated once, at start-up, into
//! [`Access`].
//!
//! Why refuse at start-up: an instance that signs, or that listens beyond
//! loopback, publishes for the whole fleet; started without an identity it
//! would sign or publish for anyone who reaches it (or any page their
//! browser opens), so those combinations exit 2 with the reason.
//!
//! | combination | outcome |
//! |---|---|
//! | a token shorter than [`MIN_TOKEN_LEN`] | exit 2 `weak_token` |
//! | `--token-file` readable by group or others | exit 2 `key_permissions` |
//! | `--sign-key` without `--etcd` | exit 2 `sign_key_needs_etcd` |
//! | `--sign-key` without a token | exit 2 `token_required` |
//! | a non-loopback `--listen` without a token | exit 2 `token_required` |
//! | a non-loopback `--listen` without `--tls-cert`/`--tls-key` or `--insecure-http` | exit 2 `tls_required` |
//! | only one of `--tls-cert`, `--tls-key` | exit 2 (clap) |

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use osproxy_observe::PublishNote;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

use super::common::CliError;
use super::trust::{check_private, read_small};
use crate::admin::DEFAULT_TOKEN_NAME;

/// Shortest accepted admin token, in characters: a guessable token is no
/// identity (32 random base64 characters are 192 bits).
pub const MIN_TOKEN_LEN: usize = 32;

/// The admin surface's access flags.
#[derive(Args, Clone, Debug, Default)]
#[command(next_help_heading = "Admin access")]
pub struct AccessArgs {
    /// Bearer token required for everything under /admin (at least 32
    /// characters, compared in constant time). Prefer --token-file or the
    /// environment: a command line is visible to every local user in `ps`.
    #[arg(
        long,
        env = "OSPROXY_ADMIN_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        conflicts_with = "token_file"
    )]
    pub token: Option<String>,
    /// Read the bearer token from this file (its first line; mode 0600 or
    /// stricter). The recommended way to give a token.
    #[arg(long, env = "OSPROXY_ADMIN_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// The name recorded as the author of what is published or rolled back
    /// with the token (without a token: `loopback-unauthenticated`).
    #[arg(long, env = "OSPROXY_ADMIN_TOKEN_NAME", default_value = DEFAULT_TOKEN_NAME, value_name = "NAME")]
    pub token_name: String,
    /// Also answer requests whose Host is this DNS name (repeatable). IP
    /// addresses and `localhost` are always answered; any other name is
    /// refused (421 bad_host), which defeats DNS rebinding.
    #[arg(long = "allowed-host", value_name = "NAME")]
    pub allowed_hosts: Vec<String>,
    /// Serve the admin surface over TLS with this certificate chain (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The TLS certificate's private key (PEM; mode 0600 or stricter).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Allow a non-loopback --listen without TLS: the token then travels in
    /// clear. Only behind a TLS-terminating proxy on the same host.
    #[arg(long)]
    pub insecure_http: bool,
    /// Require the token for /metrics too.
    #[arg(long)]
    pub metrics_need_token: bool,
}

/// The validated access settings.
pub struct Access {
    /// The bearer token, if any.
    pub token: Option<String>,
    /// The name bound to it.
    pub token_name: String,
    /// Extra host names.
    pub allowed_hosts: Vec<String>,
    /// TLS, when configured.
    pub tls: Option<TlsAcceptor>,
    /// Whether `/metrics` needs the token.
    pub metrics_need_token: bool,
}

impl AccessArgs {
    /// Validates the flags against the listen address and the instance's
    /// role (see the module docs).
    ///
    /// # Errors
    /// A usage error (exit 2) naming the rule that was broken.
    pub fn validate(
        &self,
        listen: SocketAddr,
        etcd: bool,
        signs: bool,
    ) -> Result<Access, CliError> {
        let token = match (&self.token, &self.token_file) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(path)) => Some(read_token_file(path)?),
            (None, None) => None,
        };
        if let Some(t) = &token {
            if t.chars().count() < MIN_TOKEN_LEN || t.chars().any(char::is_control) {
                return Err(CliError::usage(
                    "weak_token",
                    format!("the admin token must have at least {MIN_TOKEN_LEN} characters and no control characters"),
                )
                .hint("generate one: head -c 24 /dev/urandom | base64 > token && chmod 600 token"));
            }
        }
        if PublishNote::new().with_author(&self.token_name).is_err() {
            return Err(CliError::usage(
                "invalid_token_name",
                "--token-name must be 1-128 characters of [A-Za-z0-9 ._@+-]",
            ));
        }
        if self.allowed_hosts.iter().any(|h| !is_host_name(h)) {
            return Err(CliError::usage(
                "invalid_allowed_host",
                "--allowed-host takes a DNS name (letters, digits, '-', '.')",
            ));
        }
        if signs && !etcd {
            return Err(CliError::usage(
                "sign_key_needs_etcd",
                "--sign-key signs what this instance publishes into etcd; without --etcd it would sign nothing",
            )
            .hint("add --etcd, or drop --sign-key"));
        }
        if signs && token.is_none() {
            return Err(CliError::usage(
                "token_required",
                "an instance that signs what it publishes needs an admin token: without one it would sign for anyone who reaches it",
            )
            .hint("give --token-file (or OSPROXY_ADMIN_TOKEN)"));
        }
        let exposed = !listen.ip().is_loopback();
        if exposed && token.is_none() {
            return Err(CliError::usage(
                "token_required",
                format!("refusing to listen on non-loopback address {listen} without a token"),
            )
            .hint("give --token-file (or OSPROXY_ADMIN_TOKEN), or listen on 127.0.0.1"));
        }
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
            _ => None,
        };
        if exposed && tls.is_none() && !self.insecure_http {
            return Err(CliError::usage(
                "tls_required",
                format!(
                    "refusing to send the admin token in clear on non-loopback address {listen}"
                ),
            )
            .hint(
                "give --tls-cert and --tls-key, or --insecure-http behind a TLS-terminating proxy",
            ));
        }
        Ok(Access {
            token,
            token_name: self.token_name.clone(),
            allowed_hosts: self.allowed_hosts.clone(),
            tls,
            metrics_need_token: self.metrics_need_token,
        })
    }
}

/// The token in `path`: its first line, trimmed; the file must be private.
fn read_token_file(path: &Path) -> Result<String, CliError> {
    check_private(path)?;
    let text = read_small(path)?;
    Ok(text.lines().next().unwrap_or_default().trim().to_owned())
}

/// Whether `name` is a plausible DNS name (so a typo is caught at start-up).
fn is_host_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// A TLS acceptor over the PEM certificate chain and key.
fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, CliError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |slug: &'static str, path: &Path| {
        CliError::usage(slug, format!("cannot use {} for TLS", path.display()))
    };
    check_private(key)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad("invalid_tls_cert", cert).caused_by(&e))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad("invalid_tls_cert", cert).caused_by(&e))?;
    if chain.is_empty() {
        return Err(bad("invalid_tls_cert", cert));
    }
    let private =
        PrivateKeyDer::from_pem_file(key).map_err(|e| bad("invalid_tls_key", key).caused_by(&e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("invalid_tls_key", key).caused_by(&e))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| bad("invalid_tls_key", key).caused_by(&e))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    fn args(token: Option<&str>) -> AccessArgs {
        AccessArgs {
            token: token.map(str::to_owned),
            token_name: DEFAULT_TOKEN_NAME.to_owned(),
            ..AccessArgs::default()
        }
    }

    fn slug(r: Result<Access, CliError>) -> &'static str {
        match r {
            Ok(_) => "ok",
            Err(e) => e.slug,
        }
    }

    #[test]
    fn exposure_and_identity_rules() {
        let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let v6_loopback: SocketAddr = "[::1]:0".parse().unwrap();
        let public: SocketAddr = "0.0.0.0:9464".parse().unwrap();
        assert_eq!(slug(args(None).validate(loopback, false, false)), "ok");
        assert_eq!(slug(args(None).validate(v6_loopback, true, false)), "ok");
        assert_eq!(
            slug(args(None).validate(public, false, false)),
            "token_required"
        );
        assert_eq!(
            slug(args(Some(TOKEN)).validate(public, false, false)),
            "tls_required"
        );
        let mut insecure = args(Some(TOKEN));
        insecure.insecure_http = true;
        assert_eq!(slug(insecure.validate(public, false, false)), "ok");
        assert_eq!(
            slug(args(Some("")).validate(loopback, false, false)),
            "weak_token"
        );
        assert_eq!(
            slug(args(Some("a")).validate(loopback, false, false)),
            "weak_token"
        );
        assert_eq!(
            slug(args(None).validate(loopback, false, true)),
            "sign_key_needs_etcd"
        );
        assert_eq!(
            slug(args(None).validate(loopback, true, true)),
            "token_required"
        );
        assert_eq!(slug(args(Some(TOKEN)).validate(loopback, true, true)), "ok");
        let mut named = args(Some(TOKEN));
        named.token_name = "bad\nname".into();
        assert_eq!(
            slug(named.validate(loopback, false, false)),
            "invalid_token_name"
        );
        let mut hosts = args(None);
        hosts.allowed_hosts = vec!["ops.example".into(), "bad host".into()];
        assert_eq!(
            slug(hosts.validate(loopback, false, false)),
            "invalid_allowed_host"
        );
    }
}
