//! What the subcommands share: etcd connection flags ([`EtcdArgs`]), the
//! layout ([`LayoutArgs`]), decode limits ([`LimitArgs`]), `--json`
//! ([`OutputArgs`]), reading `FILE|-` ([`read_input`]) and the error type that
//! maps every failure to an exit code and a stable slug ([`CliError`]).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use osproxy_core::{Clock, SystemClock};
use osproxy_etcd::config::{
    Connection, ConnectionConfig, DEFAULT_CONNECT_TIMEOUT, DEFAULT_REQUEST_TIMEOUT,
};
use osproxy_etcd::{Layout, Publisher, TlsConfig};
use osproxy_observe::decode::{MAX_BODY_BYTES, MAX_LIFETIME};
use osproxy_observe::DecodeLimits;

use crate::duration::{duration_default, parse_duration};

mod error;
mod given;
mod note;
mod targets;
pub mod term;

pub(crate) use error::config_error;
pub use error::{exit_codes_help, CliError, Failure, SUCCESS_MEANING};
pub use given::{meaningless_flag, Given};
pub use note::{note_json, note_text, NoteArgs};
pub use targets::TargetArgs;

/// The endpoint the subcommands use when none is given: a local etcd.
pub const DEFAULT_ENDPOINT: &str = "127.0.0.1:2379";
/// The key the directives live at when neither `--key` nor `--prefix` is given.
pub const DEFAULT_KEY: &str = "/osproxy/directives";

/// How to reach etcd. Every flag has an environment fallback.
#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "etcd connection")]
pub struct EtcdArgs {
    /// etcd endpoints, comma-separated: host:port or http(s)://host:port.
    #[arg(
        long = "endpoints",
        env = "OSPROXY_ETCD_ENDPOINTS",
        value_delimiter = ',',
        default_value = DEFAULT_ENDPOINT,
        value_name = "LIST"
    )]
    pub endpoints: Vec<String>,
    /// CA bundle (PEM) that signs the etcd server certificates; turns on TLS.
    #[arg(long = "etcd-ca", env = "OSPROXY_ETCD_CA", value_name = "PATH")]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for etcd's client certificate auth.
    #[arg(
        long = "etcd-cert",
        env = "OSPROXY_ETCD_CERT",
        value_name = "PATH",
        requires = "client_key"
    )]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(
        long = "etcd-key",
        env = "OSPROXY_ETCD_KEY",
        value_name = "PATH",
        requires = "cert"
    )]
    pub client_key: Option<PathBuf>,
    /// TLS server name to verify, when it differs from the endpoint's host.
    #[arg(
        long = "etcd-server-name",
        env = "OSPROXY_ETCD_SERVER_NAME",
        value_name = "NAME"
    )]
    pub server_name: Option<String>,
    /// etcd user name (with --etcd-password).
    #[arg(
        long = "etcd-user",
        env = "OSPROXY_ETCD_USER",
        value_name = "USER",
        requires = "password"
    )]
    pub user: Option<String>,
    /// etcd password. Prefer the environment variable: flags show up in `ps`.
    #[arg(
        long = "etcd-password",
        env = "OSPROXY_ETCD_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD",
        requires = "user"
    )]
    pub password: Option<String>,
    /// Bound on connecting (and authenticating) to etcd.
    #[arg(long, env = "OSPROXY_ETCD_CONNECT_TIMEOUT", default_value = duration_default!(DEFAULT_CONNECT_TIMEOUT), value_parser = parse_duration, value_name = "DURATION")]
    pub connect_timeout: Duration,
    /// Bound on each etcd request.
    #[arg(long, env = "OSPROXY_ETCD_REQUEST_TIMEOUT", default_value = duration_default!(DEFAULT_REQUEST_TIMEOUT), value_parser = parse_duration, value_name = "DURATION")]
    pub request_timeout: Duration,
}

