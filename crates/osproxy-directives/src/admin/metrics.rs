//! `/metrics` in the Prometheus text format (version 0.0.4).
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `osproxy_directives_applied_revision` | gauge | revision of the applied set |
//! | `osproxy_directives_active` | gauge | directives not yet expired |
//! | `osproxy_directives_loaded` | gauge | directives in the applied set, expired ones included |
//! | `osproxy_directives_ready` | gauge | 1 when `/readyz` answers 200 |
//! | `osproxy_directives_snapshot_swaps_total` | counter | applied sets swapped in |
//! | `osproxy_directives_snapshot_reads_total` | counter | `GET /admin/directives` reads |
//! | `osproxy_directives_admin_publishes_total` | counter | sets published through the admin endpoint |
//! | `osproxy_directives_admin_unauthorized_total` | counter | requests refused for a missing or wrong token |
//! | `osproxy_directives_admin_refused_total{reason}` | counter | requests refused by the browser rules: `bad_host`, `cross_site`, `unsupported_media_type` (see `guard`) |
//! | `osproxy_directives_rejected_total{source,reason}` | counter | rejected publishes: `source="admin"` (this endpoint, incl. `conflict`, `too_large`) or `source="etcd"` (values the store rejected) |
//! | `osproxy_directives_staleness_seconds` | gauge | etcd only: time since the last confirmation from etcd |
//! | `osproxy_directives_etcd_connected` | gauge | etcd only: 1 while the watch is established |
//! | `osproxy_directives_etcd_reconnects_total` | counter | etcd only: connections replaced |
//! | `osproxy_directives_etcd_degraded_endpoints` | gauge | etcd only: endpoints left because their watch missed changes a read showed (`status` names them) |
//! | `osproxy_directives_etcd_refused_total{reason}` | counter | etcd only: watch messages refused (`foreign_key_event`, `second_created`), each followed by a fresh read |
//! | `osproxy_directives_failsafe` | gauge | etcd only: 1 while the fail-safe is engaged (SPEC §8) |
//! | `osproxy_directives_failsafe_since_seconds` | gauge | etcd only: Unix time the fail-safe engaged, 0 when not engaged |
//! | `osproxy_directives_failsafe_withheld` | gauge | etcd only: directives the engaged fail-safe withholds |
//! | `osproxy_directives_clamped` | gauge | etcd only: directives applied clamped to the local ceilings |
//! | `osproxy_directives_clamps{ceiling}` | gauge | etcd only: those clamps by ceiling (`level`, `sample_per_mille`, `capture`, `ring_buffer`) |
//! | `osproxy_directives_recorder_{decided,recorded,export_queued,exported,export_dropped,export_failed}_total` | counter | with a request recorder on this process (`osproxy-tracing`): requests decided and recorded, spans queued for OTLP export, accepted, dropped by the full queue, failed |
//!
//! | `osproxy_directives_directive_decisions_total{directive,outcome}` | counter | per live directive: requests decided on this instance, `outcome="applied"`, `"sampled_out"` or `"over_budget"` (SPEC §8); since the set was applied (a new publish starts them again, which `rate()` reads as a counter reset) |
//! | `osproxy_directives_directive_budget_per_second{directive}` | gauge | per live directive with `max_per_sec`: its budget |
//! | `osproxy_directives_directive_series_folded` | gauge | live directives beyond [`MAX_DIRECTIVE_SERIES`], counted together under `directive="(folded)"` |
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
    metric(
        &mut out,
        "applied_revision",
        "gauge",
        "Revision of the applied directive set.",
        revision,
    );
    metric(
        &mut out,
        "active",
        "gauge",
        "Directives not yet expired.",
        set.live_count(now),
    );
    metric(
        &mut out,
        "loaded",
        "gauge",
        "Directives in the applied set, expired ones included.",
        set.len(),
    );
    metric(
        &mut out,
        "ready",
        "gauge",
        "1 when the instance is ready.",
        u8::from(state.is_ready()),
    );
    metric(
        &mut out,
        "snapshot_swaps_total",
        "counter",
        "Applied sets swapped in.",
        swaps,
    );
    metric(
        &mut out,
        "snapshot_reads_total",
        "counter",
        "Reads of the applied set through the admin endpoint.",
        counters.snapshot_reads,
    );
    metric(
        &mut out,
        "admin_publishes_total",
        "counter",
        "Sets published through the admin endpoint.",
        counters.publishes,
    );
    metric(
        &mut out,
        "admin_unauthorized_total",
        "counter",
        "Admin requests refused for a missing or wrong token.",
        counters.unauthorized,
    );
    let name = "osproxy_directives_admin_refused_total";
    let _ = writeln!(
        out,
        "# HELP {name} Admin requests refused by the browser rules, by reason slug."
    );
    let _ = writeln!(out, "# TYPE {name} counter");
    for (reason, n) in counters.refused {
        let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {n}");
    }
    let name = "osproxy_directives_rejected_total";
    let _ = writeln!(
        out,
        "# HELP {name} Rejected publishes by source and reason slug."
    );
    let _ = writeln!(out, "# TYPE {name} counter");
    for (reason, n) in &counters.rejected {
        let _ = writeln!(out, "{name}{{source=\"admin\",reason=\"{reason}\"}} {n}");
    }
    render_directives(&mut out, &set, now);
    if let Backend::Etcd(b) = state.backend() {
        let status = b.store().status();
        for (reason, n) in &status.rejected_total {
            let _ = writeln!(out, "{name}{{source=\"etcd\",reason=\"{reason}\"}} {n}");
        }
        // Never confirmed: infinitely stale ("+Inf" in the text format).
        let staleness = status
            .staleness
            .map_or_else(|| "+Inf".to_owned(), |d| d.as_secs_f64().to_string());
        metric(
            &mut out,
            "staleness_seconds",
            "gauge",
            "Time since the last confirmation from etcd.",
            staleness,
        );
        metric(
            &mut out,
            "etcd_connected",
            "gauge",
            "1 while the etcd watch is established.",
            u8::from(status.connected),
        );
        metric(
            &mut out,
            "etcd_reconnects_total",
            "counter",
            "etcd connections replaced.",
            status.reconnects,
        );
        metric(
            &mut out,
            "etcd_degraded_endpoints",
            "gauge",
            "etcd endpoints left because their watch missed changes.",
            status.degraded_endpoints.len(),
        );
        let name = "osproxy_directives_etcd_refused_total";
        let _ = writeln!(
            out,
            "# HELP {name} Watch messages refused, each followed by a fresh read."
        );
        let _ = writeln!(out, "# TYPE {name} counter");
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
    for (name, help, value) in [
        (
            "recorder_decided_total",
            "Requests the recorder decided.",
            s.decided,
        ),
        (
            "recorder_recorded_total",
            "Requests recorded above Off.",
            s.recorded,
        ),
        (
            "recorder_export_queued_total",
            "Spans queued for OTLP export.",
            s.export_queued,
        ),
        (
            "recorder_exported_total",
            "Spans the OTLP collector accepted.",
            s.exported,
        ),
        (
            "recorder_export_dropped_total",
            "Spans dropped because the export queue was full.",
            s.export_dropped,
        ),
        (
            "recorder_export_failed_total",
            "Spans whose OTLP export failed.",
            s.export_failed,
        ),
    ] {
        metric(out, name, "counter", help, value);
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
    let name = "osproxy_directives_directive_decisions_total";
    let _ = writeln!(
        out,
        "# HELP {name} Requests decided per live directive, by outcome."
    );
    let _ = writeln!(out, "# TYPE {name} counter");
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
    metric(
        out,
        "directive_series_folded",
        "gauge",
        "Live directives counted together under directive=\"(folded)\" (beyond the series cap).",
        folded.len(),
    );
    let name = "osproxy_directives_directive_budget_per_second";
    let _ = writeln!(
        out,
        "# HELP {name} The rate budget (max_per_sec) of each live directive that has one."
    );
    let _ = writeln!(out, "# TYPE {name} gauge");
    for (_, d) in &live {
        if let Some(m) = d.max_per_sec {
            let _ = writeln!(out, "{name}{{directive=\"{}\"}} {m}", d.id);
        }
    }
}

/// The fail-safe and the clamps (SPEC §8).
fn render_safety(out: &mut String, status: &StoreStatus) {
    metric(
        out,
        "failsafe",
        "gauge",
        "1 while the fail-safe is engaged.",
        u8::from(status.failsafe),
    );
    let since = status
        .failsafe_since_unix_nanos
        .map_or(0.0, |n| Duration::from_nanos(n).as_secs_f64());
    metric(
        out,
        "failsafe_since_seconds",
        "gauge",
        "Unix time the fail-safe engaged; 0 when not engaged.",
        since,
    );
    metric(
        out,
        "failsafe_withheld",
        "gauge",
        "Directives the engaged fail-safe withholds.",
        status.failsafe_withheld,
    );
    metric(
        out,
        "clamped",
        "gauge",
        "Directives applied clamped to the local ceilings.",
        status.clamped.len(),
    );
    let name = "osproxy_directives_clamps";
    let _ = writeln!(
        out,
        "# HELP {name} Clamps to the local ceilings by ceiling."
    );
    let _ = writeln!(out, "# TYPE {name} gauge");
    for ceiling in Clamp::ALL {
        let n = status
            .clamped
            .iter()
            .filter(|c| c.clamps.contains(&ceiling))
            .count();
        let _ = writeln!(out, "{name}{{ceiling=\"{}\"}} {n}", ceiling.slug());
    }
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "# HELP osproxy_directives_{name} {help}");
    let _ = writeln!(out, "# TYPE osproxy_directives_{name} {kind}");
    let _ = writeln!(out, "osproxy_directives_{name} {value}");
}
