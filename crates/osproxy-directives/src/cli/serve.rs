//! `serve`: runs one instance — the admin HTTP surface over the in-memory
//! store (the default: needs nothing else) or, with `--etcd`, over the
//! watch-fed etcd store with every option of that store.
//!
//! Prints one stable line once it accepts connections:
//! `listening on http://ADDR (store: in-memory)` or
//! `listening on http://ADDR (store: etcd KEY)`, and stops cleanly on SIGINT or
//! SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use osproxy_etcd::backoff::{DEFAULT_BACKOFF_INITIAL, DEFAULT_BACKOFF_MAX};
use osproxy_etcd::config::{
    DEFAULT_KEEPALIVE_INTERVAL, DEFAULT_KEEPALIVE_TIMEOUT, DEFAULT_PROGRESS_INTERVAL,
    DEFAULT_STALE_AFTER,
};
use osproxy_etcd::{
    EtcdDirectiveStore, EtcdError, DEFAULT_STATUS_LEASE_TTL, DEFAULT_STATUS_PREFIX,
};
use osproxy_observe::InMemoryDirectiveStore;
use tracing::info;

use super::access::AccessArgs;
use super::common::{clock, config_error, CliError, EtcdArgs, Given, LayoutArgs, LimitArgs};
use super::safety::SafetyArgs;
use crate::admin::server::{
    self, ServerLimits, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_LISTEN, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_REQUEST_TIMEOUT, DEFAULT_SHUTDOWN_GRACE,
};
use crate::admin::{router, AdminOptions, AdminState, Backend, EtcdBackend};
use crate::duration::{duration_default, parse_duration};

mod checks;

pub use checks::refuse_meaningless;
use checks::store_options;

/// Examples shown in `--help`.
pub const EXAMPLES: &str = "\
Examples:
  osproxy-directives serve
  osproxy-directives serve --listen 127.0.0.1:0
  osproxy-directives serve --etcd --endpoints 127.0.0.1:2379 --instance-id proxy-a
  osproxy-directives serve --listen 0.0.0.0:9464 --token-file admin.token --tls-cert admin.crt --tls-key admin.key
  osproxy-directives serve --etcd --trust-store fleet.trust --sign-key ops.key --token-file admin.token

Then: open http://127.0.0.1:9464/ui (the operator's page)
      curl -s http://127.0.0.1:9464/admin/directives
      curl -s -X POST -H 'Content-Type: application/json' --data @directives.json http://127.0.0.1:9464/admin/directives
A non-loopback --listen needs a token and TLS (exit 2 otherwise); --sign-key needs --etcd and a token.
Tokens have at least 32 characters: head -c 24 /dev/urandom | base64 > admin.token && chmod 600 admin.token";

