//! `demo`: shows the loop end to end on one machine — a throwaway etcd,
//! three instances of the reference service (`crate::reference_service`: an
//! etcd-fed store with an instance id, the `osproxy-tracing` recorder, the
//! admin surface, in this process), a directive for one tenant published
//! with a short lifetime, each instance applying it within milliseconds,
//! traffic for several tenants of which only the targeted tenant's requests
//! land on each instance's break-glass tape (and in OTLP with `--otlp`),
//! each stamped with the directive and revision; at expiry every instance
//! switches it off and nothing more is recorded.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use clap::Args;
use osproxy_core::{EndpointKind, Instant, PartitionId, RequestId};
use osproxy_etcd::{EtcdDirectiveStore, InstanceReport, Layout, DEFAULT_STATUS_PREFIX};
use osproxy_observe::{decode_directive_set_detailed, DiagLevel, DirectiveStore, RequestAttrs};
use serde_json::Value;
use tower::ServiceExt;

use super::common::{clock, CliError, EtcdArgs};
use crate::admin::{Backend, EtcdBackend};
use crate::duration::{duration_default, format_duration, parse_duration};
use crate::local_etcd::{find_etcd, LaunchError, LocalEtcd, INSTALL_HINT};
use crate::reference_service::{ReferenceOptions, ReferenceService};

/// Examples shown in `--help`.
pub const EXAMPLES: &str = "\
Examples:
  osproxy-directives demo
  osproxy-directives demo --ttl 10s --instances 5
  osproxy-directives demo --etcd-bin /opt/etcd/etcd
  osproxy-directives demo --otlp http://127.0.0.1:4318/v1/traces

Needs the `etcd` server binary (apt-get install etcd-server); it runs on free
loopback ports with a temporary data directory, removed at the end.";

/// The demo directive's id.
const DIRECTIVE_ID: &str = "demo-flip";
/// The tenant the demo directive targets.
const TENANT: &str = "acme";
/// The tenants the demo sends traffic for.
const TENANTS: [&str; 3] = ["acme", "globex", "initech"];
/// The key the demo publishes to.
const KEY: &str = "/osproxy/demo/directives";

/// Default lifetime of the demo directive.
pub const DEFAULT_TTL: Duration = Duration::from_secs(5);

/// Options of `demo`.
#[derive(Args, Debug)]
pub struct DemoOpts {
    /// The etcd executable (default: `etcd` on PATH).
    #[arg(long, env = "OSPROXY_ETCD_BIN", value_name = "PATH")]
    pub etcd_bin: Option<PathBuf>,
    /// Lifetime of the demo directive.
    #[arg(long, default_value = duration_default!(DEFAULT_TTL), value_parser = parse_duration, value_name = "DURATION")]
    pub ttl: Duration,
    /// How many instances to start (1–16).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=16))]
    pub instances: u8,
    /// An OTLP/HTTP traces URL the instances export recorded spans to.
    #[arg(long, value_name = "URL")]
    pub otlp: Option<String>,
}

