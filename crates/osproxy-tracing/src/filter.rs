//! The recorder's per-layer filter: what the recorder wants built.
//!
//! Why separate from the layer: the filter answers before anything exists
//! (callsite interest, `enabled`), from the recorder's switches and the one
//! thread-local depth; the layer records what was built. The combined
//! filter (`gate`) asks the same questions.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use osproxy_observe::DiagLevel;
use tracing_core::subscriber::Interest;
use tracing_core::{Level, LevelFilter, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Filter};
use tracing_subscriber::registry::{LookupSpan, SpanRef};

use crate::layer::{ChildState, Inner, RequestState};

/// Whether a descendant at `level` is recorded for a request at `diag`.
#[inline]
pub(crate) fn allows(diag: DiagLevel, level: &Level) -> bool {
    match diag {
        DiagLevel::Off => false,
        DiagLevel::Shape | DiagLevel::ShapeTiming => *level <= Level::INFO,
        DiagLevel::ShapeRewriteDiff => *level <= Level::DEBUG,
    }
}

/// The recorder's per-layer filter (see [`crate::Recorder::layer`]).
#[derive(Clone)]
pub struct RecorderFilter(pub(crate) Arc<Inner>);

impl std::fmt::Debug for RecorderFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecorderFilter")
    }
}

fn level_of<S>(span: &SpanRef<'_, S>) -> Option<DiagLevel>
where
    S: for<'a> LookupSpan<'a>,
{
    let ext = span.extensions();
    ext.get::<RequestState>()
        .map(|r| r.provenance.level)
        .or_else(|| ext.get::<ChildState>().map(|c| c.level))
}

impl<S> Filter<S> for RecorderFilter
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    #[inline]
    fn enabled(&self, meta: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        let inner = &self.0;
        if !inner.active.load(Ordering::Relaxed) {
            return false;
        }
        if inner.is_request(meta) {
            return true;
        }
        if Inner::with_depth(|d| d.get()) == 0 {
            return false;
        }
        cx.lookup_current()
            .and_then(|span| level_of(&span))
            .is_some_and(|diag| allows(diag, meta.level()))
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        let inner = &self.0;
        if !inner.active.load(Ordering::Acquire) {
            return Interest::never();
        }
        // `debug` callsites only while a live directive can record them
        // (`ShapeRewriteDiff`): interest keyed by the live set, rebuilt
        // when it changes.
        let deepest = if inner.debug.load(Ordering::Acquire) {
            Level::DEBUG
        } else {
            Level::INFO
        };
        if inner.is_request(meta) || *meta.level() <= deepest {
            Interest::sometimes()
        } else {
            Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        // DEBUG while active even without `ShapeRewriteDiff`: a service's
        // request span may be a debug span; debug callsites the live set
        // cannot record are `never` above, a cached check.
        if self.0.active.load(Ordering::Acquire) {
            Some(LevelFilter::DEBUG)
        } else {
            Some(LevelFilter::OFF)
        }
    }
}
