//! [`AdminState`]: what the admin routes share — the store this instance
//! serves from, how to publish into it, the token, and the counters behind
//! `/metrics`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::http::StatusCode;
use osproxy_core::{Clock, Revision};
use osproxy_etcd::{
    EtcdDirectiveStore, FleetStatus, Layout, PublishError, PublishFault, Publisher,
    DEFAULT_STATUS_PREFIX,
};
use osproxy_observe::{
    DecodeLimits, DirectiveSet, DirectiveStore, InMemoryDirectiveStore, PublishNote, SignerKey,
};

use super::error::ApiError;
use super::guard::Refusal;

/// The store behind an instance.
#[derive(Debug)]
pub enum Backend {
    /// Single instance: the admin endpoint publishes straight into memory.
    InMemory(InMemoryDirectiveStore),
    /// Fleet member: reads through the etcd store, publishes into etcd.
    Etcd(Box<EtcdBackend>),
}

/// The etcd side of an instance: the watch-fed store it serves from and a
/// lazily connected [`Publisher`] for admin publishes. Everything about
/// etcd (connection, layout, staleness bound, ceilings) is read from the
/// store, which holds its options as checked once at start.
pub struct EtcdBackend {
    store: EtcdDirectiveStore,
    status_prefix: String,
    publisher: tokio::sync::Mutex<Option<Arc<Publisher>>>,
    /// Signs admin publishes (SPEC §9).
    signer: Option<SignerKey>,
    /// The signed format admin publishes are written in.
    signed_format: osproxy_observe::SignedFormat,
}

impl fmt::Debug for EtcdBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdBackend")
            .field("store", &self.store)
            .field("status_prefix", &self.status_prefix)
            .finish()
    }
}

impl EtcdBackend {
    /// A backend serving from `store` and publishing to the store's layout
    /// over the store's connection.
    pub fn new(store: EtcdDirectiveStore) -> Self {
        EtcdBackend {
            store,
            status_prefix: DEFAULT_STATUS_PREFIX.to_owned(),
            publisher: tokio::sync::Mutex::new(None),
            signer: None,
            signed_format: osproxy_observe::SignedFormat::V1,
        }
    }

    /// Reads the fleet's instance reports under `prefix` for the page
    /// (default [`DEFAULT_STATUS_PREFIX`]).
    pub fn with_status_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.status_prefix = prefix.into();
        self
    }

    /// Where the directives live.
    pub fn layout(&self) -> &Layout {
        self.store.layout()
    }

    /// The prefix the fleet's instance reports are read from.
    pub fn status_prefix(&self) -> &str {
        &self.status_prefix
    }

    /// Signs every admin publish with `signer` (when given).
    #[must_use]
    pub fn signing(mut self, signer: Option<SignerKey>) -> Self {
        self.signer = signer;
        self
    }

    /// Writes signed admin publishes in `format` (signed format v2: see
    /// `osproxy_observe::signed`).
    #[must_use]
    pub fn signed_format(mut self, format: osproxy_observe::SignedFormat) -> Self {
        self.signed_format = format;
        self
    }

    /// The store.
    pub fn store(&self) -> &EtcdDirectiveStore {
        &self.store
    }

    /// Whether the last confirmation from etcd is within the store's
    /// staleness bound ([`EtcdDirectiveStore::is_fresh`]).
    pub fn is_fresh(&self) -> bool {
        self.store.is_fresh()
    }

    /// The shared publisher, connecting it on first use (and again after
    /// [`forget`](Self::forget)).
    pub(crate) async fn publisher(
        &self,
        clock: &Arc<dyn Clock>,
        limits: DecodeLimits,
    ) -> Result<Arc<Publisher>, PublishError> {
        let mut slot = self.publisher.lock().await;
        if let Some(p) = slot.as_ref() {
            return Ok(Arc::clone(p));
        }
        let p = Publisher::connect(
            self.store.connection().clone(),
            self.store.layout().clone(),
            Arc::clone(clock),
        )
        .await?
        .with_decode_limits(limits);
        let p = match &self.signer {
            Some(s) => p
                .with_signer(s.clone())
                .with_signed_format(self.signed_format),
            None => p,
        };
        let p = Arc::new(p);
        *slot = Some(Arc::clone(&p));
        Ok(p)
    }

    /// Drops `failed` so the next publish reconnects (possibly elsewhere).
    pub(crate) async fn forget(&self, failed: &Arc<Publisher>) {
        let mut slot = self.publisher.lock().await;
        if slot.as_ref().is_some_and(|p| Arc::ptr_eq(p, failed)) {
            *slot = None;
        }
    }
}

