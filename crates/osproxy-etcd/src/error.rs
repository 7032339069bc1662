//! Errors of the etcd store, and the ones it shares with the publisher
//! ([`ConnectError`], [`ConfigError`] and the transport failure of a request,
//! [`TransportError`]). Causes are kept as `#[source]`, never flattened into
//! the message, so callers can walk the chain and logs stay value-free.

use std::fmt;
use std::future::Future;
use std::time::Duration;

/// What went wrong talking to etcd.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EtcdError {
    /// `connect` could not reach etcd, authenticate or read the key in time.
    /// Retryable: the cluster may come back.
    #[error(transparent)]
    Connect(ConnectError),
    /// The store's configuration is invalid. Not retryable: fix the options.
    #[error("invalid etcd store configuration: {0}")]
    Config(#[from] ConfigError),
    /// A request on a connected client failed or did not finish in time:
    /// the same [`TransportError`] the publisher reports
    /// ([`PublishError::Transport`](crate::PublishError::Transport)).
    /// Retryable. `connect` reports a failed first read as
    /// [`EtcdError::Connect`]; once connected the store fails safe and shows
    /// request failures in its status instead.
    #[error(transparent)]
    Transport(#[from] TransportError),
}

/// A request to a connected etcd that failed, or did not finish in time,
/// without writing anything: the one transport error of the store and the
/// publisher. Retryable after reconnecting. (A *write* whose answer is lost
/// is not this: see [`PublishError::OutcomeUnknown`](crate::PublishError::OutcomeUnknown).)
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The request failed (unavailable, refused, permission denied, …).
    #[error("etcd request failed: {op} ({kind})")]
    Request {
        /// Which operation.
        op: &'static str,
        /// A short, stable description of the failure.
        kind: &'static str,
        /// The client's error.
        #[source]
        source: etcd_client::Error,
    },
    /// The request did not finish within its limit.
    #[error("etcd request timed out after {after:?}: {op}")]
    Timeout {
        /// Which operation.
        op: &'static str,
        /// The limit that was hit.
        after: Duration,
    },
}

impl TransportError {
    /// A failed request `op`, its kind read from the client's error.
    pub(crate) fn request(op: &'static str, source: etcd_client::Error) -> Self {
        TransportError::Request {
            op,
            kind: client_error_kind(&source),
            source,
        }
    }

    /// A stable, value-free slug: `etcd_request_failed` or `etcd_timeout`.
    pub fn slug(&self) -> &'static str {
        match self {
            TransportError::Request { .. } => "etcd_request_failed",
            TransportError::Timeout { .. } => "etcd_timeout",
        }
    }

    /// Which operation failed.
    pub fn op(&self) -> &'static str {
        match self {
            TransportError::Request { op, .. } | TransportError::Timeout { op, .. } => op,
        }
    }
}

/// Runs one request that writes nothing within `limit`.
pub(crate) async fn bounded<T>(
    limit: Duration,
    op: &'static str,
    fut: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, TransportError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(TransportError::request(op, source)),
        Err(_) => Err(TransportError::Timeout { op, after: limit }),
    }
}

impl From<etcd_client::Error> for EtcdError {
    fn from(source: etcd_client::Error) -> Self {
        EtcdError::Connect(ConnectError {
            endpoints: Vec::new(),
            cause: ConnectCause::Client(source),
        })
    }
}

/// Why `connect` failed, with the endpoints it tried.
#[derive(Debug)]
pub struct ConnectError {
    /// The endpoints that were tried.
    pub endpoints: Vec<String>,
    /// The last failure seen.
    pub cause: ConnectCause,
}

/// The cause of a [`ConnectError`].
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectCause {
    /// No endpoint answered within the connect timeout.
    Timeout(Duration),
    /// The client reported an error (refused, TLS, auth, …).
    Client(etcd_client::Error),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot connect to etcd at [{}]",
            self.endpoints.join(", ")
        )?;
        match &self.cause {
            ConnectCause::Timeout(after) => write!(f, ": no answer within {after:?}"),
            ConnectCause::Client(e) => write!(f, ": {}", client_error_kind(e)),
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.cause {
            ConnectCause::Timeout(_) => None,
            ConnectCause::Client(e) => Some(e),
        }
    }
}

/// etcd's error for a revision compacted away (`rpctypes.ErrCompacted`).
const ERR_COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";
/// etcd's error for a revision it has not reached (`rpctypes.ErrFutureRev`).
const ERR_FUTURE_REV: &str = "etcdserver: mvcc: required revision is a future revision";

