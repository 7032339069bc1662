//! [`EtcdDirectiveStore`]: the seed's constructor, the builder for every
//! option, and the handle a proxy keeps.
//!
//! `connect` is fail-fast: it reads the key before returning, within the
//! connect timeout, trying each endpoint in turn. From then on the store is
//! fail-safe: the background watcher keeps the last good snapshot serving
//! through any outage and converges once etcd is back.
//!
//! The builder checks its options once, into [`StoreOptions`]
//! ([`EtcdStoreBuilder::options`]); two options that would silently replace
//! or void one another (a whole connection over endpoints given otherwise, a
//! fail-safe level without a fail-safe) are refused there as
//! [`ConfigError::Conflict`], never resolved by order.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use osproxy_core::Clock;
use osproxy_observe::{
    DecodeLimits, DiagLevel, DirectiveReader, DirectiveSet, DirectiveStore, SharedDirectiveSet,
    Snapshot, TrustStore,
};
use tokio::runtime::Handle;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::Instrument;

use crate::backoff::{Backoff, BackoffPolicy};
use crate::config::{
    normalize_endpoint, Connection, ConnectionConfig, Credentials, Layout, StoreConfig,
    StoreOptions, TlsConfig, DEFAULT_PROGRESS_INTERVAL, DEFAULT_STALE_AFTER,
};
use crate::connection;
use crate::error::{ConfigError, EtcdError};
use crate::follow::rollback::HighWater;
use crate::follow::shared::SharedDecodes;
use crate::follow::Follower;
use crate::instance::{InstanceReport, InstanceReporter};
use crate::safety::{Ceilings, FailsafePolicy, DEFAULT_FAILSAFE_LEVEL};
use crate::serving::Serving;
use crate::status::{StatusCell, StoreStatus};
use crate::timers;
use crate::watcher::{Established, Watcher};

/// A directive store fed by etcd: a locally cached snapshot kept fresh by a
/// watch. Cheap to clone; every clone shares one connection and one
/// background task, which stop when the last clone drops.
#[derive(Clone)]
pub struct EtcdDirectiveStore {
    inner: Arc<Inner>,
}

struct Inner {
    shared: SharedDirectiveSet,
    status: Arc<StatusCell>,
    /// The options the store was started with, as checked.
    options: StoreOptions,
    /// Cancels the watcher when the last handle drops.
    _stop: DropGuard,
}

impl fmt::Debug for EtcdDirectiveStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.status();
        f.debug_struct("EtcdDirectiveStore")
            .field("endpoints", &self.inner.options.connection().endpoints())
            .field("layout", self.inner.options.layout())
            .field("applied_revision", &status.applied_revision)
            .field("connected", &status.connected)
            .finish()
    }
}

