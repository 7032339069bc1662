//! [`Publisher`]: the write side of the fleet store. It reads the live
//! directive set and replaces it with compare-and-swap, so two operators
//! never silently overwrite each other, and it never reports success for a
//! write the fleet would reject or that may not have happened (SPEC §6).
//!
//! # What is written
//! Always the canonical encoding
//! ([`encode_directive_set`](osproxy_observe::encode_directive_set)): every
//! lifetime as an absolute `expires_at`, so a directive ends at the same
//! moment on every instance (SPEC §2). Before anything is sent, the *exact
//! bytes* about to be written are decoded with the fleet's limits
//! ([`with_decode_limits`](Publisher::with_decode_limits)); what an instance
//! would reject (`too_large` once `ttl_secs` became longer `expires_at`
//! strings, a lifetime over the cap, …) is refused as
//! [`PublishError::Invalid`] with the decoder's slug.
//!
//! # The live revision
//! One definition for both layouts, used by compare-and-swap, `status`, the
//! admin ETag and the instance reports:
//!
//! > **live revision** = max(mod revision of the layout's *revision marker*,
//! > newest mod revision in the key or prefix), 0 when neither exists.
//!
//! The marker ([`Layout::revision_key`]) is a key next to the directives,
//! outside the watched range, that every write of this publisher puts *in
//! the same transaction* as its change — deletes included. So a `remove`
//! moves the live revision although it leaves no key behind, and a put by
//! another tool (etcdctl) still counts through the range. Not seen: a delete
//! by another tool, and etcd deleting a key whose lease ran out (its
//! directive had expired anyway); instances see both, which only ever makes
//! them look *more* current.
//!
//! Compare-and-swap against revision `N` means "nothing changed after `N`":
//! the transaction holds only if the marker and every key of the range are
//! at or below `N` (and `N` is not beyond the cluster's revision). An
//! instance is current when the revision it reports being current *as of*
//! ([`crate::InstanceStatus::current_revision`]) is at least the live
//! revision. A write that would change nothing in the range writes nothing
//! (not even the marker: a marker-only change would leave watching
//! instances behind a revision they can never see).
//!
//! # Layouts
//! - **Key** ([`Layout::Key`]): the whole set in one value.
//!   [`Publisher::add`] and [`Publisher::remove`] are read-modify-write
//!   cycles, retried up to [`MAX_ATTEMPTS`] times when another writer got in
//!   between. They drop expired directives, and refuse
//!   ([`PublishError::ForeignRelativeLifetime`]) to rewrite a value holding
//!   `ttl_secs` lifetimes written by another tool: instances anchor those
//!   when they first see a revision, which is recorded nowhere, so any
//!   rewrite would extend or revive them.
//! - **Prefix** ([`Layout::Prefix`]): one directive per key `<prefix><id>`.
//!   Every key is bound to an etcd lease of its directive's remaining
//!   lifetime, so etcd deletes expired directives by itself (clean-up only:
//!   instances end a directive at its `expires_at`, SPEC §7). A publish
//!   writes only the keys whose bytes change and deletes the others, in one
//!   transaction (etcd's `--max-txn-ops`, 128 by default, bounds it). After a
//!   *confirmed* success, the leases of the replaced keys are revoked once no
//!   key uses them any more; leases are never revoked after an unknown
//!   outcome (they may hold the keys just written).
//!
//! # Unknown outcomes
//! A write whose answer is lost (timeout, connection loss) is
//! [`PublishError::OutcomeUnknown`], naming the live revision before it.
//! Nothing is revoked or deleted after it.
//!
//! # Connection
//! Like the store, the publisher talks to one endpoint: [`Publisher::connect`]
//! tries each in turn, sharing the connect timeout, and proves the endpoint
//! answers with a cheap read. Every later request is bounded by the request
//! timeout. A long-lived caller that sees
//! [`PublishError::may_need_reconnect`] errors should connect again.
//!
//! # Examples
//! ```no_run
//! # async fn f() -> Result<(), osproxy_etcd::PublishError> {
//! use std::sync::Arc;
//! use osproxy_core::SystemClock;
//! use osproxy_etcd::config::{Connection, ConnectionConfig};
//! use osproxy_etcd::{Layout, Publisher};
//! use osproxy_observe::{decode_directive_set_with, DecodeLimits};
//!
//! let connection = Connection::try_from(ConnectionConfig::new(&["127.0.0.1:2379".to_owned()]))?;
//! let publisher = Publisher::connect(
//!     connection,
//!     Layout::Key("/osproxy/directives".into()),
//!     Arc::new(SystemClock),
//! )
//! .await?;
//! let (live, revision) = publisher.current().await?;
//! println!("{} directives at revision {revision}", live.len());
//! let body = br#"{"directives":[{"id":"acme","level":"Shape","ttl_secs":600}]}"#;
//! let set = decode_directive_set_with(body, &SystemClock, &DecodeLimits::default())
//!     .map_err(osproxy_etcd::PublishError::Invalid)?;
//! let revision = publisher.publish(&set, Some(revision)).await?;
//! println!("published at revision {revision}");
//! # Ok(()) }
//! ```

