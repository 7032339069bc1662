//! Per-directive state on the request path: rate budgets (`max_per_sec`)
//! and decision counters (applied / sampled out / over budget), SPEC §8.
//!
//! Both live beside an immutable [`crate::DirectiveSet`] (shared by its
//! clones), so the set itself stays read-only and the per-request path stays
//! free of locks. What keeps them cheap on many cores:
//!
//! - **Counters are striped by thread.** Each thread adds to its own shard
//!   (a block of atomics per shard, padded apart, in one allocation), so two threads
//!   counting the same directive never write the same cache line; a reader
//!   sums the shards. A thread *owns* its shard while it lives (one per core
//!   can, claimed on a thread's first count and given back when it exits):
//!   as the only writer it increments with a plain load and store, no locked
//!   instruction. Threads beyond that share one more shard and increment it
//!   atomically. Relaxed throughout: the counts are statistics, not
//!   synchronisation (the claim and the release of a shard are what order
//!   one owner's increments before the next owner's).
//! - **A budget writes only while it has room.** A directive's budget is
//!   one atomic word holding the current one-second window and the requests
//!   admitted in it. Admitting is a compare-and-swap; once the window is
//!   full, every further request of that second only *reads* the word, so a
//!   flood far over the budget costs a shared read, not a contended write.
//!   At most `max_per_sec` writes per second happen, whatever the traffic.
//!
//! Windows are whole seconds of the evaluating clock's monotonic timeline
//! (`now` as passed to `decide`), so "per second" means the same on every
//! thread; a new set (a new publish) starts its budgets and counters afresh.

use std::cell::Cell;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use osproxy_core::Instant;

use crate::timed::TimedDirective;

/// What one directive's decisions came to on this instance, since the set
/// was applied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DirectiveCounts {
    /// Requests that matched its targets, were in its sample and within its
    /// budget: they received its effect.
    pub applied: u64,
    /// Requests that matched its targets but fell outside its sample.
    pub sampled_out: u64,
    /// Requests that matched and were in its sample, refused by its budget.
    pub over_budget: u64,
}

/// Which counter a decision adds to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Counted {
    Applied = 0,
    SampledOut = 1,
    OverBudget = 2,
}

/// Counters per directive and thread slot.
const PER_DIRECTIVE: usize = 3;
/// Padding (in atomics) before and after each shard's block, so that the
/// blocks of two threads never share a cache line.
const PAD: usize = 8;

/// How many shards can be owned, one thread each: one per core, at most
/// 64 (a bit each in [`CLAIMED`]). A set's counters have one more: the
/// shared shard, at this index.
fn owned_shards() -> usize {
    static SHARDS: OnceLock<usize> = OnceLock::new();
    *SHARDS.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, usize::from)
            .clamp(1, 64)
    })
}

/// Which owned shards a living thread holds, a bit each.
static CLAIMED: AtomicU64 = AtomicU64::new(0);

/// A thread's shard: unassigned (`usize::MAX`) until its first count, then
/// owned (below [`owned_shards`]) or the shared one. An owned one is given
/// back when the thread exits.
struct Claim(Cell<usize>);

impl Drop for Claim {
    fn drop(&mut self) {
        let s = self.0.get();
        if s < owned_shards() {
            // Release: this owner's last increments happen before the next
            // owner's claim (acquire) and first load.
            CLAIMED.fetch_and(!(1u64 << s), Ordering::Release);
        }
    }
}

thread_local! {
    static CLAIM: Claim = const { Claim(Cell::new(usize::MAX)) };
}

/// This thread's shard. While the thread's local storage is being torn
/// down, the shared one.
#[inline(always)]
fn thread_shard() -> usize {
    CLAIM
        .try_with(|c| match c.0.get() {
            usize::MAX => claim(&c.0),
            s => s,
        })
        .unwrap_or_else(|_| owned_shards())
}

