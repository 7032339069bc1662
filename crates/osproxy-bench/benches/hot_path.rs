//! The directive hot path: one snapshot read plus one evaluation per request.
//!
//! Run with `cargo bench -p osproxy-bench --bench hot_path`. Groups:
//!
//! - `read_path`: the ways to read the current set (`load`, `snapshot`,
//!   `DirectiveReader::current`) beside an `RwLock` read-and-clone and a bare
//!   atomic load, plus `reader_evaluate_empty` (the whole per-request cost when
//!   no directive is active);
//! - `evaluate`: reader + evaluate, and the linear-scan baseline, over sets of
//!   0 to 10,000 directives with none or one matching the request;
//! - `threads`: the hot read path on 1 and 2 threads, timed with
//!   `iter_custom`: one iteration is one read on *each* thread, so criterion's
//!   time per iteration is the per-read latency under that much parallelism and
//!   its throughput (elements = threads) is the aggregate read rate. Beside it:
//!   `load()` (a contended reference count), the `RwLock` baseline, and
//!   `evaluate_only` (no store read at all: the machine's own scaling ceiling
//!   for this work);
//! - `budget`: one matching directive with a `max_per_sec` budget, counted
//!   (SPEC §8), in a set of 1,000, on 1 and 2 threads like `threads`:
//!   `flood` is the case budgets exist for (a budget of 1,000/s that the
//!   benchmark's request rate exceeds, so almost every request is refused by
//!   a read of the full window and counted `over_budget`); `room` keeps the
//!   budget from ever filling (a billion per second), so every request also
//!   admits itself with a compare-and-swap: the worst case, for context;
//! - `decode`: decoding a 10,000-directive body.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use osproxy_bench::parallel::parallel_ops;
use osproxy_bench::{
    budgeted_for_distinct_tenants, directives_for_distinct_tenants, distinct_tenants_body,
    linear_scan, reader_op, BareAtomic, BenchRequest, RwLockStore,
};
use osproxy_core::{Clock, ManualClock};
use osproxy_observe::{decode_directive_set, DirectiveSet, DirectiveStore, InMemoryDirectiveStore};

const SIZES: [usize; 6] = [0, 1, 10, 100, 1_000, 10_000];

fn store_with(set: DirectiveSet) -> InMemoryDirectiveStore {
    let store = InMemoryDirectiveStore::new();
    store.publish(set);
    store
}

fn read_path(c: &mut Criterion) {
    let clock = ManualClock::new();
    let req = BenchRequest::default();
    let attrs = req.attrs();
    let now = clock.now();
    let set = || directives_for_distinct_tenants(10, true, &clock);

    let mut g = c.benchmark_group("read_path");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);

    let store = store_with(set());
    g.bench_function("load_arc_clone", |b| b.iter(|| store.load()));
    g.bench_function("snapshot_guard", |b| b.iter(|| store.snapshot()));
    let mut reader = store.reader();
    g.bench_function("reader_current", |b| {
        b.iter(|| black_box(reader.current()).len())
    });
    let rw = RwLockStore::new(set());
    g.bench_function("rwlock_read_clone", |b| b.iter(|| rw.load()));
    let bare = BareAtomic::new(set());
    g.bench_function("bare_atomic_u64", |b| b.iter(|| bare.load_u64()));
    g.bench_function("bare_atomic_ptr", |b| b.iter(|| bare.load_ptr()));

    // The whole per-request cost while nothing is active. Like the bare
    // loads above it has no `black_box` on its inputs (an opaque set cannot
    // be constant-folded anyway), so the two carry the same harness overhead.
    let empty = store_with(DirectiveSet::new());
    let mut empty_reader = empty.reader();
    g.bench_function("reader_evaluate_empty", |b| {
        b.iter(|| empty_reader.current().evaluate(&attrs, now, &req.id))
    });
    g.finish();
}