mod error;
pub(crate) mod live;
pub(crate) mod note;
mod prefix;
mod seal;
mod write;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Connection, Layout};
use crate::error::{bounded, ConfigError};
use etcd_client::{Client, GetOptions};
use osproxy_core::Clock;
use osproxy_observe::{DecodeLimits, SignedFormat, SignerKey, TrustStore};

pub use crate::changes::{Change, Changes};
pub use crate::fleet::FleetStatus;
pub use crate::history::{
    Diff, History, HistoryEntry, Rollback, SetAt, SetChanges, DEFAULT_HISTORY_LIMIT,
    DEFAULT_HISTORY_PAGE_BYTES, MAX_HISTORY_LIMIT,
};
pub use error::{PublishError, PublishFault};
pub use live::{KeyRejection, LiveSet};
pub use note::{RecordedNote, SignedNote};
pub use write::{directive_key, with_added, without, Written};

/// How many read-modify-write cycles [`Publisher::add`] and
/// [`Publisher::remove`] try before giving up with
/// [`PublishError::Contended`].
pub const MAX_ATTEMPTS: u32 = 5;

/// Writes directive sets to etcd with compare-and-swap. See the module docs.
pub struct Publisher {
    pub(crate) client: Client,
    /// Every endpoint and setting (the change feed fails over across them).
    pub(crate) connection: Connection,
    /// The endpoint that answered `connect`.
    pub(crate) endpoint_ix: usize,
    pub(crate) layout: Layout,
    endpoint: String,
    pub(crate) request_timeout: Duration,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) limits: DecodeLimits,
    /// Signs every value written (SPEC §9).
    signer: Option<SignerKey>,
    /// The signed format written (v1 unless told otherwise).
    format: SignedFormat,
    /// Checks live values before they are read back (and re-signed).
    trust: Option<Arc<TrustStore>>,
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("endpoint", &self.endpoint)
            .field("layout", &self.layout)
            .finish()
    }
}