/// Claims a free owned shard for this thread, or settles on the shared one.
#[cold]
#[inline(never)]
fn claim(slot: &Cell<usize>) -> usize {
    let owned = owned_shards();
    let all = if owned == 64 {
        u64::MAX
    } else {
        (1u64 << owned) - 1
    };
    let mut claimed = CLAIMED.load(Ordering::Relaxed);
    let s = loop {
        let free = !claimed & all;
        if free == 0 {
            break owned;
        }
        let bit = free.trailing_zeros();
        match CLAIMED.compare_exchange_weak(
            claimed,
            claimed | (1u64 << bit),
            Ordering::Acquire,
            Ordering::Relaxed,
        ) {
            Ok(_) => break bit as usize,
            Err(seen) => claimed = seen,
        }
    };
    slot.set(s);
    s
}

/// One directive's rate budget.
#[derive(Debug)]
pub(crate) struct Budget {
    max: u32,
    /// The window (second of the monotonic timeline, low 32 bits) in the
    /// high half, the requests admitted in it in the low half.
    window: AtomicU64,
}

fn second_of(now: Instant) -> u64 {
    (now.as_nanos() / 1_000_000_000) & u64::from(u32::MAX)
}

impl Budget {
    fn new(max: NonZeroU32) -> Self {
        Budget {
            max: max.get(),
            // Window u32::MAX with nothing admitted: no real second matches
            // before the timeline has run for 136 years.
            window: AtomicU64::new(u64::from(u32::MAX) << 32),
        }
    }

    /// The requests admitted in `now`'s second so far.
    pub(crate) fn used(&self, now: Instant) -> u32 {
        let w = self.window.load(Ordering::Relaxed);
        if w >> 32 == second_of(now) {
            // The low half is a count (truncation intended).
            #[allow(clippy::cast_possible_truncation)]
            let used = w as u32;
            used
        } else {
            0
        }
    }

    /// The budget per second.
    pub(crate) fn max(&self) -> u32 {
        self.max
    }

    /// Whether a request at `now` would be admitted, without admitting it.
    pub(crate) fn has_room(&self, now: Instant) -> bool {
        self.used(now) < self.max
    }

    /// Admits one request at `now` if the budget has room.
    #[inline]
    pub(crate) fn try_take(&self, now: Instant) -> bool {
        let second = second_of(now);
        let mut current = self.window.load(Ordering::Relaxed);
        loop {
            #[allow(clippy::cast_possible_truncation)]
            let used = if current >> 32 == second {
                current as u32
            } else {
                0
            };
            if used >= self.max {
                return false;
            }
            let next = (second << 32) | u64::from(used + 1);
            match self.window.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }
}

/// The per-directive state of one set.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    directives: usize,
    /// [`owned_shards`] when the set was made.
    owned: usize,
    /// Atomics per shard: the directives' counters between two paddings.
    stride: usize,
    /// `owned_shards() + 1` blocks of `stride` atomics, one allocation
    /// (the last block is the shared shard).
    counts: Box<[AtomicU64]>,
    budgets: Box<[Option<Budget>]>,
}

impl Stats {
    pub(crate) fn new(directives: &[TimedDirective]) -> Stats {
        let n = directives.len();
        let shards = if n == 0 { 0 } else { owned_shards() + 1 };
        let stride = n * PER_DIRECTIVE + PAD;
        Stats {
            directives: n,
            owned: owned_shards(),
            stride,
            counts: (0..shards * stride + PAD)
                .map(|_| AtomicU64::new(0))
                .collect(),
            budgets: directives
                .iter()
                .map(|d| d.max_per_sec.map(Budget::new))
                .collect(),
        }
    }

    /// The budget of the directive at `pos`, if it has one.
    #[inline]
    pub(crate) fn budget(&self, pos: usize) -> Option<&Budget> {
        self.budgets.get(pos).and_then(Option::as_ref)
    }

    #[inline(always)]
    fn slot(&self, shard: usize, pos: usize, what: Counted) -> usize {
        shard * self.stride + PAD + pos * PER_DIRECTIVE + what as usize
    }

