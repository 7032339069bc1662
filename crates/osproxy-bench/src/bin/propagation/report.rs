//! The text tables (Markdown, so they paste into BENCHMARKS.md as they are)
//! and the checks against the targets.

use std::fmt::Write as _;

use crate::churn::Churn;
use crate::cost::Cost;
use crate::propagation::PropagationRun;
use crate::recovery::Scenario;
use crate::stats::Summary;
use crate::target::{ratio, ratio_text, sub, Target};

/// One table as Markdown with padded columns.
pub fn table(title: &str, head: &[&str], rows: &[Vec<String>]) -> String {
    let cols = head.len();
    let mut width: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(cols) {
            width[i] = width[i].max(cell.chars().count());
        }
    }
    // A column of numbers is right-aligned, anything else left-aligned.
    let numeric: Vec<bool> = (0..cols)
        .map(|i| {
            i > 0
                && rows.iter().all(|r| {
                    r.get(i).is_none_or(|c| {
                        c.is_empty()
                            || c.starts_with(|ch: char| {
                                ch.is_ascii_digit() || ch == '-' || ch == '–'
                            })
                    })
                })
        })
        .collect();
    let line = |cells: &[String]| {
        let mut s = String::from("|");
        for (i, w) in width.iter().enumerate() {
            let cell = cells.get(i).map_or("", String::as_str);
            let pad = w - cell.chars().count();
            if !numeric[i] {
                let _ = write!(s, " {cell}{} |", " ".repeat(pad));
            } else {
                let _ = write!(s, " {}{cell} |", " ".repeat(pad));
            }
        }
        s
    };
    let mut out = format!("### {title}\n\n");
    let head: Vec<String> = head.iter().map(|h| (*h).to_owned()).collect();
    out += &line(&head);
    out.push('\n');
    let mut sep = String::from("|");
    for (i, w) in width.iter().enumerate() {
        if !numeric[i] {
            let _ = write!(sep, " {} |", "-".repeat(*w));
        } else {
            let _ = write!(sep, " {}: |", "-".repeat(w.saturating_sub(1)));
        }
    }
    out += &sep;
    out.push('\n');
    for row in rows {
        out += &line(row);
        out.push('\n');
    }
    out
}

pub fn f3(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{v:.3}"))
}

fn summary_row(label: String, s: &Summary) -> Vec<String> {
    vec![
        label,
        s.n.to_string(),
        s.missed.to_string(),
        f3(s.p50_ms),
        f3(s.p99_ms),
        f3(s.max_ms),
    ]
}

pub fn propagation_table(runs: &[PropagationRun]) -> String {
    let mut rows = Vec::new();
    for r in runs {
        let n = r.stores;
        rows.push(summary_row(
            format!("{n} · baseline: one bare watch"),
            &r.baseline,
        ));
        rows.push(summary_row(
            format!("{n} · store: every store has it"),
            &r.store_every,
        ));
        rows.push(summary_row(
            format!("{n} · store: per store"),
            &r.store_per_store,
        ));
        rows.push(summary_row(
            format!("{n} · (every store − baseline, paired per write)"),
            &r.store_every_minus_baseline,
        ));
        if let Some(s) = &r.store_via_reader {
            rows.push(summary_row(format!("{n} · store: via its reader"), s));
        }
        if let Some(s) = &r.reader_minus_stamp {
            rows.push(summary_row(format!("{n} · (reader − swap stamp)"), s));
        }
        rows.push(summary_row(
            format!("{n} · bare fleet: every watch has it"),
            &r.bare_fleet_every,
        ));
        rows.push(summary_row(
            format!("{n} · bare fleet: per watch"),
            &r.bare_fleet_per_watch,
        ));
        rows.push(summary_row(format!("{n} · put round trip"), &r.put_rtt));
    }
    table(
        "Propagation: write acknowledged → visible (ms)",
        &["stores · series", "samples", "missed", "p50", "p99", "max"],
        &rows,
    )
}

