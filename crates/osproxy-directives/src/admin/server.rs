//! The admin HTTP listener: HTTP/1.1 over hyper with the limits that keep
//! idle or slow clients from taking `/healthz` down (SPEC §6).
//!
//! | limit | default | what happens |
//! |---|---|---|
//! | header read | [`DEFAULT_HEADER_READ_TIMEOUT`] | a client that has not sent a whole request head within it (a first request, or the next one on a kept-alive connection) is disconnected |
//! | request | [`DEFAULT_REQUEST_TIMEOUT`] | a request whose body and answer take longer is answered `408 request_timeout` |
//! | connections | [`DEFAULT_MAX_CONNECTIONS`], and never more than the open-file limit less [`FD_RESERVE`] | at the cap, the **idlest** connection (no request in flight, longest without one) is closed to admit the new one, so a crowd of idle clients cannot lock a health check out. When every connection has a request in flight (slow bodies, say), up to [`HEALTH_RESERVE`] more are admitted that answer only `/healthz` and `/readyz` (anything else: 503 `busy`) and get at most [`RESERVE_HEADER_READ_TIMEOUT`] for their head; past those the newcomer is refused. A newcomer is served once the evicted socket is closed (one permit per open socket), so a burst cannot outrun the closes past the open-file limit. Each case is logged, at most once a second |
//! | TLS | off | with a certificate and key (`serve --tls-cert/--tls-key`), every connection is TLS (rustls, TLS 1.2 and 1.3); the handshake must finish within the header-read timeout |
//! | shutdown | [`DEFAULT_SHUTDOWN_GRACE`] | on SIGINT/SIGTERM the listener closes, requests in flight finish, idle connections close; whatever still runs after the grace period is dropped |
//!
//! Why not `axum::serve`: it sets no timer, so hyper's header-read timeout is
//! silently off, and it has no connection cap. HTTP/2 is not offered: an
//! admin endpoint gains nothing from it, and telling HTTP/2 from HTTP/1 on a
//! connection needs bytes an idle client never sends.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, Response, StatusCode};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio::time::Instant;
pub use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{debug, info, warn};

/// Default admin listen address: loopback, so no token is needed.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9464));
/// Default time a client has to send a whole request head.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a request (body included) has to be answered.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default cap on open admin connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// Default time requests in flight get to finish at shutdown.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// File descriptors kept free of admin connections for everything else the
/// process opens (etcd connections, logs, the listener itself).
pub const FD_RESERVE: usize = 64;
/// The smallest cap the open-file limit may leave.
const MIN_CONNECTIONS: usize = 8;
/// Connections admitted beyond the cap, when every connection is busy, for
/// health checks only.
pub const HEALTH_RESERVE: usize = 4;
/// The header-read timeout of a reserve connection: a health check sends its
/// head at once, so a slow one only holds a reserve slot this long.
pub const RESERVE_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// The paths a reserve connection answers.
const HEALTH_PATHS: [&str; 2] = ["/healthz", "/readyz"];

/// The client's address, put in each request's extensions for the logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

impl std::fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The listener's limits; [`Default`] is the documented defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    /// See [`DEFAULT_HEADER_READ_TIMEOUT`].
    pub header_read_timeout: Duration,
    /// See [`DEFAULT_REQUEST_TIMEOUT`].
    pub request_timeout: Duration,
    /// See [`DEFAULT_MAX_CONNECTIONS`]; lowered to fit the open-file limit.
    pub max_connections: usize,
    /// See [`DEFAULT_SHUTDOWN_GRACE`].
    pub shutdown_grace: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

/// The connection cap in force: `configured`, lowered so that the admin
/// connections leave [`FD_RESERVE`] descriptors of `fd_limit` free.
pub fn effective_cap(configured: usize, fd_limit: Option<u64>) -> usize {
    let by_fds = fd_limit
        .and_then(|l| usize::try_from(l).ok())
        .map_or(usize::MAX, |l| l.saturating_sub(FD_RESERVE));
    configured.min(by_fds).max(MIN_CONNECTIONS.min(configured))
}

/// The soft open-file limit of this process, if it can be read.
fn open_file_limit() -> Option<u64> {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .ok()
        .map(|(soft, _hard)| soft)
}

