//! Every option of the etcd store, with its default, validated once when the
//! store is built so that a bad option fails at start, not in the background.
//!
//! Configuration flows one way: plain data as given, checked once into a
//! type whose fields are private and whose only constructor is the check.
//! - The connection settings ([`ConnectionConfig`]) become a [`Connection`]
//!   only through [`Connection::try_from`] (or [`ConnectionConfig::validate`]):
//!   the store, the publisher and the CLI take a `Connection` (or settings
//!   they turn into one), so no caller checks the settings itself.
//! - The store's options ([`StoreConfig`], which the builder fills in) become
//!   [`StoreOptions`] only through [`StoreOptions::try_from`]; the store runs
//!   with them and hands them out ([`crate::EtcdDirectiveStore::options`],
//!   `is_fresh`, `connection`, `ceilings`), so whoever is given the store
//!   needs nothing passed beside it.
//!
//! | option | default | meaning |
//! |---|---|---|
//! | endpoints | (required) | `host:port` or `http(s)://host:port`; one is used at a time |
//! | layout | (required) | [`Layout::Key`] (the whole set in one value) or [`Layout::Prefix`] |
//! | connect timeout | 5 s | bound on `connect` and on each reconnect attempt |
//! | request timeout | 5 s | bound on each unary request (reads, status writes) |
//! | keepalive interval / timeout | 20 s / 5 s | HTTP/2 pings after this much silence on the connection; interval ≥ 5 s (etcd's minimum). A backstop: while a watch is healthy, progress replies keep the connection from ever being that silent |
//! | stale after | 15 s | silence on the watch after which the connection is dropped |
//! | progress interval | 10 s | silence after which etcd is asked to confirm the watch (the idle cost of a store: one small round trip per interval) |
//! | backoff | 100 ms – 10 s | jittered exponential reconnect delay |
//! | TLS | off | CA (required), optional client certificate and key |
//! | user / password | none | etcd authentication |
//! | decode limits | SPEC §2 | body size, directive count, lifetime cap |
//! | state dir | none | where the signed format v2 high-water mark survives restarts |

use std::time::Duration;

use crate::error::ConfigError;

mod store;

pub use store::{StoreConfig, StoreOptions};

/// Where the directives live in etcd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Layout {
    /// The seed's layout: the whole set (`{"directives":[…]}`) in one value.
    Key(String),
    /// One directive object per key under this prefix; operators add and
    /// remove directives independently and a malformed key is rejected alone.
    /// The prefix must end in `/` ([`Layout::validate`]), and each key's
    /// suffix must be its directive's id (else `key_id_mismatch`).
    Prefix(String),
}

impl Layout {
    /// The key or prefix.
    pub fn key(&self) -> &str {
        match self {
            Layout::Key(k) | Layout::Prefix(k) => k,
        }
    }

    /// Checks the key or prefix: not empty, and a prefix ends in `/` (a
    /// prefix `/env/prod` would also take every key of `/env/prod-staging/`).
    ///
    /// # Errors
    /// [`ConfigError::EmptyKey`], [`ConfigError::PrefixWithoutSlash`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self {
            Layout::Key(k) | Layout::Prefix(k) if k.is_empty() => Err(ConfigError::EmptyKey),
            Layout::Prefix(p) if !p.ends_with('/') => {
                Err(ConfigError::PrefixWithoutSlash(p.clone()))
            }
            _ => Ok(()),
        }
    }

    /// Whether this is the prefix layout.
    pub fn is_prefix(&self) -> bool {
        matches!(self, Layout::Prefix(_))
    }

    /// The *revision marker* of this layout: a key every publisher of this
    /// crate writes in the same transaction as each change (puts and deletes
    /// alike), so that the live revision moves on deletes too (see
    /// [`crate::publisher`]). It sits next to the directives, outside the
    /// watched key or prefix (instances never read it), and differs per
    /// layout:
    ///
    /// | layout | directives | marker |
    /// |---|---|---|
    /// | key | `/osproxy/directives` | `/osproxy/directives.revision` |
    /// | prefix | `/osproxy/directives/` | `/osproxy/directives.prefix-revision` |
    ///
    /// etcd permissions granted on the parent path (e.g. `/osproxy/`) cover it.
    pub fn revision_key(&self) -> String {
        match self {
            Layout::Key(k) => format!("{k}.revision"),
            Layout::Prefix(p) => prefix_revision_key(p),
        }
    }

    /// Options that read this layout: the key, or every key under the prefix.
    pub(crate) fn get_options(&self) -> etcd_client::GetOptions {
        let o = etcd_client::GetOptions::new();
        if self.is_prefix() {
            o.with_prefix()
        } else {
            o
        }
    }

    /// Options that watch this layout from `start_revision`.
    pub(crate) fn watch_options(&self, start_revision: i64) -> etcd_client::WatchOptions {
        let o = etcd_client::WatchOptions::new().with_start_revision(start_revision);
        if self.is_prefix() {
            o.with_prefix()
        } else {
            o
        }
    }
}

