//! [`Publisher`]: the write side of the fleet store. It reads the live
//! directive set and replaces it with compare-and-swap on etcd revisions, so
//! two operators never silently overwrite each other (SPEC §6).
//!
//! What it writes is always the canonical encoding
//! ([`encode_directive_set`](osproxy_observe::encode_directive_set)): every
//! lifetime as an absolute `expires_at`, so a directive ends at the same
//! moment on every instance, including ones that start later (SPEC §2).
//!
//! # Layouts
//! - **Key** ([`Layout::Key`]): the whole set in one value. The *revision of
//!   the live set* is the key's `mod_revision`, 0 while the key is absent.
//!   [`Publisher::publish`] writes in a transaction that compares it;
//!   [`Publisher::add`] and [`Publisher::remove`] are read-modify-write cycles
//!   on top, retried up to [`MAX_ATTEMPTS`] times when another writer got in
//!   between.
//! - **Prefix** ([`Layout::Prefix`]): one directive per key `<prefix><id>`,
//!   holding the canonical single-directive object. Every key is bound to an
//!   etcd lease of its directive's remaining lifetime, so etcd deletes expired
//!   directives by itself. That is clean-up only: instances end a directive at
//!   its `expires_at` whatever the lease does (SPEC §7). The revision of the
//!   live set is the newest `mod_revision` under the prefix, 0 when empty.
//!   Caveat: a delete leaves no revision behind, so a compare-and-swap against
//!   an explicit revision cannot notice that another writer *removed* a key
//!   after the caller read it; read-then-swap (`expected: None`) compares
//!   every key it read and does notice.
//!
//! # Connection
//! Like the store, the publisher talks to one endpoint: [`Publisher::connect`]
//! tries each in turn, sharing the connect timeout, and proves the endpoint
//! answers with a cheap read. Every later request is bounded by the request
//! timeout. A long-lived caller that sees [`PublishError::is_retryable`]
//! errors should connect again (that moves to the next endpoint that answers).
//!
//! # Examples
//! ```no_run
//! # async fn f() -> Result<(), osproxy_etcd::PublishError> {
//! use std::sync::Arc;
//! use osproxy_core::SystemClock;
//! use osproxy_etcd::config::ConnectionConfig;
//! use osproxy_etcd::{Layout, Publisher};
//! use osproxy_observe::decode_directive_set_detailed;
//!
//! let connection = ConnectionConfig::new(&["127.0.0.1:2379".to_owned()]);
//! let publisher = Publisher::connect(
//!     connection,
//!     Layout::Key("/osproxy/directives".into()),
//!     Arc::new(SystemClock),
//! )
//! .await?;
//! let (live, revision) = publisher.current().await?;
//! println!("{} directives at revision {revision}", live.len());
//! let body = br#"{"directives":[{"id":"acme","level":"Shape","ttl_secs":600}]}"#;
//! let set = decode_directive_set_detailed(body, &SystemClock).map_err(osproxy_etcd::PublishError::Invalid)?;
//! let revision = publisher.publish(&set, Some(revision)).await?;
//! println!("published at revision {revision}");
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, KeyValue, PutOptions, Txn, TxnOp,
    TxnOpResponse, TxnResponse, WatchStream,
};
use osproxy_core::Clock;
use osproxy_observe::encode::directive_value;
use osproxy_observe::{
    decode_directive, decode_directive_set_with, encode_directive_set, DecodeError, DecodeLimits,
    DirectiveSet, RejectReason, TimedDirective,
};
use tokio::time::timeout;

use crate::applied::AppliedState;
use crate::config::{ConnectionConfig, Layout};
use crate::error::{client_error_kind, ConfigError, ConnectError};
use crate::instance::InstanceStatus;
use crate::status::Rejection;

/// How many read-modify-write cycles [`Publisher::add`] and
/// [`Publisher::remove`] try before giving up with
/// [`PublishError::Contended`].
pub const MAX_ATTEMPTS: u32 = 5;