/// Serves `app` on `listener` until `shutdown` completes, then drains.
///
/// # Errors
/// Never for a client's fault; an `Err` only if the listener itself fails
/// in a way accepting again cannot fix (none is known today).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let fd_limit = open_file_limit();
    let cap = effective_cap(limits.max_connections, fd_limit);
    info!(
        cap,
        fd_limit = fd_limit.unwrap_or(0),
        header_read_timeout_ms = limits.header_read_timeout.as_millis() as u64,
        request_timeout_ms = limits.request_timeout.as_millis() as u64,
        "admin connections capped"
    );
    let registry = Arc::new(Registry::new(cap));
    let sockets = Arc::new(tokio::sync::Semaphore::new(cap + HEALTH_RESERVE));
    let stop = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let mut accept_log = RateLimit::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: the cap should keep us clear of
                    // them; if not, pause instead of spinning.
                    if accept_log.ready() {
                        warn!(error = %e, "admin accept failed; pausing 50 ms");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Reap finished connection tasks so the set stays small.
        while tasks.try_join_next().is_some() {}
        let Some(conn) = registry.admit() else {
            drop(stream);
            continue;
        };
        // One permit per open socket, released only once the socket is
        // closed: an evicted connection's socket closes when its task next
        // runs, so a burst of newcomers waits for that instead of outrunning
        // it past the open-file limit.
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = Arc::clone(&sockets).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let app = app.clone();
        let stop = stop.clone();
        let registry = Arc::clone(&registry);
        let tls = tls.clone();
        tasks.spawn(async move {
            let _socket = permit;
            let _ = stream.set_nodelay(true);
            let peer = PeerAddr(peer);
            match tls {
                None => serve_connection(stream, peer, app, limits, &conn, stop).await,
                Some(acceptor) => {
                    let handshake = tokio::time::timeout(
                        conn.header_read_timeout(limits),
                        acceptor.accept(stream),
                    );
                    match handshake.await {
                        Ok(Ok(stream)) => {
                            serve_connection(stream, peer, app, limits, &conn, stop).await;
                        }
                        Ok(Err(e)) => debug!(error = %e, %peer, "admin TLS handshake failed"),
                        Err(_) => debug!(%peer, "admin TLS handshake timed out"),
                    }
                }
            }
            registry.remove(conn.id);
        });
    }
    drop(listener);
    stop.cancel();
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            left = tasks.len(),
            "admin connections still busy after the shutdown grace period; dropping them"
        );
        tasks.shutdown().await;
    }
    Ok(())
}

/// One connection: HTTP/1.1 with the header timeout, each request under the
/// request timeout and counted as in flight, until it ends, is evicted, or
/// the server stops (then gracefully).
async fn serve_connection<S>(
    stream: S,
    peer: PeerAddr,
    app: Router,
    limits: ServerLimits,
    conn: &Arc<ConnState>,
    stop: CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let state = Arc::clone(conn);
    let reserve = conn.reserve;
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        let app = app.clone();
        let guard = InFlight::enter(&state);
        req.extensions_mut().insert(peer);
        let health = HEALTH_PATHS.contains(&req.uri().path());
        async move {
            let _guard = guard;
            if reserve && !health {
                return Ok(busy_response());
            }
            let answer = tokio::time::timeout(limits.request_timeout, app.oneshot(req)).await;
            Ok::<_, std::convert::Infallible>(match answer {
                Ok(Ok(response)) => response,
                Ok(Err(never)) => match never {},
                Err(_) => timeout_response(limits.request_timeout),
            })
        }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(conn.header_read_timeout(limits))
        .keep_alive(!reserve);
    let connection = http.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                debug!(error = %e, "admin connection ended");
            }
        }
        () = conn.evict.cancelled() => {}
        () = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// `408 request_timeout`, JSON like every other error of the admin API.
fn timeout_response(limit: Duration) -> Response<Body> {
    closing_error(
        StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        &format!(
            "the request was not completed within {} s",
            limit.as_secs_f64()
        ),
    )
}

/// `503 busy`: a reserve connection asked for more than a health check.
fn busy_response() -> Response<Body> {
    closing_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "busy",
        "every admin connection is busy; only /healthz and /readyz are answered now",
    )
}

/// An error the listener answers itself (outside the router), in the admin
/// API's JSON shape, closing the connection.
fn closing_error(status: StatusCode, slug: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({"error": slug, "message": message});
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    response
}

/// What the registry knows of one open connection.
#[derive(Debug)]
pub(crate) struct ConnState {
    id: u64,
    /// Requests in flight on it.
    in_flight: AtomicUsize,
    /// When it last started or finished a request (or opened), as
    /// nanoseconds since the registry's epoch: the idleness order.
    last_active: AtomicU64,
    epoch: Instant,
    /// Cancelled to close it.
    evict: CancellationToken,
    /// Admitted beyond the cap: health checks only.
    reserve: bool,
}

impl ConnState {
    fn header_read_timeout(&self, limits: ServerLimits) -> Duration {
        if self.reserve {
            limits.header_read_timeout.min(RESERVE_HEADER_READ_TIMEOUT)
        } else {
            limits.header_read_timeout
        }
    }

    fn touch(&self) {
        let nanos = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_active.store(nanos, Ordering::Relaxed);
    }
}

/// Marks a request in flight on a connection for as long as it lives.
struct InFlight(Arc<ConnState>);

