//! The `tracing-subscriber` layer: the recorder's state, the decision per
//! request span, and the records built from what its filter (`filter`, or
//! the combined one in `gate`) let through.
//!
//! Why a filter of its own: the recorder must see a request's debug events
//! when a directive asks for them while the service's own output stays at
//! its baseline. A global filter would decide for every layer at once; the
//! recorder's filter enables what it needs besides the service's baseline.
//!
//! The cost model: while no live directive is above `Off` the filter gives
//! every callsite `Interest::never` (and a maximum level of `OFF`), so a
//! callsite nobody else wants is skipped by `tracing` itself. While some
//! directive is live, the request span is always enabled for the recorder
//! (it must see it to decide); a descendant is enabled only inside a request
//! that was decided above `Off`, which the filter learns from one
//! thread-local counter before it looks at any span.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use osproxy_core::{Clock, EndpointKind, Instant, SystemClock};
use osproxy_observe::{
    BreakGlassBuffer, Decision, DiagLevel, DiagnosticSink, DirectiveReader, RequestKeys,
    SharedDirectiveSet, SpanExporter,
};
use thread_local::ThreadLocal;
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Event, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::filter::allows;
use crate::otlp::OtlpExport;
use crate::record::{EventRec, Identity, Provenance, RequestRec, SpanRec};
use crate::shape::{Keys, ShapeVisitor};

/// Events kept per span, and descendant spans kept per request; beyond,
/// they are counted as dropped.
pub(crate) const MAX_EVENTS_PER_SPAN: usize = 256;

/// The recorder's clock: the system clock called directly (inlined on the
/// per-request path), or a given one through its trait object.
pub(crate) enum RecorderClock {
    /// [`SystemClock`].
    System,
    /// A clock given to the builder (tests: a manual clock).
    Given(Arc<dyn Clock>),
}

impl RecorderClock {
    #[inline]
    pub(crate) fn now(&self) -> Instant {
        match self {
            RecorderClock::System => SystemClock.now(),
            RecorderClock::Given(c) => c.now(),
        }
    }

    pub(crate) fn unix_nanos(&self) -> u64 {
        match self {
            RecorderClock::System => SystemClock.unix_nanos(),
            RecorderClock::Given(c) => c.unix_nanos(),
        }
    }
}

std::thread_local! {
    /// Recorded requests (of any recorder) entered on this thread: while it
    /// is zero no descendant can be recorded here, which the filter learns
    /// before it looks at any span. One per thread, not per recorder, so
    /// the check is a plain thread-local read; with several recorders in a
    /// process the span lookup behind it tells whose request it is.
    static RECORDING: Cell<u32> = const { Cell::new(0) };
}

/// Held while a recorder switches and rebuilds `tracing`'s interest cache.
static REBUILD: Mutex<()> = Mutex::new(());

pub(crate) struct Inner {
    /// The dispatcher the layer was last registered with.
    pub(crate) dispatch: Mutex<Option<tracing_core::dispatcher::WeakDispatch>>,
    pub(crate) shared: SharedDirectiveSet,
    pub(crate) clock: RecorderClock,
    pub(crate) request_span: &'static str,
    pub(crate) safe: Vec<&'static str>,
    pub(crate) set_id: &'static str,
    pub(crate) tape: Arc<BreakGlassBuffer>,
    pub(crate) sink: Arc<dyn DiagnosticSink>,
    pub(crate) exporter: Arc<dyn SpanExporter>,
    pub(crate) otlp: Option<OtlpExport>,
    pub(crate) scope: opentelemetry::InstrumentationScope,
    pub(crate) resource: opentelemetry_sdk::Resource,
    pub(crate) max_spans: usize,
    pub(crate) active: AtomicBool,
    /// Whether some live directive is at `ShapeRewriteDiff` (the only level
    /// that records `debug` spans and events) at the last refresh.
    pub(crate) debug: AtomicBool,
    pub(crate) seen_swaps: AtomicU64,
    pub(crate) readers: ThreadLocal<RefCell<DirectiveReader>>,
    pub(crate) keys: ThreadLocal<RefCell<Keys>>,
    pub(crate) seed: u64,
    pub(crate) next_id: AtomicU64,
    /// Requests decided above `Off` whose span is still open.
    pub(crate) open: AtomicU64,
    pub(crate) decided: AtomicU64,
    pub(crate) recorded: AtomicU64,
}