pub fn from_sent_table(runs: &[PropagationRun]) -> String {
    let mut rows = Vec::new();
    for r in runs {
        let n = r.stores;
        let f = &r.from_sent;
        rows.push(summary_row(
            format!("{n} · baseline: one bare watch"),
            &f.baseline,
        ));
        rows.push(summary_row(
            format!("{n} · store: every store has it"),
            &f.store_every,
        ));
        if n > 1 {
            rows.push(summary_row(
                format!("{n} · store: per store"),
                &f.store_per_store,
            ));
        }
        rows.push(summary_row(
            format!("{n} · bare fleet: every watch has it"),
            &f.bare_fleet_every,
        ));
        rows.push(summary_row(
            format!("{n} · put round trip, bare key"),
            &f.bare_put_rtt,
        ));
    }
    table(
        "Propagation measured from the put being sent (ms)",
        &["stores · series", "samples", "missed", "p50", "p99", "max"],
        &rows,
    )
}

pub fn cpu_table(runs: &[PropagationRun]) -> String {
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            #[allow(clippy::cast_precision_loss)]
            let n = r.stores as f64;
            vec![
                r.stores.to_string(),
                format!("{:.3}", r.cpu_per_store_write_ms),
                format!("{:.3}", r.cpu_per_bare_write_ms),
                format!(
                    "{:.1}",
                    (r.cpu_per_store_write_ms - r.cpu_per_bare_write_ms) * 1e3 / n
                ),
                r.bare_fleet_rss_per_watch_kib
                    .map_or_else(|| "–".into(), |v| format!("{v:.1}")),
            ]
        })
        .collect();
    let mut out = table(
        "Harness process per write and per watcher",
        &[
            "stores",
            "CPU per store-key write (ms)",
            "CPU per bare-key write (ms)",
            "store − bare, per store (µs)",
            "RSS per bare watch (KiB)",
        ],
        &rows,
    );
    out += "\nCPU is the whole harness process (writer, polling, the baseline \
            thread) over each write's window; with one store it includes the \
            reader sampler spinning until it sees the write.\n";
    out
}

pub fn recovery_table(scenarios: &[Scenario]) -> String {
    let mut rows = Vec::new();
    for s in scenarios {
        rows.push(vec![
            s.name.clone(),
            s.rounds.to_string(),
            f3(s.fault_to_visible.p50_ms),
            f3(s.fault_to_visible.max_ms),
            f3(s.ack_to_visible.p50_ms),
            f3(s.ack_to_visible.max_ms),
            s.fault_to_visible.missed.to_string(),
        ]);
    }
    let mut out = table(
        "Recovery: fault → first publish after it visible (ms)",
        &[
            "scenario",
            "rounds",
            "fault→visible p50",
            "max",
            "ack→visible p50",
            "max",
            "missed",
        ],
        &rows,
    );
    let mut detail = Vec::new();
    for s in scenarios {
        for (i, x) in s.samples.iter().enumerate() {
            detail.push(vec![
                format!("{} #{}", s.name, i + 1),
                f3(Some(x.fault_to_ack_ms)),
                f3(x.ack_to_visible_ms),
                f3(x.fault_to_visible_ms),
                x.reconnects.to_string(),
                x.note.clone(),
            ]);
        }
    }
    out.push('\n');
    out += &table(
        "Recovery rounds (ms)",
        &[
            "round",
            "fault→ack",
            "ack→visible",
            "fault→visible",
            "reconnects",
            "note",
        ],
        &detail,
    );
    out
}

