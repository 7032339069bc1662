//! The moving parts of a measurement: the writer, fleets of stores and of
//! bare watches, the single baseline watch on its own thread, and a reader
//! that spins on one store's `DirectiveReader`.
//!
//! Every timestamp is the wall clock (`SystemClock::unix_nanos`), the clock
//! the stores stamp `status().last_update_unix_nanos` with right after their
//! snapshot swap, so that stamps taken on different threads compare.

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use etcd_client::Client;
use osproxy_core::{Clock, SystemClock};
use osproxy_etcd::EtcdDirectiveStore;
use osproxy_observe::DiagLevel;
use tokio::runtime::{Handle, Runtime};
use tokio::sync::{oneshot, Semaphore};
use tokio::time::timeout;

use crate::sys::{mono, wall};
use crate::workload::Probe;
use crate::Res;

/// Bound on one put, one connect, one watch creation.
pub const OP_TIMEOUT: Duration = Duration::from_secs(5);

/// How the store fleet is built.
#[derive(Clone, Copy, Debug)]
pub struct StoreOpts {
    /// `None`: the store's default (15 s).
    pub stale_after: Option<Duration>,
    /// `None`: the store's default (5 s).
    pub progress_interval: Option<Duration>,
}

impl StoreOpts {
    pub const DEFAULT: StoreOpts = StoreOpts {
        stale_after: None,
        progress_interval: None,
    };
}

/// Connects one store on the main runtime.
pub async fn connect_store(
    endpoints: &[String],
    key: &str,
    opts: StoreOpts,
    runtime: Handle,
) -> Res<EtcdDirectiveStore> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut b =
        EtcdDirectiveStore::builder(endpoints, osproxy_etcd::Layout::Key(key.to_owned()), clock)
            .runtime(runtime);
    if let Some(d) = opts.stale_after {
        b = b.stale_after(d);
    }
    if let Some(d) = opts.progress_interval {
        b = b.progress_interval(d);
    }
    Ok(b.connect().await?)
}

/// Connects `n` stores on `key`, at most 32 connecting at a time.
///
/// The connects run as local tasks on this thread (the stores' watchers run
/// on `rt`'s workers), so this does not ask the `connect` future to be
/// `Send`.
pub fn connect_stores(
    rt: &Runtime,
    endpoints: &[String],
    key: &str,
    n: usize,
    opts: StoreOpts,
) -> Res<Vec<EtcdDirectiveStore>> {
    let gate = Rc::new(Semaphore::new(32));
    let local = tokio::task::LocalSet::new();
    local.block_on(rt, async {
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let gate = Rc::clone(&gate);
                let endpoints = endpoints.to_vec();
                let key = key.to_owned();
                let h = rt.handle().clone();
                tokio::task::spawn_local(async move {
                    let _permit = gate.acquire().await;
                    connect_store(&endpoints, &key, opts, h).await
                })
            })
            .collect();
        let mut stores = Vec::with_capacity(n);
        for t in tasks {
            stores.push(t.await.map_err(|e| format!("store task: {e}"))??);
        }
        Ok(stores)
    })
}

/// The last watch event a bare watcher saw: revision and receipt time.
#[derive(Debug, Default)]
pub struct Slot {
    revision: AtomicI64,
    nanos: AtomicU64,
}

impl Slot {
    fn record(&self, revision: i64, nanos: u64) {
        self.nanos.store(nanos, Ordering::Relaxed);
        self.revision.store(revision, Ordering::Release);
    }

    /// The receipt time of `revision` (or a later one), once seen.
    pub fn seen(&self, revision: i64) -> Option<u64> {
        (self.revision.load(Ordering::Acquire) >= revision)
            .then(|| self.nanos.load(Ordering::Relaxed))
    }
}

/// Follows `stream`, stamping each response with events into `slot`.
async fn follow(mut stream: etcd_client::WatchStream, slot: Arc<Slot>) {
    while let Ok(Some(resp)) = stream.message().await {
        let now = wall();
        let newest = resp
            .events()
            .iter()
            .filter_map(|e| e.kv().map(etcd_client::KeyValue::mod_revision))
            .max();
        if let Some(rev) = newest {
            slot.record(rev, now);
        }
    }
}