/// What can go wrong publishing. Messages are short and value-free; causes
/// are kept as sources.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// An option is invalid. Not retryable: fix the options.
    #[error("invalid etcd configuration")]
    Config(#[from] ConfigError),
    /// No endpoint answered within the connect timeout. Retryable.
    #[error("cannot reach etcd")]
    Connect(#[source] ConnectError),
    /// A request on the connection failed. Retryable (reconnect first).
    #[error("etcd request failed: {op} ({kind})")]
    Request {
        /// Which operation.
        op: &'static str,
        /// A short, stable description of the failure.
        kind: &'static str,
        /// The client's error.
        #[source]
        source: etcd_client::Error,
    },
    /// A request did not finish within the request timeout. Retryable, but a
    /// write that timed out may still have been applied: read before
    /// retrying it.
    #[error("etcd request timed out after {after:?}: {op}")]
    Timeout {
        /// Which operation.
        op: &'static str,
        /// The limit that was hit.
        after: Duration,
    },
    /// The live revision is not the expected one: someone else wrote in
    /// between. Not retried blindly: read again and decide.
    #[error("revision conflict: expected {expected}, found {actual}")]
    Conflict {
        /// The revision the caller expected.
        expected: i64,
        /// The revision etcd holds now.
        actual: i64,
    },
    /// The live value does not decode, so it cannot be edited in place
    /// (publish a whole new set instead, or remove the key).
    #[error("the live value at {key} (revision {revision}) is rejected")]
    Malformed {
        /// The etcd key holding the rejected value.
        key: String,
        /// The revision of the live set (as [`Publisher::current`] counts it).
        revision: i64,
        /// Why the decoder rejected it.
        #[source]
        source: DecodeError,
    },
    /// [`Publisher::remove`] found no directive with this id.
    #[error("no directive with id {id}")]
    NotFound {
        /// The id asked for.
        id: String,
    },
    /// [`Publisher::add`] or [`Publisher::remove`] lost the race
    /// [`MAX_ATTEMPTS`] times. Retryable later.
    #[error("still conflicting after {attempts} attempts")]
    Contended {
        /// How many attempts were made.
        attempts: u32,
    },
    /// The set to publish is invalid (for instance a duplicate id).
    #[error("invalid directive set")]
    Invalid(#[source] DecodeError),
    /// A watch ended: the stream closed, was cancelled, or the revisions it
    /// needed were compacted. Retryable: open a new one.
    #[error("the etcd watch ended ({why})")]
    WatchEnded {
        /// Why, short and stable.
        why: &'static str,
    },
}

impl PublishError {
    /// A stable, value-free slug for machines (JSON output, metrics).
    pub fn slug(&self) -> &'static str {
        match self {
            PublishError::Config(_) => "invalid_config",
            PublishError::Connect(_) => "etcd_unavailable",
            PublishError::Request { .. } => "etcd_request_failed",
            PublishError::Timeout { .. } => "etcd_timeout",
            PublishError::Conflict { .. } => "conflict",
            PublishError::Malformed { .. } => "malformed_live_value",
            PublishError::NotFound { .. } => "not_found",
            PublishError::Contended { .. } => "contended",
            PublishError::Invalid(_) => "invalid_set",
            PublishError::WatchEnded { .. } => "watch_ended",
        }
    }

    /// Whether trying again (after reconnecting) may succeed: true for
    /// transport failures, timeouts, contention and ended watches.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            PublishError::Connect(_)
                | PublishError::Request { .. }
                | PublishError::Timeout { .. }
                | PublishError::Contended { .. }
                | PublishError::WatchEnded { .. }
        )
    }
}

/// The outcome of [`Publisher::add`] or [`Publisher::remove`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Written {
    /// The etcd revision of the write.
    pub revision: i64,
    /// For `add`: a directive with this id existed and was replaced. For
    /// `remove`: always true.
    pub replaced: bool,
}

/// The fleet as the per-instance status keys report it
/// ([`crate::InstanceReport`]), read in one consistent snapshot with the
/// directive key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetStatus {
    /// The revision of the live directive set (see the module docs).
    pub latest_revision: i64,
    /// Every readable instance report, ordered by key.
    pub instances: Vec<InstanceStatus>,
    /// Status keys whose value is not an instance report.
    pub unreadable: Vec<String>,
}

