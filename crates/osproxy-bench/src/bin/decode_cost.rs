//! Decoder cost on hostile shapes, as ratios to a valid set of the same size
//! measured in the same run (SPEC §5.13; `osproxy_bench::hostile`).
//!
//! ```text
//! cargo run --release -p osproxy-bench --bin decode_cost            # ~10 s
//! cargo run --release -p osproxy-bench --bin decode_cost -- --quick # fewer rounds
//! ```
//!
//! Each shape is decoded in rounds until it has at least `MIN_ROUNDS`
//! timings and `MIN_TIME` of them; the table shows the median and its ratio to the
//! median of `valid_full_set`. The target is a ratio of at most
//! [`TARGET_RATIO`]; a verdict over a non-positive baseline is "n/a".
// A measurement tool, not library code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use osproxy_bench::hostile::{shapes, Shape};
use osproxy_core::{Clock, SystemClock};
use osproxy_observe::decode_directive_set;

/// The largest accepted ratio of a shape's decode time to the valid set's.
const TARGET_RATIO: f64 = 20.0;

struct Timing {
    median: Duration,
    rounds: usize,
}

fn time_shape(shape: &Shape, min_rounds: usize, min_time: Duration) -> Timing {
    let clock = SystemClock;
    let mut samples = Vec::new();
    let started = clock.now();
    // Bounded: at most 10,000 rounds whatever the shape costs.
    while samples.len() < 10_000
        && (samples.len() < min_rounds || clock.now().saturating_duration_since(started) < min_time)
    {
        let t = clock.now();
        let outcome = decode_directive_set(std::hint::black_box(&shape.body), &clock);
        samples.push(clock.now().saturating_duration_since(t));
        let slug = outcome.err().map(|e| e.slug());
        assert_eq!(slug, shape.expect, "{}: unexpected outcome", shape.name);
    }
    samples.sort();
    Timing {
        median: samples[samples.len() / 2],
        rounds: samples.len(),
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (min_rounds, min_time) = if quick {
        (3, Duration::from_millis(50))
    } else {
        (15, Duration::from_millis(500))
    };
    let shapes = shapes();
    let timings: Vec<Timing> = shapes
        .iter()
        .map(|s| time_shape(s, min_rounds, min_time))
        .collect();
    let base = timings[0].median.as_secs_f64();
    println!(
        "| shape | bytes | outcome | median | × valid 1 MiB set | verdict (≤ {TARGET_RATIO}×) |"
    );
    println!("|---|---:|---|---:|---:|---|");
    let mut missed = 0;
    for (s, t) in shapes.iter().zip(&timings) {
        let ratio = t.median.as_secs_f64() / base;
        let verdict = if base <= 0.0 {
            "n/a"
        } else if ratio <= TARGET_RATIO {
            "met"
        } else {
            missed += 1;
            "MISSED"
        };
        println!(
            "| `{}` ({}) | {} | {} | {:.3} ms ({} rounds) | {:.2} | {} |",
            s.name,
            s.what,
            s.body.len(),
            s.expect.unwrap_or("ok"),
            t.median.as_secs_f64() * 1e3,
            t.rounds,
            ratio,
            verdict
        );
    }
    if missed > 0 {
        println!("\n{missed} shape(s) over {TARGET_RATIO}× the valid set");
    }
}