impl Publisher {
    /// Connects to the first endpoint of `connection` that answers a read of
    /// the layout's key within the connect timeout (shared by every endpoint
    /// tried) and returns a publisher for `layout`. `connection` is a
    /// [`Connection`], or [`ConnectionConfig`](crate::config::ConnectionConfig)
    /// settings, validated here by the same constructor.
    ///
    /// Decoding uses the default [`DecodeLimits`]; see
    /// [`with_decode_limits`](Self::with_decode_limits).
    ///
    /// # Errors
    /// [`PublishError::Config`] for invalid options, an empty key or a
    /// prefix without a trailing `/`;
    /// [`PublishError::Connect`] naming the endpoints and the last cause.
    pub async fn connect<C>(
        connection: C,
        layout: Layout,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, PublishError>
    where
        C: TryInto<Connection>,
        ConfigError: From<C::Error>,
    {
        let connection: Connection = connection.try_into().map_err(ConfigError::from)?;
        layout.validate()?;
        let probe = layout.key().to_owned();
        let (i, client) = crate::connection::first_answering(
            connection.endpoints(),
            connection.connect_timeout(),
            &mut (),
            |_, i, _budget| {
                let attempt = connect_one(
                    connection.clone(),
                    connection.endpoints()[i].clone(),
                    probe.clone(),
                );
                Box::pin(async move { attempt.await.map_err(Some) })
            },
        )
        .await
        .map_err(PublishError::Connect)?;
        Ok(Publisher {
            client,
            endpoint: connection.endpoints()[i].clone(),
            endpoint_ix: i,
            connection: connection.clone(),
            request_timeout: connection.request_timeout(),
            layout,
            clock,
            limits: DecodeLimits::default(),
            signer: None,
            format: SignedFormat::V1,
            trust: None,
        })
    }

    /// Signs every value this publisher writes with `signer`
    /// (`osproxy_observe::signed`), in both layouts: the signature covers the
    /// exact bytes instances decode, under the key they are stored at.
    ///
    /// Live values read back for an edit (`add`/`remove` in the key layout
    /// re-sign the whole set) must then verify too, so a value someone wrote
    /// around the signers is never signed by accident: by the signer's own
    /// key unless [`with_trust_store`](Self::with_trust_store) says otherwise
    /// (a refused value is [`PublishError::Malformed`] with its slug).
    #[must_use]
    pub fn with_signer(mut self, signer: SignerKey) -> Self {
        if self.trust.is_none() {
            let mut own = TrustStore::new();
            // A fresh store holds no id yet, so this cannot fail.
            let _ = own.trust(&signer);
            self.trust = Some(Arc::new(own));
        }
        self.signer = Some(signer);
        self
    }

    /// Writes signed format `format` (default [`SignedFormat::V1`]); only
    /// with a [`signer`](Self::with_signer).
    ///
    /// With [`SignedFormat::V2`] every value signs a sequence number, the
    /// time and the write's note too, so instances refuse an old value put
    /// back (`replayed`); in the prefix layout every write also rewrites the
    /// prefix's signed manifest at the key equal to the prefix (see
    /// `osproxy_observe::manifest`), and an add or remove becomes a
    /// compare-and-swap of the whole prefix. A v2 publish always writes,
    /// even when the content equals the live one: re-signing with a new
    /// sequence is what makes a rollback outrank a replay. Upgrade every
    /// instance before a publisher writes v2 (older instances refuse it as
    /// `bad_signature`).
    #[must_use]
    pub fn with_signed_format(mut self, format: SignedFormat) -> Self {
        self.format = format;
        self
    }

    /// Checks live values against `trust` when reading them (for `current`,
    /// edits and diffs): unsigned or badly signed values are reported as
    /// rejected with their slug.
    #[must_use]
    pub fn with_trust_store(mut self, trust: TrustStore) -> Self {
        self.trust = Some(Arc::new(trust));
        self
    }

    /// The bytes to store under `key`: `payload`, signed when a signer is
    /// set.
    fn seal(&self, key: &[u8], payload: Vec<u8>) -> Vec<u8> {
        match &self.signer {
            Some(signer) => osproxy_observe::signed::sign_value(signer, key, &payload),
            None => payload,
        }
    }

    /// Uses these limits to check what is written and to decode live values.
    /// Match the fleet's, so that what the publisher writes the instances
    /// accept.
    #[must_use]
    pub fn with_decode_limits(mut self, limits: DecodeLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The layout this publisher writes.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The endpoint in use.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn now(&self) -> u64 {
        self.clock.unix_nanos()
    }

    /// Runs one request that writes nothing within the request timeout.
    pub(crate) async fn request<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, PublishError> {
        request(self.request_timeout, op, fut).await
    }
}

/// Runs one request that writes nothing within `limit`; a failure is
/// [`PublishError::Transport`].
pub(crate) async fn request<T>(
    limit: Duration,
    op: &'static str,
    fut: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, PublishError> {
    Ok(bounded(limit, op, fut).await?)
}

/// Connects to one endpoint and proves with a cheap read that it answers
/// (and that authentication works). Owns its inputs so the future is `Send`.
async fn connect_one(
    connection: Connection,
    endpoint: String,
    probe: String,
) -> Result<Client, etcd_client::Error> {
    let mut client = crate::connection::open(connection.settings(), &endpoint).await?;
    client
        .get(probe, Some(GetOptions::new().with_count_only()))
        .await?;
    Ok(client)
}