impl EtcdArgs {
    /// Plain settings for `endpoints`: no TLS, no credentials, the given
    /// timeouts (what the flags give when only `--endpoints` is set).
    pub fn plain(
        endpoints: Vec<String>,
        connect_timeout: Duration,
        request_timeout: Duration,
    ) -> Self {
        EtcdArgs {
            endpoints,
            ca: None,
            cert: None,
            client_key: None,
            server_name: None,
            user: None,
            password: None,
            connect_timeout,
            request_timeout,
        }
    }

    /// The validated connection. TLS is on when a CA, a client certificate
    /// or an `https://` endpoint is given.
    ///
    /// # Errors
    /// A usage error for unreadable TLS files or invalid settings.
    pub fn connection(&self) -> Result<Connection, CliError> {
        Connection::try_from(self.settings()?).map_err(config_error)
    }

    /// The settings these flags give, not yet validated (for a subcommand
    /// with flags of its own, e.g. `serve`'s keepalive, to complete before
    /// making the [`Connection`]); keepalive at the library's defaults.
    ///
    /// # Errors
    /// A usage error for unreadable TLS files.
    pub fn settings(&self) -> Result<ConnectionConfig, CliError> {
        let mut c = ConnectionConfig::new(&self.endpoints);
        c.connect_timeout = self.connect_timeout;
        c.request_timeout = self.request_timeout;
        let wants_tls = self.ca.is_some()
            || self.cert.is_some()
            || self.server_name.is_some()
            || self
                .endpoints
                .iter()
                .any(|e| e.trim().starts_with("https://"));
        if wants_tls {
            let mut tls = TlsConfig::from_files(
                self.ca.as_deref(),
                self.cert.as_deref(),
                self.client_key.as_deref(),
            )
            .map_err(config_error)?;
            tls.domain_name = self.server_name.clone();
            c.tls = Some(tls);
        }
        if let (Some(user), Some(password)) = (&self.user, &self.password) {
            c.credentials = Some(osproxy_etcd::Credentials {
                user: user.clone(),
                password: password.clone(),
            });
        }
        Ok(c)
    }

    /// Connects a publisher for `layout`.
    ///
    /// # Errors
    /// Usage errors for invalid settings, runtime errors when etcd is
    /// unreachable.
    pub async fn publisher(
        &self,
        layout: Layout,
        limits: DecodeLimits,
    ) -> Result<Publisher, CliError> {
        let connection = self.connection()?;
        let publisher = Publisher::connect(connection, layout, clock()).await?;
        Ok(publisher.with_decode_limits(limits))
    }
}

/// The options every fleet subcommand shares: where the directives live, how
/// to reach etcd, the decoder limits and the output format.
#[derive(Args, Debug)]
pub struct FleetArgs {
    /// Where the directives live.
    #[command(flatten)]
    pub layout: LayoutArgs,
    /// How to reach etcd.
    #[command(flatten)]
    pub etcd: EtcdArgs,
    /// Decoder limits.
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Output format.
    #[command(flatten)]
    pub output: OutputArgs,
}

impl FleetArgs {
    /// A publisher on the chosen layout, connected with these settings and
    /// decoding with these limits: the opening of every fleet subcommand.
    ///
    /// # Errors
    /// A usage error for bad settings, a runtime error when etcd cannot be
    /// reached.
    pub async fn publisher(&self) -> Result<Publisher, CliError> {
        let layout = self.layout.layout()?;
        self.etcd.publisher(layout, self.limits.limits()).await
    }
}

/// Where the directives live in etcd.
#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "Layout")]
pub struct LayoutArgs {
    /// The etcd key holding the whole directive set (single-key layout).
    #[arg(
        long,
        env = "OSPROXY_DIRECTIVES_KEY",
        default_value = DEFAULT_KEY,
        value_name = "KEY"
    )]
    pub key: String,
    /// Use the prefix layout instead: one directive per key `<PREFIX><id>`,
    /// each bound to a lease of its lifetime. It must end with `/`.
    #[arg(
        long,
        env = "OSPROXY_DIRECTIVES_PREFIX",
        value_name = "PREFIX",
        conflicts_with = "key"
    )]
    pub prefix: Option<String>,
}