impl EtcdDirectiveStore {
    /// Connects to `endpoints`, reads the directive set at `key` and starts
    /// the background watch that keeps it fresh (the seed's constructor; every
    /// option at its default).
    ///
    /// A missing key is the empty set; a malformed value is the empty set too,
    /// reported in [`status`](Self::status).
    ///
    /// # Errors
    /// [`EtcdError::Connect`] when no endpoint answers the read within the
    /// connect timeout (5 s), naming the endpoints and the cause;
    /// [`EtcdError::Config`] for an invalid endpoint or an empty key.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn f() -> Result<(), osproxy_etcd::EtcdError> {
    /// use std::sync::Arc;
    /// use osproxy_core::SystemClock;
    /// use osproxy_etcd::EtcdDirectiveStore;
    /// use osproxy_observe::DirectiveStore;
    ///
    /// let endpoints = vec!["127.0.0.1:2379".to_owned()];
    /// let store = EtcdDirectiveStore::connect(&endpoints, "/osproxy/directives",
    ///     Arc::new(SystemClock)).await?;
    /// println!("{} directives", store.load().len());
    /// # Ok(()) }
    /// ```
    pub async fn connect(
        endpoints: &[String],
        key: impl Into<String>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, EtcdError> {
        Self::builder(endpoints, Layout::Key(key.into()), clock)
            .connect()
            .await
    }

    /// A builder with every option at its default, reaching etcd at
    /// `endpoints` (the connection settings are then given one by one:
    /// [`connect_timeout`](EtcdStoreBuilder::connect_timeout),
    /// [`tls`](EtcdStoreBuilder::tls), …). To reach etcd with settings
    /// already validated (e.g. shared with a [`crate::Publisher`]), see
    /// [`builder_for`](Self::builder_for).
    pub fn builder(
        endpoints: &[String],
        layout: Layout,
        clock: Arc<dyn Clock>,
    ) -> EtcdStoreBuilder {
        EtcdStoreBuilder {
            config: StoreConfig {
                connection: ConnectionConfig::new(endpoints),
                layout,
                stale_after: DEFAULT_STALE_AFTER,
                progress_interval: DEFAULT_PROGRESS_INTERVAL,
                backoff: BackoffPolicy::default(),
                decode_limits: DecodeLimits::default(),
                instance: None,
                failsafe: None,
                ceilings: Ceilings::NONE,
                trust: None,
                state_dir: None,
                clock,
            },
            runtime: None,
            failsafe_after: None,
            failsafe_level: None,
            connection_set: Vec::new(),
            conflict: None,
        }
    }

    /// A builder with every option at its default, reaching etcd with
    /// `connection` (endpoints, timeouts, keepalive, TLS, credentials, as
    /// validated): the one way to hand the store settings already checked.
    pub fn builder_for(
        connection: Connection,
        layout: Layout,
        clock: Arc<dyn Clock>,
    ) -> EtcdStoreBuilder {
        Self::builder(&[], layout, clock).connection(connection)
    }

    /// Starts a store with options already checked (see
    /// [`EtcdStoreBuilder::options`]) on the current runtime: reads the key
    /// and starts the watch.
    ///
    /// # Errors
    /// As [`connect`](Self::connect), but never [`EtcdError::Config`] for
    /// the options themselves (only an unusable state directory).
    pub async fn connect_with(options: StoreOptions) -> Result<Self, EtcdError> {
        start(options, Handle::current()).await
    }

    /// A snapshot of the store's health (SPEC §5.9).
    pub fn status(&self) -> StoreStatus {
        self.inner
            .status
            .snapshot(self.inner.options.clock().as_ref())
    }

    /// Whether the last confirmation from etcd is within the staleness
    /// bound ([`StoreOptions::stale_after`]): what readiness means for an
    /// instance serving from this store.
    pub fn is_fresh(&self) -> bool {
        self.inner.options.is_fresh(self.status().staleness)
    }

    /// The options this store runs with, as checked: its connection
    /// settings, staleness bound, ceilings, … (so that whoever is handed
    /// the store needs nothing beside it).
    pub fn options(&self) -> &StoreOptions {
        &self.inner.options
    }

    /// How this store reaches etcd (to connect a [`crate::Publisher`] to
    /// the same cluster with the same settings).
    pub fn connection(&self) -> &Connection {
        self.inner.options.connection()
    }

    /// The local ceilings every applied set is clamped to.
    pub fn ceilings(&self) -> Ceilings {
        self.inner.options.ceilings()
    }

    /// A per-thread reader for hot loops (no shared write per read).
    pub fn reader(&self) -> DirectiveReader {
        self.inner.shared.reader()
    }

    /// The cell this store publishes into: what a recorder on this process
    /// reads (`osproxy_tracing::Recorder::builder`), with its own per-thread
    /// readers.
    pub fn shared(&self) -> &SharedDirectiveSet {
        &self.inner.shared
    }

    /// The layout this store follows.
    pub fn layout(&self) -> &Layout {
        self.inner.options.layout()
    }

    /// How many snapshots were swapped in since start. Moves only when the
    /// served set actually changed.
    pub fn swaps(&self) -> u64 {
        self.inner.shared.swaps()
    }
}

impl DirectiveStore for EtcdDirectiveStore {
    fn load(&self) -> Arc<DirectiveSet> {
        self.inner.shared.load_full()
    }

    #[inline]
    fn snapshot(&self) -> Snapshot {
        self.inner.shared.snapshot()
    }
}

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
    /// [`StoreStatus::clamped`]). Default: none.
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

/// Reads the key and starts the watch on `runtime`.
async fn start(options: StoreOptions, runtime: Handle) -> Result<EtcdDirectiveStore, EtcdError> {
    let status = Arc::new(StatusCell::new());
    let shared = SharedDirectiveSet::default();
    let instance = options
        .instance()
        .cloned()
        .map(|r| InstanceReporter::new(r, options.connection().request_timeout()));
    let serving = Arc::new(Serving::new(
        shared.clone(),
        Arc::clone(&status),
        options.ceilings(),
        options.failsafe(),
        timers::now(),
    ));
    let high = HighWater::load(options.state_dir(), options.layout().key())?;
    let mut watcher = Watcher {
        follower: Follower::new(options.layout().is_prefix(), options.decode_limits())
            .with_shared_decodes(SharedDecodes::for_clock(options.clock()))
            .with_prefix(options.layout().key())
            .with_high_water(high)
            .trusting(options.trust().cloned()),
        backoff: Backoff::new(options.backoff()),
        serving,
        status: Arc::clone(&status),
        endpoint_ix: 0,
        instance,
        config: options.clone(),
    };
    let established = first_watch(&mut watcher).await?;
    let stop = CancellationToken::new();
    let span = tracing::info_span!("etcd_directive_watch", key = options.layout().key());
    let inner = Inner {
        shared,
        status,
        options,
        _stop: stop.clone().drop_guard(),
    };
    runtime.spawn(watcher.run(established, stop).instrument(span));
    Ok(EtcdDirectiveStore {
        inner: Arc::new(inner),
    })
}

/// The first connect: each endpoint in turn within the connect timeout.
async fn first_watch(watcher: &mut Watcher) -> Result<Established, EtcdError> {
    let endpoints = watcher.config.connection().endpoints().to_vec();
    let total = watcher.config.connection().connect_timeout();
    let (_, first) = connection::first_answering(&endpoints, total, watcher, |w, i, budget| {
        Box::pin(async move {
            w.endpoint_ix = i;
            w.establish(budget, None).await.map_err(|f| f.error)
        })
    })
    .await
    .map_err(EtcdError::Connect)?;
    Ok(first)
}

#[cfg(test)]
mod tests {
    use osproxy_core::ManualClock;

    use super::*;

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
