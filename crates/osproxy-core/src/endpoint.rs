//! [`EndpointKind`]: the kind of proxied endpoint a request hits, with its
//! stable wire names and the seed's classification helpers.
//!
//! The wire names are part of the directive wire format (the `endpoint`
//! target) and must never change.

use std::fmt;
use std::str::FromStr;

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
    /// Every kind, in wire order, which is also declaration order: a kind's
    /// discriminant (`kind as usize`) is its position here.
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

    /// The stable wire name (`"IngestDoc"`, `"Search"`, …); the same as
    /// [`EndpointKind::as_str`].
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

    /// The stable name of this kind (the seed's name for
    /// [`EndpointKind::wire_name`]); round-trips with
    /// [`EndpointKind::from_name`].
    #[must_use]
    pub fn as_str(self) -> &'static str {
        self.wire_name()
    }

    /// The kind with this name, or `None` when the name is not one
    /// ([`EndpointKind::as_str`]'s inverse; the same as `str::parse`).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        EndpointKind::ALL
            .into_iter()
            .find(|k| k.wire_name() == name)
    }

    /// Whether tenancy applies to this kind of request: every kind except
    /// [`EndpointKind::Admin`] and [`EndpointKind::Unknown`].
    #[must_use]
    pub fn is_tenancy_aware(self) -> bool {
        !matches!(self, EndpointKind::Admin | EndpointKind::Unknown)
    }

    /// Whether this kind writes data: [`EndpointKind::IngestDoc`],
    /// [`EndpointKind::IngestBulk`] and [`EndpointKind::DeleteById`].
    #[must_use]
    pub fn is_write(self) -> bool {
        matches!(
            self,
            EndpointKind::IngestDoc | EndpointKind::IngestBulk | EndpointKind::DeleteById
        )
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
        EndpointKind::from_name(s).ok_or(UnknownEndpointKind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_sits_at_its_discriminant_in_all() {
        for (position, kind) in EndpointKind::ALL.iter().enumerate() {
            assert_eq!(*kind as usize, position, "{kind:?}");
        }
    }

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
    fn seed_names_and_classes() {
        for k in EndpointKind::ALL {
            assert_eq!(k.as_str(), k.wire_name());
            assert_eq!(EndpointKind::from_name(k.as_str()), Some(k));
        }
        assert_eq!(EndpointKind::from_name("search"), None);
        let not_tenancy: Vec<_> = EndpointKind::ALL
            .into_iter()
            .filter(|k| !k.is_tenancy_aware())
            .collect();
        assert_eq!(not_tenancy, [EndpointKind::Admin, EndpointKind::Unknown]);
        let writes: Vec<_> = EndpointKind::ALL
            .into_iter()
            .filter(|k| k.is_write())
            .collect();
        assert_eq!(
            writes,
            [
                EndpointKind::IngestDoc,
                EndpointKind::IngestBulk,
                EndpointKind::DeleteById
            ]
        );
    }
}
