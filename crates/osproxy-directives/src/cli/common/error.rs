//! [`CliError`]: every failure of a subcommand as an exit code class, a
//! stable slug, a message, its causes and a hint; and the exit codes
//! ([`Failure`], the one place they are defined).

use std::io::Write;
use std::process::ExitCode;

use osproxy_etcd::{ConfigError, PublishError, PublishFault, TransportError};
use osproxy_observe::DecodeError;
use serde_json::json;

use super::print_json;

/// Which exit code a failure gets: the one definition of the binary's exit
/// codes, which `--help` ([`exit_codes_help`]) and the reference
/// (`docs/reference/cli.md`) are rendered from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Exit 1: the request was fine, the world was not (etcd down, conflict,
    /// instances still lagging when `--wait` timed out).
    Runtime,
    /// Exit 2: the command line or the input is wrong, or the fleet or etcd
    /// would refuse it (nothing was written).
    Usage,
    /// Exit 3: an instance rejects the latest revision.
    Rejecting,
    /// Exit 4: a write was sent and its answer lost; it may or may not have
    /// been applied.
    OutcomeUnknown,
}

/// What exit code 0 means.
pub const SUCCESS_MEANING: &str = "success (status: every instance current)";

impl Failure {
    /// Every failure, in exit-code order.
    pub const ALL: [Failure; 4] = [
        Failure::Runtime,
        Failure::Usage,
        Failure::Rejecting,
        Failure::OutcomeUnknown,
    ];

    /// The process exit code.
    pub const fn code(self) -> u8 {
        match self {
            Failure::Runtime => 1,
            Failure::Usage => 2,
            Failure::Rejecting => 3,
            Failure::OutcomeUnknown => 4,
        }
    }

    /// What the code means, in one line.
    pub const fn meaning(self) -> &'static str {
        match self {
            Failure::Runtime => "runtime failure: etcd unreachable, revision conflict, not found; status: instances lagging",
            Failure::Usage => "usage or validation error, nothing written: a rejected set, too_large, etcd_value_too_large, etcd_too_many_ops",
            Failure::Rejecting => "an instance rejects the latest revision (status, --wait)",
            Failure::OutcomeUnknown => "outcome unknown: a write was sent and its answer lost, so it may or may not have been applied (run `get` and compare the revision named in the message)",
        }
    }
}

/// Every exit code of the binary, as `--help` ends: rendered from
/// [`Failure`].
pub fn exit_codes_help() -> String {
    let mut out = format!("Exit codes:\n  0  {SUCCESS_MEANING}\n");
    for f in Failure::ALL {
        out.push_str(&format!("  {}  {}\n", f.code(), f.meaning()));
    }
    out
}

/// A failed subcommand: exit code, stable slug, message and cause chain.
#[derive(Clone, Debug)]
pub struct CliError {
    /// Exit code class.
    pub failure: Failure,
    /// Stable, value-free slug (`conflict`, `unknown_field`, …).
    pub slug: &'static str,
    /// One line for humans.
    pub message: String,
    /// The causes, outermost first.
    pub causes: Vec<String>,
    /// The offending directive, for decoder rejections.
    pub directive_index: Option<usize>,
    /// A suggestion for what to do next.
    pub hint: Option<Box<str>>,
    /// The live revision to compare with after an unknown outcome.
    pub revision_before: Option<i64>,
}

impl CliError {
    /// A usage or validation error (exit 2).
    pub fn usage(slug: &'static str, message: impl Into<String>) -> Self {
        Self::new(Failure::Usage, slug, message)
    }

    /// A runtime failure (exit 1).
    pub fn runtime(slug: &'static str, message: impl Into<String>) -> Self {
        Self::new(Failure::Runtime, slug, message)
    }

    fn new(failure: Failure, slug: &'static str, message: impl Into<String>) -> Self {
        CliError {
            failure,
            slug,
            message: message.into(),
            causes: Vec::new(),
            directive_index: None,
            hint: None,
            revision_before: None,
        }
    }

    /// An error with this exit code class.
    pub fn with_failure(failure: Failure, slug: &'static str, message: impl Into<String>) -> Self {
        Self::new(failure, slug, message)
    }

