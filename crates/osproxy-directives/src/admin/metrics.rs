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
//! | `osproxy_directives_rejected_total{source,reason}` | counter | rejected publishes: `source="admin"` (this endpoint, incl. `conflict`, `too_large`) or `source="etcd"` (values the store rejected) |
//! | `osproxy_directives_staleness_seconds` | gauge | etcd only: time since the last confirmation from etcd |
//! | `osproxy_directives_etcd_connected` | gauge | etcd only: 1 while the watch is established |
//! | `osproxy_directives_etcd_reconnects_total` | counter | etcd only: connections replaced |
//!
//! Label values are slugs, never directive values.

use std::fmt::Write;

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
    let name = "osproxy_directives_rejected_total";
    let _ = writeln!(
        out,
        "# HELP {name} Rejected publishes by source and reason slug."
    );
    let _ = writeln!(out, "# TYPE {name} counter");
    for (reason, n) in &counters.rejected {
        let _ = writeln!(out, "{name}{{source=\"admin\",reason=\"{reason}\"}} {n}");
    }
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
    }
    out
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "# HELP osproxy_directives_{name} {help}");
    let _ = writeln!(out, "# TYPE osproxy_directives_{name} {kind}");
    let _ = writeln!(out, "osproxy_directives_{name} {value}");
}
