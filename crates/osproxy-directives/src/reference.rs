//! The reference pages of `docs/reference/`, rendered from the code so they
//! cannot drift: the CLI from the clap definitions (the same text as
//! `--help`), the exit codes from `Failure`, the admin routes and their
//! error slugs from [`ROUTES`] and [`ERRORS`], the decoder's slugs from
//! [`RejectReason::ALL`]. The man pages come from the same clap definitions
//! (`clap_mangen`, in the reference test).
//!
//! The checked-in pages are compared with a fresh rendering by the
//! `reference` test; `UPDATE_REFERENCE=1 cargo test -p osproxy-directives
//! --test reference` rewrites them.

use std::fmt::Write as _;

use clap::CommandFactory;
use osproxy_observe::RejectReason;

use crate::admin::routes::{ERRORS, ROUTES};
use crate::cli::common::{Failure, SUCCESS_MEANING};
use crate::cli::Cli;

/// The line every rendered page starts with.
pub const GENERATED: &str = "Generated from the code by `osproxy_directives::reference`: do not edit; run `UPDATE_REFERENCE=1 cargo test -p osproxy-directives --test reference` after changing the source.";

/// The binary's clap command as the reference shows it: environment values
/// hidden, so the rendering does not depend on the shell it runs in, and the
/// version on every subcommand (as `propagate_version` gives it at run time).
pub fn command() -> clap::Command {
    Cli::command()
        .mut_args(|a| a.hide_env_values(true))
        .mut_subcommands(|s| {
            s.mut_args(|a| a.hide_env_values(true))
                .version(env!("CARGO_PKG_VERSION"))
        })
}

/// `docs/reference/cli.md`.
pub fn cli_markdown() -> String {
    let cmd = command();
    let name = cmd.get_name().to_owned();
    let mut out = format!("# `{name}` command line\n\n<!-- {GENERATED} -->\n\n");
    out.push_str("Every subcommand's `--help`, as the binary prints it (less the values of environment variables set where it runs). The man pages in `man/` carry the same text.\n\n");
    out.push_str("## Exit codes\n\n| code | meaning |\n|---|---|\n");
    let _ = writeln!(out, "| 0 | {SUCCESS_MEANING} |");
    for f in Failure::ALL {
        let _ = writeln!(out, "| {} | {} |", f.code(), f.meaning());
    }
    out.push_str("\n## Subcommands\n\n");
    for sub in cmd.get_subcommands() {
        let about = sub.get_about().map(ToString::to_string).unwrap_or_default();
        let _ = writeln!(
            out,
            "- [`{}`](#{name}-{}): {}",
            sub.get_name(),
            sub.get_name(),
            about.lines().collect::<Vec<_>>().join(" ")
        );
    }
    let _ = write!(
        out,
        "\n## `{name}`\n\n```text\n{}```\n",
        help(&cmd, &[&name, "--help"])
    );
    for sub in cmd.get_subcommands() {
        let sub = sub.get_name();
        let _ = write!(
            out,
            "\n## {name} {sub}\n\n```text\n{}```\n",
            help(&cmd, &[&name, sub, "--help"])
        );
    }
    out
}

/// What `args` (ending in `--help`) prints: the help exactly as the binary
/// shows it (long where a flag has more to say, else compact).
fn help(cmd: &clap::Command, args: &[&str]) -> String {
    match cmd.clone().try_get_matches_from(args) {
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => e.render().to_string(),
        _ => String::new(),
    }
}

/// `docs/reference/http.md`.
pub fn http_markdown() -> String {
    let mut out = format!("# Admin HTTP routes\n\n<!-- {GENERATED} -->\n\n");
    out.push_str(
        "One instance's admin surface (`serve`). Every answer that is an error is JSON, \
`{\"error\": \"<slug>\", \"message\": \"...\"}` (plus `directive_index` when one directive \
of a set is at fault, `revision_before` after an unknown outcome, `oldest` with `compacted`); \
messages never carry a directive's values. Before any route, the browser rules apply \
(`Host`, same-origin, JSON-only `POST`), then the token under `/admin`.\n\n",
    );
    out.push_str("## Routes\n\n| route | methods | token | answer | its error slugs |\n|---|---|---|---|---|\n");
    for r in ROUTES {
        let slugs = if r.errors.is_empty() {
            "-".to_owned()
        } else {
            r.errors
                .iter()
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} |",
            r.path,
            r.methods.allow(),
            r.access.describe(),
            r.summary.replace('|', "\\|"),
            slugs
        );
    }
    out.push_str("\n## Errors of every route\n\n| status | slug | when |\n|---|---|---|\n");
    for e in ERRORS {
        let _ = writeln!(out, "| {} | `{}` | {} |", e.status, e.slug, e.meaning);
    }
    out.push_str(
        "\n## Rejections of a directive set\n\nA set the fleet's decoder refuses is 400 (413 for \
`too_large`) with one of these slugs, the same an instance reports for a value in etcd:\n\n",
    );
    let slugs: Vec<String> = RejectReason::ALL
        .iter()
        .map(|r| format!("`{}`", r.slug()))
        .collect();
    out.push_str(&slugs.join(", "));
    out.push('\n');
    out
}

/// `docs/reference/metrics.md`.
pub fn metrics_markdown() -> String {
    use crate::admin::metrics::{MAX_DIRECTIVE_SERIES, METRICS, PREFIX};
    let mut out = format!("# Metrics\n\n<!-- {GENERATED} -->\n\n");
    out.push_str(
        "What `GET /metrics` of one instance (`serve`) exports, in the Prometheus text format \
(version 0.0.4); each family's `# HELP` line is its meaning below. Label values are slugs, never \
directive values, with one exception: `directive` is the directive's id, the operator's own name \
for it, restricted by the decoder to `[A-Za-z0-9._:-]` and bounded by the live set (a \
directive's series disappear when it leaves the set or expires).",
    );
    let _ = write!(
        out,
        " At most {MAX_DIRECTIVE_SERIES} directives get series of their own (the first in the \
set's order); the rest are summed into one `directive=\"(folded)\"` series per outcome.\n\n"
    );
    out.push_str("| metric | type | labels | where | meaning |\n|---|---|---|---|---|\n");
    for m in METRICS {
        let labels = if m.labels.is_empty() {
            "-".to_owned()
        } else {
            m.labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            out,
            "| `{PREFIX}{}` | {} | {} | {} | {} |",
            m.name,
            m.kind,
            labels,
            m.scope.text(),
            m.help.replace('|', "\\|")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_and_exit_code_is_rendered() {
        let http = http_markdown();
        for r in ROUTES {
            assert!(http.contains(&format!("| `{}` |", r.path)), "{}", r.path);
        }
        let cli = cli_markdown();
        for f in Failure::ALL {
            assert!(cli.contains(&format!("| {} | {} |", f.code(), f.meaning())));
        }
        assert!(cli.contains("## osproxy-directives serve"));
        assert!(cli.contains("Usage: osproxy-directives serve"), "{cli}");
    }
}
