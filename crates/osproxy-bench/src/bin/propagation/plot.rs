//! SVG plots of the propagation results (plotters, SVG backend: the text is
//! SVG `<text>`, so rendering needs no font files).

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::propagation::PropagationRun;
use crate::Res;

/// Series colours, in the order series are drawn.
const COLOURS: [RGBColor; 5] = [
    RGBColor(0x44, 0x44, 0x44),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
];

/// The smallest latency a log axis shows; anything at or below it
/// (including the slightly negative "event before ack" samples) is drawn
/// there.
const FLOOR_MS: f64 = 0.01;

/// An axis label: at most three decimals, no trailing zeros.
fn number(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".to_owned()
    } else {
        s.to_owned()
    }
}

fn colour(i: usize) -> RGBColor {
    COLOURS[i % COLOURS.len()]
}

/// Draws both plots into `dir`; returns their paths.
pub fn draw(dir: &Path, runs: &[PropagationRun]) -> Res<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let cdf = dir.join("propagation-cdf.svg");
    cdf_plot(&cdf, runs)?;
    let scale = dir.join("propagation-vs-stores.svg");
    scale_plot(&scale, runs)?;
    Ok(vec![cdf, scale])
}

/// One panel per store count: the CDF of each series on a log latency axis.
fn cdf_plot(path: &Path, runs: &[PropagationRun]) -> Res<()> {
    let panels = runs.len().max(1);
    let width = u32::try_from(480 * panels).unwrap_or(1440);
    let root = SVGBackend::new(path, (width, 460)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        "Propagation: write acknowledged → visible (CDF)",
        ("sans-serif", 20),
    )?;
    for (area, run) in root.split_evenly((1, panels)).iter().zip(runs) {
        let max = run
            .cdfs
            .iter()
            .flat_map(|c| c.points.iter().map(|p| p.0))
            .fold(FLOOR_MS * 10.0, f64::max);
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!(
                    "{} store{}",
                    run.stores,
                    if run.stores == 1 { "" } else { "s" }
                ),
                ("sans-serif", 16),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(44)
            .build_cartesian_2d((FLOOR_MS..max * 1.5).log_scale(), 0f64..1f64)?;
        chart
            .configure_mesh()
            .max_light_lines(3)
            .x_desc("latency (ms, log; ≤ 0.01 drawn at 0.01)")
            .y_desc("fraction of writes / pairs")
            .x_label_formatter(&|v| number(*v))
            .y_label_formatter(&|v| number(*v))
            .draw()?;
        for (i, cdf) in run.cdfs.iter().enumerate() {
            let c = colour(i);
            // A step function: each sample raises the curve at its latency.
            let mut pts = Vec::with_capacity(cdf.points.len() * 2 + 1);
            let mut prev = 0.0;
            for &(x, y) in &cdf.points {
                let x = x.max(FLOOR_MS);
                pts.push((x, prev));
                pts.push((x, y));
                prev = y;
            }
            chart
                .draw_series(LineSeries::new(pts, c.stroke_width(2)))?
                .label(cdf.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 11))
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// p50 (circles) and p99 (triangles) against the store count, log-log.
fn scale_plot(path: &Path, runs: &[PropagationRun]) -> Res<()> {
    type Pick = fn(&PropagationRun) -> (Option<f64>, Option<f64>);
    let series: [(&str, Pick); 4] = [
        ("baseline: one bare watch", |r| {
            (r.baseline.p50_ms, r.baseline.p99_ms)
        }),
        ("store: every store has it", |r| {
            (r.store_every.p50_ms, r.store_every.p99_ms)
        }),
        ("store: per store", |r| {
            (r.store_per_store.p50_ms, r.store_per_store.p99_ms)
        }),
        ("bare fleet: every watch has it", |r| {
            (r.bare_fleet_every.p50_ms, r.bare_fleet_every.p99_ms)
        }),
    ];
    #[allow(clippy::cast_precision_loss)]
    let xs: Vec<f64> = runs.iter().map(|r| r.stores as f64).collect();
    let x_max = xs.iter().copied().fold(1.0, f64::max) * 2.0;
    let y_max = runs
        .iter()
        .flat_map(|r| series.iter().map(move |(_, f)| f(r).1.unwrap_or(0.0)))
        .fold(FLOOR_MS * 10.0, f64::max)
        * 2.0;
    let root = SVGBackend::new(path, (760, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Propagation latency against store count (● p50, ▲ p99)",
            ("sans-serif", 18),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(54)
        .build_cartesian_2d((0.7f64..x_max).log_scale(), (FLOOR_MS..y_max).log_scale())?;
    chart
        .configure_mesh()
        .max_light_lines(3)
        .x_desc("stores in one process (log)")
        .y_desc("latency (ms, log; ≤ 0.01 drawn at 0.01)")
        .x_label_formatter(&|v| number(*v))
        .y_label_formatter(&|v| number(*v))
        .draw()?;
    for (i, (label, pick)) in series.iter().enumerate() {
        let c = colour(i);
        let p50: Vec<(f64, f64)> = runs
            .iter()
            .zip(&xs)
            .filter_map(|(r, &x)| pick(r).0.map(|y| (x, y.max(FLOOR_MS))))
            .collect();
        let p99: Vec<(f64, f64)> = runs
            .iter()
            .zip(&xs)
            .filter_map(|(r, &x)| pick(r).1.map(|y| (x, y.max(FLOOR_MS))))
            .collect();
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
