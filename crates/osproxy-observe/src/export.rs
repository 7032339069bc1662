//! The span-export seam: where finished OTLP payloads go.
//!
//! Export is off the request's critical path: the caller hands a finished
//! payload to [`SpanExporter::export`], which returns at once; a concrete
//! exporter ships it in the background and its failures never reach the
//! request. A disabled exporter ([`NoopExporter`], the default) costs one
//! call: callers check [`SpanExporter::enabled`] before encoding anything.

use serde_json::Value;

/// Receives finished OTLP span payloads (OTLP/JSON `ResourceSpans`) for
/// background delivery to a collector.
///
/// Implementations must not block and must not panic: `export` is called
/// inline on the request path, so any I/O belongs on another task or thread.
pub trait SpanExporter: Send + Sync + 'static {
    /// Whether this exporter does anything; callers check it before building
    /// a payload.
    fn enabled(&self) -> bool {
        true
    }

    /// Hands off one finished payload; returns at once, delivery is
    /// best-effort.
    fn export(&self, payload: Value);
}

/// The default exporter: export is disabled, so no payload is ever built.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoopExporter;

impl SpanExporter for NoopExporter {
    fn enabled(&self) -> bool {
        false
    }

    fn export(&self, _payload: Value) {}
}
