//! What `serve` checks in its flags before anything starts: flags another
//! flag makes meaningless ([`refuse_meaningless`]), and the etcd store's
//! options, built once from the flags and checked by the store's own rules
//! ([`store_options`]).

use osproxy_etcd::config::{Connection, StoreOptions};
use osproxy_etcd::{EtcdDirectiveStore, InstanceReport};

use super::ServeOpts;
use crate::cli::common::{clock, config_error, meaningless_flag, CliError};

/// The flags that only the etcd store reads (clap ids), refused without
/// `--etcd` when typed: the in-memory store would ignore them.
const ETCD_ONLY: &[&str] = &[
    "status_prefix",
    "status_lease_ttl",
    "stale_after",
    "progress_interval",
    "keepalive_interval",
    "keepalive_timeout",
    "backoff_initial",
    "backoff_max",
    "failsafe_after",
    "failsafe_level",
    "key",
    "prefix",
    "endpoints",
    "ca",
    "cert",
    "client_key",
    "server_name",
    "user",
    "password",
    "connect_timeout",
    "request_timeout",
];

/// Refuses, with exit 2 `meaningless_flag` and the reason, a flag that
/// another flag (or its absence) makes meaningless: silently ignoring it
/// would let an operator believe it acts. Only typed flags count for those
/// with a default or an environment fallback, so an exported `OSPROXY_*`
/// variable meant for other subcommands is never refused.
///
/// | flag | refused |
/// |---|---|
/// | any fleet store flag (`--stale-after`, `--endpoints`, `--key`, …) | without `--etcd` |
/// | `--failsafe-level` | with `--failsafe-after off` |
/// | `--status-lease-ttl` | without `--instance-id` (no status key is written) |
/// | `--token-name`, `--metrics-need-token` | without a token |
/// | `--insecure-http` | with `--tls-cert`, or on a loopback `--listen` |
/// | `--signed-format` | without `--sign-key` |
///
/// # Errors
/// The first such flag, as a usage error.
pub fn refuse_meaningless(opts: &ServeOpts, has_token: bool) -> Result<(), CliError> {
    let typed = |id: &str| opts.given.has(id);
    if !opts.etcd {
        if let Some(id) = ETCD_ONLY.iter().find(|id| typed(id)) {
            let flag = long_name(id);
            return Err(meaningless_flag(
                &flag,
                "without --etcd (the in-memory store reads no etcd option)",
                format!("add --etcd, or drop {flag}"),
            ));
        }
    }
    opts.safety.validate()?;
    if typed("status_lease_ttl") && opts.instance_id.is_none() {
        return Err(meaningless_flag(
            "--status-lease-ttl",
            "without --instance-id (this instance writes no status key)",
            "add --instance-id, or drop --status-lease-ttl",
        ));
    }
    if !has_token {
        for (id, why) in [
            (
                "token_name",
                "without a token (writes are recorded as loopback-unauthenticated)",
            ),
            (
                "metrics_need_token",
                "without a token (there is none for /metrics to need)",
            ),
        ] {
            if typed(id) {
                let flag = long_name(id);
                return Err(meaningless_flag(
                    &flag,
                    why,
                    format!("give --token-file (or OSPROXY_ADMIN_TOKEN), or drop {flag}"),
                ));
            }
        }
    }
    if opts.access.insecure_http {
        let why = if opts.access.tls_cert.is_some() {
            Some("with --tls-cert (the listener speaks TLS)")
        } else if opts.listen.ip().is_loopback() {
            Some("on a loopback --listen (clear HTTP is allowed there)")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(meaningless_flag(
                "--insecure-http",
                why,
                "drop --insecure-http",
            ));
        }
    }
    opts.sign.refuse_meaningless(&opts.given)
}

/// `--flag-name` of the `serve` flag with clap id `id` (the refusals name
/// the flag as typed).
fn long_name(id: &str) -> String {
    use clap::Args as _;
    let cmd = ServeOpts::augment_args(clap::Command::new("serve"));
    let long = cmd
        .get_arguments()
        .find(|a| a.get_id() == id)
        .and_then(clap::Arg::get_long)
        .unwrap_or(id);
    format!("--{long}")
}

