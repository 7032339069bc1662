//! [`EtcdStoreBuilder`]: every option of the store, given one by one,
//! checked once into [`StoreOptions`].
//!
//! Two options that would silently replace or void one another (a whole
//! connection over endpoints or settings given otherwise, a fail-safe level
//! without a fail-safe) are refused as [`ConfigError::Conflict`] when the
//! options are checked, never resolved by the order of the calls.

use std::sync::Arc;
use std::time::Duration;

use osproxy_observe::{DecodeLimits, DiagLevel, TrustStore};
use tokio::runtime::Handle;

use crate::backoff::BackoffPolicy;
use crate::config::{
    normalize_endpoint, ConnectionConfig, Credentials, StoreConfig, StoreOptions, TlsConfig,
};
use crate::error::{ConfigError, EtcdError};
use crate::instance::InstanceReport;
use crate::safety::{Ceilings, FailsafePolicy, DEFAULT_FAILSAFE_LEVEL};
use crate::store::{start, EtcdDirectiveStore};

/// Options for [`EtcdDirectiveStore`]; see [`crate::config`] for defaults.
#[derive(Debug)]
#[must_use = "a builder does nothing until `connect` is awaited"]
pub struct EtcdStoreBuilder {
    config: StoreConfig,
    runtime: Option<Handle>,
    failsafe_after: Option<Duration>,
    failsafe_level: Option<DiagLevel>,
    /// The connection settings given one by one so far (for
    /// [`connection`](Self::connection), which would replace them).
    connection_set: Vec<&'static str>,
    /// Options given together that cannot be (reported by `options`).
    conflict: Option<ConfigError>,
}

