//! [`TargetArgs`]: the four target flags of every subcommand that describes
//! a directive or a request (`add`, `sign-header`, `explain`), with one help
//! text and one way to turn them into wire fields.

use clap::Args;
use serde_json::{Map, Value};

/// `--tenant`, `--index`, `--principal`, `--endpoint`.
#[derive(Args, Clone, Debug, Default)]
pub struct TargetArgs {
    /// Only requests of this tenant.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Only requests to this index.
    #[arg(long)]
    pub index: Option<String>,
    /// Only requests of this principal.
    #[arg(long)]
    pub principal: Option<String>,
    /// Only this endpoint kind: IngestDoc, IngestBulk, Search, MultiSearch,
    /// Count, GetById, MultiGet, DeleteById, DeleteByQuery, Cursor, Admin, Unknown.
    #[arg(long)]
    pub endpoint: Option<String>,
}

impl TargetArgs {
    /// The set flags as `(wire name, value)`, in wire order.
    pub fn pairs(&self) -> Vec<(&'static str, &str)> {
        [
            ("tenant", &self.tenant),
            ("index", &self.index),
            ("principal", &self.principal),
            ("endpoint", &self.endpoint),
        ]
        .into_iter()
        .filter_map(|(name, v)| v.as_deref().map(|v| (name, v)))
        .collect()
    }

    /// Adds the set flags to a directive object (the decoder checks them).
    pub fn insert_into(&self, o: &mut Map<String, Value>) {
        for (name, v) in self.pairs() {
            o.insert(name.into(), v.into());
        }
    }
}
