//! [`PublishError`]: everything that can go wrong writing or reading the
//! live set, each with a stable slug and a documented retry rule.
//!
//! Three families matter to an operator:
//! - **nothing was written** (conflict, invalid set, permanent etcd
//!   rejections, failures before the write was sent): safe to fix and retry;
//! - **outcome unknown** ([`PublishError::OutcomeUnknown`]): the write left
//!   and no answer came back; it may or may not have been applied, so
//!   nothing is cleaned up and the caller must read before deciding;
//! - **transport failures** ([`PublishError::Transport`], the store's
//!   [`TransportError`] too): a read, a lease grant or a write etcd refused
//!   outright wrote nothing; retry after reconnecting.
//!
//! The write outcomes (conflict, unknown outcome, etcd's permanent refusals,
//! invalid bytes, …) are this enum's own variants; how a request failed on
//! the wire is the one [`TransportError`] inside `Transport`.

use osproxy_observe::DecodeError;

use crate::error::{is_out_of_range, ConfigError, ConnectError, TransportError};

/// What can go wrong publishing. Messages are short and value-free; causes
/// are kept as sources.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// An option is invalid. Not retryable: fix the options.
    #[error("invalid etcd configuration")]
    Config(#[from] ConfigError),
    /// No endpoint answered within the connect timeout. Retryable.
    #[error("cannot reach etcd")]
    Connect(#[source] ConnectError),
    /// A request failed and wrote nothing (a read, a lease grant, or a write
    /// etcd refused outright: [`TransportError::Request`]), or a request that
    /// writes nothing timed out ([`TransportError::Timeout`]). Retryable
    /// after reconnecting.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A write was sent and no answer came back (timeout or lost
    /// connection): etcd may or may not have applied it. Nothing was cleaned
    /// up. Not retryable blindly: read the live revision first; a revision
    /// above `before` means a write happened since (this one or another).
    #[error("outcome unknown: the {op} may or may not have been applied (live revision was {before} before it)")]
    OutcomeUnknown {
        /// Which operation.
        op: &'static str,
        /// The live revision read before the write.
        before: i64,
        /// The client's error, when there was one (none for a timeout).
        #[source]
        source: Option<etcd_client::Error>,
    },
    /// etcd refused the write as too large (`--max-request-bytes`). Nothing
    /// was written. Not retryable: publish less.
    #[error("etcd refused the write as too large")]
    ValueTooLarge {
        /// The client's error.
        #[source]
        source: etcd_client::Error,
    },
    /// etcd refused the transaction for having too many operations
    /// (`--max-txn-ops`, 128 by default; one per written or deleted key plus
    /// the revision marker). Nothing was written. Not retryable: publish
    /// fewer keys at once, or use the single-key layout.
    #[error("etcd refused the transaction: too many operations")]
    TooManyOps {
        /// The client's error.
        #[source]
        source: etcd_client::Error,
    },
    /// The live revision is not the expected one: someone else wrote in
    /// between. Not retried blindly: read again and decide.
    #[error("revision conflict: expected {expected}, found {actual}")]
    Conflict {
        /// The revision the caller expected.
        expected: i64,
        /// The revision etcd holds now.
        actual: i64,
    },
    /// The live value does not decode, so it cannot be edited in place
    /// (publish a whole new set instead, or remove the key).
    #[error("the live value at {key} (revision {revision}) is rejected")]
    Malformed {
        /// The etcd key holding the rejected value.
        key: String,
        /// The live revision.
        revision: i64,
        /// Why the decoder rejected it.
        #[source]
        source: DecodeError,
    },
    /// A key-layout edit (`add`, `remove`) would rewrite directives whose
    /// lifetime is relative (`ttl_secs`, written by another tool): every
    /// instance would re-anchor them at the rewrite, extending or reviving
    /// them, and the moment they were first seen is not recorded anywhere.
    /// Nothing was written. Not retryable: publish the whole set with
    /// absolute `expires_at` first.
    #[error("the live value at {key} holds {count} directive(s) with a relative lifetime (ttl_secs) written by another tool; an edit would re-anchor them")]
    ForeignRelativeLifetime {
        /// The etcd key.
        key: String,
        /// How many directives have a relative lifetime.
        count: usize,
    },
    /// [`Publisher::remove`](crate::Publisher::remove) found no directive
    /// with this id.
    #[error("no directive with id {id}")]
    NotFound {
        /// The id asked for.
        id: String,
    },
    /// `add` or `remove` lost the race [`MAX_ATTEMPTS`](super::MAX_ATTEMPTS)
    /// times. Retryable later.
    #[error("still conflicting after {attempts} attempts")]
    Contended {
        /// How many attempts were made.
        attempts: u32,
    },
    /// The set, or the exact bytes about to be written, would be rejected by
    /// the fleet's decoder. Nothing was written. Its slug is the decoder's
    /// (`too_large`, `duplicate_id`, …): the one an instance would report.
    #[error("the fleet would reject this write")]
    Invalid(#[source] DecodeError),
    /// The revision asked for is older than etcd's last compaction: its
    /// history is gone. Not retryable: ask for `oldest` or later.
    #[error("revision {requested} is compacted; the oldest available revision is {oldest}")]
    Compacted {
        /// The revision asked for.
        requested: i64,
        /// The oldest revision etcd still holds (its compaction revision).
        oldest: i64,
    },
    /// The revision asked for is below 1 or beyond the cluster's current
    /// revision. Not retryable as is.
    #[error("no revision {requested}: the cluster is at revision {current}")]
    NoSuchRevision {
        /// The revision asked for.
        requested: i64,
        /// The cluster's current revision.
        current: i64,
    },
    /// The publish note (author, reason) breaks its rules. Nothing was
    /// written. Not retryable: fix the note.
    #[error("invalid publish note")]
    InvalidNote(#[source] osproxy_observe::NoteError),
    /// A watch ended: the stream closed, was cancelled, or the revisions it
    /// needed were compacted. Retryable: open a new one.
    #[error("the etcd watch ended ({why})")]
    WatchEnded {
        /// Why, short and stable.
        why: &'static str,
    },
}

impl PublishError {
    /// A stable, value-free slug for machines (JSON output, metrics).
    pub fn slug(&self) -> &'static str {
        match self {
            PublishError::Config(_) => "invalid_config",
            PublishError::Connect(_) => "etcd_unavailable",
            PublishError::Transport(e) => e.slug(),
            PublishError::OutcomeUnknown { .. } => "outcome_unknown",
            PublishError::ValueTooLarge { .. } => "etcd_value_too_large",
            PublishError::TooManyOps { .. } => "etcd_too_many_ops",
            PublishError::Conflict { .. } => "conflict",
            PublishError::Malformed { .. } => "malformed_live_value",
            PublishError::ForeignRelativeLifetime { .. } => "foreign_relative_lifetime",
            PublishError::NotFound { .. } => "not_found",
            PublishError::Contended { .. } => "contended",
            PublishError::Invalid(e) => e.slug(),
            PublishError::WatchEnded { .. } => "watch_ended",
            PublishError::Compacted { .. } => "compacted",
            PublishError::NoSuchRevision { .. } => "no_such_revision",
            PublishError::InvalidNote(e) => e.slug(),
        }
    }

    /// Whether trying again (after reconnecting) may succeed: true for
    /// transport failures that wrote nothing, timeouts of reads, contention
    /// and ended watches. False for an unknown outcome (read first), for
    /// conflicts and for permanent rejections.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            PublishError::Connect(_)
                | PublishError::Transport(_)
                | PublishError::Contended { .. }
                | PublishError::WatchEnded { .. }
        )
    }

    /// Whether the connection may be broken (the caller should reconnect
    /// before the next request).
    pub fn may_need_reconnect(&self) -> bool {
        self.is_retryable() || matches!(self, PublishError::OutcomeUnknown { .. })
    }

    /// Whose fault the failure is: the one classification behind the CLI's
    /// exit codes and the admin API's status codes.
    pub fn fault(&self) -> PublishFault {
        match self {
            PublishError::Config(_)
            | PublishError::Invalid(_)
            | PublishError::ValueTooLarge { .. }
            | PublishError::TooManyOps { .. }
            | PublishError::InvalidNote(_)
            | PublishError::NoSuchRevision { .. } => PublishFault::Caller,
            PublishError::OutcomeUnknown { .. } => PublishFault::Unknown,
            PublishError::Conflict { .. } => PublishFault::Conflict,
            _ => PublishFault::Environment,
        }
    }
}

