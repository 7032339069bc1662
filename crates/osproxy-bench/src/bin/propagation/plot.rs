//! SVG plots of the propagation results (plotters, SVG backend: the text is
//! SVG `<text>`, so rendering needs no font files).
//!
//! - `propagation-cdf.svg`: acknowledged → visible, one panel per store
//!   count, linear axis (a watch event often arrives before the writer's
//!   thread sees its acknowledgement, so part of it is negative);
//! - `propagation-cdf-from-sent.svg`: the same from the put being sent,
//!   log axis;
//! - `propagation-vs-stores.svg`: p50 and p99 from the put being sent against
//!   the store count, log-log.

use std::path::{Path, PathBuf};

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::propagation::PropagationRun;
use crate::stats::Cdf;
use crate::Res;

/// Series colours, in the order series are drawn.
const COLOURS: [RGBColor; 5] = [
    RGBColor(0x44, 0x44, 0x44),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
];

/// The smallest latency a log axis shows; anything below is drawn there.
const FLOOR_MS: f64 = 0.01;

/// An axis label: at most three decimals, no trailing zeros.
fn number(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" || s == "-0" {
        "0".to_owned()
    } else {
        s.to_owned()
    }
}

fn colour(i: usize) -> RGBColor {
    COLOURS[i % COLOURS.len()]
}

fn stores_label(n: usize) -> String {
    format!("{n} store{}", if n == 1 { "" } else { "s" })
}

/// Draws every plot into `dir`; returns their paths.
pub fn draw(dir: &Path, runs: &[PropagationRun]) -> Res<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let from_ack = dir.join("propagation-cdf.svg");
    cdf_linear(&from_ack, runs)?;
    let from_sent = dir.join("propagation-cdf-from-sent.svg");
    cdf_log(&from_sent, runs)?;
    let scale = dir.join("propagation-vs-stores.svg");
    scale_plot(&scale, runs)?;
    Ok(vec![from_ack, from_sent, scale])
}

type Chart<'a, 'b, X> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<X, RangedCoordf64>>;

/// Each CDF as a step function, with its legend entry; `floor` clamps (log
/// axes).
fn draw_cdfs<'a, X: Ranged<ValueType = f64>>(
    chart: &mut Chart<'a, 'a, X>,
    cdfs: &[Cdf],
    floor: Option<f64>,
) -> Res<()> {
    for (i, cdf) in cdfs.iter().enumerate() {
        let c = colour(i);
        let mut pts = Vec::with_capacity(cdf.points.len() * 2);
        let mut prev = 0.0;
        for &(x, y) in &cdf.points {
            let x = floor.map_or(x, |f| x.max(f));
            pts.push((x, prev));
            pts.push((x, y));
            prev = y;
        }
        chart
            .draw_series(LineSeries::new(pts, c.stroke_width(2)))?
            .label(cdf.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 11))
        .draw()?;
    Ok(())
}

fn bounds(cdfs: &[Cdf]) -> (f64, f64) {
    let xs = cdfs.iter().flat_map(|c| c.points.iter().map(|p| p.0));
    xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
        (lo.min(x), hi.max(x))
    })
}

