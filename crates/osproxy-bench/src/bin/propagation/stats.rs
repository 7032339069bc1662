//! Latency samples and their summaries.
//!
//! Samples are signed nanoseconds: "acknowledged → visible" can come out
//! slightly negative when a watch event is handled before the writer's thread
//! wakes up with the put's response. Summaries keep the sign; plots clamp.

use serde::Serialize;

/// Nearest-rank quantile of sorted samples; `q` in `[0, 1]`.
pub fn quantile(sorted: &[i64], q: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let q = q.clamp(0.0, 1.0);
    // Nearest rank: the smallest value with at least q of the samples at or
    // below it.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Nanoseconds as milliseconds.
#[allow(clippy::cast_precision_loss)]
pub fn ms(nanos: i64) -> f64 {
    nanos as f64 / 1e6
}

/// p50 / p99 / max (and friends) of one series, in milliseconds.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Summary {
    /// Samples summarised.
    pub n: usize,
    /// Samples that never arrived within the cap (not in the quantiles).
    pub missed: usize,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub min_ms: Option<f64>,
    pub mean_ms: Option<f64>,
}

impl Summary {
    /// Summarises `samples` (nanoseconds), `missed` of which never arrived.
    pub fn of(samples: &[i64], missed: usize) -> Summary {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let q = |x| quantile(&sorted, x).map(ms);
        #[allow(clippy::cast_precision_loss)]
        let mean = (!sorted.is_empty())
            .then(|| sorted.iter().map(|&v| v as f64).sum::<f64>() / sorted.len() as f64 / 1e6);
        Summary {
            n: sorted.len(),
            missed,
            p50_ms: q(0.50),
            p90_ms: q(0.90),
            p99_ms: q(0.99),
            max_ms: sorted.last().copied().map(ms),
            min_ms: sorted.first().copied().map(ms),
            mean_ms: mean,
        }
    }
}

/// A series kept for plotting: the samples themselves when there are few,
/// evenly spaced quantiles otherwise.
#[derive(Clone, Debug, Serialize)]
pub struct Cdf {
    /// Name of the series.
    pub label: String,
    /// `(latency_ms, cumulative fraction)`, ascending.
    pub points: Vec<(f64, f64)>,
}

/// At most this many points per CDF.
const CDF_POINTS: usize = 1000;

impl Cdf {
    /// The empirical CDF of `samples` (nanoseconds).
    pub fn of(label: impl Into<String>, samples: &[i64]) -> Cdf {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let n = sorted.len();
        #[allow(clippy::cast_precision_loss)]
        let points = if n <= CDF_POINTS {
            sorted
                .iter()
                .enumerate()
                .map(|(i, &v)| (ms(v), (i + 1) as f64 / n as f64))
                .collect()
        } else {
            (1..=CDF_POINTS)
                .map(|k| {
                    let q = k as f64 / CDF_POINTS as f64;
                    (quantile(&sorted, q).map_or(0.0, ms), q)
                })
                .collect()
        };
        Cdf {
            label: label.into(),
            points,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), Some(50));
        assert_eq!(quantile(&v, 0.99), Some(99));
        assert_eq!(quantile(&v, 1.0), Some(100));
        assert_eq!(quantile(&v, 0.0), Some(1));
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[7], 0.99), Some(7));
    }

    #[test]
    fn summary_in_milliseconds_keeps_the_sign() {
        let s = Summary::of(&[-1_000_000, 2_000_000, 3_000_000], 1);
        assert_eq!(s.n, 3);
        assert_eq!(s.missed, 1);
        assert_eq!(s.p50_ms, Some(2.0));
        assert_eq!(s.min_ms, Some(-1.0));
        assert_eq!(s.max_ms, Some(3.0));
        let empty = Summary::of(&[], 0);
        assert_eq!(empty.p99_ms, None);
    }

    #[test]
    fn cdf_is_bounded_and_ascending() {
        let v: Vec<i64> = (0..10_000).rev().collect();
        let cdf = Cdf::of("x", &v);
        assert_eq!(cdf.points.len(), CDF_POINTS);
        assert!(cdf
            .points
            .windows(2)
            .all(|w| w[0].0 <= w[1].0 && w[0].1 < w[1].1));
        assert_eq!(cdf.points.last().map(|p| p.1), Some(1.0));
        assert_eq!(Cdf::of("y", &[3, 1]).points, vec![(1e-6, 0.5), (3e-6, 1.0)]);
    }
}