/// The marker of a prefix: a sibling key that never starts with the prefix.
fn prefix_revision_key(prefix: &str) -> String {
    if let Some(parent) = prefix.strip_suffix('/') {
        return format!("{parent}.prefix-revision");
    }
    let (dir, name) = prefix.split_at(prefix.rfind('/').map_or(0, |i| i + 1));
    let marker = format!("{dir}.{name}.prefix-revision");
    if marker.starts_with(prefix) {
        // Only for names made of dots; a control byte cannot be a dot.
        format!("{dir}\u{1}{name}.prefix-revision")
    } else {
        marker
    }
}

/// TLS material, as PEM.
#[derive(Clone, Default)]
pub struct TlsConfig {
    /// CA bundle that signs the etcd server certificates (required with TLS).
    pub ca_pem: Option<Vec<u8>>,
    /// Client certificate chain, for etcd's `--client-cert-auth`.
    pub client_cert_pem: Option<Vec<u8>>,
    /// The client certificate's private key.
    pub client_key_pem: Option<Vec<u8>>,
    /// Server name to verify, when it differs from the endpoint's host.
    pub domain_name: Option<String>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("ca", &self.ca_pem.is_some())
            .field("client_cert", &self.client_cert_pem.is_some())
            .field("client_key", &"<redacted>")
            .field("domain_name", &self.domain_name)
            .finish()
    }
}

impl TlsConfig {
    /// Reads PEM files.
    ///
    /// # Errors
    /// [`ConfigError::TlsFile`] naming the unreadable file.
    pub fn from_files(
        ca: Option<&std::path::Path>,
        cert: Option<&std::path::Path>,
        key: Option<&std::path::Path>,
    ) -> Result<Self, ConfigError> {
        let read = |p: Option<&std::path::Path>| {
            p.map(|p| {
                std::fs::read(p).map_err(|_| ConfigError::TlsFile {
                    path: p.display().to_string(),
                })
            })
            .transpose()
        };
        Ok(TlsConfig {
            ca_pem: read(ca)?,
            client_cert_pem: read(cert)?,
            client_key_pem: read(key)?,
            domain_name: None,
        })
    }
}

/// etcd user credentials.
#[derive(Clone)]
pub struct Credentials {
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Everything that says how to reach etcd, as given (not yet checked): turn it
/// into a [`Connection`] to use it. Shared by the store, the publisher and
/// the instance status reporter.
#[derive(Clone, Debug)]
pub struct ConnectionConfig {
    /// Normalised endpoints (`http(s)://host:port`).
    pub endpoints: Vec<String>,
    /// Bound on connecting (and authenticating) to one endpoint.
    pub connect_timeout: Duration,
    /// Bound on each unary request.
    pub request_timeout: Duration,
    /// HTTP/2 keepalive ping interval.
    pub keepalive_interval: Duration,
    /// How long a keepalive ping may go unanswered.
    pub keepalive_timeout: Duration,
    /// TLS, when the endpoints are `https://`.
    pub tls: Option<TlsConfig>,
    /// Authentication.
    pub credentials: Option<Credentials>,
}

/// Default connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default request timeout.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Default HTTP/2 keepalive interval.
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// Default HTTP/2 keepalive timeout.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default staleness bound.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(15);
/// Default progress-request interval.
pub const DEFAULT_PROGRESS_INTERVAL: Duration = Duration::from_secs(10);
/// etcd closes connections that ping more often than this ("too_many_pings").
pub const MIN_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);