/// Runs `demo`.
pub async fn run(opts: DemoOpts) -> ExitCode {
    let result = tokio::select! {
        r = execute(&opts) => r,
        _ = tokio::signal::ctrl_c() => Err(CliError::runtime("interrupted", "interrupted; cleaned up")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => e.report(false),
    }
}

async fn execute(opts: &DemoOpts) -> Result<(), CliError> {
    let ttl_secs = opts.ttl.as_secs();
    if ttl_secs == 0 || opts.ttl.subsec_nanos() != 0 || ttl_secs > 3_600 {
        return Err(CliError::usage(
            "invalid_ttl",
            "--ttl must be whole seconds between 1s and 1h",
        ));
    }
    let Some(bin) = find_etcd(opts.etcd_bin.as_deref()) else {
        return Err(launch_error(LaunchError::NotInstalled));
    };
    let etcd = LocalEtcd::start(&bin, Duration::from_secs(20))
        .await
        .map_err(launch_error)?;
    println!(
        "started a throwaway etcd at {} (data in {})",
        etcd.endpoint(),
        etcd.dir().display()
    );
    let endpoints = vec![etcd.endpoint().to_owned()];
    let clock = clock();
    let mut instances = Vec::new();
    for i in 1..=opts.instances {
        let id = format!("demo-{i}");
        let layout = Layout::Key(KEY.to_owned());
        let store = EtcdDirectiveStore::builder(&endpoints, layout, clock.clone())
            .instance(InstanceReport::new(id.clone()))
            .connect()
            .await
            .map_err(|e| {
                CliError::runtime("etcd_unavailable", "cannot start an instance").caused_by(&e)
            })?;
        let backend = Backend::Etcd(Box::new(EtcdBackend::new(store.clone())));
        let mut options = ReferenceOptions::new(clock.clone());
        options.log = false;
        options.otlp = opts.otlp.clone();
        options.service_name = id.clone();
        let service = ReferenceService::new(backend, options).map_err(|e| {
            CliError::runtime("otlp_unavailable", "cannot start the OTLP export").caused_by(&e)
        })?;
        instances.push((id, store, service));
    }
    let names: Vec<&str> = instances.iter().map(|(id, _, _)| id.as_str()).collect();
    println!(
        "{} instances connected: {} (each the reference service: a watch-and-cache store serving {} directives, a request recorder, an admin surface)",
        instances.len(),
        names.join(", "),
        instances.first().map_or(0, |(_, s, _)| s.load().len())
    );

    let body = format!(
        r#"{{"directives":[{{"id":"{DIRECTIVE_ID}","level":"ShapeTiming","tenant":"{TENANT}","ttl_secs":{ttl_secs},"ring_buffer":true}}]}}"#
    );
    let set = decode_directive_set_detailed(body.as_bytes(), clock.as_ref())?;
    let etcd_args = demo_etcd_args(endpoints.clone());
    let publisher = etcd_args
        .publisher(Layout::Key(KEY.to_owned()), Default::default())
        .await?;
    let revision = publisher.publish(&set, Some(0)).await?;
    let acked = clock.now();
    println!(
        "published {DIRECTIVE_ID} (ShapeTiming with ring_buffer for tenant {TENANT}, ttl {}) at revision {revision}",
        format_duration(opts.ttl)
    );

    let mut waits = Vec::new();
    for (id, store, service) in &instances {
        let (id, store, clock) = (id.clone(), store.clone(), clock.clone());
        let recorder = service.recorder().clone();
        waits.push(tokio::spawn(async move {
            let applied = poll(Duration::from_secs(10), Duration::from_millis(1), || {
                store.load().get(DIRECTIVE_ID).is_some() && recorder.refresh()
            })
            .await;
            (id, applied.then(|| clock.now() - acked))
        }));
    }
    let mut all_applied = true;
    for wait in waits {
        match wait.await {
            Ok((id, Some(after))) => println!(
                "instance {id} applied revision {revision} after {} ms",
                after.as_millis()
            ),
            Ok((id, None)) => {
                all_applied = false;
                println!("instance {id} did not apply revision {revision} within 10 s");
            }
            Err(_) => all_applied = false,
        }
    }
    if !all_applied {
        return Err(CliError::runtime(
            "not_applied",
            "not every instance applied the directive",
        ));
    }
    let tenant = PartitionId::from(TENANT);
    let attrs = RequestAttrs::new(EndpointKind::Search).with_tenant(&tenant);
    let request = RequestId::from("demo-request");
    let level =
        |store: &EtcdDirectiveStore, now: Instant| store.snapshot().evaluate(&attrs, now, &request);
    let now = clock.now();
    let levels: Vec<String> = instances
        .iter()
        .map(|(id, s, _)| format!("{id}={}", level(s, now)))
        .collect();
    println!(
        "a Search request of tenant {TENANT} now evaluates to: {}",
        levels.join(" ")
    );
    for (id, _, service) in &instances {
        traffic(service, id, "").await?;
    }
    println!(
        "sent {} requests to each instance: tenants {}, 3 each, with an authorization header, a password in the query and a card number in the body",
        3 * TENANTS.len(),
        TENANTS.join(", ")
    );
    for (id, _, service) in &instances {
        let entries = tape(service).await?;
        let tenants: Vec<&str> = entries
            .iter()
            .filter_map(|e| e["tenant"].as_str())
            .collect();
        let stamps: Vec<String> = entries
            .iter()
            .map(|e| {
                format!(
                    "{} [{} @ revision {}]",
                    e["request_id"].as_str().unwrap_or("?"),
                    e["osproxy.directive.id"].as_str().unwrap_or("?"),
                    e["osproxy.directive.revision"]
                )
            })
            .collect();
        let only = tenants.iter().all(|t| *t == TENANT);
        println!(
            "instance {id}: /admin/breakglass holds {} request(s), {}: {}",
            entries.len(),
            if only && !tenants.is_empty() {
                format!("all tenant {TENANT}")
            } else {
                format!("tenants {}", tenants.join(","))
            },
            stamps.join(", ")
        );
        let leaked = entries.iter().any(|e| {
            let text = e.to_string();
            SECRETS.iter().any(|s| text.contains(s))
        });
        if leaked {
            return Err(CliError::runtime(
                "value_recorded",
                "a request value reached the tape",
            ));
        }
    }
    if let Some(url) = &opts.otlp {
        let queued: u64 = instances
            .iter()
            .map(|(_, _, s)| s.recorder().stats().export_queued)
            .sum();
        println!("{queued} span(s) queued for OTLP export to {url}, each stamped osproxy.directive.id={DIRECTIVE_ID}");
    }

    if fleet_reports(&publisher, revision, instances.len()).await {
        println!(
            "`status` view: {} of {} instances report revision {revision}",
            instances.len(),
            instances.len()
        );
    }

    let expires_at = set
        .get(DIRECTIVE_ID)
        .and_then(|d| d.expires_at_unix_nanos)
        .map(osproxy_observe::format_rfc3339)
        .unwrap_or_default();
    println!(
        "waiting for expiry at {expires_at} (no delete is sent: each instance ends it locally)"
    );
    let bound = opts.ttl + Duration::from_secs(10);
    let expired = poll(bound, Duration::from_millis(5), || {
        let now = clock.now();
        instances
            .iter()
            .all(|(_, s, service)| level(s, now) == DiagLevel::Off && !service.recorder().refresh())
    })
    .await;
    if !expired {
        return Err(CliError::runtime(
            "not_expired",
            "the directive did not expire on every instance in time",
        ));
    }
    let after = clock.now() - acked;
    println!(
        "{DIRECTIVE_ID} expired {:.2} s after publication: all {} instances evaluate Off",
        after.as_secs_f64(),
        instances.len()
    );
    let mut held = Vec::new();
    for (id, _, service) in &instances {
        let before = tape(service).await?.len();
        traffic(service, id, "-late").await?;
        let now_held = tape(service).await?.len();
        if now_held != before {
            return Err(CliError::runtime(
                "recorded_after_expiry",
                "an instance recorded a request after the directive expired",
            ));
        }
        held.push(format!("{id}={now_held}"));
    }
    println!(
        "sent {} more requests to each instance: nothing more recorded (tapes: {})",
        3 * TENANTS.len(),
        held.join(" ")
    );
    drop(publisher);
    drop(instances);
    drop(etcd);
    println!("stopped etcd and removed its data directory");
    Ok(())
}

/// Values the demo's requests carry; none may reach a tape.
const SECRETS: [&str; 3] = ["s3cr3t-demo-token", "hunter2", "4111111111111111"];

/// Three requests per tenant to `service`, in process (its router, its
/// recorder), each with values that must never be recorded.
async fn traffic(service: &ReferenceService, id: &str, suffix: &str) -> Result<(), CliError> {
    for i in 0..3 {
        for tenant in TENANTS {
            let request = Request::post("/logs/_search?q=error&password=hunter2")
                .header("x-tenant", tenant)
                .header("x-principal", "alice")
                .header("x-request-id", format!("{id}-{tenant}-{i}{suffix}"))
                .header("authorization", "Bearer s3cr3t-demo-token")
                .header("content-type", "application/json")
                .body(Body::from(r#"{"card":"4111111111111111"}"#))
                .map_err(|e| {
                    CliError::runtime("request_failed", "cannot build a request").caused_by(&e)
                })?;
            let answer = service.service().oneshot(request).await;
            if !answer.is_ok_and(|r| r.status().is_success()) {
                return Err(CliError::runtime(
                    "request_failed",
                    "the reference service did not answer 200",
                ));
            }
        }
    }
    Ok(())
}

/// The entries of `GET /admin/breakglass` on `service`, newest first.
async fn tape(service: &ReferenceService) -> Result<Vec<Value>, CliError> {
    let failed = || CliError::runtime("breakglass_failed", "cannot read /admin/breakglass");
    let request = Request::get("/admin/breakglass")
        .header("host", "127.0.0.1")
        .body(Body::empty())
        .map_err(|_| failed())?;
    let response = service
        .admin()
        .oneshot(request)
        .await
        .map_err(|_| failed())?;
    let bytes = axum::body::to_bytes(response.into_body(), 16 * 1024 * 1024)
        .await
        .map_err(|_| failed())?;
    let body: Value = serde_json::from_slice(&bytes).map_err(|_| failed())?;
    Ok(body["entries"].as_array().cloned().unwrap_or_default())
}

/// Whether every instance reports `revision` under the status prefix,
/// polled for a few seconds (reports are written asynchronously).
async fn fleet_reports(publisher: &osproxy_etcd::Publisher, revision: i64, n: usize) -> bool {
    for _ in 0..250 {
        if let Ok(fleet) = publisher.fleet_status(DEFAULT_STATUS_PREFIX).await {
            let on = fleet
                .instances
                .iter()
                .filter(|r| r.instance.starts_with("demo-") && r.applied_revision >= revision)
                .count();
            if on >= n {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Polls `check` every `every` until it holds (true) or `bound` passes (false).
async fn poll(bound: Duration, every: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        if check() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(every).await;
    }
}

fn demo_etcd_args(endpoints: Vec<String>) -> EtcdArgs {
    EtcdArgs::plain(endpoints, Duration::from_secs(5), Duration::from_secs(5))
}

fn launch_error(e: LaunchError) -> CliError {
    match e {
        LaunchError::NotInstalled => {
            CliError::runtime("etcd_not_installed", e.to_string()).hint(INSTALL_HINT)
        }
        other => {
            CliError::runtime("etcd_launch_failed", "cannot start a local etcd").caused_by(&other)
        }
    }
}