/// Options of `serve`.
#[derive(Args, Debug)]
pub struct ServeOpts {
    /// Admin HTTP address. Port 0 picks a free port (see the printed line).
    #[arg(
        long,
        env = "OSPROXY_ADMIN_LISTEN",
        default_value_t = DEFAULT_LISTEN,
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,
    /// Token, host names, TLS.
    #[command(flatten)]
    pub access: AccessArgs,
    /// Serve from the etcd fleet store instead of the in-memory store.
    #[arg(long)]
    pub etcd: bool,
    /// Report this instance's applied and rejected revisions under a leased
    /// key `<status-prefix><id>`, for `status`.
    #[arg(
        long,
        env = "OSPROXY_INSTANCE_ID",
        requires = "etcd",
        value_name = "ID",
        help_heading = "etcd store"
    )]
    pub instance_id: Option<String>,
    /// Prefix of the instance status keys.
    #[arg(long, default_value = DEFAULT_STATUS_PREFIX, value_name = "PREFIX", help_heading = "etcd store")]
    pub status_prefix: String,
    /// Lease of the status key: how long a dead instance stays listed.
    #[arg(long, default_value = duration_default!(DEFAULT_STATUS_LEASE_TTL), value_parser = parse_duration, value_name = "DURATION", help_heading = "etcd store")]
    pub status_lease_ttl: Duration,
    /// Staleness bound: a watch silent this long is replaced, and /readyz
    /// answers 503 while the last confirmation is older.
    #[arg(long, default_value = duration_default!(DEFAULT_STALE_AFTER), value_parser = parse_duration, value_name = "DURATION", help_heading = "etcd store")]
    pub stale_after: Duration,
    /// Silence after which etcd is asked to confirm the watch (below --stale-after).
    #[arg(long, default_value = duration_default!(DEFAULT_PROGRESS_INTERVAL), value_parser = parse_duration, value_name = "DURATION", help_heading = "etcd store")]
    pub progress_interval: Duration,
    /// HTTP/2 keepalive ping interval (at least 5s: etcd closes connections that ping more often).
    #[arg(long, default_value = duration_default!(DEFAULT_KEEPALIVE_INTERVAL), value_parser = parse_duration, value_name = "DURATION", help_heading = "etcd store")]
    pub keepalive_interval: Duration,
    /// How long a keepalive ping may go unanswered.
    #[arg(long, default_value = duration_default!(DEFAULT_KEEPALIVE_TIMEOUT), value_parser = parse_duration, value_name = "DURATION", help_heading = "etcd store")]
    pub keepalive_timeout: Duration,
    /// First reconnect delay (doubles, jittered, up to --backoff-max).
    #[arg(long, default_value = duration_default!(DEFAULT_BACKOFF_INITIAL), value_parser = parse_duration, value_name = "DURATION", help_heading = "etcd store")]
    pub backoff_initial: Duration,
    /// Largest reconnect delay.
    #[arg(long, default_value = duration_default!(DEFAULT_BACKOFF_MAX), value_parser = parse_duration, value_name = "DURATION", help_heading = "etcd store")]
    pub backoff_max: Duration,
    /// Time a client has to send a whole request head (first or next on a
    /// kept-alive connection) before it is disconnected.
    #[arg(long, env = "OSPROXY_ADMIN_HEADER_READ_TIMEOUT", default_value = duration_default!(DEFAULT_HEADER_READ_TIMEOUT), value_parser = parse_duration, value_name = "DURATION", help_heading = "admin HTTP")]
    pub header_read_timeout: Duration,
    /// Time an admin request (body included) has to be answered; later: 408.
    #[arg(long, env = "OSPROXY_ADMIN_REQUEST_TIMEOUT", default_value = duration_default!(DEFAULT_REQUEST_TIMEOUT), value_parser = parse_duration, value_name = "DURATION", help_heading = "admin HTTP")]
    pub http_request_timeout: Duration,
    /// Most open admin connections (also kept 64 below the open-file limit);
    /// at the cap the idlest connection is closed to admit a new one.
    #[arg(long, env = "OSPROXY_ADMIN_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS, value_name = "N", help_heading = "admin HTTP")]
    pub max_connections: usize,
    /// Time requests in flight get to finish after SIGINT/SIGTERM.
    #[arg(long, default_value = duration_default!(DEFAULT_SHUTDOWN_GRACE), value_parser = parse_duration, value_name = "DURATION", help_heading = "admin HTTP")]
    pub shutdown_grace: Duration,
    /// Where the directives live.
    #[command(flatten)]
    pub layout: LayoutArgs,
    /// How to reach etcd.
    #[command(flatten)]
    pub etcd_args: EtcdArgs,
    /// Decoder limits.
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Fail-safe and local ceilings (SPEC §8).
    #[command(flatten)]
    pub safety: SafetyArgs,
    /// Apply only directive values signed by a key in this trust store file
    /// (SPEC §9; public-key lines from `keygen`). Unsigned values are
    /// rejected (`unsigned`) and the last good set keeps serving.
    #[arg(
        long,
        env = "OSPROXY_TRUST_STORE",
        value_name = "FILE",
        requires = "etcd",
        help_heading = "Trust"
    )]
    pub trust_store: Option<std::path::PathBuf>,
    /// Refuse signed values of format v1 (`legacy_signature`): the last step
    /// of moving a fleet to signed format v2, once every publisher writes it
    /// (same as the trust store line `osproxy-require signed-v2`).
    #[arg(
        long,
        env = "OSPROXY_REQUIRE_SIGNED_V2",
        requires = "trust_store",
        help_heading = "Trust"
    )]
    pub require_signed_v2: bool,
    /// Keep the anti-rollback high-water mark (signed format v2) in this
    /// existing directory, so that a restart still refuses an old signed
    /// value put back (`replayed`).
    #[arg(
        long,
        env = "OSPROXY_STATE_DIR",
        value_name = "DIR",
        requires = "etcd",
        help_heading = "Trust"
    )]
    pub state_dir: Option<std::path::PathBuf>,
    /// Sign what `POST /admin/directives` publishes into etcd with this key.
    #[command(flatten)]
    pub sign: super::trust::SignArgs,
    /// Judge signed single-request headers (`X-Debug-Directive`) against
    /// the keys in this trust store file, for `GET /admin/explain?header=…`
    /// (SPEC §9); an accepted header's directive is clamped to this
    /// instance's ceilings.
    #[arg(
        long,
        env = "OSPROXY_HEADER_TRUST_STORE",
        value_name = "FILE",
        help_heading = "Trust"
    )]
    pub header_trust_store: Option<std::path::PathBuf>,
    /// Which of these flags were typed (filled in by `cli::main` from the
    /// parsed command line; see [`refuse_meaningless`]).
    #[arg(skip)]
    pub given: Given,
}