/// One change seen by [`Changes`]: the set an instance would serve after it.
#[derive(Clone, Debug)]
pub struct Change {
    /// The etcd revision of the change.
    pub revision: i64,
    /// The set served after the change (a rejected value leaves the last
    /// good one of its key serving, exactly as in the store).
    pub set: DirectiveSet,
    /// Values currently rejected.
    pub rejected: Vec<Rejection>,
}

/// Writes directive sets to etcd with compare-and-swap. See the module docs.
pub struct Publisher {
    client: Client,
    layout: Layout,
    endpoint: String,
    request_timeout: Duration,
    clock: Arc<dyn Clock>,
    limits: DecodeLimits,
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("endpoint", &self.endpoint)
            .field("layout", &self.layout)
            .finish()
    }
}

/// The raw live state: the key (or every key under the prefix) and the
/// revisions that describe it.
struct Live {
    kvs: Vec<KeyValue>,
    /// The revision of the live set (newest `mod_revision`, 0 when absent).
    revision: i64,
    /// The header revision of the read.
    header: i64,
}

impl Publisher {
    /// Validates `connection`, connects to the first endpoint that answers a
    /// read of the layout's key within the connect timeout (shared by every
    /// endpoint tried) and returns a publisher for `layout`.
    ///
    /// Decoding uses the default [`DecodeLimits`]; see
    /// [`with_decode_limits`](Self::with_decode_limits).
    ///
    /// # Errors
    /// [`PublishError::Config`] for invalid options or an empty key;
    /// [`PublishError::Connect`] naming the endpoints and the last cause.
    pub async fn connect(
        connection: ConnectionConfig,
        layout: Layout,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, PublishError> {
        let connection = connection.validate()?;
        if layout.key().is_empty() {
            return Err(ConfigError::EmptyKey.into());
        }
        let probe = layout.key().to_owned();
        let (i, client) = crate::connection::first_answering(
            &connection.endpoints,
            connection.connect_timeout,
            &mut (),
            |_, i, _budget| {
                let attempt = connect_one(
                    connection.clone(),
                    connection.endpoints[i].clone(),
                    probe.clone(),
                );
                Box::pin(async move { attempt.await.map_err(Some) })
            },
        )
        .await
        .map_err(PublishError::Connect)?;
        Ok(Publisher {
            client,
            endpoint: connection.endpoints[i].clone(),
            request_timeout: connection.request_timeout,
            layout,
            clock,
            limits: DecodeLimits::default(),
        })
    }

    /// Uses these limits to decode live values (match the fleet's, so that
    /// what the publisher accepts the instances accept too).
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

    /// The live set and its revision (0 when nothing is published). In the
    /// prefix layout the keys are composed into one set. `ttl_secs` values
    /// written by other tools are anchored now.
    ///
    /// # Errors
    /// [`PublishError::Malformed`] when a live value does not decode (in the
    /// prefix layout also when two keys carry the same id), or a request
    /// error.
    pub async fn current(&self) -> Result<(DirectiveSet, i64), PublishError> {
        let live = self.read().await?;
        let set = self.decode_live(&live)?;
        Ok((set, live.revision))
    }

    /// The revision of the live set, without reading the values.
    ///
    /// # Errors
    /// A request error.
    pub async fn revision(&self) -> Result<i64, PublishError> {
        let mut client = self.client.clone();
        let opts = self.layout.get_options().with_keys_only();
        let resp = self
            .request("read", client.get(self.layout.key().to_owned(), Some(opts)))
            .await?;
        Ok(newest_revision(resp.kvs()))
    }

    /// Replaces the live set with `set`, in canonical form, if the live
    /// revision is `expected` (`Some(0)`: nothing may be published yet).
    /// With `None`, reads the live revision first and swaps against that
    /// (read-then-swap). Returns the revision of the write.
    ///
    /// In the prefix layout every directive is written to `<prefix><id>`
    /// bound to a lease of its remaining lifetime, other keys under the
    /// prefix are deleted, all in one transaction (etcd limits a transaction
    /// to 128 operations by default: `--max-txn-ops`).
    ///
    /// # Errors
    /// [`PublishError::Conflict`] when someone else wrote first; a request
    /// error otherwise.
    pub async fn publish(
        &self,
        set: &DirectiveSet,
        expected: Option<i64>,
    ) -> Result<i64, PublishError> {
        match &self.layout {
            Layout::Key(key) => {
                let expected = match expected {
                    Some(e) => e,
                    None => self.read().await?.revision,
                };
                self.swap_key(key, encode_directive_set(set), expected)
                    .await
            }
            Layout::Prefix(prefix) => {
                let live = self.read().await?;
                if let Some(expected) = expected {
                    if expected != live.revision {
                        return Err(PublishError::Conflict {
                            expected,
                            actual: live.revision,
                        });
                    }
                }
                self.replace_prefix(prefix, set, &live).await
            }
        }
    }

    /// Adds `directive`, replacing a directive with the same id.
    ///
    /// Key layout: read, edit, swap; retried up to [`MAX_ATTEMPTS`] times when
    /// another writer gets in between. Prefix layout: writes
    /// `<prefix><id>` bound to a lease of the directive's remaining lifetime.
    ///
    /// # Errors
    /// [`PublishError::Malformed`] when the live set (key layout) does not
    /// decode; [`PublishError::Contended`]; a request error.
    pub async fn add(&self, directive: TimedDirective) -> Result<Written, PublishError> {
        match &self.layout {
            Layout::Key(key) => {
                self.edit_key(key, |live| {
                    let mut list = live.directives().to_vec();
                    let replaced = match list.iter_mut().find(|d| d.id == directive.id) {
                        Some(slot) => {
                            *slot = directive.clone();
                            true
                        }
                        None => {
                            list.push(directive.clone());
                            false
                        }
                    };
                    let next =
                        DirectiveSet::try_from_directives(list).map_err(PublishError::Invalid)?;
                    Ok((next, replaced))
                })
                .await
            }
            Layout::Prefix(prefix) => {
                let lease = self
                    .grant_lease(lease_ttl_secs(&directive, self.now()))
                    .await?;
                let mut client = self.client.clone();
                let options = PutOptions::new().with_lease(lease).with_prev_key();
                let resp = self
                    .request(
                        "add",
                        client.put(
                            directive_key(prefix, &directive.id),
                            directive_bytes(&directive),
                            Some(options),
                        ),
                    )
                    .await?;
                Ok(Written {
                    revision: resp.header().map_or(0, |h| h.revision()),
                    replaced: resp.prev_key().is_some(),
                })
            }
        }
    }

    /// Removes the directive with this id.
    ///
    /// Key layout: read, edit, swap, retried like [`add`](Self::add). Prefix
    /// layout: deletes the key holding that id (`<prefix><id>`, or any key
    /// under the prefix whose directive has the id) if it is unchanged since
    /// it was read.
    ///
    /// # Errors
    /// [`PublishError::NotFound`]; [`PublishError::Malformed`] when the live
    /// set (key layout) does not decode; [`PublishError::Contended`]; a
    /// request error.
    pub async fn remove(&self, id: &str) -> Result<Written, PublishError> {
        match &self.layout {
            Layout::Key(key) => {
                self.edit_key(key, |live| {
                    if live.get(id).is_none() {
                        return Err(PublishError::NotFound { id: id.to_owned() });
                    }
                    let list = live
                        .directives()
                        .iter()
                        .filter(|d| d.id != id)
                        .cloned()
                        .collect();
                    let next =
                        DirectiveSet::try_from_directives(list).map_err(PublishError::Invalid)?;
                    Ok((next, true))
                })
                .await
            }
            Layout::Prefix(prefix) => self.remove_from_prefix(prefix, id).await,
        }
    }

    /// Follows the live set: returns the current state as a first [`Change`]
    /// and a [`Changes`] stream of every later change.
    ///
    /// # Errors
    /// A request error.
    pub async fn changes(&self) -> Result<(Change, Changes), PublishError> {
        let live = self.read().await?;
        let mut applied = AppliedState::new(self.layout.is_prefix(), self.limits);
        let mut reasons = Vec::new();
        applied.replace_all(&live.kvs, self.clock.as_ref(), &mut reasons);
        let first = Change {
            revision: live.revision,
            set: DirectiveSet::clone(&applied.compose()),
            rejected: applied.rejections(),
        };
        let options = self.layout.watch_options(live.header + 1);
        let mut client = self.client.clone();
        let stream = self
            .request(
                "watch",
                client.watch(self.layout.key().to_owned(), Some(options)),
            )
            .await?;
        Ok((
            first,
            Changes {
                _client: self.client.clone(),
                stream,
                applied,
                clock: Arc::clone(&self.clock),
                next_revision: live.header + 1,
                pending: VecDeque::new(),
            },
        ))
    }

    /// Reads the directive revision and every instance report under
    /// `status_prefix` in one consistent snapshot.
    ///
    /// # Errors
    /// A request error.
    pub async fn fleet_status(&self, status_prefix: &str) -> Result<FleetStatus, PublishError> {
        let directive_opts = self.layout.get_options().with_keys_only();
        let txn = Txn::new().and_then([
            TxnOp::get(self.layout.key(), Some(directive_opts)),
            TxnOp::get(status_prefix, Some(GetOptions::new().with_prefix())),
        ]);
        let mut client = self.client.clone();
        let resp = self.request("read status", client.txn(txn)).await?;
        let mut gets = resp.op_responses().into_iter().filter_map(|r| match r {
            TxnOpResponse::Get(g) => Some(g),
            _ => None,
        });
        let latest_revision = gets.next().map_or(0, |g| newest_revision(g.kvs()));
        let mut instances = Vec::new();
        let mut unreadable = Vec::new();
        for kv in gets.next().iter().flat_map(|g| g.kvs()) {
            match serde_json::from_slice::<InstanceStatus>(kv.value()) {
                Ok(s) => instances.push(s),
                Err(_) => unreadable.push(key_string(kv)),
            }
        }
        Ok(FleetStatus {
            latest_revision,
            instances,
            unreadable,
        })
    }

    fn now(&self) -> u64 {
        self.clock.unix_nanos()
    }

    /// Runs one request within the request timeout.
    async fn request<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, PublishError> {
        match timeout(self.request_timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(source)) => Err(PublishError::Request {
                op,
                kind: client_error_kind(&source),
                source,
            }),
            Err(_) => Err(PublishError::Timeout {
                op,
                after: self.request_timeout,
            }),
        }
    }