/// Whose fault a failed request is ([`PublishError::fault`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishFault {
    /// What was asked is wrong (bytes the fleet rejects, etcd's permanent
    /// refusals, a bad note or revision): asking again the same way fails
    /// again. CLI exit 2; HTTP 4xx.
    Caller,
    /// Someone else wrote first: review and ask again.
    Conflict,
    /// The write may or may not have happened: read before retrying.
    Unknown,
    /// etcd, the network or the stored data: nothing the caller asked for
    /// was wrong.
    Environment,
}

/// Classifies a failed write: permanent etcd refusals, definite refusals
/// (nothing written), or an unknown outcome (the request may have been
/// applied: transport errors, unavailability, deadlines, cancellations).
pub(crate) fn write_error(op: &'static str, before: i64, e: etcd_client::Error) -> PublishError {
    use tonic::Code;
    // etcd's refusal of a revision it does not hold is recognised in one
    // place (`is_out_of_range`); every other refusal by its code here.
    let out_of_range = is_out_of_range(&e);
    let status = match &e {
        etcd_client::Error::GRpcStatus(s) => Some((s.code(), s.message().to_owned())),
        _ => None,
    };
    let too_large = |m: &str| m.contains("too large") || m.contains("larger than max");
    match status {
        Some((Code::InvalidArgument | Code::ResourceExhausted, m)) if too_large(&m) => {
            PublishError::ValueTooLarge { source: e }
        }
        Some((_, m)) if out_of_range && too_large(&m) => PublishError::ValueTooLarge { source: e },
        Some((Code::InvalidArgument, m)) if m.contains("too many operations") => {
            PublishError::TooManyOps { source: e }
        }
        Some((
            Code::InvalidArgument
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::FailedPrecondition
            | Code::NotFound
            | Code::AlreadyExists
            | Code::Unimplemented
            | Code::ResourceExhausted,
            _,
        )) => PublishError::Transport(TransportError::request(op, e)),
        _ if out_of_range => PublishError::Transport(TransportError::request(op, e)),
        // Unavailable, DeadlineExceeded, Cancelled, Unknown, Internal,
        // Aborted, DataLoss, and every transport error: the request may
        // have reached etcd.
        _ => PublishError::OutcomeUnknown {
            op,
            before,
            source: Some(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grpc(code: tonic::Code, message: &str) -> etcd_client::Error {
        etcd_client::Error::GRpcStatus(tonic::Status::new(code, message))
    }

    #[test]
    fn permanent_refusals_have_their_own_slugs_and_are_not_retried() {
        let e = write_error(
            "publish",
            3,
            grpc(
                tonic::Code::InvalidArgument,
                "etcdserver: request is too large",
            ),
        );
        assert_eq!(e.slug(), "etcd_value_too_large");
        assert!(!e.is_retryable());
        let e = write_error(
            "publish",
            3,
            grpc(
                tonic::Code::InvalidArgument,
                "etcdserver: too many operations in txn request",
            ),
        );
        assert_eq!(e.slug(), "etcd_too_many_ops");
        assert!(!e.is_retryable());
        let e = write_error(
            "publish",
            3,
            grpc(tonic::Code::PermissionDenied, "permission denied"),
        );
        assert_eq!(e.slug(), "etcd_request_failed");
    }

    #[test]
    fn transport_failures_are_the_stores_type_with_the_same_slugs_and_messages() {
        let timeout = TransportError::Timeout {
            op: "read",
            after: std::time::Duration::from_secs(1),
        };
        let e = PublishError::from(timeout);
        assert_eq!(e.slug(), "etcd_timeout");
        assert!(e.is_retryable());
        assert_eq!(e.to_string(), "etcd request timed out after 1s: read");
        let refused = write_error(
            "publish",
            3,
            grpc(tonic::Code::PermissionDenied, "permission denied"),
        );
        assert!(matches!(
            refused,
            PublishError::Transport(TransportError::Request {
                op: "publish",
                kind: "permission denied",
                ..
            })
        ));
        assert_eq!(
            refused.to_string(),
            "etcd request failed: publish (permission denied)"
        );
        assert!(std::error::Error::source(&refused).is_some());
        let PublishError::Transport(t) = refused else {
            unreachable!()
        };
        let store = crate::EtcdError::from(t);
        assert!(matches!(store, crate::EtcdError::Transport(_)));
    }

    #[test]
    fn lost_answers_are_unknown_outcomes_naming_the_revision_to_check() {
        for code in [
            tonic::Code::Unavailable,
            tonic::Code::DeadlineExceeded,
            tonic::Code::Cancelled,
            tonic::Code::Unknown,
        ] {
            let e = write_error("publish", 41, grpc(code, "x"));
            assert_eq!(e.slug(), "outcome_unknown", "{code:?}");
            assert!(!e.is_retryable());
            assert!(e.may_need_reconnect());
            assert!(e.to_string().contains("41"), "{e}");
        }
    }

    #[test]
    fn an_invalid_write_carries_the_decoders_slug() {
        let e = PublishError::Invalid(DecodeError::whole(osproxy_observe::RejectReason::TooLarge));
        assert_eq!(e.slug(), "too_large");
        let conflict = PublishError::Conflict {
            expected: 1,
            actual: 2,
        };
        assert_eq!(conflict.slug(), "conflict");
        assert!(!conflict.is_retryable());
        assert_eq!(
            conflict.to_string(),
            "revision conflict: expected 1, found 2"
        );
        assert!(PublishError::Contended { attempts: 5 }.is_retryable());
        assert_eq!(
            PublishError::from(ConfigError::NoEndpoints).slug(),
            "invalid_config"
        );
    }
}
