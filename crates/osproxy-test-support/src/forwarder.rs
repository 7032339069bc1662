//! A loopback TCP proxy that injects network faults.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

use crate::wait::wait_until;

/// How long [`TcpForwarder::cut`] waits for the cut connections to be closed.
const CUT_TIMEOUT: Duration = Duration::from_secs(5);

/// A TCP proxy on `127.0.0.1:<free port>` forwarding to a target address,
/// with fault controls.
///
/// * [`freeze`](Self::freeze): no byte moves in either direction, on existing
///   and new connections, while every socket stays open — peers see silence,
///   not a reset (a half-open connection / black-holed network).
/// * [`thaw`](Self::thaw): bytes flow again, nothing is lost.
/// * [`cut`](Self::cut): every open connection is closed abruptly (RST); the
///   listener keeps accepting.
/// * [`set_target`](Self::set_target): new connections go elsewhere.
///
/// It runs on a dedicated thread with its own tokio runtime, so it works from
/// sync code and from any test runtime (current-thread included). Dropping it
/// stops the thread and closes every socket.
pub struct TcpForwarder {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    target: Mutex<SocketAddr>,
    frozen: watch::Sender<bool>,
    /// Bumped by `cut`: a connection accepted in an older generation closes.
    generation: watch::Sender<u64>,
    /// Open client connections: id -> generation at accept time.
    connections: Mutex<HashMap<u64, u64>>,
    next_id: AtomicU64,
    /// Armed by `hold_replies_after`: the client bytes that start the hold.
    reply_trigger: Mutex<Option<Vec<u8>>>,
    /// While true, no byte moves from the target back to the clients.
    replies_held: watch::Sender<bool>,
}

impl Shared {
    fn connections(&self) -> MutexGuard<'_, HashMap<u64, u64>> {
        self.connections.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn target(&self) -> SocketAddr {
        *self.target.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for TcpForwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpForwarder")
            .field("addr", &self.addr)
            .field("target", &self.shared.target())
            .field("frozen", &*self.shared.frozen.borrow())
            .field("connections", &self.connection_count())
            .finish()
    }
}

impl TcpForwarder {
    /// Starts forwarding `127.0.0.1:<free port>` to `target`. The listener is
    /// bound before this returns, so [`addr`](Self::addr) is immediately
    /// connectable. Panics when the listener or the thread cannot be set up.
    pub fn start(target: SocketAddr) -> TcpForwarder {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("TcpForwarder: cannot bind 127.0.0.1:0: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("TcpForwarder: no local address: {e}"));
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("TcpForwarder: cannot make the listener non-blocking: {e}"));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("TcpForwarder: cannot build a tokio runtime: {e}"));
        let shared = Arc::new(Shared {
            target: Mutex::new(target),
            frozen: watch::Sender::new(false),
            generation: watch::Sender::new(0),
            connections: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            reply_trigger: Mutex::new(None),
            replies_held: watch::Sender::new(false),
        });
        let (shutdown, shutdown_rx) = oneshot::channel();
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("tcp-forwarder-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => panic!("TcpForwarder: cannot register the listener: {e}"),
                    };
                    tokio::select! {
                        _ = shutdown_rx => {}
                        () = accept_loop(listener, thread_shared) => {}
                    }
                });
                // Dropping the runtime drops every connection task and socket.
            })
            .unwrap_or_else(|e| panic!("TcpForwarder: cannot spawn its thread: {e}"));
        TcpForwarder {
            addr,
            shared,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// The listening address (`127.0.0.1:<port>`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The listening address as `"127.0.0.1:PORT"`.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// Where new connections are forwarded to.
    pub fn target(&self) -> SocketAddr {
        self.shared.target()
    }

    /// Redirects connections accepted from now on; open ones keep their
    /// upstream.
    pub fn set_target(&self, target: SocketAddr) {
        *self.shared.target.lock().unwrap_or_else(|e| e.into_inner()) = target;
    }

    /// Stops moving bytes in both directions on all open and future
    /// connections, keeping every socket open. Takes effect before this
    /// returns for bytes not yet read by the proxy.
    pub fn freeze(&self) {
        self.shared.frozen.send_replace(true);
    }

    /// Resumes moving bytes; anything held while frozen is delivered.
    pub fn thaw(&self) {
        self.shared.frozen.send_replace(false);
    }

    /// Whether the forwarder is frozen.
    pub fn is_frozen(&self) -> bool {
        *self.shared.frozen.borrow()
    }

    /// Closes every currently open connection abruptly (both sides see a
    /// reset) and returns once they are gone; keeps listening, so new
    /// connections are accepted normally.
    pub fn cut(&self) {
        let mut cut_generation = 0;
        self.shared.generation.send_modify(|g| {
            *g += 1;
            cut_generation = *g;
        });
        wait_until(
            CUT_TIMEOUT,
            "the forwarder has closed every cut connection",
            || {
                self.shared
                    .connections()
                    .values()
                    .all(|g| *g >= cut_generation)
            },
        );
    }

    /// Arms a one-way fault: as soon as a client sends bytes containing
    /// `needle`, those bytes still reach the target but no reply byte moves
    /// back to any client until [`release_replies`](Self::release_replies)
    /// (a request that left, whose answer is lost). Combine with
    /// [`cut`](Self::cut) to end the connections that wait for an answer.
    pub fn hold_replies_after(&self, needle: &[u8]) {
        *self
            .shared
            .reply_trigger
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(needle.to_vec());
    }

    /// Whether replies are held (the needle of
    /// [`hold_replies_after`](Self::hold_replies_after) was seen).
    pub fn replies_held(&self) -> bool {
        *self.shared.replies_held.borrow()
    }

    /// Disarms [`hold_replies_after`](Self::hold_replies_after) and lets
    /// replies flow again (held bytes are delivered).
    pub fn release_replies(&self) {
        *self
            .shared
            .reply_trigger
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
        self.shared.replies_held.send_replace(false);
    }

    /// Number of client connections currently open through the forwarder.
    pub fn connection_count(&self) -> usize {
        self.shared.connections().len()
    }
}

