//! The transport's timeline, read in one place.
//!
//! Two timelines meet in this crate and never mix:
//! - **directive time** — expiries, `ttl_secs` anchoring, the times `status()`
//!   reports — comes from the [`Clock`](osproxy_core::Clock) seam, so a test
//!   can hand the store a `ManualClock` and move expiry by hand;
//! - **transport time** — connect and request deadlines, the liveness timers
//!   of [`crate::follow::Liveness`], report retries — is tokio's clock, read
//!   only through [`now`] here, so it sleeps with tokio's timers and a test
//!   can pause and advance it (`tokio::time::pause`) without touching expiry.
//!
//! The watch core itself reads neither: the shell passes the time in.

use tokio::time::Instant;

/// Now, on the transport's timeline.
pub(crate) fn now() -> Instant {
    Instant::now()
}