/// Settings of the admin surface.
#[derive(Clone, Debug)]
pub struct AdminOptions {
    /// Bearer token required under `/admin`; none means open (loopback only:
    /// `serve` refuses other addresses without a token).
    pub token: Option<String>,
    /// Decoder limits for published sets.
    pub limits: DecodeLimits,
    /// The clock for anchoring `ttl_secs` and remaining lifetimes.
    pub clock: Arc<dyn Clock>,
    /// Judges signed single-request headers for `GET /admin/explain`
    /// (`serve --header-trust-store`); none: `header` is answered
    /// `no_trust_store`.
    pub header_verifier: Option<Arc<osproxy_observe::TokenVerifier>>,
    /// The ceilings a header's directive is clamped to (the instance's).
    pub header_ceilings: osproxy_etcd::Ceilings,
    /// The name recorded as the author of what a request presenting the
    /// token publishes (`serve --token-name`).
    pub token_name: String,
    /// DNS names besides `localhost` that `Host` may carry (`serve
    /// --allowed-host`); IP literals are always accepted (see `guard`).
    pub allowed_hosts: Vec<String>,
    /// Whether the listener speaks TLS: the scheme a same-origin `Origin`
    /// carries.
    pub tls: bool,
    /// Whether `/metrics` needs the token too (`serve --metrics-need-token`).
    pub metrics_need_token: bool,
    /// The instance's break-glass tape, when a recorder on this process
    /// fills one (`osproxy-tracing`): read by `GET /admin/breakglass`.
    pub breakglass: Option<Arc<osproxy_observe::BreakGlassBuffer>>,
    /// The recorder on this process, whose counters (requests recorded,
    /// spans exported, dropped, failed) `/metrics` shows.
    pub recorder: Option<osproxy_tracing::Recorder>,
}

/// The author recorded for a write through an instance that has no token:
/// whoever could reach its loopback listener.
pub const UNAUTHENTICATED_AUTHOR: &str = "loopback-unauthenticated";
/// The default `--token-name`.
pub const DEFAULT_TOKEN_NAME: &str = "admin";

impl AdminOptions {
    /// No token, default limits, no header verifier.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        AdminOptions {
            token: None,
            limits: DecodeLimits::default(),
            clock,
            header_verifier: None,
            header_ceilings: osproxy_etcd::Ceilings::default(),
            token_name: DEFAULT_TOKEN_NAME.to_owned(),
            allowed_hosts: Vec::new(),
            tls: false,
            metrics_need_token: false,
            breakglass: None,
            recorder: None,
        }
    }

    /// The author of a write made through this surface: the token's name
    /// when a token guards it, else [`UNAUTHENTICATED_AUTHOR`].
    pub fn author(&self) -> &str {
        match self.token {
            Some(_) => &self.token_name,
            None => UNAUTHENTICATED_AUTHOR,
        }
    }
}

/// The state every admin route shares. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AdminState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    backend: Backend,
    options: AdminOptions,
    snapshot_reads: AtomicU64,
    publishes: AtomicU64,
    unauthorized: AtomicU64,
    refused: [AtomicU64; 3],
    rejected: Mutex<BTreeMap<&'static str, u64>>,
}

