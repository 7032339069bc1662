//! Running the same per-request work on several threads at once, and timing
//! it as *throughput*: operations completed by all threads together per unit
//! of wall time.
//!
//! Two drivers, one for each way of asking:
//!
//! - [`parallel_ops`]: a fixed number of operations, shared out in chunks
//!   (as rayon does), for criterion's `iter_custom`. A thread that the
//!   machine slows down takes fewer chunks instead of holding every other
//!   thread's finished work hostage to its own last one.
//! - [`window`]: a fixed stretch of wall time, every thread counting what it
//!   completes; the scaling benchmark interleaves many short windows of one
//!   and two threads so that both see the same machine.
//!
//! Wall time is read with `std::time::Instant` directly: these measure the
//! machine, the clock seam has no use here.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::Duration;

/// Operations a thread runs between two looks at the shared work counter
/// or stop flag: small enough that the last chunk costs microseconds, large
/// enough that the look costs nothing measurable.
pub const CHUNK: u64 = 1024;

/// Runs `ops` operations in total, spread over `threads` threads started
/// together, and returns the wall time of the parallel section (thread
/// start-up and teardown excluded). `make` builds each thread's operation
/// (its own reader, request, …) before the clock starts.
///
/// With `ops = iters × threads`, criterion's time per iteration is the time
/// of one operation on each thread, and its throughput (elements =
/// `threads`) the aggregate rate.
pub fn parallel_ops<M, R>(threads: usize, ops: u64, make: M) -> Duration
where
    M: Fn() -> R,
    R: FnMut() + Send,
{
    let threads = threads.max(1);
    let taken = AtomicU64::new(0);
    let start = Barrier::new(threads + 1);
    let end = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for _ in 0..threads {
            let mut op = make();
            let (start, end, taken) = (&start, &end, &taken);
            s.spawn(move || {
                start.wait();
                loop {
                    let from = taken.fetch_add(CHUNK, Ordering::Relaxed);
                    if from >= ops {
                        break;
                    }
                    for _ in from..(from + CHUNK).min(ops) {
                        op();
                    }
                }
                end.wait();
            });
        }
        start.wait();
        #[allow(clippy::disallowed_methods)]
        let t0 = std::time::Instant::now();
        end.wait();
        t0.elapsed()
    })
}

/// What one [`window`] measured.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    /// Operations completed by all threads together.
    pub ops: u64,
    /// Wall time from the common start to the stop signal.
    pub elapsed: Duration,
}

impl Window {
    /// Aggregate operations per second.
    pub fn ops_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            // Counts far below 2^53: exact as a float.
            #[allow(clippy::cast_precision_loss)]
            let ops = self.ops as f64;
            ops / secs
        } else {
            0.0
        }
    }
}

/// Runs `threads` threads for `length` of wall time, each repeating its
/// operation, and returns how many they completed together. A thread looks
/// at the stop flag every [`CHUNK`] operations, so the overrun after the
/// signal is a few microseconds, far below the window.
pub fn window<M, R>(threads: usize, length: Duration, make: M) -> Window
where
    M: Fn() -> R,
    R: FnMut() + Send,
{
    let threads = threads.max(1);
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let start = Barrier::new(threads + 1);
    let elapsed = std::thread::scope(|s| {
        for _ in 0..threads {
            let mut op = make();
            let (start, stop, done) = (&start, &stop, &done);
            s.spawn(move || {
                start.wait();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..CHUNK {
                        op();
                    }
                    n += CHUNK;
                }
                done.fetch_add(n, Ordering::Relaxed);
            });
        }
        start.wait();
        #[allow(clippy::disallowed_methods)]
        let t0 = std::time::Instant::now();
        // The window itself: this thread only waits (a benchmark's timing
        // window, not synchronisation; the workers stop on the flag).
        std::thread::sleep(length);
        stop.store(true, Ordering::Relaxed);
        t0.elapsed()
    });
    // Leaving the scope joined the workers: `done` is complete.
    Window {
        ops: done.load(Ordering::Relaxed),
        elapsed,
    }
}