/// The state of a request decided above `Off`, in its span's extensions.
pub(crate) struct RequestState {
    decision: Decision,
    pub(crate) provenance: Provenance,
    identity: Identity,
    trace_id: u128,
    root: SpanRec,
    children: Vec<SpanRec>,
    dropped_spans: u32,
    start_unix_nanos: u64,
}

/// A recorded descendant, in its span's extensions.
pub(crate) struct ChildState {
    request: Id,
    pub(crate) level: DiagLevel,
    trace_id: u128,
    rec: SpanRec,
}

impl Inner {
    /// No request of this recorder is being recorded anywhere: no span can
    /// carry its state, so a callback has nothing to look up.
    #[inline]
    fn idle(&self) -> bool {
        self.open.load(Ordering::Relaxed) == 0
    }

    #[inline]
    pub(crate) fn is_request(&self, meta: &Metadata<'_>) -> bool {
        meta.is_span() && meta.name() == self.request_span
    }

    #[inline]
    pub(crate) fn with_depth<R>(f: impl FnOnce(&Cell<u32>) -> R) -> R {
        RECORDING.with(f)
    }

    /// A span of a recorded request is entered (`enter`) or left: the
    /// request depth of this thread, and busy time from ShapeTiming up.
    fn busy<S>(&self, id: &Id, ctx: &Context<'_, S>, enter: bool)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut ext = span.extensions_mut();
        if let Some(r) = ext.get_mut::<RequestState>() {
            Self::with_depth(|depth| {
                depth.set(if enter {
                    depth.get().saturating_add(1)
                } else {
                    depth.get().saturating_sub(1)
                });
            });
            if r.provenance.level >= DiagLevel::ShapeTiming {
                if enter {
                    r.root.enter(self.clock.now());
                } else {
                    r.root.exit(self.clock.now());
                }
            }
        } else if let Some(c) = ext.get_mut::<ChildState>() {
            if c.level >= DiagLevel::ShapeTiming {
                if enter {
                    c.rec.enter(self.clock.now());
                } else {
                    c.rec.exit(self.clock.now());
                }
            }
        }
    }