fn evaluate(c: &mut Criterion) {
    let clock = ManualClock::new();
    let req = BenchRequest::default();
    let attrs = req.attrs();
    let now = clock.now();

    let mut g = c.benchmark_group("evaluate");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30);
    for n in SIZES {
        for matching in [false, true] {
            if matching && n == 0 {
                continue;
            }
            let case = if matching { "one" } else { "none" };
            let store = store_with(directives_for_distinct_tenants(n, matching, &clock));
            let mut reader = store.reader();
            g.bench_with_input(BenchmarkId::new(format!("reader/{case}"), n), &n, |b, _| {
                b.iter(|| reader.current().evaluate(black_box(&attrs), now, &req.id))
            });
            let set = store.load();
            g.bench_with_input(
                BenchmarkId::new(format!("linear_scan/{case}"), n),
                &n,
                |b, _| b.iter(|| linear_scan(&set, black_box(&attrs), now, &req.id)),
            );
        }
    }
    g.finish();
}

/// Times `iters` reads on each of `threads` threads (in total
/// `iters × threads`, shared out in chunks: see
/// [`osproxy_bench::parallel::parallel_ops`]).
fn parallel_reads<M, R>(threads: usize, iters: u64, make: M) -> Duration
where
    M: Fn() -> R,
    R: FnMut() + Send,
{
    parallel_ops(threads, iters.saturating_mul(threads as u64), make)
}

fn threads(c: &mut Criterion) {
    const N: usize = 1_000;
    let clock = ManualClock::new();
    let now = clock.now();
    let store = store_with(directives_for_distinct_tenants(N, true, &clock));
    let rw = Arc::new(RwLockStore::new(directives_for_distinct_tenants(
        N, true, &clock,
    )));

    let mut g = c.benchmark_group("threads");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(50);
    for t in [1usize, 2] {
        g.throughput(Throughput::Elements(t as u64));
        g.bench_with_input(BenchmarkId::new("reader_evaluate", t), &t, |b, &t| {
            b.iter_custom(|iters| {
                parallel_reads(t, iters, || {
                    reader_op(&store, now, |set, attrs, now, id| {
                        black_box(set.evaluate(attrs, now, id));
                    })
                })
            })
        });
        // The ceiling: the same evaluation on a set each thread already
        // holds, with no store read at all. How well this scales is what the
        // machine allows; the reader path should scale as well as it does.
        g.bench_with_input(BenchmarkId::new("evaluate_only", t), &t, |b, &t| {
            b.iter_custom(|iters| {
                parallel_reads(t, iters, || {
                    let set = store.load();
                    let req = BenchRequest::default();
                    move || {
                        black_box(set.evaluate(black_box(&req.attrs()), now, &req.id));
                    }
                })
            })
        });
        g.bench_with_input(BenchmarkId::new("load_evaluate", t), &t, |b, &t| {
            b.iter_custom(|iters| {
                parallel_reads(t, iters, || {
                    let store = store.clone();
                    let req = BenchRequest::default();
                    move || {
                        black_box(store.load().evaluate(black_box(&req.attrs()), now, &req.id));
                    }
                })
            })
        });
        g.bench_with_input(BenchmarkId::new("rwlock_evaluate", t), &t, |b, &t| {
            b.iter_custom(|iters| {
                parallel_reads(t, iters, || {
                    let rw = Arc::clone(&rw);
                    let req = BenchRequest::default();
                    move || {
                        black_box(rw.load().evaluate(black_box(&req.attrs()), now, &req.id));
                    }
                })
            })
        });
    }
    g.finish();
}

fn budget(c: &mut Criterion) {
    const N: usize = 1_000;
    let clock = ManualClock::new();
    let now = clock.now();
    let mut g = c.benchmark_group("budget");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(50);
    for (case, max) in [("flood", 1_000u32), ("room", 1_000_000_000)] {
        let store = store_with(budgeted_for_distinct_tenants(N, max, &clock));
        for t in [1usize, 2] {
            g.throughput(Throughput::Elements(t as u64));
            g.bench_with_input(BenchmarkId::new(case, t), &t, |b, &t| {
                b.iter_custom(|iters| {
                    parallel_reads(t, iters, || {
                        reader_op(&store, now, |set, attrs, now, id| {
                            black_box(set.decide(attrs, now, id));
                        })
                    })
                })
            });
        }
    }
    g.finish();
}

fn decode(c: &mut Criterion) {
    let clock = ManualClock::new();
    let body = distinct_tenants_body(10_000, true);
    let mut g = c.benchmark_group("decode");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(20)
        .throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("10000_directives", |b| {
        b.iter(|| decode_directive_set(black_box(&body), &clock).unwrap())
    });
    g.finish();
}

criterion_group!(benches, read_path, evaluate, threads, budget, decode);
criterion_main!(benches);
