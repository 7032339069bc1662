//! A fleet directive store over etcd v3: a watch-fed, locally cached
//! [`DirectiveSet`](osproxy_observe::DirectiveSet) behind the
//! [`DirectiveStore`](osproxy_observe::DirectiveStore) seam.
//!
//! Every instance keeps the current set in memory, so the per-request read is
//! an atomic pointer load, never network I/O; a background task follows an
//! etcd watch and swaps in each new set whole.
//!
//! # Quick start
//!
//! An instance connects once at start-up and takes one decision per request
//! from a per-thread reader; an operator's tool writes with the
//! [`Publisher`]:
//!
//! ```no_run
//! use std::sync::Arc;
//! use osproxy_core::{Clock, EndpointKind, PartitionId, RequestId, SystemClock};
//! use osproxy_etcd::config::{Connection, ConnectionConfig};
//! use osproxy_etcd::{EtcdDirectiveStore, Layout, Publisher};
//! use osproxy_observe::{decode_directive, DecodeLimits, DiagLevel, RequestAttrs};
//!
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! let clock: Arc<dyn Clock> = Arc::new(SystemClock);
//! let endpoints = vec!["127.0.0.1:2379".to_owned()];
//! let layout = Layout::Key("/osproxy/directives".into());
//!
//! // The instance: fails fast if etcd is unreachable, then fails safe.
//! let store = EtcdDirectiveStore::builder(&endpoints, layout.clone(), clock.clone())
//!     .connect()
//!     .await?;
//! let mut reader = store.reader(); // one per worker thread
//!
//! // The operator: add one directive with compare-and-swap.
//! let publisher = Publisher::connect(
//!     Connection::try_from(ConnectionConfig::new(&endpoints))?,
//!     layout,
//!     clock.clone(),
//! )
//! .await?;
//! let directive = decode_directive(
//!     br#"{"id":"acme-timing","level":"ShapeTiming","tenant":"acme","ttl_secs":600}"#,
//!     clock.as_ref(),
//!     &DecodeLimits::default(),
//! )?;
//! let written = publisher.add(directive).await?;
//! println!("added at revision {}", written.revision);
//!
//! // Per request, once the watch delivered it (milliseconds later):
//! let acme = PartitionId::from("acme");
//! let attrs = RequestAttrs::new(EndpointKind::Search).with_tenant(&acme);
//! let decision = reader.current().decide(&attrs, clock.now(), &RequestId::from("req-1"));
//! if decision.level >= DiagLevel::ShapeTiming {
//!     // record timings for this request
//! }
//! println!("{:?}", store.status().phase);
//! # Ok(()) }
//! ```
//!
//! # Consistency model
//! - **Eventual, with bounded staleness.** After the last write, every running
//!   store converges to it — whatever happened in between: writes racing with
//!   `connect`, reconnects, member loss, compaction of missed revisions, or an
//!   etcd rebuilt from scratch. A connection silent for `stale_after` (15 s)
//!   is replaced, so staleness is bounded by that plus a reconnect.
//! - **Last good wins.** An outage or a malformed publish never empties the
//!   set: the last good value keeps serving and the rejection is reported.
//! - **Delete means off.** A deleted key (or empty prefix) is the empty set.
//! - **Expiry is never extended.** Expiries are absolute; a `ttl_secs` written
//!   by another tool is anchored when this store first sees that revision and
//!   is not re-anchored by a re-read or reconnect.
//!
//! # Posture
//! `connect` fails fast (an unreachable or misconfigured etcd is an error
//! within the connect timeout); once connected the store fails safe.
//!
//! # Capture safety (SPEC §8, [`safety`])
//! - **Fail-safe** (off by default: the last good set keeps serving, the
//!   seed's semantics). With
//!   [`failsafe_after`](EtcdStoreBuilder::failsafe_after), a store that has
//!   had no confirmation from etcd for that long stops applying directives
//!   above [`failsafe_level`](EtcdStoreBuilder::failsafe_level) (default
//!   `Shape`) and any asking for capture or ring buffer, until etcd confirms
//!   again; then the current set applies with its original expiries.
//!   `status()` shows `failsafe`, `failsafe_since_unix_nanos` and
//!   `failsafe_withheld`.
//! - **Local ceilings** ([`Ceilings`], default none, builder
//!   [`ceilings`](EtcdStoreBuilder::ceilings)): maximum level, maximum
//!   `sample_per_mille`, capture and ring buffer allowed. Every applied set
//!   is clamped to them once, when it is applied; nothing is widened or
//!   dropped, and `status().clamped` names each clamped directive and
//!   ceiling (so does the instance report). The lifetime ceiling is
//!   `DecodeLimits::max_lifetime` (a rejection, not a clamp).
//!
//! Both act when a set is applied or the fail-safe switches: the request
//! path stays one atomic load of the snapshot the watcher swapped in.
//!
//! # Trust (SPEC §9, [`trust`])
//! With [`trust_store`](EtcdStoreBuilder::trust_store) an instance applies
//! only values signed by a trusted Ed25519 key over exactly the bytes it
//! decodes, under the key they are stored at (`osproxy_observe::signed`);
//! an unsigned value is rejected as `unsigned`, a signature that does not
//! verify as `bad_signature`, an untrusted key id as `unknown_key`, through
//! the same per-key rejection path as a malformed value (the last good set
//! keeps serving; `status().rejected` and the instance report name it).
//! Without a trust store a signed value's payload applies unchecked.
//! [`Publisher::with_signer`] signs what it writes. [`trust::decide_with_header`]
//! folds a signed `X-Debug-Directive` request header into a decision, under
//! the same ceilings.
//!
//! # What `status()` shows during faults
//! | fault | `status()` |
//! |---|---|
//! | etcd down | `connected: false`, `phase: backoff`/`connecting`, `reconnects` rising, `last_error` set, `staleness` growing; the last set serves |
//! | member killed | one reconnect, `endpoint` moves to another member |
//! | frozen member / half-open connection | `staleness` grows to `stale_after`, then a reconnect to the next endpoint |
//! | compaction | no change beyond `applied_revision` (a fresh read is taken) |
//! | a watch that misses changes a read shows (a grpc-proxy whose broadcast died) | a fresh read; on a repeat `degraded_endpoints` names the endpoint and `endpoint` moves to the next |
//! | an event outside the key or prefix, a second creation on one stream | never applied: `refused_total` counts `foreign_key_event` / `second_created`, `last_error` names it, a fresh read follows |
//! | malformed publish | `rejected` names key, revision and reason; `rejected_total` counts it |
//! | no confirmation for `failsafe_after` (when set) | `failsafe: true` since `failsafe_since_unix_nanos`, `failsafe_withheld` directives not applied, until the next confirmation |
//!
//! # Layouts
//! [`Layout::Key`] holds the whole set in one value (the seed's layout).
//! [`Layout::Prefix`] holds one directive object per key under a prefix.
//!
//! # Writing
//! [`Publisher`] is the write side: compare-and-swap publishes in canonical
//! form (the exact bytes checked with the fleet's limits first),
//! `add`/`remove` of single directives, leases in the prefix layout, a
//! change feed that follows exactly like the store (the same watch session), and the fleet's instance reports.
//! One *live revision* (a revision marker written with every change, see
//! [`publisher`]) moves on deletes too, for compare-and-swap and status; a
//! write whose answer is lost is reported as an unknown outcome, never
//! cleaned up after. The marker's value is the write's
//! [`PublishNote`](osproxy_observe::PublishNote) (author, reason, time),
//! read back as a [`RecordedNote`].
//!
//! # History
//! [`Publisher::history`], [`Publisher::set_at`], [`Publisher::diff`] and
//! [`Publisher::rollback`] read etcd's MVCC history (range reads at a
//! revision, bounded by [`MAX_HISTORY_LIMIT`]): each revision of the set
//! with its note and [`SetChanges`]; a rollback republishes an earlier set
//! with compare-and-swap, keeping its absolute expiries and leaving out what
//! has expired. A compacted revision is [`PublishError::Compacted`], naming
//! the oldest available one.
//!
//! # Seed compatibility
//! A program written against the seed's `osproxy-etcd` 1.0.2 compiles
//! unchanged: [`EtcdDirectiveStore::connect`] has the seed's signature, the
//! store is `Clone + Debug + DirectiveStore`, and [`EtcdError`] has a
//! `Connect(..)` variant, `Display`, `Error` and `From<etcd_client::Error>`
//! (`tests/seed_api.rs` checks all of this). Two uses of the seed's
//! single-variant `EtcdError::Connect(etcd_client::Error)` are **not**
//! supported:
//! - an exhaustive `match` (or an irrefutable `let EtcdError::Connect(e) =
//!   ..`): [`EtcdError`] is `#[non_exhaustive]` and also has `Config`
//!   and `Transport` (the [`TransportError`] the publisher shares), so add
//!   a wildcard arm;
//! - using `Connect`'s payload as an `etcd_client::Error` (matching its
//!   variants, or building `EtcdError::Connect(client_error)`): the payload
//!   is a [`ConnectError`] naming the endpoints and the cause; its
//!   `source()` is the client's error when there is one, and
//!   `EtcdError::from(client_error)` still builds the variant. (The seed was
//!   built on etcd-client 0.19, ours on 0.21, so a seed program's
//!   `etcd_client::Error` would be another type anyway.)
#![deny(missing_docs)]