    fn fresh_id(&self) -> u64 {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        // splitmix64 over a per-recorder random seed: unique per recorder,
        // never zero (zero is OTLP's "no id").
        let mut z = self
            .seed
            .wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)).max(1)
    }

    /// Re-reads whether any live directive is above `Off`; rebuilds the
    /// callsite interest cache when that changed. Returns the new state.
    pub(crate) fn refresh(&self) -> bool {
        // Serialised across recorders: two rebuilds interleaving callsite by
        // callsite could leave one computed before the other's switch last.
        let _one = REBUILD.lock().unwrap_or_else(PoisonError::into_inner);
        self.seen_swaps
            .store(self.shared.swaps(), Ordering::Release);
        let set = self.shared.load_full();
        let now = self.clock.now();
        let top = if now < set.last_expiry() {
            set.directives()
                .iter()
                .filter(|d| d.is_live(now))
                .map(|d| d.level)
                .max()
                .unwrap_or(DiagLevel::Off)
        } else {
            DiagLevel::Off
        };
        let active = top > DiagLevel::Off;
        let debug = top >= DiagLevel::ShapeRewriteDiff;
        let was_debug = self.debug.swap(debug, Ordering::AcqRel);
        if self.active.swap(active, Ordering::AcqRel) != active || was_debug != debug {
            // With a single dispatcher, `tracing-core` rebuilds from the
            // calling thread's default one; the watcher thread has none (and
            // a scoped dispatcher is nobody else's default), so rebuild
            // under the dispatcher this recorder was registered with. Not
            // registered yet (or no longer): nothing to rebuild, and a
            // rebuild from here could compute `never` for another
            // dispatcher's callsites; registering rebuilds with these flags.
            let dispatch = self
                .dispatch
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
                .and_then(tracing_core::dispatcher::WeakDispatch::upgrade);
            if let Some(d) = dispatch {
                tracing_core::dispatcher::with_default(
                    &d,
                    tracing_core::callsite::rebuild_interest_cache,
                );
            }
        }
        active
    }

    /// Whether the set changed, or the live set reached its last expiry,
    /// since the last refresh.
    pub(crate) fn stale(&self) -> bool {
        if self.shared.swaps() != self.seen_swaps.load(Ordering::Acquire) {
            return true;
        }
        self.active.load(Ordering::Acquire)
            && self.clock.now() >= self.shared.load_full().last_expiry()
    }

    /// The request's decision through the thread's reader (counted as
    /// `decide` counts), and `then` applied to the set that took it.
    #[inline]
    pub(crate) fn with_decision<R>(
        &self,
        request: &RequestKeys<'_>,
        request_id: &str,
        now: Instant,
        then: impl FnOnce(&osproxy_observe::DirectiveSet, Decision) -> R,
    ) -> (Decision, R) {
        let reader = self.readers.get_or(|| RefCell::new(self.shared.reader()));
        let mut reader = reader.borrow_mut();
        let set = reader.current();
        let decision = set.decide_keys(request, now, request_id);
        self.decided.fetch_add(1, Ordering::Relaxed);
        let r = then(set, decision);
        (decision, r)
    }

    /// Takes the request's decision: reads its identity fields into the
    /// thread's buffers and decides through the thread's reader.
    fn open_request(&self, attrs: &Attributes<'_>, now: Instant) -> Option<RequestState> {
        let keys_cell = self.keys.get_or(|| RefCell::new(Keys::default()));
        let mut keys = keys_cell.borrow_mut();
        keys.clear();
        attrs.record(&mut *keys);
        let endpoint = endpoint_of(&keys.endpoint);
        let request = RequestKeys {
            tenant: keys.has_tenant.then_some(keys.tenant.as_str()),
            index: &keys.index,
            principal: &keys.principal,
            endpoint,
        };
        let (decision, provenance) =
            self.with_decision(&request, &keys.request_id, now, |set, decision| {
                if decision.level == DiagLevel::Off {
                    return None;
                }
                let winner = set.winner(&decision);
                Some(Provenance {
                    directive_id: winner.map(|w| w.id.clone()).unwrap_or_default(),
                    revision: decision.revision,
                    key_id: set.key_id().map(str::to_owned),
                    level: decision.level,
                    sampled: winner.is_some_and(|w| w.sample_per_mille < 1000),
                    set_id: self.set_id,
                })
            });
        let provenance = provenance?;
        let identity = Identity {
            tenant: request.tenant.map(str::to_owned),
            index: keys.index.clone(),
            principal: keys.principal.clone(),
            endpoint: endpoint.as_str(),
            request_id: keys.request_id.clone(),
        };
        drop(keys);
        let mut fields = Vec::new();
        attrs.record(&mut ShapeVisitor {
            safe: &self.safe,
            out: &mut fields,
        });
        let meta = attrs.metadata();
        let trace_id = (u128::from(self.fresh_id()) << 64) | u128::from(self.fresh_id());
        Some(RequestState {
            decision,
            provenance,
            identity,
            trace_id,
            root: SpanRec {
                span_id: self.fresh_id(),
                parent_id: 0,
                name: meta.name(),
                target: meta.target(),
                level: *meta.level(),
                fields,
                events: Vec::new(),
                start: now,
                end: now,
                busy: std::time::Duration::ZERO,
                entered: None,
            },
            children: Vec::new(),
            dropped_spans: 0,
            start_unix_nanos: self.clock.unix_nanos(),
        })
    }

    fn finish(&self, state: RequestState) {
        let rec = RequestRec {
            trace_id: state.trace_id,
            identity: state.identity,
            provenance: state.provenance,
            root: state.root,
            children: state.children,
            start_unix_nanos: state.start_unix_nanos,
            dropped_spans: state.dropped_spans,
        };
        let wants_sink = state.decision.capture && self.sink.enabled();
        if state.decision.ring_buffer || wants_sink {
            let doc = rec.document();
            if wants_sink {
                self.sink.emit(doc.clone());
            }
            if state.decision.ring_buffer {
                self.tape.capture(doc);
            }
        }
        let wants_seam = self.exporter.enabled();
        if self.otlp.is_some() || wants_seam {
            let spans = rec.spans(&self.scope);
            if wants_seam {
                self.exporter
                    .export(crate::payload::otlp_json(spans.clone(), &self.resource));
            }
            if let Some(otlp) = &self.otlp {
                otlp.send(spans);
            }
        }
        self.recorded.fetch_add(1, Ordering::Relaxed);
    }
}

/// The endpoint kind a span names: its wire name, in any case (`Search`,
/// `search`); anything else is `Unknown`.
fn endpoint_of(name: &str) -> EndpointKind {
    EndpointKind::from_name(name)
        .or_else(|| {
            EndpointKind::ALL
                .into_iter()
                .find(|e| e.as_str().eq_ignore_ascii_case(name))
        })
        .unwrap_or(EndpointKind::Unknown)
}

/// The recorder's layer (see [`crate::Recorder::layer`]).
#[derive(Clone)]
pub struct RecorderLayer(pub(crate) Arc<Inner>);