impl EtcdStoreBuilder {
    /// Bound on `connect` and on each reconnect attempt. Default 5 s.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.config.connection.connect_timeout = d;
        self.connection_set.push("connect timeout");
        self
    }

    /// Every connection option at once (endpoints, timeouts, keepalive, TLS,
    /// credentials): a validated [`crate::config::Connection`] (e.g. one
    /// already shared with a [`crate::publisher::Publisher`]) or plain
    /// settings, which `connect` validates. Settings given one by one after
    /// it apply on top of it.
    ///
    /// It never silently replaces what was given before: endpoints given to
    /// [`EtcdDirectiveStore::builder`] must be the same ones (or none: see
    /// [`EtcdDirectiveStore::builder_for`]), and a connection setting given
    /// one by one before it, or a second `connection`, is refused as
    /// [`ConfigError::Conflict`] when the options are checked.
    pub fn connection(mut self, connection: impl Into<ConnectionConfig>) -> Self {
        let connection = connection.into();
        let given = &self.config.connection.endpoints;
        let tls = connection.tls.is_some();
        let same_endpoints = given.is_empty()
            || given
                .iter()
                .map(|e| normalize_endpoint(e, tls))
                .collect::<Result<Vec<_>, _>>()
                .is_ok_and(|given| {
                    connection
                        .endpoints
                        .iter()
                        .map(|e| normalize_endpoint(e, tls))
                        .collect::<Result<Vec<_>, _>>()
                        .is_ok_and(|new| new == given)
                });
        let why = if self.connection_set.contains(&"connection") {
            Some("is given twice: the second would replace the first")
        } else if !self.connection_set.is_empty() {
            Some("would replace the connection settings given one by one before it: give them once")
        } else if !same_endpoints {
            Some("would replace the other endpoints given to the builder: give them once")
        } else {
            None
        };
        if let Some(why) = why {
            self.conflict.get_or_insert(ConfigError::Conflict {
                option: "connection",
                why,
            });
        }
        self.config.connection = connection;
        self.connection_set.push("connection");
        self
    }

    /// Bound on each unary request. Default 5 s.
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.config.connection.request_timeout = d;
        self.connection_set.push("request timeout");
        self
    }

    /// HTTP/2 keepalive ping interval (≥ 5 s) and timeout. Default 20 s / 5 s:
    /// a backstop, since progress replies keep a healthy watch busier than that.
    pub fn keepalive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.config.connection.keepalive_interval = interval;
        self.config.connection.keepalive_timeout = timeout;
        self.connection_set.push("keepalive");
        self
    }

    /// The staleness bound: a watch silent this long is replaced. Default 15 s.
    pub fn stale_after(mut self, d: Duration) -> Self {
        self.config.stale_after = d;
        self
    }

    /// Silence after which etcd is asked to confirm the watch. Default 10 s;
    /// must be shorter than [`stale_after`](Self::stale_after).
    pub fn progress_interval(mut self, d: Duration) -> Self {
        self.config.progress_interval = d;
        self
    }

    /// Reconnect delay bounds. Default 100 ms to 10 s.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.config.backoff = BackoffPolicy { initial, max };
        self
    }

    /// TLS material; endpoints become `https://`.
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.config.connection.tls = Some(tls);
        self.connection_set.push("tls");
        self
    }

    /// etcd user and password.
    pub fn credentials(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.config.connection.credentials = Some(Credentials {
            user: user.into(),
            password: password.into(),
        });
        self.connection_set.push("credentials");
        self
    }

    /// Decoder limits (lifetime cap, sizes).
    pub fn decode_limits(mut self, limits: DecodeLimits) -> Self {
        self.config.decode_limits = limits;
        self
    }

    /// Engages the fail-safe after `after` without confirmation from etcd:
    /// directives above the fail-safe level (default
    /// [`DEFAULT_FAILSAFE_LEVEL`](crate::safety::DEFAULT_FAILSAFE_LEVEL),
    /// see [`failsafe_level`](Self::failsafe_level)) and any asking for
    /// capture or ring buffer stop applying until etcd confirms freshness
    /// again; then the current set applies with its original expiries.
    /// Default off: the last good set keeps serving through any outage.
    pub fn failsafe_after(mut self, after: Duration) -> Self {
        self.failsafe_after = Some(after);
        self
    }

    /// The highest level that keeps applying while the fail-safe is engaged.
    /// Only with [`failsafe_after`](Self::failsafe_after): alone it would
    /// mean nothing, and is refused as [`ConfigError::Conflict`].
    pub fn failsafe_level(mut self, level: DiagLevel) -> Self {
        self.failsafe_level = Some(level);
        self
    }

    /// Local ceilings every applied set is clamped to (reported in
    /// [`StoreStatus::clamped`](crate::StoreStatus::clamped)). Default: none.
    pub fn ceilings(mut self, ceilings: Ceilings) -> Self {
        self.config.ceilings = ceilings;
        self
    }

    /// Applies only values signed by a key in `trust` (SPEC §9): an
    /// unsigned value is rejected as `unsigned`, a bad or foreign signature
    /// as `bad_signature` / `unknown_key`, and the last good set keeps
    /// serving. Default: none (a signed value's payload applies unchecked).
    ///
    /// Signed format v2 adds anti-rollback: a value whose sequence is below
    /// the highest accepted is `replayed`; in the prefix layout a key the
    /// signed manifest does not list with its value's hash is
    /// `not_in_manifest` (see [`state_dir`](Self::state_dir) and
    /// [`TrustStore::requiring_signed_v2`]).
    pub fn trust_store(mut self, trust: TrustStore) -> Self {
        self.config.trust = Some(Arc::new(trust));
        self
    }

    /// Keeps the anti-rollback high-water mark (signed format v2, see
    /// `osproxy_observe::signed`) in `dir`, so that after a restart a value
    /// older than the newest this instance accepted is still refused
    /// (`replayed`). The directory must exist; one small file per key or
    /// prefix is replaced atomically. Without it the mark lives in memory,
    /// and a fresh start refuses only values signed longer ago than the
    /// longest directive lifetime (`stale_signature`).
    pub fn state_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.config.state_dir = Some(dir.into());
        self
    }

    /// Report this instance's status under a leased key.
    pub fn instance(mut self, report: InstanceReport) -> Self {
        self.config.instance = Some(report);
        self
    }

    /// Runs the background task on this runtime instead of the current one.
    pub fn runtime(mut self, handle: Handle) -> Self {
        self.runtime = Some(handle);
        self
    }

    /// Checks every option once, into the [`StoreOptions`] the store runs
    /// with (see [`EtcdDirectiveStore::connect_with`]); nothing is connected.
    ///
    /// # Errors
    /// The first [`ConfigError`] found, a [`ConfigError::Conflict`] for
    /// options given together that cannot be first.
    pub fn options(&self) -> Result<StoreOptions, ConfigError> {
        if let Some(conflict) = &self.conflict {
            return Err(conflict.clone());
        }
        let mut config = self.config.clone();
        config.failsafe = match (self.failsafe_after, self.failsafe_level) {
            (Some(after), level) => Some(FailsafePolicy {
                after,
                level: level.unwrap_or(DEFAULT_FAILSAFE_LEVEL),
            }),
            (None, Some(_)) => {
                return Err(ConfigError::Conflict {
                    option: "failsafe level",
                    why: "has no effect without failsafe after (the fail-safe never engages)",
                })
            }
            (None, None) => None,
        };
        StoreOptions::try_from(config)
    }

    /// Checks the options, reads the key and starts the watch.
    ///
    /// # Errors
    /// As [`EtcdDirectiveStore::connect`].
    pub async fn connect(self) -> Result<EtcdDirectiveStore, EtcdError> {
        let options = self.options()?;
        let runtime = match self.runtime {
            Some(h) => h,
            None => Handle::current(),
        };
        start(options, runtime).await
    }
}

