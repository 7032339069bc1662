//! [`SetDiff`]: which directive ids a publish adds, removes or changes — what
//! `publish --dry-run`, `watch`, `history`, `diff` and `rollback` show.
//!
//! Directives are compared in canonical form (absolute expiry included), not
//! by their in-memory value: two decodes of the same `expires_at` at different
//! moments differ on the monotonic timeline but mean the same directive.

use osproxy_etcd::SetChanges;
use osproxy_observe::DirectiveSet;
use serde::Serialize;

/// The difference between two sets, by id, each list sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SetDiff {
    /// Ids only in the new set.
    pub added: Vec<String>,
    /// Ids only in the old set.
    pub removed: Vec<String>,
    /// Ids in both whose canonical form differs.
    pub changed: Vec<String>,
    /// How many ids are in both, unchanged.
    pub unchanged: usize,
}

impl SetDiff {
    /// Compares `old` with `new` (the library's [`SetChanges`], made
    /// serialisable).
    pub fn between(old: &DirectiveSet, new: &DirectiveSet) -> SetDiff {
        SetDiff::from(SetChanges::between(old, new))
    }

    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// `added a, b; changed c; removed d`, or `no change`. Long lists are
    /// cut to their first few ids and `and N more`.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = [
            ("added", &self.added),
            ("changed", &self.changed),
            ("removed", &self.removed),
        ]
        .into_iter()
        .filter(|(_, ids)| !ids.is_empty())
        .map(|(what, ids)| format!("{what} {}", summarize_ids(ids)))
        .collect();
        if parts.is_empty() {
            "no change".to_owned()
        } else {
            parts.join("; ")
        }
    }
}

impl From<SetChanges> for SetDiff {
    fn from(c: SetChanges) -> Self {
        SetDiff {
            added: c.added,
            removed: c.removed,
            changed: c.changed,
            unchanged: c.unchanged,
        }
    }
}

/// `a, b, c`, or for long lists the first few and `and N more`, so a
/// publish of thousands of directives prints one readable line.
pub fn summarize_ids(ids: &[String]) -> String {
    const SHOWN: usize = 5;
    if ids.len() <= SHOWN + 1 {
        return ids.join(", ");
    }
    format!("{} and {} more", ids[..SHOWN].join(", "), ids.len() - SHOWN)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Which ids differ is the library's (`SetChanges`, tested there); what
    // is left here is the one line a human reads.
    #[test]
    fn the_summary_names_each_kind_of_change() {
        let diff = SetDiff {
            added: vec!["new".into()],
            removed: vec!["drop".into()],
            changed: vec!["edit".into()],
            unchanged: 1,
        };
        assert_eq!(diff.summary(), "added new; changed edit; removed drop");
        assert!(!diff.is_empty());
        assert!(SetDiff::default().is_empty());
        assert_eq!(SetDiff::default().summary(), "no change");
        let many: Vec<String> = (0..9).map(|i| format!("d{i}")).collect();
        assert_eq!(summarize_ids(&many), "d0, d1, d2, d3, d4 and 4 more");
    }
}