    async fn read(&self) -> Result<Live, PublishError> {
        let mut client = self.client.clone();
        let opts = Some(self.layout.get_options());
        let mut resp = self
            .request("read", client.get(self.layout.key().to_owned(), opts))
            .await?;
        let header = resp.header().map_or(0, |h| h.revision());
        let kvs = resp.take_kvs();
        Ok(Live {
            revision: newest_revision(&kvs),
            kvs,
            header,
        })
    }

    fn decode_live(&self, live: &Live) -> Result<DirectiveSet, PublishError> {
        let clock = self.clock.as_ref();
        let malformed = |key: String, source| PublishError::Malformed {
            key,
            revision: live.revision,
            source,
        };
        match &self.layout {
            Layout::Key(key) => match live.kvs.first() {
                None => Ok(DirectiveSet::new()),
                Some(kv) => decode_directive_set_with(kv.value(), clock, &self.limits)
                    .map_err(|e| malformed(key.clone(), e)),
            },
            Layout::Prefix(_) => {
                let mut list = Vec::with_capacity(live.kvs.len());
                for kv in &live.kvs {
                    let d = decode_directive(kv.value(), clock, &self.limits)
                        .map_err(|e| malformed(key_string(kv), e))?;
                    list.push(d);
                }
                DirectiveSet::try_from_directives(list).map_err(|e| {
                    let key = e
                        .directive_index
                        .and_then(|i| live.kvs.get(i))
                        .map_or_else(|| self.layout.key().to_owned(), key_string);
                    malformed(key, DecodeError::whole(e.reason))
                })
            }
        }
    }

