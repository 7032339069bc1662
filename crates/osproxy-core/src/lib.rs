//! Foundations every osproxy crate stands on: the [`Clock`] seam and the id
//! newtypes.
//!
//! Time is injected, never read ad hoc: [`SystemClock`] is the only code allowed
//! to read the OS clock (clippy's `disallowed-methods` enforces it), and
//! [`ManualClock`] lets tests drive expiry and backoff deterministically.
#![deny(missing_docs)]

mod clock;
mod ids;

pub use clock::{Clock, Instant, ManualClock, SystemClock};
pub use ids::{EndpointKind, IndexName, PartitionId, PrincipalId, RequestId, UnknownEndpointKind};