/// The etcd store's options, built once from the flags and checked once
/// ([`StoreOptions`]); nothing is connected yet.
///
/// # Errors
/// A usage error for an invalid option or an unreadable trust store.
pub(super) fn store_options(opts: &ServeOpts) -> Result<StoreOptions, CliError> {
    let layout = opts.layout.layout()?;
    let mut settings = opts.etcd_args.settings()?;
    settings.keepalive_interval = opts.keepalive_interval;
    settings.keepalive_timeout = opts.keepalive_timeout;
    let connection = Connection::try_from(settings).map_err(config_error)?;
    let builder = EtcdDirectiveStore::builder_for(connection, layout, clock())
        .stale_after(opts.stale_after)
        .progress_interval(opts.progress_interval)
        .backoff(opts.backoff_initial, opts.backoff_max)
        .decode_limits(opts.limits.limits());
    let mut builder = opts.safety.apply(builder);
    if let Some(path) = &opts.trust_store {
        let mut trust = crate::cli::trust::read_trust_store(path)?;
        if opts.require_signed_v2 {
            trust = trust.requiring_signed_v2();
        }
        builder = builder.trust_store(trust);
    }
    if let Some(dir) = &opts.state_dir {
        builder = builder.state_dir(dir);
    }
    if let Some(id) = &opts.instance_id {
        builder = builder.instance(InstanceReport {
            instance_id: id.clone(),
            status_prefix: opts.status_prefix.clone(),
            lease_ttl: opts.status_lease_ttl,
        });
    }
    builder.options().map_err(config_error)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::cli::common::Given;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    /// `serve` options parsed from `args` (no environment fallback), with
    /// the typed flags noted as `cli::main` notes them.
    fn parse(args: &[&str]) -> ServeOpts {
        use clap::{CommandFactory, FromArgMatches, Parser};
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeOpts,
        }
        let mut all = vec!["x"];
        all.extend_from_slice(args);
        let matches = Cli::command()
            .mut_args(|a| a.env(None::<&str>))
            .try_get_matches_from(all)
            .unwrap();
        let mut o = Cli::from_arg_matches(&matches).unwrap().serve;
        o.given = Given::from_matches(&matches);
        o
    }

    /// The slug `refuse_meaningless` answers `args` with (`ok` when none),
    /// and its message.
    fn refusal(args: &[&str]) -> (&'static str, String) {
        let o = parse(args);
        let has_token = o.access.token.is_some();
        match refuse_meaningless(&o, has_token) {
            Ok(()) => ("ok", String::new()),
            Err(e) => (e.slug, e.message),
        }
    }

    #[test]
    fn etcd_store_flags_are_refused_without_etcd() {
        assert_eq!(refusal(&[]).0, "ok");
        let (slug, message) = refusal(&["--stale-after", "5s"]);
        assert_eq!(slug, "meaningless_flag");
        assert!(message.starts_with("--stale-after has no effect without --etcd"));
        let (slug, message) = refusal(&["--etcd-ca", "ca.pem"]);
        assert_eq!(slug, "meaningless_flag");
        assert!(message.starts_with("--etcd-ca "), "{message}");
        assert_eq!(refusal(&["--etcd", "--stale-after", "5s"]).0, "ok");
        assert_eq!(refusal(&["--failsafe-after", "off"]).0, "meaningless_flag");
        // Every id of the list is a flag of `serve`, named as typed.
        use clap::Args as _;
        let cmd = ServeOpts::augment_args(clap::Command::new("serve"));
        for id in ETCD_ONLY {
            let arg = cmd.get_arguments().find(|a| a.get_id() == *id);
            let long = arg.and_then(clap::Arg::get_long);
            assert_eq!(long.map(|l| format!("--{l}")), Some(long_name(id)), "{id}");
        }
    }

    #[test]
    fn flags_other_flags_make_meaningless_are_refused_with_the_reason() {
        let etcd = ["--etcd", "--endpoints", "127.0.0.1:1"];
        let with = |extra: &[&'static str]| {
            let mut args = etcd.to_vec();
            args.extend_from_slice(extra);
            refusal(&args)
        };
        let (slug, message) = with(&["--failsafe-after", "off", "--failsafe-level", "Shape"]);
        assert_eq!(slug, "meaningless_flag");
        assert!(message.contains("--failsafe-after off"), "{message}");
        assert_eq!(with(&["--failsafe-level", "Shape"]).0, "ok");
        let (slug, message) = with(&["--status-lease-ttl", "30s"]);
        assert_eq!(slug, "meaningless_flag");
        assert!(message.contains("--instance-id"), "{message}");
        assert_eq!(
            with(&["--status-lease-ttl", "30s", "--instance-id", "a"]).0,
            "ok"
        );
        let (slug, message) = refusal(&["--token-name", "ops"]);
        assert_eq!(slug, "meaningless_flag");
        assert!(message.contains("without a token"), "{message}");
        assert_eq!(refusal(&["--token-name", "ops", "--token", TOKEN]).0, "ok");
        assert_eq!(refusal(&["--metrics-need-token"]).0, "meaningless_flag");
        assert_eq!(refusal(&["--metrics-need-token", "--token", TOKEN]).0, "ok");
        let (slug, message) = refusal(&["--insecure-http"]);
        assert_eq!(slug, "meaningless_flag");
        assert!(message.contains("loopback"), "{message}");
        let exposed = ["--listen", "0.0.0.0:1", "--token", TOKEN, "--insecure-http"];
        assert_eq!(refusal(&exposed).0, "ok");
        let mut tls = exposed.to_vec();
        tls.extend(["--tls-cert", "c.pem", "--tls-key", "k.pem"]);
        let (slug, message) = refusal(&tls);
        assert_eq!(slug, "meaningless_flag");
        assert!(message.contains("--tls-cert"), "{message}");
        let (slug, message) = with(&["--signed-format", "v2"]);
        assert_eq!(slug, "meaningless_flag");
        assert!(message.contains("--sign-key"), "{message}");
        assert_eq!(
            with(&["--signed-format", "v2", "--sign-key", "ops.key"]).0,
            "ok"
        );
    }

    /// The store's options are built once from the flags and checked by
    /// the store's own rules, before anything connects.
    #[test]
    fn store_options_are_checked_once_before_connecting() {
        let o = parse(&[
            "--etcd",
            "--endpoints",
            "127.0.0.1:1",
            "--stale-after",
            "3s",
            "--progress-interval",
            "1s",
        ]);
        let options = store_options(&o).unwrap();
        assert_eq!(options.stale_after(), Duration::from_secs(3));
        assert_eq!(options.connection().endpoints(), ["http://127.0.0.1:1"]);
        assert_eq!(
            options.failsafe().map(|f| f.after),
            Some(crate::cli::safety::DEFAULT_SERVE_FAILSAFE_AFTER)
        );
        for bad in [
            &["--failsafe-after", "0s"][..],
            &["--progress-interval", "20s"],
            &["--backoff-initial", "20s"],
        ] {
            let mut args = vec!["--etcd", "--endpoints", "127.0.0.1:1"];
            args.extend_from_slice(bad);
            let e = store_options(&parse(&args)).unwrap_err();
            assert_eq!((e.code(), e.slug), (2, "invalid_config"), "{bad:?}");
        }
    }
}