    /// Writes `value` to `key` if its `mod_revision` is `expected`.
    async fn swap_key(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: i64,
    ) -> Result<i64, PublishError> {
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, expected)])
            .and_then([TxnOp::put(key, value, None)])
            .or_else([TxnOp::get(key, Some(GetOptions::new().with_keys_only()))]);
        let mut client = self.client.clone();
        let resp = self.request("publish", client.txn(txn)).await?;
        settle(&resp, expected)
    }

    /// The read-modify-swap cycle of `add` and `remove` in the key layout.
    async fn edit_key(
        &self,
        key: &str,
        mut edit: impl FnMut(&DirectiveSet) -> Result<(DirectiveSet, bool), PublishError>,
    ) -> Result<Written, PublishError> {
        for attempt in 1..=MAX_ATTEMPTS {
            let live = self.read().await?;
            let current = self.decode_live(&live)?;
            let (next, replaced) = edit(&current)?;
            match self
                .swap_key(key, encode_directive_set(&next), live.revision)
                .await
            {
                Ok(revision) => return Ok(Written { revision, replaced }),
                Err(PublishError::Conflict { .. }) => retry_pause(attempt).await,
                Err(e) => return Err(e),
            }
        }
        Err(PublishError::Contended {
            attempts: MAX_ATTEMPTS,
        })
    }

    /// Replaces everything under `prefix` with `set` in one transaction that
    /// holds only if nothing under the prefix changed since `live` was read.
    async fn replace_prefix(
        &self,
        prefix: &str,
        set: &DirectiveSet,
        live: &Live,
    ) -> Result<i64, PublishError> {
        let mut compares =
            vec![Compare::mod_revision(prefix, CompareOp::Less, live.revision + 1).with_prefix()];
        compares.extend(
            live.kvs
                .iter()
                .map(|kv| Compare::mod_revision(kv.key(), CompareOp::Equal, kv.mod_revision())),
        );
        let wanted: BTreeSet<Vec<u8>> = set
            .directives()
            .iter()
            .map(|d| directive_key(prefix, &d.id).into_bytes())
            .collect();
        let mut ops: Vec<TxnOp> = live
            .kvs
            .iter()
            .filter(|kv| !wanted.contains(kv.key()))
            .map(|kv| TxnOp::delete(kv.key(), None))
            .collect();
        let now = self.now();
        let mut leases: BTreeMap<i64, i64> = BTreeMap::new();
        for d in set.directives() {
            let ttl = lease_ttl_secs(d, now);
            let lease = match leases.get(&ttl) {
                Some(id) => *id,
                None => {
                    let id = self.grant_lease(ttl).await?;
                    leases.insert(ttl, id);
                    id
                }
            };
            ops.push(TxnOp::put(
                directive_key(prefix, &d.id),
                directive_bytes(d),
                Some(PutOptions::new().with_lease(lease)),
            ));
        }
        let txn = Txn::new().when(compares).and_then(ops).or_else([TxnOp::get(
            prefix,
            Some(GetOptions::new().with_prefix().with_keys_only()),
        )]);
        let mut client = self.client.clone();
        let result = self.request("publish", client.txn(txn)).await;
        let outcome = result.and_then(|resp| settle(&resp, live.revision));
        if outcome.is_err() {
            // Unused leases would expire on their own; revoking is tidier.
            for id in leases.into_values() {
                let mut client = self.client.clone();
                let _ = self.request("revoke lease", client.lease_revoke(id)).await;
            }
        }
        outcome
    }

    async fn remove_from_prefix(&self, prefix: &str, id: &str) -> Result<Written, PublishError> {
        let by_name = directive_key(prefix, id).into_bytes();
        for attempt in 1..=MAX_ATTEMPTS {
            let live = self.read().await?;
            let clock = self.clock.as_ref();
            let found = live
                .kvs
                .iter()
                .find(|kv| kv.key() == by_name.as_slice())
                .or_else(|| {
                    live.kvs.iter().find(|kv| {
                        decode_directive(kv.value(), clock, &self.limits).is_ok_and(|d| d.id == id)
                    })
                });
            let Some(kv) = found else {
                return Err(PublishError::NotFound { id: id.to_owned() });
            };
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    kv.key(),
                    CompareOp::Equal,
                    kv.mod_revision(),
                )])
                .and_then([TxnOp::delete(kv.key(), None)]);
            let mut client = self.client.clone();
            let resp = self.request("remove", client.txn(txn)).await?;
            if resp.succeeded() {
                return Ok(Written {
                    revision: resp.header().map_or(0, |h| h.revision()),
                    replaced: true,
                });
            }
            retry_pause(attempt).await;
        }
        Err(PublishError::Contended {
            attempts: MAX_ATTEMPTS,
        })
    }

    async fn grant_lease(&self, ttl_secs: i64) -> Result<i64, PublishError> {
        let mut client = self.client.clone();
        let resp = self
            .request("grant lease", client.lease_grant(ttl_secs, None))
            .await?;
        Ok(resp.id())
    }
}

