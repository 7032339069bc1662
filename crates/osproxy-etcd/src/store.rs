//! [`EtcdDirectiveStore`]: the seed's constructor, the handle a proxy
//! keeps, and what it tells whoever is handed it (its status, freshness and
//! the options it runs with). The options are given through
//! [`crate::EtcdStoreBuilder`].
//!
//! `connect` is fail-fast: it reads the key before returning, within the
//! connect timeout, trying each endpoint in turn. From then on the store is
//! fail-safe: the background watcher keeps the last good snapshot serving
//! through any outage and converges once etcd is back.

use std::fmt;
use std::sync::Arc;

use osproxy_core::Clock;
use osproxy_observe::{
    DirectiveReader, DirectiveSet, DirectiveStore, SharedDirectiveSet, Snapshot,
};
use tokio::runtime::Handle;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::Instrument;

use crate::builder::EtcdStoreBuilder;
use crate::config::{Connection, ConnectionConfig, Layout, StoreConfig, StoreOptions};
use crate::connection;
use crate::error::EtcdError;
use crate::follow::rollback::HighWater;
use crate::follow::shared::SharedDecodes;
use crate::follow::Follower;
use crate::instance::InstanceReporter;
use crate::safety::Ceilings;
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
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use osproxy_core::{Clock, SystemClock};
    /// use osproxy_etcd::{Ceilings, EtcdDirectiveStore, InstanceReport, Layout};
    /// use osproxy_observe::DiagLevel;
    ///
    /// # async fn f() -> Result<(), osproxy_etcd::EtcdError> {
    /// let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    /// let endpoints = vec!["etcd-1:2379".to_owned(), "etcd-2:2379".to_owned()];
    /// let store = EtcdDirectiveStore::builder(&endpoints, Layout::Prefix("/osproxy/d/".into()), clock)
    ///     .stale_after(Duration::from_secs(15))
    ///     .failsafe_after(Duration::from_secs(60)) // withhold capture when etcd is silent
    ///     .ceilings(Ceilings { max_level: Some(DiagLevel::ShapeTiming), ..Ceilings::NONE })
    ///     .instance(InstanceReport::new("proxy-a".to_owned())) // for `osproxy-directives status`
    ///     .connect()
    ///     .await?;
    /// assert!(store.status().connected);
    /// # Ok(()) }
    /// ```
    pub fn builder(
        endpoints: &[String],
        layout: Layout,
        clock: Arc<dyn Clock>,
    ) -> EtcdStoreBuilder {
        EtcdStoreBuilder::new(StoreConfig::new(
            ConnectionConfig::new(endpoints),
            layout,
            clock,
        ))
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

/// Reads the key and starts the watch on `runtime`.
pub(crate) async fn start(
    options: StoreOptions,
    runtime: Handle,
) -> Result<EtcdDirectiveStore, EtcdError> {
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
    let follower = Follower::new(options.layout().is_prefix(), options.decode_limits())
        .with_shared_decodes(SharedDecodes::for_clock(options.clock()))
        .with_prefix(options.layout().key())
        .with_high_water(high)
        .trusting(options.trust().cloned());
    let session = Session::new(
        Settings::for_store(&options),
        follower,
        Arc::clone(options.clock()),
    );
    let driver = Driver::new(
        session,
        options.connection().clone(),
        options.layout().clone(),
        false,
    );
    let mut watcher = Watcher {
        driver,
        serving,
        status: Arc::clone(&status),
        instance,
        config: options.clone(),
    };
    first_watch(&mut watcher).await?;
    let stop = CancellationToken::new();
    let span = tracing::info_span!("etcd_directive_watch", key = options.layout().key());
    let inner = Inner {
        shared,
        status,
        options,
        _stop: stop.clone().drop_guard(),
    };
    runtime.spawn(watcher.run(stop).instrument(span));
    Ok(EtcdDirectiveStore {
        inner: Arc::new(inner),
    })
}

/// The first connect: each endpoint in turn within the connect timeout.
async fn first_watch(watcher: &mut Watcher) -> Result<(), EtcdError> {
    let endpoints = watcher.config.connection().endpoints().to_vec();
    let total = watcher.config.connection().connect_timeout();
    connection::first_answering(&endpoints, total, watcher, |w, i, budget| {
        Box::pin(async move { w.establish(i, budget).await.map_err(|f| f.error) })
    })
    .await
    .map_err(EtcdError::Connect)?;
    Ok(())
}