// The guides' Rust blocks compile as doctests of this crate, so a guide
// cannot drift from the API it shows.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/embedding.md")]
mod embedding_guide {}
#[cfg(doctest)]
#[doc = include_str!("../../../docs/security.md")]
mod security_guide {}

pub mod backoff;
mod builder;
mod changes;
pub mod config;
mod connection;
mod error;
mod fleet;
mod follow;
mod history;
mod instance;
pub mod offload;
pub mod publisher;
pub mod safety;
mod serving;
mod session;
pub mod status;
mod store;
mod timers;
pub mod trust;
mod watcher;
mod wire;

pub use builder::EtcdStoreBuilder;
pub use config::{Credentials, Layout, TlsConfig};
pub use error::{ConfigError, ConnectCause, ConnectError, EtcdError, TransportError};
pub use instance::{
    InstanceReport, InstanceState, InstanceStatus, DEFAULT_STATUS_LEASE_TTL, DEFAULT_STATUS_PREFIX,
};
pub use publisher::{
    Change, Changes, Diff, FleetStatus, History, HistoryEntry, KeyRejection, LiveSet, PublishError,
    PublishFault, Publisher, RecordedNote, Rollback, SetAt, SetChanges, SignedNote, Written,
    DEFAULT_HISTORY_LIMIT, DEFAULT_HISTORY_PAGE_BYTES, MAX_HISTORY_LIMIT,
};
pub use safety::{Ceilings, Clamp, ClampedDirective, FailsafePolicy};
pub use status::{Rejection, StoreStatus, WatchPhase};
pub use store::EtcdDirectiveStore;

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
