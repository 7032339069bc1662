//! A shape-only request recorder on `tracing`, steered per request by the
//! fleet's diagnostics directives.
//!
//! `tracing`'s filters are per process and static; a directive is per
//! request, targeted, sampled, budgeted and expiring. This crate is the
//! bridge: a [`tracing_subscriber::Layer`] with a per-layer filter that
//! takes the directive decision once per request and then records that
//! request's spans and events at the decided level, and nothing else.
//!
//! # What the service does
//!
//! * Open one span per request, named `request` (or the name given to
//!   [`RecorderBuilder::request_span`]), with the request's identity as
//!   fields given when the span is created: `tenant`, `index`, `principal`,
//!   `endpoint` (an [`osproxy_core::EndpointKind`] wire name, `Search`; any case) and
//!   `request_id`, as strings (`tenant = t.as_str()` or `tenant = %t`).
//!   The recorder decides there, once, through the store's per-thread
//!   [`osproxy_observe::DirectiveReader`] and
//!   [`osproxy_observe::DirectiveSet::decide_keys`] (the same decision and
//!   accounting as `decide`), and keeps the decision in the span's
//!   extensions. These five fields are recorded as the request's ids.
//! * Do its work inside that span (entered, or `.instrument(span)`).
//! * Put its own baseline (`info`, `warn`, …) **on its output layer as a
//!   per-layer filter** (`fmt::layer().with_filter(LevelFilter::INFO)`) and
//!   hand the same baseline to the recorder
//!   ([`Recorder::layer_with_baseline`]), never as a global filter on the
//!   subscriber (`.with(LevelFilter::INFO)` or `EnvFilter` as a layer): a
//!   global filter decides for every layer before the recorder is asked, so
//!   the debug events a directive asks for would be vetoed first. The
//!   recorder's layer then acts as the combined filter, so spans neither
//!   wants are not even built.
//! * Declare which fields' values are safe to record
//!   ([`RecorderBuilder::safe_fields`]); every other field is recorded as its
//!   name, type and size only. Numbers are values too (they can be ids).
//!
//! # What is recorded, by level
//!
//! * `Off` (no directive applies): nothing; the service's baseline output
//!   is untouched.
//! * `Shape`: the request span and its descendant spans and events at `info`
//!   and above: names, targets, levels, field names, types and sizes, span
//!   and trace ids.
//! * `ShapeTiming`: plus each span's busy and idle time.
//! * `ShapeRewriteDiff`: plus `debug` spans and events.
//!
//! Descendants are found through the current span (contextual parents).
//!
//! Every record carries its provenance: `osproxy.directive.id`,
//! `osproxy.directive.revision`, `osproxy.directive.key_id` (when the set was
//! signed and stamped, [`osproxy_observe::DirectiveSet::key_id`]), and a
//! `feature_flag.evaluation` event with OpenTelemetry's `feature_flag.key`,
//! `feature_flag.version`, `feature_flag.set.id`,
//! `feature_flag.result.variant` and `feature_flag.result.reason` (see
//! [`attr`]).
//!
//! # Where records go
//!
//! When the request span closes: `ring_buffer: true` puts the request's
//! document on the [`osproxy_observe::BreakGlassBuffer`]; `capture: true`
//! hands it to the [`osproxy_observe::DiagnosticSink`]; its spans go to the
//! [`OtlpExport`] queue (OTLP/HTTP, protobuf, never blocking the request)
//! and, as an OTLP/JSON payload, to a configured
//! [`osproxy_observe::SpanExporter`]. All of them are built from the
//! recorder's own shape-only records, never from the raw `tracing` fields.
//!
//! # Cost while idle
//!
//! While no live directive is above `Off`, the filter gives every callsite
//! `Interest::never`; `debug` callsites stay `never` unless a live directive
//! is at `ShapeRewriteDiff`. A background watcher (and
//! [`Recorder::refresh`]) rebuilds `tracing`'s interest cache when the set
//! changes or the last directive expires. While directives are live, each
//! request span is built and decided once; a request decided `Off` costs
//! nothing more behind [`Recorder::layer_with_baseline`].
//!
//! # Example
//! ```
//! use std::sync::Arc;
//! use osproxy_observe::{decode_directive_set, InMemoryDirectiveStore};
//! use osproxy_core::SystemClock;
//! use osproxy_tracing::Recorder;
//! use tracing_subscriber::prelude::*;
//!
//! let store = InMemoryDirectiveStore::new();
//! let body = br#"{"directives":[{"id":"acme","level":"Shape","tenant":"acme",
//!     "sample_per_mille":1000,"ttl_secs":600,"ring_buffer":true}]}"#;
//! store.publish(decode_directive_set(body, &SystemClock).map_err(|e| e.to_string())?);
//! let recorder = Recorder::builder(store.shared().clone()).build();
//! let subscriber = tracing_subscriber::registry().with(recorder.layer());
//! tracing::subscriber::with_default(subscriber, || {
//!     recorder.refresh();
//!     let span = tracing::info_span!("request", tenant = "acme", index = "", principal = "",
//!         endpoint = "search", request_id = "r-1");
//!     let _in = span.enter();
//!     tracing::info!(rows = 3, "done");
//! });
//! assert_eq!(recorder.tape().len(), 1);
//! # Ok::<(), String>(())
//! ```
#![deny(missing_docs)]

