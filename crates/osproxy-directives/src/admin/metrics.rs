//! `/metrics` in the Prometheus text format (version 0.0.4).
//!
//! Every series is a row of [`METRICS`]: its `# HELP` and `# TYPE` lines are
//! written from that table, and `docs/reference/metrics.md` is rendered from
//! it (see [`crate::reference`]). Read that page, not a copy.
//!
//! Label values are slugs, never directive values, with one exception: the
//! `directive` label is the directive's id, the operator's own name for it,
//! restricted by the decoder to `[A-Za-z0-9._:-]` (nothing to escape) and
//! bounded by the live set: a directive's series disappear when it leaves
//! the set or expires. At most [`MAX_DIRECTIVE_SERIES`] directives get
//! series of their own (the first in the set's order), so one large publish
//! cannot make a scrape of tens of thousands of series: the rest are summed
//! into one `directive="(folded)"` series per outcome (parentheses are
//! outside the id alphabet, so no directive can take that name; the gauge
//! says how many were folded).

use std::fmt::Write;
use std::time::Duration;

use osproxy_core::Instant;
use osproxy_etcd::{Clamp, StoreStatus};
use osproxy_observe::{DirectiveSet, TimedDirective};

use super::state::{AdminState, Backend};

/// Where a series appears.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// On every instance.
    Always,
    /// In fleet mode (`serve --etcd`) only.
    Etcd,
    /// When a request recorder (`osproxy-tracing`) records on this process.
    Recorder,
}

impl Scope {
    /// How the reference names it.
    pub fn text(self) -> &'static str {
        match self {
            Scope::Always => "always",
            Scope::Etcd => "fleet mode",
            Scope::Recorder => "with a recorder",
        }
    }
}

/// One metric family of `/metrics`.
#[derive(Clone, Copy, Debug)]
pub struct Metric {
    /// The name after the `osproxy_directives_` prefix.
    pub name: &'static str,
    /// `gauge` or `counter`.
    pub kind: &'static str,
    /// Its labels, in order (none: one series).
    pub labels: &'static [&'static str],
    /// Where it appears.
    pub scope: Scope,
    /// What it counts or measures: its `# HELP` line.
    pub help: &'static str,
}

/// Every metric family `/metrics` exports, in the order it writes them.
pub const METRICS: &[Metric] = &[
    m("applied_revision", "gauge", &[], Scope::Always, "Revision of the applied directive set."),
    m("active", "gauge", &[], Scope::Always, "Directives not yet expired."),
    m("loaded", "gauge", &[], Scope::Always, "Directives in the applied set, expired ones included."),
    m("ready", "gauge", &[], Scope::Always, "1 when /readyz answers 200."),
    m("snapshot_swaps_total", "counter", &[], Scope::Always, "Applied sets swapped in."),
    m("snapshot_reads_total", "counter", &[], Scope::Always, "Reads of the applied set through GET /admin/directives."),
    m("admin_publishes_total", "counter", &[], Scope::Always, "Sets published through the admin endpoint."),
    m("admin_unauthorized_total", "counter", &[], Scope::Always, "Admin requests refused for a missing or wrong token."),
    m("admin_refused_total", "counter", &["reason"], Scope::Always, "Admin requests refused by the browser rules, by reason slug (bad_host, cross_site, unsupported_media_type)."),
    m("rejected_total", "counter", &["source", "reason"], Scope::Always, "Rejected publishes by source (admin: this endpoint, conflicts and too_large included; etcd: values the store rejected) and reason slug."),
    m("directive_decisions_total", "counter", &["directive", "outcome"], Scope::Always, "Requests decided per live directive, by outcome (applied, sampled_out, over_budget), since the set was applied."),
    m("directive_series_folded", "gauge", &[], Scope::Always, "Live directives counted together under directive=\"(folded)\" (beyond the series cap)."),
    m("directive_budget_per_second", "gauge", &["directive"], Scope::Always, "The rate budget (max_per_sec) of each live directive that has one."),
    m("staleness_seconds", "gauge", &[], Scope::Etcd, "Time since the last confirmation from etcd (+Inf before the first)."),
    m("etcd_connected", "gauge", &[], Scope::Etcd, "1 while the etcd watch is established."),
    m("etcd_reconnects_total", "counter", &[], Scope::Etcd, "etcd connections replaced."),
    m("etcd_degraded_endpoints", "gauge", &[], Scope::Etcd, "etcd endpoints left because their watch missed changes a read showed."),
    m("etcd_refused_total", "counter", &["reason"], Scope::Etcd, "Watch messages refused (foreign_key_event, second_created), each followed by a fresh read."),
    m("failsafe", "gauge", &[], Scope::Etcd, "1 while the fail-safe is engaged."),
    m("failsafe_since_seconds", "gauge", &[], Scope::Etcd, "Unix time the fail-safe engaged; 0 when not engaged."),
    m("failsafe_withheld", "gauge", &[], Scope::Etcd, "Directives the engaged fail-safe withholds."),
    m("clamped", "gauge", &[], Scope::Etcd, "Directives applied clamped to the local ceilings."),
    m("clamps", "gauge", &["ceiling"], Scope::Etcd, "Clamps to the local ceilings by ceiling (level, sample_per_mille, capture, ring_buffer)."),
    m("recorder_decided_total", "counter", &[], Scope::Recorder, "Requests the recorder decided."),
    m("recorder_recorded_total", "counter", &[], Scope::Recorder, "Requests recorded above Off."),
    m("recorder_export_queued_total", "counter", &[], Scope::Recorder, "Spans queued for OTLP export."),
    m("recorder_exported_total", "counter", &[], Scope::Recorder, "Spans the OTLP collector accepted."),
    m("recorder_export_dropped_total", "counter", &[], Scope::Recorder, "Spans dropped because the export queue was full."),
    m("recorder_export_failed_total", "counter", &[], Scope::Recorder, "Spans whose OTLP export failed."),
];