impl AdminState {
    /// State over `backend`.
    pub fn new(backend: Backend, options: AdminOptions) -> Self {
        AdminState {
            inner: Arc::new(Inner {
                backend,
                options,
                snapshot_reads: AtomicU64::new(0),
                publishes: AtomicU64::new(0),
                unauthorized: AtomicU64::new(0),
                refused: Default::default(),
                rejected: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// The backend.
    pub fn backend(&self) -> &Backend {
        &self.inner.backend
    }

    /// `in-memory` or `etcd`.
    pub fn store_name(&self) -> &'static str {
        match self.inner.backend {
            Backend::InMemory(_) => "in-memory",
            Backend::Etcd(_) => "etcd",
        }
    }

    pub(crate) fn token(&self) -> Option<&str> {
        self.inner.options.token.as_deref()
    }

    pub(crate) fn limits(&self) -> &DecodeLimits {
        &self.inner.options.limits
    }

    pub(crate) fn options(&self) -> &AdminOptions {
        &self.inner.options
    }

    pub(crate) fn clock(&self) -> &dyn Clock {
        self.inner.options.clock.as_ref()
    }

    /// The applied set and its revision. With etcd, the revision is the one
    /// the set is current *as of* (the store's confirmed revision: every
    /// change at or below it, deletes included, is applied), which is what
    /// `If-Match` compares with the live revision.
    pub fn applied(&self) -> (Arc<DirectiveSet>, Revision) {
        match &self.inner.backend {
            Backend::InMemory(store) => {
                let (set, revision) = store.load_with_revision();
                (set, Revision::from(revision))
            }
            Backend::Etcd(b) => {
                let status = b.store.status();
                (
                    b.store.load(),
                    Revision::from_etcd(status.confirmed_revision.max(status.applied_revision)),
                )
            }
        }
    }

    /// Whether the instance is ready to serve (see the module docs).
    pub fn is_ready(&self) -> bool {
        match &self.inner.backend {
            Backend::InMemory(_) => true,
            Backend::Etcd(b) => b.is_fresh(),
        }
    }

    /// Publishes `set`, only over `expected` when given; returns the new
    /// revision.
    pub(crate) async fn publish(
        &self,
        set: DirectiveSet,
        expected: Option<Revision>,
        note: &PublishNote,
    ) -> Result<Revision, ApiError> {
        let revision = match &self.inner.backend {
            Backend::InMemory(store) => Revision::from(match expected {
                None => store.publish(set),
                Some(e) => store.publish_if(e.get(), set).map_err(|c| {
                    self.count_rejected("conflict");
                    ApiError::new(StatusCode::PRECONDITION_FAILED, "conflict", c.to_string())
                })?,
            }),
            Backend::Etcd(b) => self.publish_to_etcd(b, &set, expected, note).await?,
        };
        self.inner.publishes.fetch_add(1, Ordering::Relaxed);
        Ok(revision)
    }

    async fn publish_to_etcd(
        &self,
        b: &EtcdBackend,
        set: &DirectiveSet,
        expected: Option<Revision>,
        note: &PublishNote,
    ) -> Result<Revision, ApiError> {
        let publisher = b
            .publisher(&self.inner.options.clock, *self.limits())
            .await
            .map_err(|e| unavailable(&e))?;
        let expected = match expected.map(|e| e.to_etcd().ok_or(e)) {
            None => None,
            Some(Ok(e)) => Some(e),
            // Nothing can have stayed unchanged since a revision etcd
            // cannot reach: the same conflict as any revision ahead of it.
            Some(Err(beyond)) => {
                self.count_rejected("conflict");
                return Err(ApiError::new(
                    StatusCode::PRECONDITION_FAILED,
                    "conflict",
                    format!("revision conflict: expected {beyond}, beyond any etcd revision"),
                ));
            }
        };
        match publisher.publish_noted(set, expected, note).await {
            Ok(revision) => Ok(Revision::from_etcd(revision)),
            Err(e) => {
                let fault = e.fault();
                if matches!(fault, PublishFault::Caller | PublishFault::Conflict) {
                    self.count_rejected(e.slug());
                }
                if e.may_need_reconnect() {
                    b.forget(&publisher).await;
                }
                let mut err = publish_error(e);
                // With `If-Match`, a conflict is its precondition failing.
                if fault == PublishFault::Conflict && expected.is_some() {
                    err.status = StatusCode::PRECONDITION_FAILED;
                }
                Err(err)
            }
        }
    }

    /// The shared etcd publisher (connected on first use); 404 `no_history`
    /// for the in-memory store, which keeps no history and has no fleet.
    pub(crate) async fn shared_publisher(&self) -> Result<Arc<Publisher>, ApiError> {
        let Backend::Etcd(b) = &self.inner.backend else {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "no_history",
                "this instance runs the in-memory store: no history, no fleet",
            ));
        };
        b.publisher(&self.inner.options.clock, *self.limits())
            .await
            .map_err(|e| unavailable(&e))
    }

    /// Maps a failed etcd request made through `publisher` to its answer
    /// (as for a publish), dropping the publisher when the connection may be
    /// at fault so the next request reconnects.
    pub(crate) async fn etcd_failure(
        &self,
        publisher: &Arc<Publisher>,
        e: PublishError,
    ) -> ApiError {
        if e.may_need_reconnect() {
            if let Backend::Etcd(b) = &self.inner.backend {
                b.forget(publisher).await;
            }
        }
        publish_error(e)
    }

    /// The fleet's instance reports (fleet mode; `None` for the in-memory
    /// store), read through the shared publisher.
    pub(crate) async fn fleet_status(&self) -> Option<Result<FleetStatus, ApiError>> {
        let Backend::Etcd(b) = &self.inner.backend else {
            return None;
        };
        let publisher = match self.shared_publisher().await {
            Ok(p) => p,
            Err(e) => return Some(Err(e)),
        };
        Some(match publisher.fleet_status(&b.status_prefix).await {
            Ok(fleet) => Ok(fleet),
            Err(e) => Err(self.etcd_failure(&publisher, e).await),
        })
    }

    /// Counts a write made through the publisher directly (the page's
    /// per-key edits) rather than [`publish`](Self::publish).
    pub(crate) fn count_publish(&self) {
        self.inner.publishes.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_snapshot_read(&self) {
        self.inner.snapshot_reads.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_unauthorized(&self) {
        self.inner.unauthorized.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_refused(&self, refusal: Refusal) {
        self.inner.refused[refusal as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_rejected(&self, slug: &'static str) {
        let mut map = self
            .inner
            .rejected
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *map.entry(slug).or_default() += 1;
    }

    pub(crate) fn counters(&self) -> Counters {
        Counters {
            snapshot_reads: self.inner.snapshot_reads.load(Ordering::Relaxed),
            publishes: self.inner.publishes.load(Ordering::Relaxed),
            unauthorized: self.inner.unauthorized.load(Ordering::Relaxed),
            refused: Refusal::ALL.map(|r| {
                (
                    r.slug(),
                    self.inner.refused[r as usize].load(Ordering::Relaxed),
                )
            }),
            rejected: self
                .inner
                .rejected
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }
}

/// Maps a failed etcd request to its answer by whose fault it is
/// ([`PublishError::fault`], the one classification the CLI's exit codes
/// use too): the caller's is a 4xx with the error's own slug (the fleet's
/// for bytes it would reject, 400/413; 413 `etcd_value_too_large`, 400
/// `etcd_too_many_ops`, 404 `no_such_revision`, …); a conflict 409; a lost
/// answer 504 `outcome_unknown` (nothing cleaned up; `revision_before` says
/// what to compare); the rest 503 `etcd_unavailable`.
fn publish_error(e: PublishError) -> ApiError {
    match e.fault() {
        PublishFault::Caller => match e {
            PublishError::Invalid(d) => ApiError::rejected(d),
            e => {
                let status = match e {
                    PublishError::ValueTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                    PublishError::NoSuchRevision { .. } => StatusCode::NOT_FOUND,
                    _ => StatusCode::BAD_REQUEST,
                };
                ApiError::new(status, e.slug(), format!("{e}; nothing was written"))
            }
        },
        PublishFault::Conflict => ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("{e}; nothing was written: review the live set and retry"),
        ),
        PublishFault::Unknown => {
            let before = match e {
                PublishError::OutcomeUnknown { before, .. } => Some(before),
                _ => None,
            };
            let since = before.map_or_else(
                || "read the live revision before retrying".to_owned(),
                |b| format!("read the live revision, above {b} means a write happened since"),
            );
            let mut err = ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "outcome_unknown",
                format!("{e}; nothing was cleaned up: {since}"),
            );
            err.revision_before = before;
            err
        }
        _ => match e {
            // A revision etcd no longer holds: gone for good, say which is
            // the oldest it has.
            PublishError::Compacted { oldest, .. } => {
                let mut err = ApiError::new(StatusCode::GONE, "compacted", e.to_string());
                err.oldest = Some(oldest);
                err
            }
            // What is stored cannot be rewritten faithfully.
            PublishError::Malformed { .. } | PublishError::ForeignRelativeLifetime { .. } => {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    e.slug(),
                    format!("{e}; nothing was written: publish a whole set to replace it"),
                )
            }
            e => unavailable(&e),
        },
    }
}

fn unavailable(e: &PublishError) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "etcd_unavailable",
        format!("cannot publish to etcd: {e}"),
    )
}

/// A copy of the admin counters.
pub(crate) struct Counters {
    pub(crate) snapshot_reads: u64,
    pub(crate) publishes: u64,
    pub(crate) unauthorized: u64,
    pub(crate) refused: [(&'static str, u64); 3],
    pub(crate) rejected: BTreeMap<&'static str, u64>,
}
