//! The store's options: [`StoreConfig`] as given (plain data, what the
//! builder fills in) and [`StoreOptions`], the same options once checked.
//!
//! Why two types: a check that can be skipped will be, somewhere. The only
//! way to get a [`StoreOptions`] is [`StoreOptions::try_from`] a
//! [`StoreConfig`] (or [`StoreConfig::validate`]), its fields are private,
//! and the store, its watcher and whoever asks the store afterwards (the
//! admin surface reads the connection, layout, staleness bound and ceilings
//! from [`crate::EtcdDirectiveStore`]) read the checked values, so no rule is
//! written twice and nothing is passed around beside the store.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use osproxy_core::Clock;
use osproxy_observe::{DecodeLimits, TrustStore};

use super::{nonzero, Connection, ConnectionConfig, Layout};
use crate::backoff::BackoffPolicy;
use crate::error::ConfigError;
use crate::instance::InstanceReport;
use crate::safety::{Ceilings, FailsafePolicy};

/// The options of one [`crate::EtcdDirectiveStore`], as given (not yet
/// checked): turn it into [`StoreOptions`] to use it.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// How to reach etcd.
    pub connection: ConnectionConfig,
    /// Where the directives live.
    pub layout: Layout,
    /// Silence on the watch after which the connection counts as stale and is
    /// replaced (the staleness bound).
    pub stale_after: Duration,
    /// Silence after which etcd is asked to confirm the watch is current.
    pub progress_interval: Duration,
    /// Reconnect delays.
    pub backoff: BackoffPolicy,
    /// Decoder limits.
    pub decode_limits: DecodeLimits,
    /// Report this instance's applied revision under a leased status key.
    pub instance: Option<InstanceReport>,
    /// The fail-safe (SPEC §8); `None`, the default: the last good set keeps
    /// serving whatever the staleness (the seed's semantics).
    pub failsafe: Option<FailsafePolicy>,
    /// Local ceilings every applied set is clamped to; default none.
    pub ceilings: Ceilings,
    /// With a trust store, only values signed by one of its keys apply
    /// (SPEC §9, `osproxy_observe::signed`); default none.
    pub trust: Option<Arc<TrustStore>>,
    /// Where the anti-rollback high-water mark survives restarts (signed
    /// format v2); default none (kept in memory only).
    pub state_dir: Option<PathBuf>,
    /// The time source.
    pub clock: Arc<dyn Clock>,
}

impl StoreConfig {
    /// Every option at its default, reaching etcd through `connection`: the
    /// one place the defaults are gathered (the builder starts here).
    pub fn new(connection: ConnectionConfig, layout: Layout, clock: Arc<dyn Clock>) -> Self {
        StoreConfig {
            connection,
            layout,
            stale_after: super::DEFAULT_STALE_AFTER,
            progress_interval: super::DEFAULT_PROGRESS_INTERVAL,
            backoff: BackoffPolicy::default(),
            decode_limits: DecodeLimits::default(),
            instance: None,
            failsafe: None,
            ceilings: Ceilings::NONE,
            trust: None,
            state_dir: None,
            clock,
        }
    }

    /// Checks every option: the same as [`StoreOptions::try_from`].
    ///
    /// # Errors
    /// The first [`ConfigError`] found.
    pub fn validate(self) -> Result<StoreOptions, ConfigError> {
        StoreOptions::try_from(self)
    }
}

/// The options of one [`crate::EtcdDirectiveStore`] that passed every check.
/// Its only constructor is [`StoreOptions::try_from`] a [`StoreConfig`], so
/// holding one proves the options are valid; read them through the
/// accessors.
///
/// # Examples
/// ```
/// use std::sync::Arc;
/// use osproxy_core::SystemClock;
/// use osproxy_etcd::{EtcdDirectiveStore, Layout};
///
/// let endpoints = ["127.0.0.1:2379".to_owned()];
/// let builder = EtcdDirectiveStore::builder(&endpoints, Layout::Key("/d".into()),
///     Arc::new(SystemClock));
/// let options = builder.options()?;
/// assert_eq!(options.connection().endpoints(), ["http://127.0.0.1:2379"]);
/// # Ok::<(), osproxy_etcd::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct StoreOptions {
    connection: Connection,
    layout: Layout,
    stale_after: Duration,
    progress_interval: Duration,
    backoff: BackoffPolicy,
    decode_limits: DecodeLimits,
    instance: Option<InstanceReport>,
    failsafe: Option<FailsafePolicy>,
    ceilings: Ceilings,
    trust: Option<Arc<TrustStore>>,
    state_dir: Option<PathBuf>,
    clock: Arc<dyn Clock>,
}

impl TryFrom<StoreConfig> for StoreOptions {
    type Error = ConfigError;

