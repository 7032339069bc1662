//! What the session accepts from a watch stream at all: events of the
//! followed key or prefix, and one creation per stream. Anything else came
//! through a hop that cannot be trusted with this range (a proxy mixing
//! streams up, a broadcast reattached), so it is refused before the core
//! sees it.

use crate::config::Layout;
use crate::follow::WatchMsg;

/// An event for a key outside the followed key or prefix.
pub(crate) const FOREIGN_KEY_EVENT: &str = "foreign_key_event";
/// A second `created` on one watch stream.
pub(crate) const SECOND_CREATED: &str = "second_created";

/// The followed key, or every key under a prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Range {
    key: Vec<u8>,
    prefix: bool,
}

impl Range {
    /// The range a layout follows.
    pub(crate) fn of(layout: &Layout) -> Range {
        Range {
            key: layout.key().as_bytes().to_vec(),
            prefix: layout.is_prefix(),
        }
    }

    /// A range of raw bytes (the simulation's keys).
    #[cfg(test)]
    pub(crate) fn new(key: &[u8], prefix: bool) -> Range {
        Range {
            key: key.to_vec(),
            prefix,
        }
    }

    /// Whether this is a prefix.
    pub(crate) fn is_prefix(&self) -> bool {
        self.prefix
    }

    /// Whether `key` belongs to the range.
    pub(crate) fn contains(&self, key: &[u8]) -> bool {
        if self.prefix {
            key.starts_with(&self.key)
        } else {
            key == self.key.as_slice()
        }
    }

    /// Refuses a message that must not be applied, with its slug;
    /// `created_seen` is whether the stream was created already.
    pub(crate) fn check(&self, msg: &WatchMsg, created_seen: bool) -> Result<(), &'static str> {
        if msg.created && created_seen {
            return Err(SECOND_CREATED);
        }
        if msg.events.iter().any(|e| !self.contains(&e.kv().key)) {
            return Err(FOREIGN_KEY_EVENT);
        }
        Ok(())
    }
}
