//! [`EtcdDirectiveStore`]: the seed's constructor, the builder for every
//! option, and the handle a proxy keeps.
//!
//! `connect` is fail-fast: it reads the key before returning, within the
//! connect timeout, trying each endpoint in turn. From then on the store is
//! fail-safe: the background watcher keeps the last good snapshot serving
//! through any outage and converges once etcd is back.

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

use crate::backoff::BackoffPolicy;
use crate::config::{
    ConnectionConfig, Credentials, Layout, StoreConfig, TlsConfig, DEFAULT_PROGRESS_INTERVAL,
    DEFAULT_STALE_AFTER,
};
use crate::connection;
use crate::error::EtcdError;
use crate::follow::rollback::HighWater;
use crate::follow::shared::SharedDecodes;
use crate::follow::Follower;
use crate::instance::{InstanceReport, InstanceReporter};
use crate::safety::{Ceilings, FailsafePolicy, DEFAULT_FAILSAFE_LEVEL};
use crate::serving::Serving;
use crate::session::driver::Driver;
use crate::session::{Session, Settings};
use crate::status::{StatusCell, StoreStatus};
use crate::timers;
use crate::watcher::Watcher;

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
    clock: Arc<dyn Clock>,
    layout: Layout,
    endpoints: Vec<String>,
    /// Cancels the watcher when the last handle drops.
    _stop: DropGuard,
}

impl fmt::Debug for EtcdDirectiveStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.status();
        f.debug_struct("EtcdDirectiveStore")
            .field("endpoints", &self.inner.endpoints)
            .field("layout", &self.inner.layout)
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

    /// A builder with every option at its default.
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
            failsafe_level: DEFAULT_FAILSAFE_LEVEL,
        }
    }

    /// A snapshot of the store's health (SPEC §5.9).
    pub fn status(&self) -> StoreStatus {
        self.inner.status.snapshot(self.inner.clock.as_ref())
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
        &self.inner.layout
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
    failsafe_level: DiagLevel,
}

impl EtcdStoreBuilder {
    /// Bound on `connect` and on each reconnect attempt. Default 5 s.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.config.connection.connect_timeout = d;
        self
    }

    /// Every connection option at once (endpoints, timeouts, keepalive, TLS,
    /// credentials): a validated [`crate::config::Connection`] (e.g. one
    /// already shared with a [`crate::publisher::Publisher`]) or plain
    /// settings, which `connect` validates. Replaces the endpoints given to
    /// [`EtcdDirectiveStore::builder`].
    pub fn connection(mut self, connection: impl Into<ConnectionConfig>) -> Self {
        self.config.connection = connection.into();
        self
    }

    /// Bound on each unary request. Default 5 s.
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.config.connection.request_timeout = d;
        self
    }

    /// HTTP/2 keepalive ping interval (≥ 5 s) and timeout. Default 20 s / 5 s:
    /// a backstop, since progress replies keep a healthy watch busier than that.
    pub fn keepalive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.config.connection.keepalive_interval = interval;
        self.config.connection.keepalive_timeout = timeout;
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
        self
    }

    /// etcd user and password.
    pub fn credentials(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.config.connection.credentials = Some(Credentials {
            user: user.into(),
            password: password.into(),
        });
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

    /// The highest level that keeps applying while the fail-safe is engaged
    /// (takes effect with [`failsafe_after`](Self::failsafe_after)).
    pub fn failsafe_level(mut self, level: DiagLevel) -> Self {
        self.failsafe_level = level;
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

    /// Validates the options, reads the key and starts the watch.
    ///
    /// # Errors
    /// As [`EtcdDirectiveStore::connect`].
    pub async fn connect(mut self) -> Result<EtcdDirectiveStore, EtcdError> {
        if let Some(after) = self.failsafe_after {
            self.config.failsafe = Some(FailsafePolicy {
                after,
                level: self.failsafe_level,
            });
        }
        let config = self.config.validate()?;
        let runtime = match self.runtime {
            Some(h) => h,
            None => Handle::current(),
        };
        let status = Arc::new(StatusCell::new());
        let shared = SharedDirectiveSet::default();
        let instance = config
            .instance
            .clone()
            .map(|r| InstanceReporter::new(r, config.connection.request_timeout));
        let serving = Arc::new(Serving::new(
            shared.clone(),
            Arc::clone(&status),
            config.ceilings,
            config.failsafe,
            timers::now(),
        ));
        let high = HighWater::load(config.state_dir.as_deref(), config.layout.key())?;
        let follower = Follower::new(config.layout.is_prefix(), config.decode_limits)
            .with_shared_decodes(SharedDecodes::for_clock(&config.clock))
            .with_prefix(config.layout.key())
            .with_high_water(high)
            .trusting(config.trust.clone());
        let session = Session::new(
            Settings::for_store(&config),
            follower,
            Arc::clone(&config.clock),
        );
        let driver = Driver::new(
            session,
            config.connection.clone(),
            config.layout.clone(),
            false,
        );
        let mut watcher = Watcher {
            driver,
            serving,
            status: Arc::clone(&status),
            instance,
            config,
        };
        first_watch(&mut watcher).await?;
        let stop = CancellationToken::new();
        let span = tracing::info_span!("etcd_directive_watch", key = watcher.config.layout.key());
        let inner = Inner {
            shared,
            status,
            clock: Arc::clone(&watcher.config.clock),
            layout: watcher.config.layout.clone(),
            endpoints: watcher.config.connection.endpoints.clone(),
            _stop: stop.clone().drop_guard(),
        };
        runtime.spawn(watcher.run(stop).instrument(span));
        Ok(EtcdDirectiveStore {
            inner: Arc::new(inner),
        })
    }
}

/// The first connect: each endpoint in turn within the connect timeout.
async fn first_watch(watcher: &mut Watcher) -> Result<(), EtcdError> {
    let endpoints = watcher.config.connection.endpoints.clone();
    let total = watcher.config.connection.connect_timeout;
    connection::first_answering(&endpoints, total, watcher, |w, i, budget| {
        Box::pin(async move { w.establish(i, budget).await.map_err(|f| f.error) })
    })
    .await
    .map_err(EtcdError::Connect)?;
    Ok(())
}