impl std::fmt::Debug for RecorderLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecorderLayer")
    }
}

impl<S> Layer<S> for RecorderLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_register_dispatch(&self, subscriber: &tracing_core::Dispatch) {
        *self
            .0
            .dispatch
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(subscriber.downgrade());
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let inner = &self.0;
        if inner.is_request(attrs.metadata()) {
            // Behind a combined filter (`Recorder::layer_with_baseline`) the
            // service's baseline alone can build a request span: decide only
            // while some directive is live, as the per-layer filter does.
            if !inner.active.load(Ordering::Relaxed) {
                return;
            }
            let Some(span) = ctx.span(id) else {
                return;
            };
            let now = inner.clock.now();
            if let Some(state) = inner.open_request(attrs, now) {
                span.extensions_mut().insert(state);
                inner.open.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        if inner.idle() {
            return;
        }
        let Some(span) = ctx.span(id) else {
            return;
        };
        let Some(parent) = span.parent() else {
            return;
        };
        let found = {
            let ext = parent.extensions();
            if let Some(r) = ext.get::<RequestState>() {
                Some((parent.id(), r.provenance.level, r.trace_id, r.root.span_id))
            } else {
                ext.get::<ChildState>()
                    .map(|c| (c.request.clone(), c.level, c.trace_id, c.rec.span_id))
            }
        };
        let Some((request, level, trace_id, parent_id)) = found else {
            return;
        };
        let meta = attrs.metadata();
        if !allows(level, meta.level()) {
            return;
        }
        let now = inner.clock.now();
        let mut fields = Vec::new();
        attrs.record(&mut ShapeVisitor {
            safe: &inner.safe,
            out: &mut fields,
        });
        let rec = SpanRec {
            span_id: inner.fresh_id(),
            parent_id,
            name: meta.name(),
            target: meta.target(),
            level: *meta.level(),
            fields,
            events: Vec::new(),
            start: now,
            end: now,
            busy: std::time::Duration::ZERO,
            entered: None,
        };
        span.extensions_mut().insert(ChildState {
            request,
            level,
            trace_id,
            rec,
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if self.0.idle() {
            return;
        }
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut ext = span.extensions_mut();
        let fields = if let Some(r) = ext.get_mut::<RequestState>() {
            &mut r.root.fields
        } else if let Some(c) = ext.get_mut::<ChildState>() {
            &mut c.rec.fields
        } else {
            return;
        };
        values.record(&mut ShapeVisitor {
            safe: &self.0.safe,
            out: fields,
        });
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if self.0.idle() {
            return;
        }
        let Some(span) = ctx.event_span(event) else {
            return;
        };
        let mut ext = span.extensions_mut();
        let (diag, events) = if let Some(r) = ext.get_mut::<RequestState>() {
            (r.provenance.level, &mut r.root.events)
        } else if let Some(c) = ext.get_mut::<ChildState>() {
            (c.level, &mut c.rec.events)
        } else {
            return;
        };
        if !allows(diag, event.metadata().level()) || events.len() >= MAX_EVENTS_PER_SPAN {
            return;
        }
        let mut fields = Vec::new();
        event.record(&mut ShapeVisitor {
            safe: &self.0.safe,
            out: &mut fields,
        });
        let meta = event.metadata();
        events.push(EventRec {
            name: meta.name(),
            target: meta.target(),
            level: *meta.level(),
            fields,
            at: self.0.clock.now(),
        });
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        if !self.0.idle() {
            self.0.busy(id, &ctx, true);
        }
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        if !self.0.idle() {
            self.0.busy(id, &ctx, false);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let inner = &self.0;
        if inner.idle() {
            return;
        }
        let Some(span) = ctx.span(&id) else {
            return;
        };
        let now = inner.clock.now();
        let (request, child) = {
            let mut ext = span.extensions_mut();
            (ext.remove::<RequestState>(), ext.remove::<ChildState>())
        };
        if let Some(mut state) = request {
            state.root.exit(now);
            state.root.end = now;
            inner.open.fetch_sub(1, Ordering::Relaxed);
            inner.finish(state);
        } else if let Some(mut child) = child {
            child.rec.exit(now);
            child.rec.end = now;
            let Some(request) = ctx.span(&child.request) else {
                return;
            };
            let mut ext = request.extensions_mut();
            if let Some(r) = ext.get_mut::<RequestState>() {
                if r.children.len() < inner.max_spans {
                    r.children.push(child.rec);
                } else {
                    r.dropped_spans = r.dropped_spans.saturating_add(1);
                }
            }
        }
    }
}
