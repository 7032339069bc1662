//! [`Given`]: which flags the operator typed, as opposed to defaults and
//! environment fallbacks, so that a flag another flag makes meaningless can
//! be refused ([`meaningless_flag`]) without refusing a shell that exports
//! `OSPROXY_*` variables for every subcommand.

use std::collections::BTreeSet;

use clap::parser::ValueSource;
use clap::ArgMatches;

use super::CliError;

/// The ids (clap's: the field names) of the flags given on the command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Given {
    ids: BTreeSet<String>,
}

impl Given {
    /// The flags of `matches` (one subcommand's) given on the command line.
    pub fn from_matches(matches: &ArgMatches) -> Self {
        let ids = matches
            .ids()
            .filter(|id| matches.value_source(id.as_str()) == Some(ValueSource::CommandLine))
            .map(|id| id.as_str().to_owned())
            .collect();
        Given { ids }
    }

    /// Whether the flag with clap id `id` was given on the command line.
    pub fn has(&self, id: &str) -> bool {
        self.ids.contains(id)
    }
}

/// Exit 2 `meaningless_flag`: `flag` has no effect `why` (e.g. "without
/// --etcd (…)"); the hint says what to do instead.
pub fn meaningless_flag(flag: &str, why: &str, hint: impl Into<String>) -> CliError {
    CliError::usage("meaningless_flag", format!("{flag} has no effect {why}")).hint(hint)
}