impl LayoutArgs {
    /// The layout.
    ///
    /// # Errors
    /// A usage error for an empty key or prefix, or a prefix without a
    /// trailing `/`.
    pub fn layout(&self) -> Result<Layout, CliError> {
        let layout = match &self.prefix {
            Some(p) => Layout::Prefix(p.clone()),
            None => Layout::Key(self.key.clone()),
        };
        layout.validate().map_err(config_error)?;
        Ok(layout)
    }
}

/// Decoder limits; keep them equal to the fleet's.
#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "Validation")]
pub struct LimitArgs {
    /// Longest lifetime a directive may have (the fleet rejects longer ones).
    #[arg(long, env = "OSPROXY_MAX_LIFETIME", default_value = duration_default!(MAX_LIFETIME), value_parser = parse_duration, value_name = "DURATION")]
    pub max_lifetime: Duration,
}

impl LimitArgs {
    /// The decoder limits.
    pub fn limits(&self) -> DecodeLimits {
        DecodeLimits {
            max_lifetime: self.max_lifetime,
            ..DecodeLimits::default()
        }
    }
}

impl Default for LimitArgs {
    fn default() -> Self {
        LimitArgs {
            max_lifetime: MAX_LIFETIME,
        }
    }
}

/// Output format.
#[derive(Args, Clone, Copy, Debug, Default)]
#[command(next_help_heading = "Output")]
pub struct OutputArgs {
    /// Print JSON for machines instead of text for humans (errors too, on stdout).
    #[arg(long)]
    pub json: bool,
}

/// The clock every subcommand uses.
pub fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// Reads `FILE`, or stdin for `-`, up to one byte past the body limit (the
/// decoder then rejects an oversized input as `too_large`).
///
/// # Errors
/// A usage error (`unreadable_input`) naming the file.
pub fn read_input(path: &Path) -> Result<Vec<u8>, CliError> {
    let limit = u64::try_from(MAX_BODY_BYTES).unwrap_or(u64::MAX) + 1;
    let mut bytes = Vec::new();
    let result = if path.as_os_str() == "-" {
        std::io::stdin().lock().take(limit).read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(limit).read_to_end(&mut bytes))
    };
    match result {
        Ok(_) => Ok(bytes),
        Err(e) => Err(CliError::usage(
            "unreadable_input",
            format!("cannot read {}", path.display()),
        )
        .caused_by(&e)),
    }
}

/// Checks `set` in the form it is published in (canonical: every `ttl_secs`
/// becomes a longer absolute `expires_at`) with the fleet's limits, so a set
/// just under the size limit is refused here as the instances would refuse
/// it once published.
///
/// # Errors
/// A validation error (exit 2) with the decoder's slug.
pub fn check_published_form(
    set: &osproxy_observe::DirectiveSet,
    limits: &DecodeLimits,
) -> Result<(), CliError> {
    let bytes = osproxy_observe::encode_directive_set(set);
    osproxy_observe::decode_directive_set_with(&bytes, clock().as_ref(), limits).map_err(|e| {
        let mut err = CliError::from(e);
        err.message = format!("{} once published (canonical form)", err.message);
        err.hint = Some(
            "ttl_secs are published as absolute expires_at, which is longer; publish fewer directives"
                .into(),
        );
        err
    })?;
    Ok(())
}

pub use crate::diff::summarize_ids;

/// Prints one JSON value on its own line.
pub fn print_json(value: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

/// Runs `body` and turns its result into an exit code, reporting errors in
/// the chosen format.
pub async fn finish(
    json: bool,
    body: impl std::future::Future<Output = Result<(), CliError>>,
) -> ExitCode {
    match body.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => e.report(json),
    }
}

