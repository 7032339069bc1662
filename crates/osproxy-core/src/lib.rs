//! Foundations every osproxy crate stands on: the [`Clock`] seam, the id
//! newtypes and the stores' [`Revision`].
//!
//! Time is injected, never read ad hoc: [`SystemClock`] is the only code allowed
//! to read the OS clock (clippy's `disallowed-methods` enforces it), and
//! [`ManualClock`] lets tests drive expiry and backoff deterministically.
//!
//! The module paths are the seed's (`osproxy_core::time::Clock`,
//! `osproxy_core::ids::PartitionId`, `osproxy_core::endpoint::EndpointKind`),
//! and everything is re-exported at the root as well.
#![deny(missing_docs)]

pub mod endpoint;
pub mod ids;
pub mod revision;
pub mod time;

pub use endpoint::{EndpointKind, UnknownEndpointKind};
pub use ids::{ClusterId, Epoch, FieldName, IndexName, PartitionId, PrincipalId, RequestId};
pub use revision::Revision;
pub use time::{Clock, Instant, ManualClock, SystemClock};
