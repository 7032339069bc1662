//! The recorder as the subscriber's combined filter: the service's baseline
//! or the recorder, and nothing else is built.
//!
//! Why: with per-layer filters only, `tracing-subscriber`'s registry builds
//! a span (and dispatches an event) whenever its callsite's interest is
//! `sometimes` and not every one of 64 filter slots said no — so two
//! per-layer filters that both refuse a request's child spans do not stop
//! them. While directives are live the recorder's interest in those
//! callsites is `sometimes`, and a request decided `Off` then paid for
//! spans nobody records. Given the service's baseline, this layer answers
//! for both as a plain (global) filter: a span or event neither the
//! baseline nor the recorder wants is refused before the registry builds
//! it. The service keeps the same baseline on its own output layer.

use tracing_core::span::{Attributes, Id, Record};
use tracing_core::subscriber::Interest;
use tracing_core::{Event, LevelFilter, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Filter, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::filter::RecorderFilter;
use crate::layer::RecorderLayer;

/// The recorder's layer acting as the subscriber's filter too, see
/// [`crate::Recorder::layer_with_baseline`].
#[derive(Clone)]
pub struct GatedRecorder<F> {
    pub(crate) layer: RecorderLayer,
    pub(crate) filter: RecorderFilter,
    pub(crate) baseline: F,
}

impl<F> std::fmt::Debug for GatedRecorder<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GatedRecorder")
    }
}

/// The union of two filters' interests: `never` only when both are.
fn union(a: Interest, b: Interest) -> Interest {
    if a.is_always() || b.is_always() {
        Interest::always()
    } else if a.is_sometimes() || b.is_sometimes() {
        Interest::sometimes()
    } else {
        Interest::never()
    }
}

impl<S, F> Layer<S> for GatedRecorder<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    F: Filter<S> + 'static,
{
    fn on_register_dispatch(&self, subscriber: &tracing_core::Dispatch) {
        Layer::<S>::on_register_dispatch(&self.layer, subscriber);
    }

    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        union(
            self.baseline.callsite_enabled(meta),
            Filter::<S>::callsite_enabled(&self.filter, meta),
        )
    }

    #[inline]
    fn enabled(&self, meta: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        self.baseline.enabled(meta, &ctx) || self.filter.enabled(meta, &ctx)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        let ours = Filter::<S>::max_level_hint(&self.filter);
        match (self.baseline.max_level_hint(), ours) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        }
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        self.layer.on_new_span(attrs, id, ctx);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        self.layer.on_record(id, values, ctx);
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        self.layer.on_event(event, ctx);
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        self.layer.on_enter(id, ctx);
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        self.layer.on_exit(id, ctx);
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        self.layer.on_close(id, ctx);
    }
}
