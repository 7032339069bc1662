//! Keeps a large decode from stalling the runtime's other tasks.
//!
//! Decoding is linear (SPEC §5.13), but a 1 MiB value still costs
//! milliseconds, and a hostile shape of the same size a few times that
//! (`osproxy-bench`'s `decode_cost`). On a multi-thread runtime a batch
//! larger than [`INLINE_BYTES`] is decoded under
//! [`tokio::task::block_in_place`], which hands this worker's other tasks to
//! another worker first: the proxy's request tasks never wait behind it. On a
//! current-thread runtime there is no other worker to hand them to, and the
//! decode runs inline as before.
//!
//! The store's watcher uses it for every batch it decodes; the operator
//! binary's admin POST handler for every body.

use tokio::runtime::{Handle, RuntimeFlavor};

/// Batches up to this many bytes decode inline: at the decoder's measured
/// cost (about 9 ms per MiB) that is well under a millisecond.
pub const INLINE_BYTES: usize = 64 * 1024;

/// Runs `work`, which decodes `bytes` bytes, off the async worker when it is
/// large and the runtime can spare the worker.
pub fn decode_work<R>(bytes: usize, work: impl FnOnce() -> R) -> R {
    let multi_thread =
        Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread);
    if bytes > INLINE_BYTES && multi_thread {
        tokio::task::block_in_place(work)
    } else {
        work()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_inline_without_a_runtime() {
        assert_eq!(decode_work(10 * INLINE_BYTES, || 7), 7);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn runs_inline_on_a_current_thread_runtime() {
        assert_eq!(decode_work(10 * INLINE_BYTES, || 8), 8);
    }

    /// `block_in_place` would panic on a current-thread runtime: the flavor
    /// check is what these two tests hold.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn large_work_runs_on_a_multi_thread_runtime() {
        assert_eq!(decode_work(10 * INLINE_BYTES, || 9), 9);
    }
}
