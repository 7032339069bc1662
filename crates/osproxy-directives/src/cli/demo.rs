//! `demo`: shows the fleet mechanism end to end on one machine — a throwaway
//! etcd, three instances (etcd stores with instance ids, in this process), a
//! directive published with a short lifetime, each instance applying it
//! within milliseconds, and every instance switching it off at expiry.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use osproxy_core::{EndpointKind, Instant, PartitionId, RequestId};
use osproxy_etcd::{EtcdDirectiveStore, InstanceReport, Layout, DEFAULT_STATUS_PREFIX};
use osproxy_observe::{decode_directive_set_detailed, DiagLevel, DirectiveStore, RequestAttrs};

use super::common::{clock, CliError, EtcdArgs};
use crate::duration::{duration_default, format_duration, parse_duration};
use crate::local_etcd::{find_etcd, LaunchError, LocalEtcd, INSTALL_HINT};

/// Examples shown in `--help`.
pub const EXAMPLES: &str = "\
Examples:
  osproxy-directives demo
  osproxy-directives demo --ttl 10s --instances 5
  osproxy-directives demo --etcd-bin /opt/etcd/etcd

Needs the `etcd` server binary (apt-get install etcd-server); it runs on free
loopback ports with a temporary data directory, removed at the end.";

/// The demo directive's id.
const DIRECTIVE_ID: &str = "demo-flip";
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
        let store =
            EtcdDirectiveStore::builder(&endpoints, Layout::Key(KEY.to_owned()), clock.clone())
                .instance(InstanceReport::new(id.clone()))
                .connect()
                .await
                .map_err(|e| {
                    CliError::runtime("etcd_unavailable", "cannot start an instance").caused_by(&e)
                })?;
        instances.push((id, store));
    }
    let names: Vec<&str> = instances.iter().map(|(id, _)| id.as_str()).collect();
    println!(
        "{} instances connected: {} (each a watch-and-cache store serving {} directives)",
        instances.len(),
        names.join(", "),
        instances.first().map_or(0, |(_, s)| s.load().len())
    );

    let body = format!(
        r#"{{"directives":[{{"id":"{DIRECTIVE_ID}","level":"ShapeTiming","tenant":"demo","ttl_secs":{ttl_secs}}}]}}"#
    );
    let set = decode_directive_set_detailed(body.as_bytes(), clock.as_ref())?;
    let etcd_args = demo_etcd_args(endpoints.clone());
    let publisher = etcd_args
        .publisher(Layout::Key(KEY.to_owned()), Default::default())
        .await?;
    let revision = publisher.publish(&set, Some(0)).await?;
    let acked = clock.now();
    println!(
        "published {DIRECTIVE_ID} (ShapeTiming for tenant demo, ttl {}) at revision {revision}",
        format_duration(opts.ttl)
    );

    let mut waits = Vec::new();
    for (id, store) in &instances {
        let (id, store, clock) = (id.clone(), store.clone(), clock.clone());
        waits.push(tokio::spawn(async move {
            let applied = poll(Duration::from_secs(10), Duration::from_millis(1), || {
                store.load().get(DIRECTIVE_ID).is_some()
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
    let tenant = PartitionId::from("demo");
    let attrs = RequestAttrs::new(EndpointKind::Search).with_tenant(&tenant);
    let request = RequestId::from("demo-request");
    let level =
        |store: &EtcdDirectiveStore, now: Instant| store.snapshot().evaluate(&attrs, now, &request);
    let now = clock.now();
    let levels: Vec<String> = instances
        .iter()
        .map(|(id, s)| format!("{id}={}", level(s, now)))
        .collect();
    println!(
        "a Search request of tenant demo now evaluates to: {}",
        levels.join(" ")
    );

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
            .all(|(_, s)| level(s, now) == DiagLevel::Off)
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
    drop(publisher);
    drop(instances);
    drop(etcd);
    println!("stopped etcd and removed its data directory");
    Ok(())
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