impl ConnectionConfig {
    /// Defaults for these endpoints (not yet normalised: see [`Self::validate`]).
    pub fn new(endpoints: &[String]) -> Self {
        ConnectionConfig {
            endpoints: endpoints.to_vec(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            keepalive_interval: DEFAULT_KEEPALIVE_INTERVAL,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            tls: None,
            credentials: None,
        }
    }

    /// Checks every option and normalises the endpoints to
    /// `http(s)://host:port`: the same as [`Connection::try_from`].
    ///
    /// # Errors
    /// The first [`ConfigError`] found.
    pub fn validate(self) -> Result<Connection, ConfigError> {
        Connection::try_from(self)
    }
}

/// Connection settings that passed every check, with the endpoints
/// normalised to `http(s)://host:port`. Its only constructor is
/// [`Connection::try_from`] a [`ConnectionConfig`] (which
/// [`ConnectionConfig::validate`] calls), so holding one proves the settings
/// are valid; read them through the accessors or [`Connection::settings`].
///
/// # Examples
/// ```
/// use osproxy_etcd::config::{Connection, ConnectionConfig};
///
/// let c = Connection::try_from(ConnectionConfig::new(&["127.0.0.1:2379".to_owned()]))?;
/// assert_eq!(c.endpoints(), ["http://127.0.0.1:2379"]);
/// assert!(Connection::try_from(ConnectionConfig::new(&[])).is_err());
/// # Ok::<(), osproxy_etcd::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Connection {
    settings: ConnectionConfig,
}

impl Connection {
    /// The normalised endpoints (`http(s)://host:port`), never empty.
    pub fn endpoints(&self) -> &[String] {
        &self.settings.endpoints
    }

    /// Bound on connecting (and authenticating) to one endpoint; above zero.
    pub fn connect_timeout(&self) -> Duration {
        self.settings.connect_timeout
    }

    /// Bound on each unary request; above zero.
    pub fn request_timeout(&self) -> Duration {
        self.settings.request_timeout
    }

    /// TLS, when the endpoints are `https://` (with a CA bundle).
    pub fn tls(&self) -> Option<&TlsConfig> {
        self.settings.tls.as_ref()
    }

    /// Every setting, as validated.
    pub fn settings(&self) -> &ConnectionConfig {
        &self.settings
    }
}

impl From<Connection> for ConnectionConfig {
    /// The validated settings, back as plain data (e.g. to change one and
    /// validate again).
    fn from(c: Connection) -> Self {
        c.settings
    }
}

impl TryFrom<ConnectionConfig> for Connection {
    type Error = ConfigError;

    /// Checks every option and normalises the endpoints.
    ///
    /// # Errors
    /// The first [`ConfigError`] found.
    fn try_from(mut c: ConnectionConfig) -> Result<Self, ConfigError> {
        if c.endpoints.is_empty() {
            return Err(ConfigError::NoEndpoints);
        }
        let tls = c.tls.is_some();
        c.endpoints = c
            .endpoints
            .iter()
            .map(|e| normalize_endpoint(e, tls))
            .collect::<Result<_, _>>()?;
        nonzero("connect timeout", c.connect_timeout)?;
        nonzero("request timeout", c.request_timeout)?;
        nonzero("keepalive timeout", c.keepalive_timeout)?;
        if c.keepalive_interval < MIN_KEEPALIVE_INTERVAL {
            return Err(ConfigError::Range {
                option: "keepalive interval",
                why: "must be at least 5 s, or etcd closes the connection (too_many_pings)",
            });
        }
        if let Some(t) = &c.tls {
            if t.client_cert_pem.is_some() != t.client_key_pem.is_some() {
                return Err(ConfigError::IncompleteIdentity);
            }
            if t.ca_pem.is_none() {
                return Err(ConfigError::MissingCa);
            }
        }
        Ok(Connection { settings: c })
    }
}

pub(crate) fn nonzero(option: &'static str, d: Duration) -> Result<(), ConfigError> {
    if d.is_zero() {
        return Err(ConfigError::Range {
            option,
            why: "must be above zero",
        });
    }
    Ok(())
}