const fn m(
    name: &'static str,
    kind: &'static str,
    labels: &'static [&'static str],
    scope: Scope,
    help: &'static str,
) -> Metric {
    Metric {
        name,
        kind,
        labels,
        scope,
        help,
    }
}

/// The metric prefix.
pub const PREFIX: &str = "osproxy_directives_";

/// Writes the `# HELP` and `# TYPE` lines of `name` (a row of [`METRICS`])
/// and returns its full name.
fn family(out: &mut String, name: &str) -> String {
    let full = format!("{PREFIX}{name}");
    if let Some(row) = METRICS.iter().find(|r| r.name == name) {
        let _ = writeln!(out, "# HELP {full} {}", row.help);
        let _ = writeln!(out, "# TYPE {full} {}", row.kind);
    }
    full
}

/// One family with one unlabelled series.
fn metric(out: &mut String, name: &str, value: impl std::fmt::Display) {
    let full = family(out, name);
    let _ = writeln!(out, "{full} {value}");
}

/// Renders every metric of `state`.
pub(crate) fn render(state: &AdminState) -> String {
    let mut out = String::new();
    let (set, revision) = state.applied();
    let now = state.clock().now();
    let counters = state.counters();
    let swaps = match state.backend() {
        Backend::InMemory(store) => store.shared().swaps(),
        Backend::Etcd(b) => b.store().swaps(),
    };
    metric(&mut out, "applied_revision", revision);
    metric(&mut out, "active", set.live_count(now));
    metric(&mut out, "loaded", set.len());
    metric(&mut out, "ready", u8::from(state.is_ready()));
    metric(&mut out, "snapshot_swaps_total", swaps);
    metric(&mut out, "snapshot_reads_total", counters.snapshot_reads);
    metric(&mut out, "admin_publishes_total", counters.publishes);
    metric(&mut out, "admin_unauthorized_total", counters.unauthorized);
    let name = family(&mut out, "admin_refused_total");
    for (reason, n) in counters.refused {
        let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {n}");
    }
    let name = family(&mut out, "rejected_total");
    for (reason, n) in &counters.rejected {
        let _ = writeln!(out, "{name}{{source=\"admin\",reason=\"{reason}\"}} {n}");
    }
    // One family's series stay together (the text format's rule).
    let status = match state.backend() {
        Backend::Etcd(b) => Some(b.store().status()),
        Backend::InMemory(_) => None,
    };
    for (reason, n) in status.iter().flat_map(|s| &s.rejected_total) {
        let _ = writeln!(out, "{name}{{source=\"etcd\",reason=\"{reason}\"}} {n}");
    }
    render_directives(&mut out, &set, now);
    if let Some(status) = status {
        // Never confirmed: infinitely stale ("+Inf" in the text format).
        let staleness = status
            .staleness
            .map_or_else(|| "+Inf".to_owned(), |d| d.as_secs_f64().to_string());
        metric(&mut out, "staleness_seconds", staleness);
        metric(&mut out, "etcd_connected", u8::from(status.connected));
        metric(&mut out, "etcd_reconnects_total", status.reconnects);
        metric(
            &mut out,
            "etcd_degraded_endpoints",
            status.degraded_endpoints.len(),
        );
        let name = family(&mut out, "etcd_refused_total");
        for (reason, n) in &status.refused_total {
            let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {n}");
        }
        render_safety(&mut out, &status);
    }
    if let Some(recorder) = &state.options().recorder {
        render_recorder(&mut out, recorder.stats());
    }
    out
}

