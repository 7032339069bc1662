//! Id newtypes: the request attributes directives target, and
//! [`EndpointKind`] with its stable wire names.
//!
//! Newtypes keep a tenant from being passed where an index is expected; the
//! wire names of [`EndpointKind`] are part of the directive wire format and
//! must never change.

use std::fmt;
use std::str::FromStr;
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
            pub fn as_str(&self) -> &str {
                &self.0
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

/// The kind of proxied endpoint a request hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EndpointKind {
    /// Index one document.
    IngestDoc,
    /// Bulk indexing.
    IngestBulk,
    /// A search.
    Search,
    /// Several searches in one request.
    MultiSearch,
    /// A count query.
    Count,
    /// Get one document by id.
    GetById,
    /// Get several documents by id.
    MultiGet,
    /// Delete one document by id.
    DeleteById,
    /// Delete the documents matching a query.
    DeleteByQuery,
    /// Scroll or point-in-time cursor paging.
    Cursor,
    /// Cluster or index administration.
    Admin,
    /// Anything the proxy could not classify.
    Unknown,
}

impl EndpointKind {
    /// Every kind, in wire order.
    pub const ALL: [EndpointKind; 12] = [
        EndpointKind::IngestDoc,
        EndpointKind::IngestBulk,
        EndpointKind::Search,
        EndpointKind::MultiSearch,
        EndpointKind::Count,
        EndpointKind::GetById,
        EndpointKind::MultiGet,
        EndpointKind::DeleteById,
        EndpointKind::DeleteByQuery,
        EndpointKind::Cursor,
        EndpointKind::Admin,
        EndpointKind::Unknown,
    ];

    /// The stable wire name (`"IngestDoc"`, `"Search"`, …).
    pub const fn wire_name(self) -> &'static str {
        match self {
            EndpointKind::IngestDoc => "IngestDoc",
            EndpointKind::IngestBulk => "IngestBulk",
            EndpointKind::Search => "Search",
            EndpointKind::MultiSearch => "MultiSearch",
            EndpointKind::Count => "Count",
            EndpointKind::GetById => "GetById",
            EndpointKind::MultiGet => "MultiGet",
            EndpointKind::DeleteById => "DeleteById",
            EndpointKind::DeleteByQuery => "DeleteByQuery",
            EndpointKind::Cursor => "Cursor",
            EndpointKind::Admin => "Admin",
            EndpointKind::Unknown => "Unknown",
        }
    }
}

impl fmt::Display for EndpointKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.wire_name())
    }
}

/// A string that is not the wire name of any [`EndpointKind`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownEndpointKind;

impl fmt::Display for UnknownEndpointKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown endpoint kind")
    }
}

impl std::error::Error for UnknownEndpointKind {}

impl FromStr for EndpointKind {
    type Err = UnknownEndpointKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EndpointKind::ALL
            .into_iter()
            .find(|k| k.wire_name() == s)
            .ok_or(UnknownEndpointKind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_wire_names_round_trip_and_are_stable() {
        let names: Vec<&str> = EndpointKind::ALL.iter().map(|k| k.wire_name()).collect();
        assert_eq!(
            names,
            [
                "IngestDoc",
                "IngestBulk",
                "Search",
                "MultiSearch",
                "Count",
                "GetById",
                "MultiGet",
                "DeleteById",
                "DeleteByQuery",
                "Cursor",
                "Admin",
                "Unknown"
            ]
        );
        for k in EndpointKind::ALL {
            assert_eq!(k.wire_name().parse::<EndpointKind>(), Ok(k));
        }
        assert_eq!("search".parse::<EndpointKind>(), Err(UnknownEndpointKind));
    }

    #[test]
    fn ids_compare_by_value() {
        assert_eq!(
            PartitionId::from("acme"),
            PartitionId::new(String::from("acme"))
        );
        assert_eq!(IndexName::from("logs").as_str(), "logs");
        assert_eq!(format!("{:?}", RequestId::from("r1")), "RequestId(\"r1\")");
    }
}