/// Runs `serve` until SIGINT or SIGTERM.
pub async fn run(opts: ServeOpts) -> ExitCode {
    match execute(opts).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => e.report(false),
    }
}

async fn execute(opts: ServeOpts) -> Result<(), CliError> {
    let access = opts
        .access
        .validate(opts.listen, opts.etcd, opts.sign.sign_key.is_some())?;
    refuse_meaningless(&opts, access.token.is_some())?;
    if opts
        .instance_id
        .as_deref()
        .is_some_and(|id| !osproxy_observe::decode::is_valid_id(id))
    {
        return Err(CliError::usage(
            "invalid_instance_id",
            "--instance-id must be 1-128 characters of [A-Za-z0-9._:-]",
        ));
    }
    if opts.max_connections == 0 {
        return Err(CliError::usage(
            "invalid_max_connections",
            "--max-connections must be at least 1",
        ));
    }
    let limits = opts.limits.limits();
    let header_verifier = match &opts.header_trust_store {
        Some(path) => Some(std::sync::Arc::new(osproxy_observe::TokenVerifier::new(
            super::trust::read_trust_store(path)?,
            clock(),
        ))),
        None => None,
    };
    let store_options = if opts.etcd {
        Some(store_options(&opts)?)
    } else {
        None
    };
    let signer = opts
        .sign
        .sign_key
        .as_deref()
        .map(super::trust::read_signer)
        .transpose()?;
    let (backend, store_line) = match store_options {
        Some(options) => {
            let store = EtcdDirectiveStore::connect_with(options)
                .await
                .map_err(store_error)?;
            let mut line = format!("etcd {}", store.layout().key());
            if let Some(id) = &opts.instance_id {
                line.push_str(&format!(", instance {id}"));
            }
            (
                Backend::Etcd(Box::new(
                    EtcdBackend::new(store)
                        .with_status_prefix(opts.status_prefix.clone())
                        .signing(signer)
                        .signed_format(opts.sign.format()),
                )),
                line,
            )
        }
        None => (
            Backend::InMemory(InMemoryDirectiveStore::new()),
            "in-memory".to_owned(),
        ),
    };
    let options = AdminOptions {
        token: access.token.clone(),
        token_name: access.token_name.clone(),
        allowed_hosts: access.allowed_hosts.clone(),
        tls: access.tls.is_some(),
        metrics_need_token: access.metrics_need_token,
        // This process records nothing itself; a service embedding the
        // admin router hands its recorder's tape here.
        breakglass: None,
        recorder: None,
        limits,
        clock: clock(),
        header_verifier,
        // A header's directive is clamped to what this instance allows:
        // the store's ceilings (none for the in-memory store).
        header_ceilings: match &backend {
            Backend::Etcd(b) => b.store().ceilings(),
            Backend::InMemory(_) => osproxy_etcd::Ceilings::default(),
        },
    };
    let state = AdminState::new(backend, options);
    let shutdown = shutdown_signal()?;
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|e| {
            CliError::runtime("listen_failed", format!("cannot listen on {}", opts.listen))
                .caused_by(&e)
        })?;
    let addr = listener.local_addr().map_err(|e| {
        CliError::runtime("listen_failed", "cannot read the listening address").caused_by(&e)
    })?;
    {
        let mut out = std::io::stdout().lock();
        let scheme = if access.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let _ = writeln!(out, "listening on {scheme}://{addr} (store: {store_line})");
        let _ = out.flush();
    }
    let (set, revision) = state.applied();
    info!(%addr, store = state.store_name(), revision = revision.get(), directives = set.len(), "admin endpoint up");
    let app = router(state.clone());
    let limits = ServerLimits {
        header_read_timeout: opts.header_read_timeout,
        request_timeout: opts.http_request_timeout,
        max_connections: opts.max_connections,
        shutdown_grace: opts.shutdown_grace,
    };
    server::serve(listener, app, limits, access.tls, shutdown)
        .await
        .map_err(|e| CliError::runtime("serve_failed", "the admin server failed").caused_by(&e))?;
    // The store's watch and connection close as the last handle drops.
    drop(state);
    info!("stopped");
    Ok(())
}