// The recorder guide's Rust blocks compile (and run) as doctests of this
// crate, so the guide cannot drift from the API it shows.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/recorder.md")]
mod recorder_guide {}

mod filter;
mod gate;
mod layer;
mod otlp;
mod payload;
mod record;
mod shape;

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use osproxy_core::Clock;
use osproxy_observe::{
    BreakGlassBuffer, Decision, DiagnosticSink, NoopDiagnosticSink, NoopExporter, RequestKeys,
    SharedDirectiveSet, SpanExporter,
};
use thread_local::ThreadLocal;
use tracing_core::Subscriber;
use tracing_subscriber::filter::Filtered;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer as _;

pub use filter::RecorderFilter;
pub use gate::GatedRecorder;
pub use layer::RecorderLayer;
pub use otlp::{ExportStats, OtlpConfig, OtlpError, OtlpExport};
pub use record::attr;

use layer::Inner;

/// The recorder: owns the decision state and the outputs; hands out its
/// layer ([`Recorder::layer`]). Cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("active", &self.is_active())
            .field("stats", &self.stats())
            .finish()
    }
}

/// The recorder's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecorderStats {
    /// Requests decided (request spans opened while active).
    pub decided: u64,
    /// Requests recorded (decided above `Off`, finished).
    pub recorded: u64,
    /// Spans queued for OTLP export.
    pub export_queued: u64,
    /// Spans dropped because the export queue was full.
    pub export_dropped: u64,
    /// Spans the collector accepted.
    pub exported: u64,
    /// Spans whose export failed.
    pub export_failed: u64,
}

/// Builds a [`Recorder`].
pub struct RecorderBuilder {
    shared: SharedDirectiveSet,
    clock: Option<Arc<dyn Clock>>,
    request_span: &'static str,
    safe: Vec<&'static str>,
    set_id: &'static str,
    tape: Option<Arc<BreakGlassBuffer>>,
    sink: Arc<dyn DiagnosticSink>,
    exporter: Arc<dyn SpanExporter>,
    otlp: Option<OtlpExport>,
    service_name: String,
    refresh_every: Option<Duration>,
    max_spans: usize,
}

impl RecorderBuilder {
    /// The clock decisions and timings read (default: [`osproxy_core::SystemClock`]).
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The name of the service's per-request span (default `request`).
    #[must_use]
    pub fn request_span(mut self, name: &'static str) -> Self {
        self.request_span = name;
        self
    }

    /// Fields whose values may be recorded (by field name); every other
    /// field is recorded as its name, type and size.
    #[must_use]
    pub fn safe_fields(mut self, names: impl IntoIterator<Item = &'static str>) -> Self {
        self.safe.extend(names);
        self
    }