    /// Appends `error` and its source chain as causes.
    #[must_use]
    pub fn caused_by(mut self, error: &(dyn std::error::Error + 'static)) -> Self {
        let mut next = Some(error);
        while let Some(e) = next {
            self.causes.push(e.to_string());
            next = e.source();
        }
        self
    }

    /// Adds a hint.
    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into().into_boxed_str());
        self
    }

    /// The process exit code.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code())
    }

    /// The numeric exit code.
    pub fn code(&self) -> u8 {
        self.failure.code()
    }

    /// Prints the error (JSON on stdout with `json`, text on stderr
    /// otherwise) and returns the exit code.
    pub fn report(&self, json: bool) -> ExitCode {
        if json {
            let mut body = json!({"error": self.slug, "message": self.message});
            if let Some(i) = self.directive_index {
                body["directive_index"] = i.into();
            }
            if let Some(r) = self.revision_before {
                body["revision_before"] = r.into();
            }
            if let Some(h) = &self.hint {
                body["hint"] = h.as_ref().into();
            }
            if !self.causes.is_empty() {
                body["causes"] = self.causes.clone().into();
            }
            print_json(&body);
        } else {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "error: {}", self.message);
            for cause in &self.causes {
                let _ = writeln!(err, "  caused by: {cause}");
            }
            if let Some(hint) = &self.hint {
                let _ = writeln!(err, "  hint: {hint}");
            }
        }
        self.exit_code()
    }
}

pub(crate) fn config_error(e: ConfigError) -> CliError {
    CliError::usage("invalid_config", "invalid etcd settings").caused_by(&e)
}

impl From<DecodeError> for CliError {
    fn from(e: DecodeError) -> Self {
        let mut err = CliError::usage(e.slug(), e.to_string());
        err.directive_index = e.directive_index;
        err
    }
}

impl From<PublishError> for CliError {
    fn from(e: PublishError) -> Self {
        let failure = match e.fault() {
            PublishFault::Caller => Failure::Usage,
            PublishFault::Unknown => Failure::OutcomeUnknown,
            _ => Failure::Runtime,
        };
        let mut err = CliError::new(failure, e.slug(), e.to_string());
        // The top-level message is `e` itself; list only what is under it.
        if let Some(source) = std::error::Error::source(&e) {
            err = err.caused_by(source);
        }
        match &e {
            PublishError::Conflict { .. } => {
                err.hint = Some(
                    "someone else published in between: run `get`, check, and try again".into(),
                );
            }
            PublishError::Malformed { source, .. } => {
                err.directive_index = source.directive_index;
                err.hint = Some(
                    "publish a whole new set to replace it (see `validate` for the reason)".into(),
                );
            }
            PublishError::OutcomeUnknown { before, .. } => {
                err.revision_before = Some(*before);
                err.hint = Some(
                    format!(
                        "nothing was cleaned up; run `get` (or `status`): a live revision above {before} \
                         means a write happened since (this one or another); check before retrying"
                    )
                    .into(),
                );
            }
            PublishError::Invalid(source) => {
                err.directive_index = source.directive_index;
                err.hint = Some(
                    "nothing was written: every instance would reject exactly these bytes".into(),
                );
            }
            PublishError::ValueTooLarge { .. } => {
                err.hint = Some(
                    "nothing was written: etcd's --max-request-bytes is smaller; publish fewer directives".into(),
                );
            }
            PublishError::TooManyOps { .. } => {
                err.hint = Some(
                    "nothing was written: etcd's --max-txn-ops is smaller than one operation per key \
                     (plus one); publish fewer keys at once or use the single-key layout"
                        .into(),
                );
            }
            PublishError::ForeignRelativeLifetime { .. } => {
                err.hint = Some(
                    "nothing was written: publish the whole set with absolute expires_at first \
                     (`get` shows which directives are relative)"
                        .into(),
                );
            }
            PublishError::Transport(TransportError::Request {
                kind: "permission denied",
                ..
            }) => {
                err.hint = Some(
                    "the etcd role needs read (to publish: write) permission on the directives \
                     and on their revision marker next to them (see `Layout::revision_key`; a \
                     grant on the parent path covers both)"
                        .into(),
                );
            }
            PublishError::Compacted { oldest, .. } => {
                err.hint = Some(
                    format!(
                        "etcd compacted that history: use revision {oldest} or later (`history` lists them)"
                    )
                    .into(),
                );
            }
            PublishError::NoSuchRevision { .. } => {
                err.hint = Some("`history` lists the revisions of the set".into());
            }
            PublishError::Connect(_) => {
                err.hint =
                    Some("check --endpoints (or OSPROXY_ETCD_ENDPOINTS) and that etcd runs".into());
            }
            _ => {}
        }
        err
    }
}