    /// Checks every option; the connection settings become a [`Connection`]
    /// (endpoints normalised).
    ///
    /// # Errors
    /// The first [`ConfigError`] found.
    fn try_from(c: StoreConfig) -> Result<Self, ConfigError> {
        let connection = Connection::try_from(c.connection)?;
        c.layout.validate()?;
        nonzero("stale after", c.stale_after)?;
        nonzero("progress interval", c.progress_interval)?;
        if c.progress_interval >= c.stale_after {
            return Err(ConfigError::Range {
                option: "progress interval",
                why: "must be shorter than the staleness bound",
            });
        }
        c.backoff.validate()?;
        if c.failsafe.is_some_and(|p| p.after.is_zero()) {
            return Err(ConfigError::Range {
                option: "failsafe after",
                why: "must be above zero (to keep the fail-safe off, leave it unset)",
            });
        }
        if c.ceilings.max_sample_per_mille.is_some_and(|m| m > 1000) {
            return Err(ConfigError::Range {
                option: "max sample per mille",
                why: "must be at most 1000",
            });
        }
        Ok(StoreOptions {
            connection,
            layout: c.layout,
            stale_after: c.stale_after,
            progress_interval: c.progress_interval,
            backoff: c.backoff,
            decode_limits: c.decode_limits,
            instance: c.instance,
            failsafe: c.failsafe,
            ceilings: c.ceilings,
            trust: c.trust,
            state_dir: c.state_dir,
            clock: c.clock,
        })
    }
}

impl StoreOptions {
    /// How to reach etcd (endpoints normalised, never empty).
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// Where the directives live (a prefix ends in `/`).
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The staleness bound: a watch silent this long is replaced, and a
    /// store whose last confirmation is older is not fresh. Above zero.
    pub fn stale_after(&self) -> Duration {
        self.stale_after
    }

    /// Silence after which etcd is asked to confirm the watch; shorter than
    /// [`stale_after`](Self::stale_after).
    pub fn progress_interval(&self) -> Duration {
        self.progress_interval
    }

    /// Reconnect delays.
    pub fn backoff(&self) -> BackoffPolicy {
        self.backoff
    }

    /// Decoder limits.
    pub fn decode_limits(&self) -> DecodeLimits {
        self.decode_limits
    }

    /// The instance report, when this store writes one.
    pub fn instance(&self) -> Option<&InstanceReport> {
        self.instance.as_ref()
    }

    /// The fail-safe, when on (its delay above zero).
    pub fn failsafe(&self) -> Option<FailsafePolicy> {
        self.failsafe
    }

    /// The local ceilings every applied set is clamped to.
    pub fn ceilings(&self) -> Ceilings {
        self.ceilings
    }

    /// The trust store signed values are checked against, when set.
    pub fn trust(&self) -> Option<&Arc<TrustStore>> {
        self.trust.as_ref()
    }

    /// Where the anti-rollback high-water mark is kept, when set.
    pub fn state_dir(&self) -> Option<&Path> {
        self.state_dir.as_deref()
    }

    /// The time source.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Whether a store whose last confirmation from etcd is `staleness` ago
    /// (`None`: never confirmed) is fresh: within the staleness bound.
    pub fn is_fresh(&self, staleness: Option<Duration>) -> bool {
        staleness.is_some_and(|s| s <= self.stale_after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DEFAULT_PROGRESS_INTERVAL, DEFAULT_STALE_AFTER};
    use osproxy_core::ManualClock;

    fn config() -> StoreConfig {
        StoreConfig::new(
            ConnectionConfig::new(&["127.0.0.1:2379".to_owned()]),
            Layout::Key("/osproxy/directives".into()),
            Arc::new(ManualClock::new()),
        )
    }

    #[test]
    fn the_defaults_pass_and_come_back_normalised() {
        let o = StoreOptions::try_from(config()).unwrap();
        assert_eq!(o.connection().endpoints(), ["http://127.0.0.1:2379"]);
        assert_eq!(o.stale_after(), DEFAULT_STALE_AFTER);
        assert_eq!(o.progress_interval(), DEFAULT_PROGRESS_INTERVAL);
        assert_eq!(o.failsafe(), None);
        assert!(o.ceilings().is_none());
    }

    #[test]
    fn each_rule_is_checked_once_here() {
        let range = |c: StoreConfig| match StoreOptions::try_from(c) {
            Err(ConfigError::Range { option, .. }) => option,
            other => panic!("expected a range error, got {other:?}"),
        };
        let mut c = config();
        c.stale_after = Duration::ZERO;
        assert_eq!(range(c), "stale after");
        let mut c = config();
        c.progress_interval = c.stale_after;
        assert_eq!(range(c), "progress interval");
        let mut c = config();
        c.failsafe = Some(FailsafePolicy::after(Duration::ZERO));
        assert_eq!(range(c), "failsafe after");
        let mut c = config();
        c.ceilings.max_sample_per_mille = Some(1001);
        assert_eq!(range(c), "max sample per mille");
        let mut c = config();
        c.backoff.initial = Duration::ZERO;
        assert_eq!(range(c), "backoff initial delay");
        let mut c = config();
        c.connection.endpoints.clear();
        assert!(matches!(
            StoreOptions::try_from(c),
            Err(ConfigError::NoEndpoints)
        ));
        let mut c = config();
        c.layout = Layout::Prefix("/no-slash".into());
        assert!(matches!(
            c.validate(),
            Err(ConfigError::PrefixWithoutSlash(_))
        ));
    }

    #[test]
    fn freshness_is_the_staleness_bound() {
        let o = StoreOptions::try_from(config()).unwrap();
        assert!(!o.is_fresh(None));
        assert!(o.is_fresh(Some(Duration::ZERO)));
        assert!(o.is_fresh(Some(DEFAULT_STALE_AFTER)));
        assert!(!o.is_fresh(Some(DEFAULT_STALE_AFTER + Duration::from_millis(1))));
    }
}