    /// `feature_flag.set.id` on every record (default `osproxy.directives`).
    #[must_use]
    pub fn set_id(mut self, id: &'static str) -> Self {
        self.set_id = id;
        self
    }

    /// The instance's break-glass tape (default: a new one of 256).
    #[must_use]
    pub fn tape(mut self, tape: Arc<BreakGlassBuffer>) -> Self {
        self.tape = Some(tape);
        self
    }

    /// Where `capture: true` documents go (default: nowhere).
    #[must_use]
    pub fn sink(mut self, sink: Arc<dyn DiagnosticSink>) -> Self {
        self.sink = sink;
        self
    }

    /// The seed's export seam: OTLP/JSON payloads (default: none).
    #[must_use]
    pub fn exporter(mut self, exporter: Arc<dyn SpanExporter>) -> Self {
        self.exporter = exporter;
        self
    }

    /// The OTLP/HTTP export queue (default: none).
    #[must_use]
    pub fn otlp(mut self, otlp: OtlpExport) -> Self {
        self.otlp = Some(otlp);
        self
    }

    /// `service.name` on payloads handed to the export seam.
    #[must_use]
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = name.into();
        self
    }

    /// How often the watcher checks for a changed or expired set (default
    /// 100 ms); `None` runs no watcher (call [`Recorder::refresh`]).
    #[must_use]
    pub fn refresh_every(mut self, every: Option<Duration>) -> Self {
        self.refresh_every = every;
        self
    }

    /// Descendant spans kept per request (default 1,024); more are counted.
    #[must_use]
    pub fn max_spans_per_request(mut self, n: usize) -> Self {
        self.max_spans = n;
        self
    }

    /// The recorder, with its watcher started; already refreshed.
    pub fn build(self) -> Recorder {
        let resource = opentelemetry_sdk::Resource::builder_empty()
            .with_service_name(self.service_name)
            .build();
        let inner = Arc::new(Inner {
            dispatch: std::sync::Mutex::new(None),
            shared: self.shared,
            clock: match self.clock {
                Some(c) => layer::RecorderClock::Given(c),
                None => layer::RecorderClock::System,
            },
            request_span: self.request_span,
            safe: self.safe,
            set_id: self.set_id,
            tape: self
                .tape
                .unwrap_or_else(|| Arc::new(BreakGlassBuffer::new(256))),
            sink: self.sink,
            exporter: self.exporter,
            otlp: self.otlp,
            scope: opentelemetry::InstrumentationScope::builder("osproxy-tracing")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
            resource,
            max_spans: self.max_spans,
            active: AtomicBool::new(false),
            debug: AtomicBool::new(false),
            seen_swaps: AtomicU64::new(u64::MAX),
            readers: ThreadLocal::new(),
            keys: ThreadLocal::new(),
            seed: RandomState::new().hash_one(0x006f_7370_726f_7879_u64),
            next_id: AtomicU64::new(1),
            open: AtomicU64::new(0),
            decided: AtomicU64::new(0),
            recorded: AtomicU64::new(0),
        });
        inner.refresh();
        if let Some(every) = self.refresh_every {
            watch(Arc::downgrade(&inner), every);
        }
        Recorder { inner }
    }
}

/// Re-checks the set every `every` until the recorder is gone.
fn watch(inner: Weak<Inner>, every: Duration) {
    let spawned = std::thread::Builder::new()
        .name("osproxy-recorder-watch".into())
        .spawn(move || loop {
            std::thread::park_timeout(every);
            let Some(inner) = inner.upgrade() else {
                return;
            };
            if inner.stale() {
                inner.refresh();
            }
        });
    // Without a watcher the recorder still works; refresh() is then the
    // only way it notices a new set.
    drop(spawned);
}

impl Recorder {
    /// A builder reading directives from `shared` (a store's cell:
    /// `InMemoryDirectiveStore::shared`, the etcd store's `shared()`).
    pub fn builder(shared: SharedDirectiveSet) -> RecorderBuilder {
        RecorderBuilder {
            shared,
            clock: None,
            request_span: "request",
            safe: Vec::new(),
            set_id: "osproxy.directives",
            tape: None,
            sink: Arc::new(NoopDiagnosticSink),
            exporter: Arc::new(NoopExporter),
            otlp: None,
            service_name: "osproxy".into(),
            refresh_every: Some(Duration::from_millis(100)),
            max_spans: 1024,
        }
    }