impl EtcdStoreBuilder {
    /// A builder over `config` (every option at its default but what the
    /// constructor was given).
    pub(crate) fn new(config: StoreConfig) -> Self {
        EtcdStoreBuilder {
            config,
            runtime: None,
            failsafe_after: None,
            failsafe_level: None,
            connection_set: Vec::new(),
            conflict: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use osproxy_core::ManualClock;

    use super::*;
    use crate::config::{Connection, Layout};

    fn eps(e: &[&str]) -> Vec<String> {
        e.iter().map(|&e| e.to_owned()).collect()
    }

    fn builder(endpoints: &[&str]) -> EtcdStoreBuilder {
        EtcdDirectiveStore::builder(
            &eps(endpoints),
            Layout::Key("/d".into()),
            Arc::new(ManualClock::new()),
        )
    }

    fn connection(endpoints: &[&str]) -> Connection {
        Connection::try_from(ConnectionConfig::new(&eps(endpoints))).unwrap()
    }

    fn conflict(b: &EtcdStoreBuilder) -> (&'static str, &'static str) {
        match b.options() {
            Err(ConfigError::Conflict { option, why }) => (option, why),
            other => panic!("expected a conflict, got {other:?}"),
        }
    }

    #[test]
    fn a_connection_never_silently_replaces_other_settings() {
        // One way: a validated connection, or the same endpoints twice.
        let c = connection(&["127.0.0.1:1"]);
        let o = EtcdDirectiveStore::builder_for(c.clone(), Layout::Key("/d".into()), {
            Arc::new(ManualClock::new())
        })
        .options()
        .unwrap();
        assert_eq!(o.connection().endpoints(), ["http://127.0.0.1:1"]);
        assert!(builder(&["http://127.0.0.1:1/"])
            .connection(c.clone())
            .options()
            .is_ok());
        // Settings given one by one after it apply on top of it.
        let o = builder(&[])
            .connection(c.clone())
            .request_timeout(Duration::from_secs(2))
            .options()
            .unwrap();
        assert_eq!(o.connection().request_timeout(), Duration::from_secs(2));

        let (option, why) = conflict(&builder(&["127.0.0.1:2"]).connection(c.clone()));
        assert_eq!(option, "connection");
        assert!(why.contains("endpoints"), "{why}");
        let (_, why) = conflict(
            &builder(&["127.0.0.1:1"])
                .connect_timeout(Duration::from_secs(1))
                .connection(c.clone()),
        );
        assert!(why.contains("one by one"), "{why}");
        let (_, why) = conflict(&builder(&[]).connection(c.clone()).connection(c));
        assert!(why.contains("twice"), "{why}");
        // The error says which option and why.
        let e = builder(&["127.0.0.1:2"])
            .connection(connection(&["127.0.0.1:1"]))
            .options()
            .unwrap_err();
        assert!(e.to_string().starts_with("connection would replace"), "{e}");
    }

    #[test]
    fn a_failsafe_level_alone_is_refused_and_defaults_with_a_delay() {
        let (option, why) = conflict(&builder(&["127.0.0.1:1"]).failsafe_level(DiagLevel::Off));
        assert_eq!(option, "failsafe level");
        assert!(why.contains("without failsafe after"), "{why}");
        let o = builder(&["127.0.0.1:1"])
            .failsafe_after(Duration::from_secs(30))
            .options()
            .unwrap();
        assert_eq!(
            o.failsafe(),
            Some(FailsafePolicy::after(Duration::from_secs(30)))
        );
        let o = builder(&["127.0.0.1:1"])
            .failsafe_level(DiagLevel::ShapeTiming)
            .failsafe_after(Duration::from_secs(30))
            .options()
            .unwrap();
        assert_eq!(o.failsafe().map(|f| f.level), Some(DiagLevel::ShapeTiming));
        assert!(matches!(
            builder(&["127.0.0.1:1"])
                .failsafe_after(Duration::ZERO)
                .options(),
            Err(ConfigError::Range {
                option: "failsafe after",
                ..
            })
        ));
    }
}