pub fn cost_table(c: &Cost) -> String {
    let rows = vec![
        vec!["stores".into(), c.stores.to_string()],
        vec![
            "connected after settling".into(),
            c.stores_connected.to_string(),
        ],
        vec![
            "time to connect them (s)".into(),
            format!("{:.2}", c.connect_seconds),
        ],
        vec![
            "etcd connections before → after".into(),
            format!("{} → {}", c.connections_before, c.connections_after),
        ],
        vec![
            "connections per store".into(),
            format!("{:.3}", c.connections_per_store),
        ],
        vec![
            "process RSS before → after (KiB)".into(),
            format!("{} → {}", c.rss_before_kib, c.rss_after_kib),
        ],
        vec![
            "resident memory per store (KiB)".into(),
            format!("{:.1}", c.rss_per_store_kib),
        ],
        vec![
            format!(
                "process CPU, no stores, {:.0} s idle (% of a core)",
                c.baseline_window_s
            ),
            format!("{:.4}", c.process_cpu_no_stores_pct),
        ],
        vec![
            format!(
                "process CPU, {} stores, {:.0} s idle (% of a core)",
                c.stores, c.idle_window_s
            ),
            format!("{:.4}", c.process_cpu_with_stores_pct),
        ],
        vec![
            "idle CPU of the stores (difference, % of a core)".into(),
            format!("{:.4}", c.idle_cpu_stores_pct),
        ],
        vec![
            "idle CPU per store (% of a core)".into(),
            format!("{:.6}", c.idle_cpu_per_store_pct),
        ],
        vec![
            "etcd CPU, no stores → with stores (% of a core)".into(),
            format!(
                "{:.3} → {:.3}",
                c.etcd_cpu_no_stores_pct, c.etcd_cpu_with_stores_pct
            ),
        ],
        vec![
            "etcd RSS before → after (KiB)".into(),
            format!("{} → {}", c.etcd_rss_before_kib, c.etcd_rss_after_kib),
        ],
        vec![
            "etcd memory per store (KiB)".into(),
            format!("{:.1}", c.etcd_rss_per_store_kib),
        ],
    ];
    table("Cost of a store", &["metric", "value"], &rows)
}

pub fn churn_table(c: &Churn) -> String {
    let mut rows: Vec<Vec<String>> = c
        .windows
        .iter()
        .enumerate()
        .map(|(i, w)| {
            vec![
                format!("{} {}", i + 1, if w.churn { "churn" } else { "quiet" }),
                format!("{:.2}", w.seconds),
                format!("{:.0}", w.reads_per_s),
                w.publishes.to_string(),
                w.swaps.to_string(),
                w.sets_read.to_string(),
                w.level_changes_seen.to_string(),
                format!("{:.1}", w.etcd_cpu_pct),
                format!("{:.0}", w.others_cpu_pct),
            ]
        })
        .collect();
    rows.push(vec![
        "mean quiet".into(),
        String::new(),
        format!("{:.0}", c.quiet_reads_per_s),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
    ]);
    rows.push(vec![
        "mean churn".into(),
        String::new(),
        format!("{:.0}", c.churn_reads_per_s),
        format!("{:.1}/s", c.achieved_publishes_per_s),
        format!("{:.1}/s", c.swaps_per_s),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
    ]);
    rows.push(vec![
        "churn / quiet, ratio of the means".into(),
        String::new(),
        format!("{:.3}", c.ratio_of_means),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
    ]);
    rows.push(vec![
        "churn / quiet, median of the rounds".into(),
        String::new(),
        format!("{:.3}", c.ratio),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
    ]);
    table(
        &format!(
            "Hot-path reads under churn ({} threads, {} directives, {} publishes/s)",
            c.reader_threads, c.directives, c.target_publishes_per_s
        ),
        &[
            "window",
            "s",
            "reads/s (all threads)",
            "publishes",
            "swaps",
            "sets read",
            "level changes seen",
            "etcd CPU %",
            "others' CPU %",
        ],
        &rows,
    )
}