    /// The layer with its per-layer filter, for
    /// `tracing_subscriber::registry().with(recorder.layer())`. Prefer
    /// [`Recorder::layer_with_baseline`]: with this one, while directives are
    /// live, the registry still builds the child spans of requests decided
    /// `Off` (nobody records them).
    pub fn layer<S>(&self) -> Filtered<RecorderLayer, RecorderFilter, S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        RecorderLayer(Arc::clone(&self.inner)).with_filter(RecorderFilter(Arc::clone(&self.inner)))
    }

    /// The recorder's layer acting as the subscriber's filter as well: it
    /// enables what the service's `baseline` enables or what the recorder
    /// needs, and refuses the rest before the registry builds it. Keep the
    /// same `baseline` on the service's own output layer (as its per-layer
    /// filter) and add no global filter:
    ///
    /// ```
    /// # use osproxy_observe::InMemoryDirectiveStore;
    /// # use osproxy_tracing::Recorder;
    /// use tracing_subscriber::{filter::LevelFilter, prelude::*};
    /// # let store = InMemoryDirectiveStore::new();
    /// # let recorder = Recorder::builder(store.shared().clone()).refresh_every(None).build();
    /// let baseline = LevelFilter::INFO;
    /// let subscriber = tracing_subscriber::registry()
    ///     .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink).with_filter(baseline))
    ///     .with(recorder.layer_with_baseline(baseline));
    /// # drop(subscriber);
    /// ```
    ///
    /// Prefer it to [`Recorder::layer`]: with per-layer filters alone, a
    /// request decided `Off` while directives are live still has its child
    /// spans built and its events dispatched by the registry (nobody records
    /// them; they cost microseconds). `baseline` is any per-layer filter
    /// (`LevelFilter`, `Targets`) that enables everything the service's own
    /// layers enable.
    pub fn layer_with_baseline<F>(&self, baseline: F) -> GatedRecorder<F> {
        GatedRecorder {
            layer: RecorderLayer(Arc::clone(&self.inner)),
            filter: RecorderFilter(Arc::clone(&self.inner)),
            baseline,
        }
    }

    /// Re-reads the set now (the watcher does this on its own): whether
    /// some live directive is above `Off`. Rebuilds `tracing`'s callsite
    /// interest when that changed.
    pub fn refresh(&self) -> bool {
        self.inner.refresh()
    }

    /// Whether the recorder is on (some live directive above `Off` at the
    /// last refresh).
    pub fn is_active(&self) -> bool {
        self.inner.active.load(Ordering::Acquire)
    }

    /// The decision the layer takes for a request with these identity
    /// fields, now: the thread's reader and
    /// [`osproxy_observe::DirectiveSet::decide_keys`], counted (budgets and
    /// counters) exactly as the layer counts. For services that want the
    /// decision outside a span, and for the cost benchmark.
    #[inline]
    pub fn decide(&self, request: &RequestKeys<'_>, request_id: &str) -> Decision {
        self.inner
            .with_decision(request, request_id, self.inner.clock.now(), |_, _| ())
            .0
    }

    /// The instance's break-glass tape.
    pub fn tape(&self) -> &Arc<BreakGlassBuffer> {
        &self.inner.tape
    }

    /// The recorder's counters.
    pub fn stats(&self) -> RecorderStats {
        let mut s = RecorderStats {
            decided: self.inner.decided.load(Ordering::Relaxed),
            recorded: self.inner.recorded.load(Ordering::Relaxed),
            ..RecorderStats::default()
        };
        if let Some(otlp) = &self.inner.otlp {
            let e = otlp.stats();
            s.export_queued = e.queued();
            s.export_dropped = e.dropped();
            s.exported = e.exported();
            s.export_failed = e.failed();
        }
        s
    }
}