/// The request recorder's counters, when one records on this process.
fn render_recorder(out: &mut String, s: osproxy_tracing::RecorderStats) {
    for (name, value) in [
        ("recorder_decided_total", s.decided),
        ("recorder_recorded_total", s.recorded),
        ("recorder_export_queued_total", s.export_queued),
        ("recorder_exported_total", s.exported),
        ("recorder_export_dropped_total", s.export_dropped),
        ("recorder_export_failed_total", s.export_failed),
    ] {
        metric(out, name, value);
    }
}

/// Most live directives with series of their own.
pub const MAX_DIRECTIVE_SERIES: usize = 100;

/// The label value the directives beyond [`MAX_DIRECTIVE_SERIES`] share.
const FOLDED: &str = "(folded)";

/// Per live directive: decisions by outcome, and budgets (SPEC §8); past
/// [`MAX_DIRECTIVE_SERIES`] directives, one folded series.
fn render_directives(out: &mut String, set: &DirectiveSet, now: Instant) {
    let mut live: Vec<(usize, &TimedDirective)> = set
        .directives()
        .iter()
        .enumerate()
        .filter(|(_, d)| d.is_live(now))
        .collect();
    let folded: Vec<(usize, &TimedDirective)> =
        live.split_off(live.len().min(MAX_DIRECTIVE_SERIES));
    let name = family(out, "directive_decisions_total");
    for (pos, d) in &live {
        let c = set.counts(*pos);
        for (outcome, n) in [
            ("applied", c.applied),
            ("sampled_out", c.sampled_out),
            ("over_budget", c.over_budget),
        ] {
            let _ = writeln!(
                out,
                "{name}{{directive=\"{}\",outcome=\"{outcome}\"}} {n}",
                d.id
            );
        }
    }
    if !folded.is_empty() {
        let mut sum = [0u64; 3];
        for (pos, _) in &folded {
            let c = set.counts(*pos);
            for (slot, n) in sum
                .iter_mut()
                .zip([c.applied, c.sampled_out, c.over_budget])
            {
                *slot = slot.saturating_add(n);
            }
        }
        for (outcome, n) in ["applied", "sampled_out", "over_budget"]
            .into_iter()
            .zip(sum)
        {
            let _ = writeln!(
                out,
                "{name}{{directive=\"{FOLDED}\",outcome=\"{outcome}\"}} {n}"
            );
        }
    }
    metric(out, "directive_series_folded", folded.len());
    let name = family(out, "directive_budget_per_second");
    for (_, d) in &live {
        if let Some(m) = d.max_per_sec {
            let _ = writeln!(out, "{name}{{directive=\"{}\"}} {m}", d.id);
        }
    }
}

/// The fail-safe and the clamps (SPEC §8).
fn render_safety(out: &mut String, status: &StoreStatus) {
    metric(out, "failsafe", u8::from(status.failsafe));
    let since = status
        .failsafe_since_unix_nanos
        .map_or(0.0, |n| Duration::from_nanos(n).as_secs_f64());
    metric(out, "failsafe_since_seconds", since);
    metric(out, "failsafe_withheld", status.failsafe_withheld);
    metric(out, "clamped", status.clamped.len());
    let name = family(out, "clamps");
    for ceiling in Clamp::ALL {
        let n = status
            .clamped
            .iter()
            .filter(|c| c.clamps.contains(&ceiling))
            .count();
        let _ = writeln!(out, "{name}{{ceiling=\"{}\"}} {n}", ceiling.slug());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every family written is a row of the table, and every row is
    /// written somewhere: a name passed to `metric`/`family` that is not in
    /// [`METRICS`] would go out without `# HELP`.
    #[test]
    fn the_table_and_the_writers_agree() {
        let source = include_str!("metrics.rs");
        let code = &source[..source.find("#[cfg(test)]").unwrap_or(source.len())];
        let written: Vec<&str> = code
            .split('"')
            .skip(1)
            .step_by(2)
            .filter(|s| METRICS.iter().any(|m| m.name == *s))
            .collect();
        for row in METRICS {
            let calls = code.matches(&format!("\"{}\"", row.name)).count();
            assert!(calls >= 2, "{} is in the table but never written", row.name);
        }
        let mut names: Vec<&str> = METRICS.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), METRICS.len(), "a metric is listed twice");
        assert!(!written.is_empty());
        for call in ["metric(", "family("] {
            for (i, _) in code.match_indices(call) {
                let rest = &code[i..];
                let Some(q) = rest.find('"') else { continue };
                if rest[..q].contains(')') || rest[..q].contains("fn ") {
                    continue; // a definition or a call without a literal
                }
                let name = &rest[q + 1..q + 1 + rest[q + 1..].find('"').unwrap_or(0)];
                assert!(
                    METRICS.iter().any(|m| m.name == name),
                    "{name} is written but not in METRICS"
                );
            }
        }
    }
}