    /// Adds one decision of the directive at `pos` to this thread's shard.
    #[inline(always)]
    pub(crate) fn count(&self, pos: usize, what: Counted) {
        let shard = thread_shard();
        if let Some(c) = self.counts.get(self.slot(shard, pos, what)) {
            if shard < self.owned {
                // This thread is the shard's only writer.
                c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
            } else {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The counts of the directive at `pos`, summed over the shards.
    pub(crate) fn counts(&self, pos: usize) -> DirectiveCounts {
        let mut out = DirectiveCounts::default();
        if pos >= self.directives {
            return out;
        }
        let shards = self.counts.len() / self.stride.max(1);
        for shard in 0..shards {
            let at = |what: Counted| {
                self.counts
                    .get(self.slot(shard, pos, what))
                    .map_or(0, |c| c.load(Ordering::Relaxed))
            };
            out.applied += at(Counted::Applied);
            out.sampled_out += at(Counted::SampledOut);
            out.over_budget += at(Counted::OverBudget);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn directive(id: &str) -> crate::DiagnosticsDirective {
        crate::DiagnosticsDirective {
            id: id.to_owned(),
            match_: crate::DirectiveMatch::all(),
            level: crate::DiagLevel::Shape,
            sample_per_mille: 1000,
            expires_at: Instant::from_nanos(u64::MAX),
            ring_buffer: false,
            capture: false,
        }
    }

    fn budget(max: u32) -> Budget {
        Budget::new(NonZeroU32::new(max).unwrap_or(NonZeroU32::MIN))
    }

    #[test]
    fn a_budget_admits_max_per_second_then_refuses_until_the_next() {
        let b = budget(3);
        let t = Instant::from_nanos(5_000_000_000);
        assert!((0..3).all(|_| b.try_take(t)));
        assert!(!b.try_take(t));
        assert!(!b.try_take(t.saturating_add(Duration::from_millis(999))));
        assert_eq!(b.used(t), 3);
        let next = t.saturating_add(Duration::from_secs(1));
        assert!(b.has_room(next));
        assert!(b.try_take(next));
        assert_eq!(b.used(next), 1);
    }

    #[test]
    fn a_fresh_budget_has_room_at_time_zero() {
        let b = budget(1);
        assert!(b.has_room(Instant::ZERO));
        assert!(b.try_take(Instant::ZERO));
        assert!(!b.try_take(Instant::ZERO));
    }

    #[test]
    fn two_threads_never_admit_more_than_the_budget() {
        let b = std::sync::Arc::new(budget(1000));
        let t = Instant::from_nanos(7_000_000_000);
        let admitted: u64 = (0..2)
            .map(|_| {
                let b = std::sync::Arc::clone(&b);
                std::thread::spawn(move || (0..5000).filter(|_| b.try_take(t)).count() as u64)
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap_or(0))
            .sum();
        assert_eq!(admitted, 1000);
    }

    #[test]
    fn counts_from_several_threads_add_up() {
        let stats = std::sync::Arc::new(Stats::new(&[
            TimedDirective::from(directive("a")),
            TimedDirective::from(directive("b")),
        ]));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let s = std::sync::Arc::clone(&stats);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        s.count(1, Counted::Applied);
                        s.count(1, Counted::OverBudget);
                    }
                    s.count(0, Counted::SampledOut);
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap_or(());
        }
        assert_eq!(
            stats.counts(1),
            DirectiveCounts {
                applied: 4000,
                sampled_out: 0,
                over_budget: 4000
            }
        );
        assert_eq!(stats.counts(0).sampled_out, 4);
        assert_eq!(stats.counts(2), DirectiveCounts::default());
    }

    /// More threads than owned shards, all counting at once: the owners'
    /// plain increments and the shared shard's atomic ones lose nothing.
    #[test]
    fn owned_and_shared_shards_together_lose_no_count() {
        const EACH: u64 = 500_000;
        let threads = owned_shards() + 3;
        let stats = std::sync::Arc::new(Stats::new(&[TimedDirective::from(directive("a"))]));
        let start = std::sync::Arc::new(std::sync::Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (s, start) = (std::sync::Arc::clone(&stats), std::sync::Arc::clone(&start));
                std::thread::spawn(move || {
                    start.wait();
                    for _ in 0..EACH {
                        s.count(0, Counted::Applied);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap_or(());
        }
        assert_eq!(stats.counts(0).applied, EACH * threads as u64);
    }
}