/// Connects to one endpoint and proves with a cheap read that it answers
/// (and that authentication works). Owns its inputs so the future is `Send`.
async fn connect_one(
    connection: ConnectionConfig,
    endpoint: String,
    probe: String,
) -> Result<Client, etcd_client::Error> {
    let mut client = crate::connection::open(&connection, &endpoint).await?;
    client
        .get(probe, Some(GetOptions::new().with_count_only()))
        .await?;
    Ok(client)
}

/// Every change to the live set after [`Publisher::changes`] read it.
///
/// A transaction that touches several keys is one change. Events at or below
/// an already reported revision are ignored (etcd 3.4 can repeat them).
pub struct Changes {
    /// Keeps the connection open as long as the watch lives.
    _client: Client,
    stream: WatchStream,
    applied: AppliedState,
    clock: Arc<dyn Clock>,
    next_revision: i64,
    pending: VecDeque<Change>,
}

impl fmt::Debug for Changes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Changes")
            .field("next_revision", &self.next_revision)
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl Changes {
    /// Waits for the next change.
    ///
    /// # Errors
    /// [`PublishError::WatchEnded`] when the watch closed, was cancelled or
    /// compacted past; [`PublishError::Request`] when the stream failed.
    pub async fn next_change(&mut self) -> Result<Change, PublishError> {
        loop {
            if let Some(change) = self.pending.pop_front() {
                return Ok(change);
            }
            let resp = match self.stream.message().await {
                Ok(Some(resp)) => resp,
                Ok(None) => return Err(PublishError::WatchEnded { why: "closed" }),
                Err(source) => {
                    return Err(PublishError::Request {
                        op: "watch",
                        kind: client_error_kind(&source),
                        source,
                    })
                }
            };
            if resp.compact_revision() != 0 {
                return Err(PublishError::WatchEnded { why: "compacted" });
            }
            if resp.canceled() {
                return Err(PublishError::WatchEnded { why: "cancelled" });
            }
            let mut group: Option<i64> = None;
            let mut reasons: Vec<RejectReason> = Vec::new();
            // The events of one transaction share a revision: filter against
            // the floor as it was before this response, not as it moves.
            let floor = self.next_revision;
            for event in resp.events() {
                let Some(kv) = event.kv() else { continue };
                let revision = kv.mod_revision();
                if revision < floor {
                    continue;
                }
                if let Some(g) = group.filter(|g| *g != revision) {
                    self.emit(g);
                }
                group = Some(revision);
                match event.event_type() {
                    EventType::Put => {
                        self.applied.put(kv, self.clock.as_ref(), &mut reasons);
                    }
                    EventType::Delete => {
                        self.applied.delete(kv.key(), revision);
                    }
                }
                self.next_revision = self.next_revision.max(revision + 1);
            }
            if let Some(g) = group {
                self.emit(g);
            }
        }
    }

    fn emit(&mut self, revision: i64) {
        let set = DirectiveSet::clone(&self.applied.compose());
        let rejected = self.applied.rejections();
        self.pending.push_back(Change {
            revision,
            set,
            rejected,
        });
    }
}

