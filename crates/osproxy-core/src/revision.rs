//! [`Revision`]: the one revision type of the directive stores, and the only
//! place the two stores' representations meet.
//!
//! The in-memory store counts publishes in a `u64`; etcd numbers its writes
//! with an `i64` that is never negative (0: nothing written yet). A
//! `Revision` holds a `u64`, so both convert into it without loss: every
//! in-memory revision as is ([`From<u64>`]), every etcd revision
//! ([`Revision::from_etcd`]) since `[0, i64::MAX]` fits. Only the way back to
//! etcd can fail — for a revision above `i64::MAX`, which no etcd has
//! reached — and it says so ([`Revision::to_etcd`] returns `None`) instead
//! of clamping.

use std::fmt;

/// A directive store's revision (see the module docs): ordered, `0` before
/// the first write, displayed as the bare number (as in an `ETag`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision(u64);

impl Revision {
    /// Nothing written yet.
    pub const ZERO: Revision = Revision(0);

    /// The revision numbered `n`.
    pub const fn new(n: u64) -> Self {
        Revision(n)
    }

    /// Its number.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// An etcd revision. etcd never hands out a negative one; if it did, it
    /// would read as [`Revision::ZERO`] (nothing written), never as a
    /// revision something could be current at.
    pub fn from_etcd(revision: i64) -> Self {
        Revision(u64::try_from(revision).unwrap_or(0))
    }

    /// As an etcd revision, or `None` when it is above `i64::MAX` (beyond
    /// any revision an etcd cluster can have).
    pub fn to_etcd(self) -> Option<i64> {
        i64::try_from(self.0).ok()
    }
}

impl From<u64> for Revision {
    fn from(n: u64) -> Self {
        Revision(n)
    }
}

impl From<Revision> for u64 {
    fn from(r: Revision) -> Self {
        r.0
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_stores_convert_without_loss_and_only_the_way_back_to_etcd_can_fail() {
        assert_eq!(Revision::from(u64::MAX).get(), u64::MAX);
        assert_eq!(Revision::from_etcd(i64::MAX).to_etcd(), Some(i64::MAX));
        assert_eq!(Revision::from_etcd(42), Revision::new(42));
        assert_eq!(Revision::from_etcd(-1), Revision::ZERO);
        assert_eq!(Revision::new(1 << 63).to_etcd(), None);
        assert!(Revision::new(3) < Revision::from_etcd(4));
        assert_eq!(Revision::new(17).to_string(), "17");
    }
}