impl Drop for TcpForwarder {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((client, _)) => {
                let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
                let generation = *shared.generation.borrow();
                shared.connections().insert(id, generation);
                let guard = ConnectionGuard {
                    shared: Arc::clone(&shared),
                    id,
                };
                tokio::spawn(serve(client, guard, generation));
            }
            // Out of file descriptors and the like: back off a little.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Unregisters a connection when its task ends or is dropped.
struct ConnectionGuard {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.shared.connections().remove(&self.id);
    }
}

async fn serve(mut client: TcpStream, guard: ConnectionGuard, generation: u64) {
    let shared = Arc::clone(&guard.shared);
    let mut cut_rx = shared.generation.subscribe();
    let cut = async move {
        let _ = cut_rx.wait_for(|g| *g > generation).await;
    };
    tokio::pin!(cut);

    let target = shared.target();
    let upstream = tokio::select! {
        r = TcpStream::connect(target) => r,
        () = &mut cut => {
            let _ = client.set_zero_linger();
            return;
        }
    };
    let Ok(mut upstream) = upstream else {
        // Target down: the client sees its connection reset.
        let _ = client.set_zero_linger();
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);

    let was_cut = {
        let (client_read, client_write) = client.split();
        let (upstream_read, upstream_write) = upstream.split();
        let up = pump(client_read, upstream_write, &shared, Direction::Request);
        let down = pump(upstream_read, client_write, &shared, Direction::Reply);
        tokio::select! {
            _ = async { tokio::try_join!(up, down) } => false,
            () = &mut cut => true,
        }
    };
    if was_cut {
        let _ = client.set_zero_linger();
        let _ = upstream.set_zero_linger();
    }
    drop(client);
    drop(upstream);
    drop(guard);
}

/// Which way a [`pump`] moves bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Client to target: watched for the reply trigger.
    Request,
    /// Target to client: held while replies are held.
    Reply,
}

/// Copies `from` to `to` until EOF (then half-closes `to`), holding still
/// whenever the forwarder is frozen (and, for replies, while they are held).
async fn pump(
    mut from: ReadHalf<'_>,
    mut to: WriteHalf<'_>,
    shared: &Shared,
    direction: Direction,
) -> std::io::Result<()> {
    let mut frozen = shared.frozen.subscribe();
    let mut held = shared.replies_held.subscribe();
    let mut buf = vec![0u8; 16 * 1024];
    // The end of the previous read, so a needle split across reads is seen.
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let _ = frozen.wait_for(|f| !*f).await;
        let n = from.read(&mut buf).await?;
        if n == 0 {
            let _ = to.shutdown().await;
            return Ok(());
        }
        if direction == Direction::Request {
            watch_for_trigger(shared, &mut tail, &buf[..n]);
        }
        // Bytes read just before a freeze are held until the thaw.
        let _ = frozen.wait_for(|f| !*f).await;
        if direction == Direction::Reply {
            let _ = held.wait_for(|h| !*h).await;
        }
        to.write_all(&buf[..n]).await?;
    }
}

/// Starts holding replies when `chunk` (after `tail`) contains the armed needle.
fn watch_for_trigger(shared: &Shared, tail: &mut Vec<u8>, chunk: &[u8]) {
    let mut trigger = shared
        .reply_trigger
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let Some(needle) = trigger.as_ref().filter(|n| !n.is_empty()) else {
        tail.clear();
        return;
    };
    tail.extend_from_slice(chunk);
    if tail.windows(needle.len()).any(|w| w == needle.as_slice()) {
        *trigger = None;
        shared.replies_held.send_replace(true);
        tail.clear();
        return;
    }
    let keep = needle.len().saturating_sub(1);
    if tail.len() > keep {
        tail.drain(..tail.len() - keep);
    }
}