/// Like [`finish`], for a body that decides its own exit code when it
/// succeeds (a verdict such as lagging or rejecting).
pub async fn finish_with(
    json: bool,
    body: impl std::future::Future<Output = Result<ExitCode, CliError>>,
) -> ExitCode {
    match body.await {
        Ok(code) => code,
        Err(e) => e.report(json),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use osproxy_etcd::{ConfigError, PublishError};
    use osproxy_observe::DecodeError;

    #[test]
    fn decode_errors_are_usage_errors_with_slug_and_index() {
        let e = CliError::from(DecodeError::at(osproxy_observe::RejectReason::ZeroTtl, 3));
        assert_eq!(e.failure, Failure::Usage);
        assert_eq!(e.slug, "zero_ttl");
        assert_eq!(e.directive_index, Some(3));
        assert_eq!(e.message, "directive set rejected: zero_ttl (directive 3)");
    }

    #[test]
    fn long_id_lists_are_summarized() {
        let ids: Vec<String> = (0..9000).map(|i| format!("d{i}")).collect();
        assert_eq!(summarize_ids(&ids), "d0, d1, d2, d3, d4 and 8995 more");
        assert_eq!(summarize_ids(&ids[..6]), "d0, d1, d2, d3, d4, d5");
        assert_eq!(summarize_ids(&[]), "");
    }

    #[test]
    fn unknown_outcomes_exit_4_and_name_the_revision() {
        let e = CliError::from(PublishError::OutcomeUnknown {
            op: "publish",
            before: 17,
            source: None,
        });
        assert_eq!((e.code(), e.slug), (4, "outcome_unknown"));
        assert_eq!(e.revision_before, Some(17));
        assert!(e.message.contains("outcome unknown"), "{}", e.message);
        assert!(e.hint.as_deref().unwrap_or("").contains("17"));
    }

    #[test]
    fn a_prefix_without_its_slash_is_a_usage_error() {
        let args = |prefix: &str| LayoutArgs {
            key: DEFAULT_KEY.into(),
            prefix: Some(prefix.into()),
        };
        let e = args("/env/prod").layout().unwrap_err();
        assert_eq!((e.code(), e.slug), (2, "invalid_config"));
        assert!(
            e.causes.iter().any(|c| c.contains("must end in '/'")) || e.message.contains("'/'"),
            "{e:?}"
        );
        assert_eq!(
            args("/env/prod/").layout().unwrap(),
            Layout::Prefix("/env/prod/".into())
        );
    }

    #[test]
    fn publish_errors_keep_their_causes() {
        let e = CliError::from(PublishError::Config(ConfigError::NoEndpoints));
        assert_eq!(e.failure, Failure::Usage);
        assert_eq!(e.causes, ["no endpoints given"]);
        let e = CliError::from(PublishError::Conflict {
            expected: 1,
            actual: 2,
        });
        assert_eq!(e.failure, Failure::Runtime);
        assert!(e.message.contains("conflict"));
        assert!(e.hint.is_some());
    }

    #[test]
    fn tls_turns_on_for_https_endpoints_and_bad_endpoints_are_usage_errors() {
        let mut args = EtcdArgs::plain(
            vec!["https://127.0.0.1:2379".into()],
            Duration::from_secs(1),
            Duration::from_secs(1),
        );
        // An https endpoint turns TLS on, which needs a CA bundle.
        let e = args.connection().unwrap_err();
        assert_eq!((e.failure, e.slug), (Failure::Usage, "invalid_config"));
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, b"-----BEGIN CERTIFICATE-----\n").unwrap();
        args.ca = Some(ca);
        let c = args.connection().unwrap();
        assert!(c.tls().is_some());
        assert!(c.endpoints()[0].starts_with("https://"));
        args.ca = None;
        args.endpoints = vec!["not an endpoint".into()];
        let e = args.connection().unwrap_err();
        assert_eq!((e.failure, e.slug), (Failure::Usage, "invalid_config"));
        args.endpoints = vec!["127.0.0.1:2379".into()];
        args.ca = Some("/nonexistent/ca.pem".into());
        let e = args.connection().unwrap_err();
        assert!(e.causes[0].contains("/nonexistent/ca.pem"), "{e:?}");
    }
}
