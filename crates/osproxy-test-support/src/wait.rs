//! Bounded polling: the only sanctioned way for tests to wait on a condition.

use std::future::Future;
use std::time::Duration;

use osproxy_core::{Clock, Instant, SystemClock};

/// How long [`wait_until`], [`wait_within`], [`eventually`] and [`poll_within`] pause between
/// two checks.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// A point in monotonic time after which a bounded wait gives up.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline(Instant);

impl Deadline {
    /// `timeout` from now.
    pub(crate) fn after(timeout: Duration) -> Self {
        Deadline(SystemClock.now() + timeout)
    }

    /// Whether the deadline has passed.
    pub(crate) fn expired(self) -> bool {
        SystemClock.now() >= self.0
    }

    /// Time left, zero once expired.
    pub(crate) fn remaining(self) -> Duration {
        self.0 - SystemClock.now()
    }
}

/// Blocks until `check` returns `true`, polling every 10 ms; panics with
/// `what` when it is still `false` after `timeout`.
///
/// ```
/// # use std::time::Duration;
/// let mut n = 0;
/// osproxy_test_support::wait_until(Duration::from_secs(1), "n reaches 3", || {
///     n += 1;
///     n >= 3
/// });
/// ```
pub fn wait_until(timeout: Duration, what: &str, check: impl FnMut() -> bool) {
    if !wait_within(timeout, check) {
        panic!("timed out after {timeout:?} waiting until {what}");
    }
}

/// The poll behind [`wait_until`], without its panic: `true` as soon as
/// `check` returns `true`, `false` once `timeout` has passed. For waits whose
/// failure message must say more than `what`.
pub fn wait_within(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Deadline::after(timeout);
    loop {
        if check() {
            return true;
        }
        if deadline.expired() {
            return false;
        }
        std::thread::sleep(POLL_INTERVAL.min(deadline.remaining()));
    }
}

/// Async twin of [`wait_until`]: awaits `check()` every 10 ms until it yields
/// `true`; panics with `what` after `timeout`. Needs a tokio runtime with time
/// enabled (`#[tokio::test]` has it).
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    if !poll_within(timeout, check).await {
        panic!("timed out after {timeout:?} waiting until {what}");
    }
}

/// The poll behind [`eventually`], without its panic: awaits `check()` every
/// 10 ms and returns `true` as soon as it yields `true`, `false` once
/// `timeout` has passed. For waits whose failure message must say more than
/// `what` (the state of the thing waited on, say).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
/// let ok = osproxy_test_support::poll_within(Duration::from_millis(50), || async { false }).await;
/// assert!(!ok);
/// # }
/// ```
pub async fn poll_within<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let polled = async {
        loop {
            if check().await {
                return;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    };
    tokio::time::timeout(timeout, polled).await.is_ok()
}