fn store_error(e: EtcdError) -> CliError {
    match e {
        EtcdError::Config(c) => config_error(c),
        other => CliError::runtime("etcd_unavailable", "cannot start the etcd store")
            .caused_by(&other)
            .hint("check --endpoints (or OSPROXY_ETCD_ENDPOINTS) and that etcd runs"),
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM. Both are listened for from the
/// moment this returns, before the listener is bound: a signal that arrives
/// before the accept loop first polls the future (or while it is taking a
/// ready connection) is kept, not lost to the default action that would end
/// the process without a graceful shutdown.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, CliError> {
    use tokio::signal::unix::{signal, SignalKind};
    let listen = |kind| {
        signal(kind).map_err(|e| {
            CliError::runtime("signal_failed", "cannot listen for shutdown signals").caused_by(&e)
        })
    };
    let mut interrupt = listen(SignalKind::interrupt())?;
    let mut terminate = listen(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            Some(()) = interrupt.recv() => {}
            Some(()) = terminate.recv() => {}
            // Neither stream can end on Unix; if both did, keep serving.
            else => std::future::pending::<()>().await,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The clap defaults are the listener's constants.
    #[test]
    fn admin_http_defaults_match_the_listener() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeOpts,
        }
        let cli = Cli::try_parse_from(["x"]).unwrap();
        let got = ServerLimits {
            header_read_timeout: cli.serve.header_read_timeout,
            request_timeout: cli.serve.http_request_timeout,
            max_connections: cli.serve.max_connections,
            shutdown_grace: cli.serve.shutdown_grace,
        };
        assert_eq!(got, ServerLimits::default());
    }

    /// `serve` with no flag (and no environment fallback) has every default
    /// of the library that owns the behaviour: the store's, the connection's,
    /// the backoff's, the status reporter's, the decoder's and the listener's.
    #[test]
    fn every_default_is_the_owners_constant() {
        use clap::{CommandFactory, FromArgMatches, Parser};
        use osproxy_etcd::backoff::BackoffPolicy;
        use osproxy_etcd::config::ConnectionConfig;
        use osproxy_observe::DecodeLimits;

        use crate::cli::common::{DEFAULT_ENDPOINT, DEFAULT_KEY};
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeOpts,
        }
        let matches = Cli::command()
            .mut_args(|a| a.env(None::<&str>))
            .try_get_matches_from(["x"])
            .unwrap();
        let o = Cli::from_arg_matches(&matches).unwrap().serve;
        let connection = ConnectionConfig::new(&[]);
        let report = osproxy_etcd::InstanceReport::new("x");
        assert_eq!(o.listen, DEFAULT_LISTEN);
        assert_eq!(o.status_prefix, report.status_prefix);
        assert_eq!(o.status_lease_ttl, report.lease_ttl);
        assert_eq!(o.stale_after, DEFAULT_STALE_AFTER);
        assert_eq!(o.progress_interval, DEFAULT_PROGRESS_INTERVAL);
        assert_eq!(o.keepalive_interval, connection.keepalive_interval);
        assert_eq!(o.keepalive_timeout, connection.keepalive_timeout);
        assert_eq!(
            BackoffPolicy {
                initial: o.backoff_initial,
                max: o.backoff_max
            },
            BackoffPolicy::default()
        );
        let limits = ServerLimits {
            header_read_timeout: o.header_read_timeout,
            request_timeout: o.http_request_timeout,
            max_connections: o.max_connections,
            shutdown_grace: o.shutdown_grace,
        };
        assert_eq!(limits, ServerLimits::default());
        assert_eq!(o.etcd_args.endpoints, [DEFAULT_ENDPOINT]);
        assert_eq!(o.etcd_args.connect_timeout, connection.connect_timeout);
        assert_eq!(o.etcd_args.request_timeout, connection.request_timeout);
        assert_eq!(
            (o.layout.key.as_str(), o.layout.prefix),
            (DEFAULT_KEY, None)
        );
        assert_eq!(o.limits.limits(), DecodeLimits::default());
    }
}
