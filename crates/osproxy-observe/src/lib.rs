//! The diagnostics directive model: what a directive is, how it arrives
//! ([`decode_directive_set`], fail-closed), how a request is evaluated against a
//! set ([`DirectiveSet::decide`], indexed), and the seam through which a
//! service reads the current set ([`DirectiveStore`], [`DirectiveReader`]).
//!
//! # Quick start
//!
//! Decode a set (from etcd, an admin POST or a file: one decoder for all),
//! publish it into a store, and on each request take the decision once:
//!
//! ```
//! use osproxy_core::{Clock, EndpointKind, ManualClock, PartitionId, RequestId};
//! use osproxy_observe::{decode_directive_set, DiagLevel, InMemoryDirectiveStore, RequestAttrs};
//!
//! let clock = ManualClock::new();
//! let body = br#"{"directives":[{"id":"acme-timing","level":"ShapeTiming",
//!     "tenant":"acme","sample_per_mille":1000,"ttl_secs":600}]}"#;
//! let store = InMemoryDirectiveStore::new();
//! store.publish(decode_directive_set(body, &clock)?);
//!
//! // Per worker thread: a reader (a read writes no shared memory).
//! let mut reader = store.reader();
//! // Per request: one decision, which also counts budgets.
//! let tenant = PartitionId::from("acme");
//! let attrs = RequestAttrs::new(EndpointKind::Search).with_tenant(&tenant);
//! let decision = reader.current().decide(&attrs, clock.now(), &RequestId::from("req-1"));
//! assert_eq!(decision.level, DiagLevel::ShapeTiming);
//! # Ok::<(), &'static str>(())
//! ```
//!
//! The fleet's store, fed by an etcd watch, is `osproxy_etcd::EtcdDirectiveStore`;
//! it hands out the same [`DirectiveReader`].
//!
//! Layering: [`directive`] defines the domain types, [`decode`] turns untrusted
//! bytes into them (one decoder for every channel), [`encode`] writes the
//! canonical form back, [`set`] indexes a set so a request costs a few hash
//! look-ups however many directives are active, and [`store`] publishes whole
//! snapshots with one atomic swap so readers never block and never write
//! shared memory. [`verifier`] is the single-request channel's seam.
//!
//! # Modules
//!
//! Each module uses only those listed after its arrow; the graph has no
//! circle.
//!
//! * Shared leaf and model:
//!   - `rules` → nothing: [`RejectReason`], [`DecodeError`], [`DecodeLimits`]
//!     and their constants, the validity rules for ids and targets (public
//!     through [`decode`]);
//!   - [`sample`] → nothing; [`directive`] → `sample`; [`timed`] →
//!     `directive`.
//! * Write side (bytes in, bytes out):
//!   - `json` → `rules` (the strict reader, private);
//!   - [`decode`] → `json`, `rules`, `set`, `directive`, `timed`;
//!   - [`encode`] → `set`, `directive`, `timed`.
//! * Read side (what a request path touches):
//!   - [`set`] → `rules`, `directive`, `sample`, `timed`;
//!   - [`explain`] → `set`, `directive`, `sample`;
//!   - [`store`] → `set`; [`verifier`] → `directive`;
//!   - [`view`] → `encode`, `set`, `timed`.
//! * Where records go (the observation seams a recorder feeds):
//!   - [`breakglass`] → nothing: the [`BreakGlassBuffer`] tape;
//!   - [`diagnostic_sink`] → nothing: [`DiagnosticSink`];
//!   - [`export`] → nothing: [`SpanExporter`].
//! * Trust (SPEC §9):
//!   - [`keys`] → nothing: Ed25519 [`SignerKey`] and [`TrustStore`] by key id;
//!   - [`signed`] → `keys`, `rules`, `json`, `note`, `decode`, `encode`:
//!     signed etcd values (format v1, and v2 with anti-rollback metadata);
//!   - [`manifest`] → `json`, `rules`: the prefix layout's signed list of
//!     live keys;
//!   - [`token`] → `keys`, `decode`, `json`, `directive`, `encode`, `set`,
//!     `timed`, `verifier`: the `X-Debug-Directive` token and
//!     [`TokenVerifier`].
//!
//! Seed compatibility: every public item of the seed's `osproxy-observe`
//! 1.0.2 directive subsystem is here with its seed signature (SPEC §4), and
//! so are its observation seams ([`BreakGlassBuffer`], [`DiagnosticSink`],
//! [`SpanExporter`]); richer API sits beside them. The seed's proxy-specific
//! trace stages (`RequestTrace` and its per-stage infos, `resource_spans`) are
//! not: `osproxy-tracing` records any `tracing`-instrumented service instead.

#![deny(missing_docs)]

pub mod breakglass;
pub mod decode;
pub mod diagnostic_sink;
pub mod directive;
pub mod encode;
pub mod explain;
pub mod export;
mod json;
pub mod keys;
pub mod manifest;
pub mod note;
mod rules;
pub mod sample;
pub mod set;
pub mod signed;
mod stats;
pub mod store;
pub mod timed;
pub mod token;
mod token_claims;
pub mod verifier;
pub mod view;

pub use breakglass::BreakGlassBuffer;
pub use decode::{
    decode_directive, decode_directive_set, decode_directive_set_detailed,
    decode_directive_set_with, DecodeError, DecodeLimits, RejectReason,
};
pub use diagnostic_sink::{DiagnosticSink, NoopDiagnosticSink};
pub use directive::{DiagLevel, DiagnosticsDirective, DirectiveMatch, RequestAttrs, RequestKeys};
pub use encode::{encode_directive_set, encode_directive_set_pretty, format_rfc3339};
pub use explain::{DirectiveExplanation, Explanation};
pub use export::{NoopExporter, SpanExporter};
pub use keys::{KeyError, SignerKey, TrustStore};
pub use note::{decode_publish_note, NoteError, PublishNote};
pub use set::{Decision, DirectiveCounts, DirectiveSet};
pub use signed::{SignedFormat, SignedMeta};
pub use store::{
    DirectiveReader, DirectiveStore, InMemoryDirectiveStore, RevisionConflict, SharedDirectiveSet,
    Snapshot,
};
pub use timed::TimedDirective;
pub use token::{HeaderVerdict, Judgement, TokenVerifier};
pub use verifier::{DirectiveVerifier, NoVerifier};
pub use view::DirectiveView;
