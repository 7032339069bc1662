//! The command line: one module per subcommand, each with its options struct
//! (whose doc comments are the `--help` text) and one `run(opts) -> ExitCode`.
//! The same definitions render `docs/reference/cli.md` and the man pages
//! (see [`crate::reference`]); the exit codes are [`common::Failure`]'s.
//!
//! Connection settings come from flags or the environment (each flag's
//! variable is in `docs/reference/cli.md`) so a shell can set them once.
//! Output is for humans by default and JSON with `--json`.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod access;
pub mod add;
pub mod common;
pub mod demo;
pub mod diff;
pub mod explain;
pub mod get;
pub mod history;
pub mod keygen;
pub mod publish;
pub mod remove;
pub mod rollback;
pub mod safety;
pub mod serve;
pub mod sign_header;
pub mod status;
pub mod trust;
pub mod validate;
pub mod verify_header;
pub mod watch;

/// Diagnostics directives for an osproxy fleet: serve an instance, validate
/// and publish directive sets, inspect what the fleet applies.
#[derive(Debug, Parser)]
#[command(name = "osproxy-directives", version, propagate_version = true)]
#[command(after_help = START_HERE, after_long_help = long_epilogue())]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// The end of `osproxy-directives -h`.
const START_HERE: &str =
    "Start with `osproxy-directives demo`, or see docs/reference/cli.md for every subcommand.";

/// The end of `osproxy-directives --help`: the exit codes (from
/// [`common::Failure`]), then where to start.
fn long_epilogue() -> String {
    format!("{}\n{START_HERE}", common::exit_codes_help())
}

impl Cli {
    /// Parses the process's command line (exiting 2 on a usage error, as
    /// clap does) and notes which flags were typed, for the subcommands
    /// that refuse a flag another makes meaningless (`serve`).
    pub fn parse_noting_given() -> Cli {
        use clap::{CommandFactory, FromArgMatches};
        let matches = Cli::command().get_matches();
        let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        cli.note_given(&matches);
        cli
    }

    /// Notes in the subcommand's options which of its flags `matches`
    /// (this command line's) holds as typed.
    pub fn note_given(&mut self, matches: &clap::ArgMatches) {
        let Some((_, m)) = matches.subcommand() else {
            return;
        };
        let given = common::Given::from_matches(m);
        match &mut self.command {
            Command::Serve(o) => o.given = given,
            Command::Publish(o) => o.given = given,
            Command::Rollback(o) => o.given = given,
            _ => {}
        }
    }
}

/// Every subcommand.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one instance: admin HTTP on loopback, in-memory store by default,
    /// `--etcd` for the fleet store.
    #[command(after_help = serve::EXAMPLES)]
    Serve(Box<serve::ServeOpts>),
    /// Check a directive set file with the fleet's decoder, without publishing.
    #[command(after_help = validate::EXAMPLES)]
    Validate(validate::ValidateOpts),
    /// Validate a directive set file and publish it to etcd with compare-and-swap.
    #[command(after_help = publish::EXAMPLES)]
    Publish(publish::PublishOpts),
    /// Show the live directive set in etcd.
    #[command(after_help = get::EXAMPLES)]
    Get(get::GetOpts),
    /// Add (or replace) one directive in etcd.
    #[command(after_help = add::EXAMPLES)]
    Add(add::AddOpts),
    /// Remove one directive from etcd by id.
    #[command(after_help = remove::EXAMPLES)]
    Remove(remove::RemoveOpts),
    /// List the revisions of the directive set still in etcd's history, with
    /// author, time, reason and changes.
    #[command(after_help = history::EXAMPLES)]
    History(history::HistoryOpts),
    /// Show what changed between two revisions (or a revision and the live set).
    #[command(after_help = diff::EXAMPLES)]
    Diff(diff::DiffOpts),
    /// Publish the set as of an earlier revision again, with compare-and-swap.
    #[command(after_help = rollback::EXAMPLES)]
    Rollback(rollback::RollbackOpts),
    /// Print one line per change of the live directive set.
    #[command(after_help = watch::EXAMPLES)]
    Watch(watch::WatchOpts),
    /// Show which revision each instance of the fleet applied or rejected.
    #[command(after_help = status::EXAMPLES)]
    Status(status::StatusOpts),
    /// Explain how a request would be decided, directive by directive: on
    /// the live set in etcd, or by a running instance (`--instance`).
    #[command(after_help = explain::EXAMPLES)]
    Explain(explain::ExplainOpts),
    /// Start a throwaway local etcd and three instances, and show a directive
    /// reaching all of them and expiring.
    #[command(after_help = demo::EXAMPLES)]
    Demo(demo::DemoOpts),
    /// Create an Ed25519 signing key (private file, mode 0600) and print its
    /// public key for the instances' trust store.
    #[command(after_help = keygen::EXAMPLES)]
    Keygen(keygen::KeygenOpts),
    /// Print a signed X-Debug-Directive header value for one request.
    #[command(after_help = sign_header::EXAMPLES)]
    SignHeader(sign_header::SignHeaderOpts),
    /// Say whether a trust store accepts an X-Debug-Directive header, and why not.
    #[command(after_help = verify_header::EXAMPLES)]
    VerifyHeader(verify_header::VerifyHeaderOpts),
}

