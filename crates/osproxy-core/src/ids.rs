//! Id newtypes: the request attributes directives target ([`PartitionId`],
//! [`IndexName`], [`PrincipalId`], [`RequestId`]), plus the seed's other ids
//! ([`ClusterId`], [`FieldName`], [`Epoch`]) so that programs written against
//! the seed's `osproxy_core::ids` keep compiling.
//!
//! Newtypes keep a tenant from being passed where an index is expected.
//! String ids share one `Arc<str>`, so cloning one on the request path does not
//! allocate.

use std::fmt;
use std::sync::Arc;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Wraps a string.
            pub fn new(s: impl Into<Arc<str>>) -> Self {
                $name(s.into())
            }

            /// The id as a string slice.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The id as an owned `String` (the seed's accessor; copies the
            /// shared text).
            #[must_use]
            pub fn into_string(self) -> String {
                self.0.as_ref().to_owned()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), &*self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(Arc::from(s))
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name(Arc::from(s))
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// A tenant (partition) of the proxied cluster.
    PartitionId
);
string_id!(
    /// The name of an index a request targets.
    IndexName
);
string_id!(
    /// The authenticated caller of a request.
    PrincipalId
);
string_id!(
    /// A request's unique id; its FNV-1a hash decides sampling.
    RequestId
);
string_id!(
    /// A physical cluster behind the proxy (kept from the seed's API).
    ClusterId
);
string_id!(
    /// The name of a document field (kept from the seed's API).
    FieldName
);

/// A placement-table generation (kept from the seed's API): a counter that
/// only moves forward and saturates instead of wrapping.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Epoch(u64);

impl Epoch {
    /// The initial epoch.
    pub const ZERO: Self = Epoch(0);

    /// The epoch of this generation number.
    #[must_use]
    pub fn new(generation: u64) -> Self {
        Epoch(generation)
    }

    /// The generation number.
    #[must_use]
    pub fn get(self) -> u64 {
        self.0
    }

    /// The next epoch, pinned at `u64::MAX`.
    #[must_use]
    pub fn next(self) -> Self {
        Epoch(self.0.saturating_add(1))
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_compare_by_value() {
        assert_eq!(
            PartitionId::from("acme"),
            PartitionId::new(String::from("acme"))
        );
        assert_eq!(IndexName::from("logs").as_str(), "logs");
        assert_eq!(format!("{:?}", RequestId::from("r1")), "RequestId(\"r1\")");
        assert_eq!(PartitionId::from("t7").into_string(), "t7");
        assert_eq!(
            format!("{:?}", ClusterId::from("eu-1")),
            "ClusterId(\"eu-1\")"
        );
        assert_eq!(FieldName::from("f").as_str(), "f");
    }

    #[test]
    fn epoch_moves_forward_and_saturates() {
        assert_eq!(Epoch::ZERO.next(), Epoch::new(1));
        assert_eq!(Epoch::new(u64::MAX).next().get(), u64::MAX);
        assert_eq!(Epoch::new(42).to_string(), "42");
    }
}