/// `host:port` → `http://host:port` (or `https://` with TLS); a given scheme
/// must agree with the TLS setting.
///
/// # Errors
/// [`ConfigError::BadEndpoint`] or [`ConfigError::SchemeMismatch`].
pub fn normalize_endpoint(endpoint: &str, tls: bool) -> Result<String, ConfigError> {
    let e = endpoint.trim();
    let (scheme, rest) = match e.split_once("://") {
        Some(("http", rest)) if !tls => ("http", rest),
        Some(("https", rest)) if tls => ("https", rest),
        Some(("http" | "https", _)) => return Err(ConfigError::SchemeMismatch(e.to_owned())),
        Some(_) => return Err(ConfigError::BadEndpoint(e.to_owned())),
        None => (if tls { "https" } else { "http" }, e),
    };
    let rest = rest.trim_end_matches('/');
    let valid = rest
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0))
        && !rest.contains('/');
    if !valid {
        return Err(ConfigError::BadEndpoint(e.to_owned()));
    }
    Ok(format!("{scheme}://{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_normalised() {
        assert_eq!(
            normalize_endpoint("127.0.0.1:2379", false).unwrap(),
            "http://127.0.0.1:2379"
        );
        assert_eq!(
            normalize_endpoint("127.0.0.1:2379", true).unwrap(),
            "https://127.0.0.1:2379"
        );
        assert_eq!(
            normalize_endpoint("http://localhost:1/", false).unwrap(),
            "http://localhost:1"
        );
        assert_eq!(
            normalize_endpoint("[::1]:2379", false).unwrap(),
            "http://[::1]:2379"
        );
        for bad in [
            "",
            "host",
            "host:",
            ":1",
            "host:0",
            "host:99999",
            "ftp://h:1",
            "h:1/x",
        ] {
            assert!(normalize_endpoint(bad, false).is_err(), "{bad}");
        }
        assert_eq!(
            normalize_endpoint("https://h:1", false),
            Err(ConfigError::SchemeMismatch("https://h:1".into()))
        );
    }

    #[test]
    fn revision_markers_sit_outside_the_watched_range_and_differ_per_layout() {
        for p in [
            "/osproxy/directives/",
            "/",
            "//",
            "d/",
            "/x/./",
            "./",
            "/a.b/",
        ] {
            assert_eq!(Layout::Prefix(p.into()).validate(), Ok(()), "{p}");
            let marker = Layout::Prefix(p.into()).revision_key();
            assert!(!marker.starts_with(p), "{p} -> {marker}");
        }
        assert_eq!(
            Layout::Prefix("/osproxy/directives/".into()).revision_key(),
            "/osproxy/directives.prefix-revision"
        );
        assert_eq!(
            Layout::Key("/osproxy/directives".into()).revision_key(),
            "/osproxy/directives.revision"
        );
        assert_ne!(
            Layout::Key("/osproxy/directives".into()).revision_key(),
            Layout::Prefix("/osproxy/directives/".into()).revision_key()
        );
    }

    #[test]
    fn a_prefix_must_end_in_a_slash() {
        for p in ["/env/prod", "/osproxy/d", "d", "/x/.", "/x/.."] {
            assert_eq!(
                Layout::Prefix(p.into()).validate(),
                Err(ConfigError::PrefixWithoutSlash(p.into())),
                "{p}"
            );
        }
        assert_eq!(
            Layout::Prefix(String::new()).validate(),
            Err(ConfigError::EmptyKey)
        );
        assert_eq!(
            Layout::Key(String::new()).validate(),
            Err(ConfigError::EmptyKey)
        );
        // A key is a key: no slash rule.
        assert_eq!(Layout::Key("/env/prod".into()).validate(), Ok(()));
    }

    #[test]
    fn keepalive_below_etcd_minimum_is_rejected() {
        let mut c = ConnectionConfig::new(&["127.0.0.1:1".to_owned()]);
        c.keepalive_interval = Duration::from_secs(1);
        assert!(matches!(c.validate(), Err(ConfigError::Range { .. })));
    }
}