impl Command {
    /// Runs the subcommand.
    pub async fn run(self) -> ExitCode {
        match self {
            Command::Serve(o) => serve::run(*o).await,
            Command::Validate(o) => validate::run(o).await,
            Command::Publish(o) => publish::run(o).await,
            Command::Get(o) => get::run(o).await,
            Command::Add(o) => add::run(o).await,
            Command::Remove(o) => remove::run(o).await,
            Command::History(o) => history::run(o).await,
            Command::Diff(o) => diff::run(o).await,
            Command::Rollback(o) => rollback::run(o).await,
            Command::Watch(o) => watch::run(o).await,
            Command::Status(o) => status::run(o).await,
            Command::Explain(o) => explain::run(o).await,
            Command::Demo(o) => demo::run(o).await,
            Command::Keygen(o) => keygen::run(o).await,
            Command::SignHeader(o) => sign_header::run(o).await,
            Command::VerifyHeader(o) => verify_header::run(o).await,
        }
    }

    /// The default log filter: `info` for long-running subcommands, `warn`
    /// for the one-shot ones (their output is the point).
    fn default_log_filter(&self) -> &'static str {
        match self {
            Command::Serve(_) => "info",
            _ => "warn",
        }
    }
}

/// The binary's entry point: parses the command line (usage errors exit 2),
/// sets up logging to stderr (`RUST_LOG` overrides the level) and runs the
/// subcommand on a tokio runtime.
pub fn main() -> ExitCode {
    let cli = Cli::parse_noting_given();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(cli.command.default_log_filter()));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(cli.command.run())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Subcommands parsed with no flag (and no environment fallback) have
    /// their module's default constants.
    #[test]
    fn wait_and_demo_defaults_are_their_constants() {
        use clap::FromArgMatches;
        let parse = |args: &[&str]| {
            let matches = Cli::command()
                .mut_subcommands(|s| s.mut_args(|a| a.env(None::<&str>)))
                .try_get_matches_from(args)
                .unwrap();
            Cli::from_arg_matches(&matches).unwrap().command
        };
        let Command::Status(o) = parse(&["x", "status"]) else {
            panic!("not status");
        };
        assert_eq!(o.timeout, status::DEFAULT_WAIT_TIMEOUT);
        let Command::Publish(o) = parse(&["x", "publish", "f.json"]) else {
            panic!("not publish");
        };
        assert_eq!(o.timeout, status::DEFAULT_WAIT_TIMEOUT);
        assert_eq!(o.status_prefix, osproxy_etcd::DEFAULT_STATUS_PREFIX);
        let Command::Demo(o) = parse(&["x", "demo"]) else {
            panic!("not demo");
        };
        assert_eq!(o.ttl, demo::DEFAULT_TTL);
    }

    /// `publish` and `rollback` refuse a typed flag another flag makes
    /// meaningless, as `cli::main` parses them.
    #[test]
    fn writing_subcommands_refuse_flags_that_would_mean_nothing() {
        use clap::FromArgMatches;
        let slug = |args: &[&str]| {
            let matches = Cli::command()
                .mut_subcommands(|s| s.mut_args(|a| a.env(None::<&str>)))
                .try_get_matches_from(args)
                .unwrap();
            let mut cli = Cli::from_arg_matches(&matches).unwrap();
            cli.note_given(&matches);
            let refused = match cli.command {
                Command::Publish(o) => publish::refuse_meaningless(&o.given, o.wait, &o.sign),
                Command::Rollback(o) => publish::refuse_meaningless(&o.given, o.wait, &o.sign),
                _ => panic!("not a writing subcommand"),
            };
            refused.err().map(|e| e.slug)
        };
        let refused = Some("meaningless_flag");
        for sub in [
            &["x", "publish", "f.json"][..],
            &["x", "rollback", "--to", "4"],
        ] {
            let with = |extra: &[&'static str]| {
                let mut args = sub.to_vec();
                args.extend_from_slice(extra);
                slug(&args)
            };
            assert_eq!(with(&[]), None, "{sub:?}");
            assert_eq!(with(&["--status-prefix", "/s/"]), refused, "{sub:?}");
            assert_eq!(with(&["--status-prefix", "/s/", "--wait"]), None, "{sub:?}");
            assert_eq!(with(&["--signed-format", "v2"]), refused, "{sub:?}");
            assert_eq!(
                with(&["--signed-format", "v2", "--sign-key", "k"]),
                None,
                "{sub:?}"
            );
        }
    }

    #[test]
    fn every_subcommand_has_examples_in_its_help() {
        let mut cli = Cli::command();
        for sub in cli.get_subcommands_mut() {
            let help = sub.render_long_help().to_string();
            assert!(
                help.contains("Examples:"),
                "{} --help lacks examples",
                sub.get_name()
            );
        }
    }
}
