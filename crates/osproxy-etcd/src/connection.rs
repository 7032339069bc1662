//! Opening one etcd connection: the single place that turns validated
//! settings (a [`Connection`](crate::config::Connection)'s, or a validated
//! store configuration's) and an endpoint into a connected client.
//!
//! Why not `etcd_client::Client::connect`: it always builds a load-balanced
//! channel that connects lazily in the background, so an unreachable endpoint
//! shows up as a request that hangs, and every endpoint given gets its own
//! connection. Here we dial exactly one endpoint eagerly (a refused or
//! unreachable endpoint fails at once, bounded by the connect timeout), with
//! HTTP/2 keepalive and TLS configured on the channel, and hand the channel to
//! etcd-client. One store, one connection; about 8 KiB less per connection.

use std::time::Duration;

use etcd_client::{Certificate, Client, GetOptions, Identity, TlsOptions};
use tokio::time::timeout;
use tonic::transport::Endpoint;

use crate::config::{ConnectionConfig, Layout, TlsConfig};
use crate::error::{bounded, is_out_of_range, ConnectCause, ConnectError, TransportError};

/// Whether a watch of `layout` may resume at `next_revision`: only while
/// etcd still holds the revision before it, i.e. no compaction reached the
/// resume point. etcd 3.4 drops a delete that is a key's last change from a
/// watch opened at exactly the compaction revision (etcd-io/etcd#18089,
/// #19179), and a compaction beyond it would cancel the watch anyway: in
/// both cases a fresh read replaces the resume. A revision etcd does not
/// have yet (a rebuilt cluster) also means a read. The one rule, carried out for the
/// session's `CheckHeld` (`crate::session::driver`).
pub(crate) async fn resumable(
    client: &mut Client,
    layout: &Layout,
    next_revision: i64,
    limit: Duration,
) -> Result<bool, TransportError> {
    let opts = GetOptions::new()
        .with_revision(next_revision - 1)
        .with_count_only();
    match bounded(limit, "read", client.get(layout.key(), Some(opts))).await {
        Ok(_) => Ok(true),
        Err(TransportError::Request { source, .. }) if is_out_of_range(&source) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Connects to `endpoint` (already normalised to `http(s)://host:port`) with
/// `conn`'s validated settings and authenticates when credentials are
/// configured.
///
/// Not bounded by itself beyond the TCP connect timeout: callers wrap it in
/// their own deadline.
pub(crate) async fn open(
    conn: &ConnectionConfig,
    endpoint: &str,
) -> Result<Client, etcd_client::Error> {
    let mut ep = Endpoint::from_shared(endpoint.to_owned())?
        .connect_timeout(conn.connect_timeout)
        .http2_keep_alive_interval(conn.keepalive_interval)
        .keep_alive_timeout(conn.keepalive_timeout)
        .keep_alive_while_idle(false)
        .tcp_nodelay(true);
    if let Some(tls) = &conn.tls {
        ep = ep.tls_config(tls_options(tls))?;
    }
    let channel = ep.connect().await?;
    let mut options = etcd_client::ConnectOptions::new()
        // A member that lost its leader closes our watch instead of leaving
        // it silently stuck.
        .with_require_leader(true)
        // Tokens expire, and an etcd restart invalidates them.
        .with_auto_token_refresh(true);
    if let Some(c) = &conn.credentials {
        options = options.with_user(c.user.clone(), c.password.clone());
    }
    Client::from_channel(etcd_client::Channel::Tonic(channel), Some(options)).await
}

fn tls_options(t: &TlsConfig) -> TlsOptions {
    let mut tls = TlsOptions::new();
    if let Some(ca) = &t.ca_pem {
        tls = tls.ca_certificate(Certificate::from_pem(ca));
    }
    if let (Some(cert), Some(key)) = (&t.client_cert_pem, &t.client_key_pem) {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    if let Some(d) = &t.domain_name {
        tls = tls.domain_name(d.clone());
    }
    tls
}

/// One connection attempt of [`first_answering`].
pub(crate) type Attempt<'s, T> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<T, Option<etcd_client::Error>>> + Send + 's>,
>;

/// Runs `attempt` against each endpoint in turn until one succeeds, sharing
/// `total` between them so the whole is bounded by it: a refused endpoint
/// fails at once and leaves its share to the next, a silent one uses only its
/// share. Returns the index of the endpoint that answered.
///
/// `attempt` gets `state`, the endpoint's index and its time budget, and
/// reports a failure as the client error when there is one (`None` for a
/// timeout). It returns a boxed `Send` future rather than being an async
/// closure: the future of an async closure is not `Send` (a compiler
/// limitation), and `connect` must be `Send` to run in a spawned task.
pub(crate) async fn first_answering<S, T>(
    endpoints: &[String],
    total: Duration,
    state: &mut S,
    mut attempt: impl for<'s> FnMut(&'s mut S, usize, Duration) -> Attempt<'s, T>,
) -> Result<(usize, T), ConnectError> {
    let deadline = crate::timers::now() + total;
    let mut cause = ConnectCause::Timeout(total);
    for i in 0..endpoints.len() {
        let remaining = deadline.saturating_duration_since(crate::timers::now());
        let left = u32::try_from(endpoints.len() - i).unwrap_or(1).max(1);
        let budget = remaining / left;
        if budget.is_zero() {
            break;
        }
        match timeout(budget, attempt(state, i, budget)).await {
            Ok(Ok(value)) => return Ok((i, value)),
            Ok(Err(Some(e))) => cause = ConnectCause::Client(e),
            Ok(Err(None)) | Err(_) => cause = ConnectCause::Timeout(budget),
        }
    }
    Err(ConnectError {
        endpoints: endpoints.to_vec(),
        cause,
    })
}
