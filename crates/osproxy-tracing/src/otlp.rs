//! OTLP/HTTP export off the request path: a bounded queue drained by one
//! worker thread that owns `opentelemetry-otlp`'s HTTP/protobuf exporter.
//!
//! Why a queue of our own in front of the exporter: a request must never
//! wait for a collector. Handing a request's spans over is a `try_send`;
//! when the queue is full the spans are dropped and counted
//! ([`ExportStats::dropped`]), which a service shows in its metrics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{SpanData, SpanExporter as _};
use opentelemetry_sdk::Resource;

/// Counters of the export queue (monotonic since start).
#[derive(Debug, Default)]
pub struct ExportStats {
    queued: AtomicU64,
    dropped: AtomicU64,
    exported: AtomicU64,
    failed: AtomicU64,
}

impl ExportStats {
    /// Spans handed to the queue.
    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }
    /// Spans dropped because the queue was full (or the worker gone).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
    /// Spans the collector accepted.
    pub fn exported(&self) -> u64 {
        self.exported.load(Ordering::Relaxed)
    }
    /// Spans whose export failed (collector down, refused, timed out).
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
}

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    /// The worker's runtime could not be built.
    #[error("otlp export runtime: {0}")]
    Runtime(#[from] std::io::Error),
    /// The OTLP exporter rejected its configuration.
    #[error("otlp exporter: {0}")]
    Build(String),
}

/// Settings of [`OtlpExport`].
#[derive(Clone, Debug)]
pub struct OtlpConfig {
    /// The collector's traces URL, e.g. `http://127.0.0.1:4318/v1/traces`.
    pub endpoint: String,
    /// Requests (each a batch of one request's spans) the queue holds.
    pub queue_requests: usize,
    /// Most spans sent in one export call.
    pub max_batch_spans: usize,
    /// Bound on one export call.
    pub timeout: Duration,
    /// `service.name` of the exported resource.
    pub service_name: String,
}

impl OtlpConfig {
    /// Defaults for `endpoint`: 1,024 queued requests, batches of 512
    /// spans, a 5 s export timeout, service `osproxy`.
    pub fn new(endpoint: impl Into<String>) -> Self {
        OtlpConfig {
            endpoint: endpoint.into(),
            queue_requests: 1024,
            max_batch_spans: 512,
            timeout: Duration::from_secs(5),
            service_name: "osproxy".into(),
        }
    }
}

/// The handle a recorder sends finished requests' spans through.
#[derive(Debug)]
pub struct OtlpExport {
    tx: Option<SyncSender<Vec<SpanData>>>,
    stats: Arc<ExportStats>,
    worker: Option<JoinHandle<()>>,
}

impl OtlpExport {
    /// Starts the worker thread and its exporter.
    ///
    /// # Errors
    /// [`OtlpError`] when the runtime or the exporter cannot be built.
    pub fn start(config: OtlpConfig) -> Result<Self, OtlpError> {
        let (tx, rx) = mpsc::sync_channel(config.queue_requests.max(1));
        let stats = Arc::new(ExportStats::default());
        let worker_stats = Arc::clone(&stats);
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<(), OtlpError>>(1);
        // The runtime and the exporter are built on the worker thread: a
        // runtime cannot be started (`block_on`) on a thread that already
        // drives one, and the caller may well be inside a tokio runtime.
        let worker = std::thread::Builder::new()
            .name("osproxy-otlp".into())
            .spawn(move || {
                let built = build(&config);
                let (runtime, exporter) = match built {
                    Ok(pair) => {
                        let _ = ready_tx.send(Ok(()));
                        pair
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let max_batch = config.max_batch_spans.max(1);
                drain(&runtime, &exporter, &rx, &worker_stats, max_batch);
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = worker.join();
                return Err(e);
            }
            Err(_) => {
                let _ = worker.join();
                return Err(OtlpError::Build("the export worker stopped".into()));
            }
        }
        Ok(OtlpExport {
            tx: Some(tx),
            stats,
            worker: Some(worker),
        })
    }

    /// Hands one request's spans to the worker; never blocks. Returns
    /// whether they were queued (a full queue drops and counts them).
    pub fn send(&self, spans: Vec<SpanData>) -> bool {
        let n = spans.len() as u64;
        let Some(tx) = &self.tx else {
            self.stats.dropped.fetch_add(n, Ordering::Relaxed);
            return false;
        };
        match tx.try_send(spans) {
            Ok(()) => {
                self.stats.queued.fetch_add(n, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.stats.dropped.fetch_add(n, Ordering::Relaxed);
                false
            }
        }
    }

    /// The queue's counters.
    pub fn stats(&self) -> &Arc<ExportStats> {
        &self.stats
    }
}

impl Drop for OtlpExport {
    /// Closes the queue and waits for the worker to send what it holds.
    fn drop(&mut self) {
        self.tx = None;
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// The worker's runtime and exporter.
fn build(
    config: &OtlpConfig,
) -> Result<(tokio::runtime::Runtime, opentelemetry_otlp::SpanExporter), OtlpError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client =
        opentelemetry_http::hyper::HyperClient::with_default_connector(config.timeout, None);
    let mut exporter = runtime.block_on(async {
        opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(config.endpoint.clone())
            .with_timeout(config.timeout)
            .build()
            .map_err(|e| OtlpError::Build(e.to_string()))
    })?;
    exporter.set_resource(
        &Resource::builder_empty()
            .with_service_name(config.service_name.clone())
            .build(),
    );
    Ok((runtime, exporter))
}

fn drain(
    runtime: &tokio::runtime::Runtime,
    exporter: &opentelemetry_otlp::SpanExporter,
    rx: &Receiver<Vec<SpanData>>,
    stats: &ExportStats,
    max_batch: usize,
) {
    while let Ok(mut batch) = rx.recv() {
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(more) => batch.extend(more),
                Err(_) => break,
            }
        }
        let n = batch.len() as u64;
        match runtime.block_on(exporter.export(batch)) {
            Ok(()) => stats.exported.fetch_add(n, Ordering::Relaxed),
            Err(_) => stats.failed.fetch_add(n, Ordering::Relaxed),
        };
    }
}