impl InFlight {
    fn enter(conn: &Arc<ConnState>) -> InFlight {
        conn.in_flight.fetch_add(1, Ordering::AcqRel);
        conn.touch();
        InFlight(Arc::clone(conn))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The open connections, and the cap on them.
#[derive(Debug)]
pub(crate) struct Registry {
    cap: usize,
    epoch: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<ConnState>>>,
    log: Mutex<RateLimit>,
}

impl Registry {
    pub(crate) fn new(cap: usize) -> Registry {
        Registry {
            cap,
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
            log: Mutex::new(RateLimit::new()),
        }
    }

    /// Registers a new connection, first closing the idlest one when the cap
    /// is reached; when every open connection has a request in flight, a
    /// reserve (health-only) connection while fewer than [`HEALTH_RESERVE`]
    /// are open, else `None`.
    pub(crate) fn admit(&self) -> Option<Arc<ConnState>> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let mut reserve = false;
        let regular = open.values().filter(|c| !c.reserve).count();
        if regular >= self.cap {
            let idlest = open
                .values()
                .filter(|c| !c.reserve && c.in_flight.load(Ordering::Acquire) == 0)
                .min_by_key(|c| c.last_active.load(Ordering::Relaxed))
                .map(|c| c.id);
            let admitted = match idlest.and_then(|id| open.remove(&id)) {
                Some(victim) => {
                    victim.evict.cancel();
                    true
                }
                None => false,
            };
            let full = !admitted && open.values().filter(|c| c.reserve).count() >= HEALTH_RESERVE;
            if self.log_ready() {
                let what = if admitted {
                    "admin connection cap reached: closing the idlest connection to admit a new one"
                } else if full {
                    "admin connection cap reached, every connection busy and the health reserve full: refusing a new one"
                } else {
                    "admin connection cap reached and every connection is busy: admitting health checks only"
                };
                warn!(cap = self.cap, "{what}");
            }
            if full {
                return None;
            }
            reserve = !admitted;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(ConnState {
            id,
            in_flight: AtomicUsize::new(0),
            last_active: AtomicU64::new(0),
            epoch: self.epoch,
            evict: CancellationToken::new(),
            reserve,
        });
        conn.touch();
        open.insert(id, Arc::clone(&conn));
        Some(conn)
    }

    /// Forgets a connection that ended (or was evicted already).
    pub(crate) fn remove(&self, id: u64) {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }

    /// Open connections.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn log_ready(&self) -> bool {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .ready()
    }
}

/// At most one log line a second.
#[derive(Debug)]
struct RateLimit {
    last: Option<Instant>,
}

impl RateLimit {
    fn new() -> RateLimit {
        RateLimit { last: None }
    }

    fn ready(&mut self) -> bool {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return false;
        }
        self.last = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_descriptors_free() {
        assert_eq!(effective_cap(512, None), 512);
        assert_eq!(effective_cap(512, Some(1024)), 512);
        assert_eq!(effective_cap(512, Some(256)), 256 - FD_RESERVE);
        assert_eq!(effective_cap(512, Some(10)), MIN_CONNECTIONS);
        assert_eq!(effective_cap(2, Some(10)), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_cap_the_idlest_connection_goes_first() {
        let registry = Registry::new(3);
        let a = registry.admit().unwrap();
        tokio::time::advance(Duration::from_millis(2)).await;
        let b = registry.admit().unwrap();
        tokio::time::advance(Duration::from_millis(2)).await;
        let c = registry.admit().unwrap();
        // `a` is the oldest but busy; `b` is the idlest idle one.
        let busy = InFlight::enter(&a);
        let d = registry.admit().unwrap();
        assert!(b.evict.is_cancelled());
        assert!(!a.evict.is_cancelled() && !c.evict.is_cancelled());
        assert_eq!(registry.len(), 3);
        // `c` is next; then only busy ones are left and a newcomer is
        // admitted for health checks only, up to the reserve.
        let _busy_c = InFlight::enter(&c);
        let _busy_d = InFlight::enter(&d);
        let reserved: Vec<_> = (0..HEALTH_RESERVE)
            .map(|_| registry.admit().unwrap())
            .collect();
        assert!(reserved.iter().all(|r| r.reserve));
        assert!(registry.admit().is_none());
        // A reserve connection is never evicted for a regular one.
        let _busy_reserve = InFlight::enter(&reserved[0]);
        drop(busy);
        let e = registry.admit().unwrap();
        assert!(!e.reserve);
        assert!(a.evict.is_cancelled());
        assert!(reserved.iter().all(|r| !r.evict.is_cancelled()));
        registry.remove(e.id);
        for r in &reserved {
            registry.remove(r.id);
        }
        assert_eq!(registry.len(), 2);
    }
}