/// Acknowledged → visible, linear axis per panel.
fn cdf_linear(path: &Path, runs: &[PropagationRun]) -> Res<()> {
    let panels = runs.len().max(1);
    let width = u32::try_from(480 * panels).unwrap_or(1440);
    let root = SVGBackend::new(path, (width, 460)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        "Propagation: put acknowledged → visible (CDF)",
        ("sans-serif", 20),
    )?;
    for (area, run) in root.split_evenly((1, panels)).iter().zip(runs) {
        let (lo, hi) = bounds(&run.cdfs);
        let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
        let pad = ((hi - lo) * 0.05).max(0.01);
        let mut chart = ChartBuilder::on(area)
            .caption(stores_label(run.stores), ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(44)
            .build_cartesian_2d((lo.min(0.0) - pad)..(hi + pad), 0f64..1f64)?;
        chart
            .configure_mesh()
            .max_light_lines(3)
            .x_desc("ms after the put was acknowledged")
            .y_desc("fraction of writes / pairs")
            .x_label_formatter(&|v| number(*v))
            .y_label_formatter(&|v| number(*v))
            .draw()?;
        draw_cdfs(&mut chart, &run.cdfs, None)?;
    }
    root.present()?;
    Ok(())
}

/// Sent → visible, log axis per panel.
fn cdf_log(path: &Path, runs: &[PropagationRun]) -> Res<()> {
    let panels = runs.len().max(1);
    let width = u32::try_from(480 * panels).unwrap_or(1440);
    let root = SVGBackend::new(path, (width, 460)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled("Propagation: put sent → visible (CDF)", ("sans-serif", 20))?;
    for (area, run) in root.split_evenly((1, panels)).iter().zip(runs) {
        let (lo, hi) = bounds(&run.from_sent.cdfs);
        let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.1, 1.0) };
        let lo = (lo * 0.8).max(FLOOR_MS);
        let mut chart = ChartBuilder::on(area)
            .caption(stores_label(run.stores), ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(44)
            .build_cartesian_2d((lo..hi.max(lo * 10.0) * 1.2).log_scale(), 0f64..1f64)?;
        chart
            .configure_mesh()
            .max_light_lines(3)
            .x_desc("ms after the put was sent (log)")
            .y_desc("fraction of writes / pairs")
            .x_label_formatter(&|v| number(*v))
            .y_label_formatter(&|v| number(*v))
            .draw()?;
        draw_cdfs(&mut chart, &run.from_sent.cdfs, Some(lo))?;
    }
    root.present()?;
    Ok(())
}

/// p50 (circles) and p99 (triangles) from the put being sent against the
/// store count, log-log.
fn scale_plot(path: &Path, runs: &[PropagationRun]) -> Res<()> {
    type Pick = fn(&PropagationRun) -> (Option<f64>, Option<f64>);
    let series: [(&str, Pick); 4] = [
        ("baseline: one bare watch", |r| {
            (r.from_sent.baseline.p50_ms, r.from_sent.baseline.p99_ms)
        }),
        ("store: every store has it", |r| {
            (
                r.from_sent.store_every.p50_ms,
                r.from_sent.store_every.p99_ms,
            )
        }),
        ("store: per store", |r| {
            (
                r.from_sent.store_per_store.p50_ms,
                r.from_sent.store_per_store.p99_ms,
            )
        }),
        ("bare fleet: every watch has it", |r| {
            (
                r.from_sent.bare_fleet_every.p50_ms,
                r.from_sent.bare_fleet_every.p99_ms,
            )
        }),
    ];
    #[allow(clippy::cast_precision_loss)]
    let xs: Vec<f64> = runs.iter().map(|r| r.stores as f64).collect();
    let x_max = xs.iter().copied().fold(1.0, f64::max) * 2.0;
    let ys = runs
        .iter()
        .flat_map(|r| series.iter().map(move |(_, f)| f(r)))
        .flat_map(|(a, b)| [a, b])
        .flatten();
    let (y_lo, y_hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), y| {
        (lo.min(y), hi.max(y))
    });
    let (y_lo, y_hi) = if y_lo.is_finite() {
        ((y_lo * 0.5).max(FLOOR_MS), y_hi * 2.0)
    } else {
        (0.1, 10.0)
    };
    let root = SVGBackend::new(path, (760, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Put sent → visible against store count (● p50, ▲ p99)",
            ("sans-serif", 18),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(54)
        .build_cartesian_2d((0.7f64..x_max).log_scale(), (y_lo..y_hi).log_scale())?;
    chart
        .configure_mesh()
        .max_light_lines(3)
        .x_desc("stores in one process (log)")
        .y_desc("ms after the put was sent (log)")
        .x_label_formatter(&|v| number(*v))
        .y_label_formatter(&|v| number(*v))
        .draw()?;
    for (i, (label, pick)) in series.iter().enumerate() {
        let c = colour(i);
        let points = |p99: bool| -> Vec<(f64, f64)> {
            runs.iter()
                .zip(&xs)
                .filter_map(|(r, &x)| {
                    let (a, b) = pick(r);
                    if p99 { b } else { a }.map(|y| (x, y.max(y_lo)))
                })
                .collect()
        };
        let (p50, p99) = (points(false), points(true));
        chart
            .draw_series(LineSeries::new(p50.clone(), c.stroke_width(2)))?
            .label(*label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
        chart.draw_series(p50.iter().map(|&p| Circle::new(p, 4, c.filled())))?;
        chart.draw_series(LineSeries::new(p99.clone(), c.mix(0.6).stroke_width(1)))?;
        chart.draw_series(p99.iter().map(|&p| TriangleMarker::new(p, 5, c.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 12))
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::number;

    #[test]
    fn axis_labels_are_short() {
        assert_eq!(number(0.30000000000000004), "0.3");
        assert_eq!(number(10.0), "10");
        assert_eq!(number(-0.0001), "0");
        assert_eq!(number(-2.5), "-2.5");
    }
}