/// Whether etcd refused a request at a revision it does not hold: one
/// compacted away, or one it has not reached yet. A member answers both
/// with gRPC `OutOfRange`; `etcd grpc-proxy` relays them as `Unknown` with
/// etcd's exact message, so that is recognised too (whole message, never a
/// word in it). Which of the two it was is told by comparing with the
/// current revision. The one place that recognises it.
pub(crate) fn is_out_of_range(e: &etcd_client::Error) -> bool {
    let etcd_client::Error::GRpcStatus(s) = e else {
        return false;
    };
    match s.code() {
        tonic::Code::OutOfRange => true,
        tonic::Code::Unknown => matches!(s.message(), ERR_COMPACTED | ERR_FUTURE_REV),
        _ => false,
    }
}

/// A short, stable description of an etcd-client error's kind; the details
/// stay in the source chain.
pub(crate) fn client_error_kind(e: &etcd_client::Error) -> &'static str {
    use etcd_client::Error as E;
    match e {
        E::InvalidArgs(_) | E::InvalidUri(_) | E::EndpointError(_) => "invalid endpoint",
        E::IoError(_) | E::TransportError(_) => "transport error",
        E::GRpcStatus(s) => match s.code() {
            tonic::Code::Unauthenticated => "authentication failed",
            // etcd answers a wrong password or an unknown user with
            // InvalidArgument ("etcdserver: authentication failed, invalid
            // user ID or password"), not Unauthenticated.
            tonic::Code::InvalidArgument if s.message().contains("authentication failed") => {
                "authentication failed"
            }
            tonic::Code::PermissionDenied => "permission denied",
            tonic::Code::Unavailable => "unavailable",
            tonic::Code::DeadlineExceeded => "deadline exceeded",
            _ => "request rejected",
        },
        _ => "client error",
    }
}

/// An invalid option.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No endpoint was given.
    #[error("no endpoints given")]
    NoEndpoints,
    /// An endpoint is not `host:port` or `http(s)://host:port`.
    #[error("endpoint {0:?} is not host:port or http(s)://host:port")]
    BadEndpoint(String),
    /// An `http://` endpoint was given with TLS configured, or `https://` without.
    #[error("endpoint {0:?} does not match the TLS setting")]
    SchemeMismatch(String),
    /// The key or prefix is empty.
    #[error("the key or prefix is empty")]
    EmptyKey,
    /// A prefix does not end in `/`: `/env/prod` would also take the keys of
    /// `/env/prod-staging/`.
    #[error("prefix {0:?} must end in '/' (otherwise it takes its neighbours' keys)")]
    PrefixWithoutSlash(String),
    /// The state directory (anti-rollback high-water marks) is unusable.
    #[error("state directory {path}: {why}")]
    StateDir {
        /// The directory.
        path: String,
        /// What is wrong (value-free).
        why: &'static str,
    },
    /// Two options given together where one makes the other meaningless or
    /// would silently replace it: give one.
    #[error("{option} {why}")]
    Conflict {
        /// The option refused.
        option: &'static str,
        /// Which other option it clashes with, and why (value-free).
        why: &'static str,
    },
    /// A duration option is out of its range.
    #[error("{option} is out of range: {why}")]
    Range {
        /// The option.
        option: &'static str,
        /// The rule it breaks.
        why: &'static str,
    },
    /// TLS material could not be read.
    #[error("cannot read TLS file {path}")]
    TlsFile {
        /// The file.
        path: String,
    },
    /// TLS was configured without a CA bundle to verify etcd with.
    #[error("TLS needs a CA bundle to verify the etcd servers")]
    MissingCa,
    /// Only one of client certificate and key was given.
    #[error("a client certificate needs its key and a key its certificate")]
    IncompleteIdentity,
}

impl From<std::convert::Infallible> for ConfigError {
    /// Lets an already validated [`crate::config::Connection`] go where
    /// settings still to validate do (`TryInto<Connection>`).
    fn from(never: std::convert::Infallible) -> Self {
        match never {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: tonic::Code, message: &str) -> etcd_client::Error {
        etcd_client::Error::GRpcStatus(tonic::Status::new(code, message))
    }

    #[test]
    fn out_of_range_from_a_member_or_relayed_by_the_proxy() {
        use tonic::Code;
        assert!(is_out_of_range(&status(Code::OutOfRange, "anything")));
        assert!(is_out_of_range(&status(Code::Unknown, ERR_COMPACTED)));
        assert!(is_out_of_range(&status(Code::Unknown, ERR_FUTURE_REV)));
        // Only etcd's whole message, and only with the proxy's code.
        assert!(!is_out_of_range(&status(Code::Unknown, "compacted")));
        assert!(!is_out_of_range(&status(
            Code::Unknown,
            "etcdserver: mvcc: required revision has been compacted!"
        )));
        assert!(!is_out_of_range(&status(Code::Unavailable, ERR_COMPACTED)));
        assert!(!is_out_of_range(&status(Code::InvalidArgument, "x")));
    }
}