/// The key of a directive in the prefix layout.
pub fn directive_key(prefix: &str, id: &str) -> String {
    format!("{prefix}{id}")
}

/// The canonical single-directive object, as stored in the prefix layout.
fn directive_bytes(d: &TimedDirective) -> Vec<u8> {
    // Serialising a `Value` of strings, numbers and booleans cannot fail.
    serde_json::to_vec(&directive_value(d)).unwrap_or_default()
}

/// The lease of a directive: its remaining lifetime, rounded up to whole
/// seconds, at least 1 s (etcd raises short leases to its own minimum).
fn lease_ttl_secs(d: &TimedDirective, now_unix_nanos: u64) -> i64 {
    let remaining = d
        .expires_at_unix_nanos
        .unwrap_or_default()
        .saturating_sub(now_unix_nanos);
    let secs = remaining.div_ceil(1_000_000_000).max(1);
    i64::try_from(secs).unwrap_or(i64::MAX)
}

fn newest_revision(kvs: &[KeyValue]) -> i64 {
    kvs.iter().map(KeyValue::mod_revision).max().unwrap_or(0)
}

fn key_string(kv: &KeyValue) -> String {
    String::from_utf8_lossy(kv.key()).into_owned()
}

/// The revision of a successful swap, or the conflict its `or_else` read.
fn settle(resp: &TxnResponse, expected: i64) -> Result<i64, PublishError> {
    if resp.succeeded() {
        return Ok(resp.header().map_or(0, |h| h.revision()));
    }
    let actual = resp
        .op_responses()
        .into_iter()
        .filter_map(|r| match r {
            TxnOpResponse::Get(g) => Some(newest_revision(g.kvs())),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    Err(PublishError::Conflict { expected, actual })
}

/// A short, jittered pause before another read-modify-swap attempt, so
/// writers that collided do not collide again in lockstep.
async fn retry_pause(attempt: u32) {
    let base = 10 * u64::from(attempt);
    let jitter = rand::random_range(0..=base);
    tokio::time::sleep(Duration::from_millis(base + jitter)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use osproxy_core::ManualClock;

    fn directive(ttl: u64, clock: &ManualClock) -> TimedDirective {
        let body = format!(r#"{{"id":"a","level":"Shape","ttl_secs":{ttl}}}"#);
        decode_directive(body.as_bytes(), clock, &DecodeLimits::default()).unwrap()
    }

    #[test]
    fn lease_covers_the_remaining_lifetime_rounded_up() {
        let clock = ManualClock::new();
        let d = directive(10, &clock);
        assert_eq!(lease_ttl_secs(&d, clock.unix_nanos()), 10);
        clock.advance(Duration::from_millis(2_500));
        assert_eq!(lease_ttl_secs(&d, clock.unix_nanos()), 8);
        clock.advance(Duration::from_secs(60));
        assert_eq!(lease_ttl_secs(&d, clock.unix_nanos()), 1, "never zero");
    }

    #[test]
    fn prefix_values_are_canonical_single_directives() {
        let clock = ManualClock::new();
        let d = directive(60, &clock);
        let bytes = directive_bytes(&d);
        let again = decode_directive(&bytes, &clock, &DecodeLimits::default()).unwrap();
        assert_eq!(again, d);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains("expires_at"), "{text}");
        assert!(!text.contains("ttl_secs"), "{text}");
        assert_eq!(directive_key("/p/", "a"), "/p/a");
    }

    #[test]
    fn slugs_are_stable_and_retryability_is_documented() {
        let conflict = PublishError::Conflict {
            expected: 1,
            actual: 2,
        };
        assert_eq!(conflict.slug(), "conflict");
        assert!(!conflict.is_retryable());
        assert_eq!(
            conflict.to_string(),
            "revision conflict: expected 1, found 2"
        );
        let contended = PublishError::Contended { attempts: 5 };
        assert!(contended.is_retryable());
        assert_eq!(
            PublishError::from(ConfigError::NoEndpoints).slug(),
            "invalid_config"
        );
    }
}