/// Opens a watch on `key` and waits for its creation.
async fn open_watch(endpoint: &str, key: &str) -> Res<(Client, etcd_client::WatchStream)> {
    let mut client = timeout(OP_TIMEOUT, Client::connect([endpoint], None)).await??;
    let mut stream = timeout(OP_TIMEOUT, client.watch(key, None)).await??;
    // The first response confirms the watch exists.
    let first = timeout(OP_TIMEOUT, stream.message()).await??;
    if !first.is_some_and(|r| r.created()) {
        return Err("watch was not created".into());
    }
    Ok((client, stream))
}

/// `n` bare etcd watches on `key`, one connection each, on the main runtime:
/// the fleet-sized baseline.
pub struct BareFleet {
    pub slots: Vec<Arc<Slot>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl BareFleet {
    pub fn start(rt: &Runtime, endpoint: &str, key: &str, n: usize) -> Res<BareFleet> {
        let gate = Arc::new(Semaphore::new(32));
        let opens: Vec<_> = (0..n)
            .map(|_| {
                let gate = Arc::clone(&gate);
                let endpoint = endpoint.to_owned();
                let key = key.to_owned();
                rt.spawn(async move {
                    let _permit = gate.acquire_owned().await;
                    open_watch(&endpoint, &key).await
                })
            })
            .collect();
        let mut slots = Vec::with_capacity(n);
        let mut tasks = Vec::with_capacity(n);
        for open in opens {
            let (client, stream) = rt
                .block_on(open)
                .map_err(|e| format!("bare watch task: {e}"))??;
            let slot = Arc::new(Slot::default());
            let s = Arc::clone(&slot);
            tasks.push(rt.spawn(async move {
                let _client = client;
                follow(stream, s).await;
            }));
            slots.push(slot);
        }
        Ok(BareFleet { slots, tasks })
    }
}

impl Drop for BareFleet {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// One bare watch on its own thread and current-thread runtime: the
/// baseline, untouched by the work of the stores' runtime.
pub struct BaselineWatch {
    pub slot: Arc<Slot>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl BaselineWatch {
    pub fn start(endpoint: &str, key: &str) -> Res<BaselineWatch> {
        let slot = Arc::new(Slot::default());
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let endpoint = endpoint.to_owned();
        let key = key.to_owned();
        let s = Arc::clone(&slot);
        let thread = std::thread::Builder::new()
            .name("baseline-watch".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                rt.block_on(async move {
                    let (client, stream) = match open_watch(&endpoint, &key).await {
                        Ok(w) => w,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.to_string()));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    tokio::select! {
                        _ = stop_rx => {}
                        () = follow(stream, s) => {}
                    }
                    drop(client);
                });
            })?;
        match ready_rx.recv_timeout(OP_TIMEOUT * 3) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("baseline watch: {e}").into()),
            Err(_) => return Err("baseline watch did not start".into()),
        }
        Ok(BaselineWatch {
            slot,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

impl Drop for BaselineWatch {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Spins on one store's `DirectiveReader` while armed, evaluating the probe
/// request, and stamps the moment it first evaluates to the armed level:
/// "visible through the reader", measured directly. It costs a core while
/// armed, so it only runs where there is one to spare (one store).
pub struct ReaderSampler {
    /// `generation << 8 | level code`: the newest arming.
    request: Arc<AtomicU64>,
    /// The generation the sampler is spinning for (or last spun for).
    spinning: Arc<AtomicU64>,
    stamp_generation: Arc<AtomicU64>,
    stamp: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    next_generation: u64,
    thread: Option<JoinHandle<()>>,
}

/// Longest a sampler spins for one arming.
const SPIN_CAP: Duration = Duration::from_secs(2);

fn level_code(level: DiagLevel) -> u64 {
    match level {
        DiagLevel::Off => 1,
        DiagLevel::Shape => 2,
        DiagLevel::ShapeTiming => 3,
        DiagLevel::ShapeRewriteDiff => 4,
    }
}

impl ReaderSampler {
    pub fn start(store: &EtcdDirectiveStore) -> Res<ReaderSampler> {
        let request = Arc::new(AtomicU64::new(0));
        let spinning = Arc::new(AtomicU64::new(0));
        let stamp_generation = Arc::new(AtomicU64::new(0));
        let stamp = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut reader = store.reader();
        let (rq, sn, sg, st, sp) = (
            Arc::clone(&request),
            Arc::clone(&spinning),
            Arc::clone(&stamp_generation),
            Arc::clone(&stamp),
            Arc::clone(&stop),
        );
        let thread = std::thread::Builder::new()
            .name("reader-sampler".into())
            .spawn(move || {
                let probe = Probe::default();
                let attrs = probe.attrs();
                let clock = SystemClock;
                let mut done = 0u64;
                while !sp.load(Ordering::Relaxed) {
                    let r = rq.load(Ordering::Acquire);
                    let (gen, want) = (r >> 8, r & 0xff);
                    if gen == done {
                        std::thread::sleep(Duration::from_micros(100));
                        continue;
                    }
                    sn.store(gen, Ordering::Release);
                    let start = mono();
                    loop {
                        let level = reader.current().evaluate(&attrs, clock.now(), &probe.id);
                        if level_code(level) == want {
                            st.store(wall(), Ordering::Relaxed);
                            sg.store(gen, Ordering::Release);
                            break;
                        }
                        let superseded = rq.load(Ordering::Acquire) >> 8 != gen;
                        if superseded
                            || sp.load(Ordering::Relaxed)
                            || mono().saturating_duration_since(start) > SPIN_CAP
                        {
                            break;
                        }
                        std::thread::yield_now();
                    }
                    done = gen;
                }
            })?;
        Ok(ReaderSampler {
            request,
            spinning,
            stamp_generation,
            stamp,
            stop,
            next_generation: 1,
            thread: Some(thread),
        })
    }

    /// Starts spinning for `level` and returns once the sampler spins (at
    /// most 50 ms); returns the generation whose stamp to collect.
    pub fn arm(&mut self, level: DiagLevel) -> u64 {
        let gen = self.next_generation;
        self.next_generation += 1;
        self.request
            .store(gen << 8 | level_code(level), Ordering::Release);
        let start = mono();
        while self.spinning.load(Ordering::Acquire) < gen
            && mono().saturating_duration_since(start) < Duration::from_millis(50)
        {
            std::thread::yield_now();
        }
        gen
    }

    /// The stamp of generation `gen`, once taken.
    pub fn stamp(&self, gen: u64) -> Option<u64> {
        (self.stamp_generation.load(Ordering::Acquire) >= gen)
            .then(|| self.stamp.load(Ordering::Relaxed))
    }
}

impl Drop for ReaderSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The writer: an etcd client on the coordinator's own current-thread
/// runtime, so that the put's acknowledgement is not queued behind the
/// stores' work.
pub struct Writer {
    rt: Runtime,
    client: Client,
}

/// One acknowledged write.
#[derive(Clone, Copy, Debug)]
pub struct Ack {
    pub revision: i64,
    pub sent: u64,
    pub acked: u64,
}

impl Writer {
    pub fn connect(endpoints: &[String]) -> Res<Writer> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let client =
            rt.block_on(async { timeout(OP_TIMEOUT, Client::connect(endpoints, None)).await })??;
        Ok(Writer { rt, client })
    }

    /// Puts `value` at `key`; the acknowledgement is stamped as soon as the
    /// put returns.
    pub fn put(&mut self, key: &str, value: &str) -> Res<Ack> {
        self.put_within(key, value, OP_TIMEOUT)
    }

    fn put_within(&mut self, key: &str, value: &str, limit: Duration) -> Res<Ack> {
        let sent = wall();
        let client = &mut self.client;
        let resp = self
            .rt
            .block_on(async { timeout(limit, client.put(key, value, None)).await })??;
        let acked = wall();
        let revision = resp
            .header()
            .map_or(0, etcd_client::ResponseHeader::revision);
        Ok(Ack {
            revision,
            sent,
            acked,
        })
    }

    /// Puts until one succeeds or `cap` passes (for writes during faults).
    /// Each attempt gets 500 ms: a put caught in a leader election can hang
    /// until etcd's own timeout, while a retry lands as soon as the new
    /// leader is in place.
    pub fn put_retrying(&mut self, key: &str, value: &str, cap: Duration) -> Res<Ack> {
        let start = mono();
        loop {
            match self.put_within(key, value, Duration::from_millis(500)) {
                Ok(a) => return Ok(a),
                Err(e) if mono().saturating_duration_since(start) > cap => {
                    return Err(format!("put kept failing for {cap:?}: {e}").into())
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}