pub fn targets(runs: &[PropagationRun], cost: &Cost, churn: &Churn) -> Vec<Target> {
    let mut out = Vec::new();
    if let Some(one) = runs.iter().find(|r| r.stores == 1) {
        let d = sub(one.store_every.p50_ms, one.baseline.p50_ms);
        out.push(Target {
            name: "1 store: p50 within 0.2 ms of the baseline's".into(),
            target: "store p50 − baseline p50 ≤ 0.200 ms".into(),
            measured: format!(
                "{} − {} = {} ms",
                f3(one.store_every.p50_ms),
                f3(one.baseline.p50_ms),
                f3(d)
            ),
            pass: d.map(|d| d <= 0.2),
        });
    }
    if let Some(big) = runs
        .iter()
        .max_by_key(|r| r.stores)
        .filter(|r| r.stores > 1)
    {
        let n = big.stores;
        let d = sub(big.store_every.p50_ms, big.baseline.p50_ms);
        out.push(Target {
            name: format!("{n} stores: every store has it, p50 within 1 ms of the baseline"),
            target: "every-store p50 − baseline p50 ≤ 1.000 ms".into(),
            measured: format!(
                "{} − {} = {} ms",
                f3(big.store_every.p50_ms),
                f3(big.baseline.p50_ms),
                f3(d)
            ),
            pass: d.map(|d| d <= 1.0),
        });
        // Measured from the put being sent: from the acknowledgement, the
        // baseline's p99 can be zero or negative (the watch event can beat
        // the ack), and a ratio over it means nothing.
        out.push(Target::ratio_at_most(
            format!("{n} stores: every store has it, p99 within 1.1× the baseline"),
            "every-store p99 / baseline p99 ≤ 1.1, both from the put being sent",
            big.from_sent.store_every.p99_ms,
            big.from_sent.baseline.p99_ms,
            1.1,
        ));
        // Context, not a target: the same against n bare watches.
        let d = sub(big.store_every.p50_ms, big.bare_fleet_every.p50_ms);
        let r = ratio(big.store_every.p99_ms, big.bare_fleet_every.p99_ms);
        out.push(Target {
            name: format!("(context) {n} stores against {n} bare watches in one process"),
            target: "not a target".into(),
            measured: format!(
                "p50 {} vs {} (Δ {} ms); p99 {} vs {} ({})",
                f3(big.store_every.p50_ms),
                f3(big.bare_fleet_every.p50_ms),
                f3(d),
                f3(big.store_every.p99_ms),
                f3(big.bare_fleet_every.p99_ms),
                ratio_text(r)
            ),
            pass: None,
        });
    }
    let one_conn = (cost.connections_per_store - 1.0).abs() < 0.01;
    out.push(Target {
        name: format!(
            "resident memory per store at {} stores, one connection each",
            cost.stores
        ),
        target: "< 60 KiB per store and 1 connection per store".into(),
        measured: format!(
            "{:.1} KiB, {:.3} connections per store",
            cost.rss_per_store_kib, cost.connections_per_store
        ),
        pass: Some(cost.rss_per_store_kib < 60.0 && one_conn),
    });
    out.push(Target {
        name: format!("idle CPU of {} stores", cost.stores),
        target: "< 0.1 % of a core".into(),
        measured: format!(
            "{:.4} % of a core (process {:.4} % with, {:.4} % without)",
            cost.idle_cpu_stores_pct,
            cost.process_cpu_with_stores_pct,
            cost.process_cpu_no_stores_pct
        ),
        pass: Some(cost.idle_cpu_stores_pct < 0.1),
    });
    out.push(Target {
        name: "hot-path reads under churn".into(),
        target: "≥ 90 % of the rate without churn".into(),
        measured: format!(
            "{:.1} % (median of {} rounds; means {:.0} vs {:.0} reads/s)",
            churn.ratio * 100.0,
            churn.round_ratios.len(),
            churn.churn_reads_per_s,
            churn.quiet_reads_per_s
        ),
        pass: Some(churn.ratio >= 0.9),
    });
    out
}

pub fn targets_table(t: &[Target]) -> String {
    let rows: Vec<Vec<String>> = t
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                t.target.clone(),
                t.measured.clone(),
                match t.pass {
                    Some(true) => "met".into(),
                    Some(false) => "MISSED".into(),
                    None => "n/a".into(),
                },
            ]
        })
        .collect();
    table(
        "Targets, against the same run's baseline",
        &["target", "threshold", "measured", "result"],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ratio_over_a_non_positive_baseline_is_not_applicable() {
        assert_eq!(ratio(Some(55.641), Some(-0.048)), None);
        assert_eq!(ratio(Some(1.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(1.0)), None);
        assert_eq!(ratio(Some(3.0), Some(2.0)), Some(1.5));
        assert_eq!(ratio_text(None), "n/a");
    }

    #[test]
    fn tables_are_markdown_with_padded_columns() {
        let t = table(
            "T",
            &["a", "bb"],
            &[
                vec!["x".into(), "1".into()],
                vec!["long".into(), "22".into()],
            ],
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "### T");
        assert_eq!(lines[2], "| a    | bb |");
        assert_eq!(lines[3], "| ---- | -: |");
        assert_eq!(lines[4], "| x    |  1 |");
        assert_eq!(lines[5], "| long | 22 |");
    }
}
