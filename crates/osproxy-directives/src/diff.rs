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
    use osproxy_core::ManualClock;
    use osproxy_observe::decode_directive_set;

    fn set(body: &str, clock: &ManualClock) -> DirectiveSet {
        decode_directive_set(body.as_bytes(), clock).unwrap()
    }

    #[test]
    fn added_removed_changed_and_unchanged() {
        let clock = ManualClock::new();
        let old = set(
            r#"{"directives":[
                {"id":"keep","level":"Shape","expires_at":"2024-01-01T01:00:00Z"},
                {"id":"edit","level":"Shape","expires_at":"2024-01-01T01:00:00Z"},
                {"id":"drop","level":"Shape","expires_at":"2024-01-01T01:00:00Z"}]}"#,
            &clock,
        );
        clock.advance(std::time::Duration::from_secs(7));
        let new = set(
            r#"{"directives":[
                {"id":"keep","level":"Shape","expires_at":"2024-01-01T01:00:00Z"},
                {"id":"edit","level":"ShapeTiming","expires_at":"2024-01-01T01:00:00Z"},
                {"id":"new","level":"Shape","expires_at":"2024-01-01T01:00:00Z"}]}"#,
            &clock,
        );
        let diff = SetDiff::between(&old, &new);
        assert_eq!(diff.added, ["new"]);
        assert_eq!(diff.removed, ["drop"]);
        assert_eq!(diff.changed, ["edit"]);
        assert_eq!(
            diff.unchanged, 1,
            "a later decode of the same expiry is equal"
        );
        assert_eq!(diff.summary(), "added new; changed edit; removed drop");
        assert!(SetDiff::between(&new, &new).is_empty());
        assert_eq!(SetDiff::default().summary(), "no change");
    }
}
