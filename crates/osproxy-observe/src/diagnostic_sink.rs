//! The capture seam: where directive-selected documents leave the instance
//! (`capture: true`), keyed by trace id.
//!
//! `emit` is called inline on a request's path, so it must hand the document
//! off and return: a real sink queues it for background delivery. A disabled
//! sink (the default, [`NoopDiagnosticSink`]) lets the caller skip building
//! the document at all.

use serde_json::Value;

/// Receives directive-selected documents for delivery off the instance.
///
/// Implementations must not block and must not panic: `emit` runs on the
/// request path.
pub trait DiagnosticSink: Send + Sync + 'static {
    /// Whether this sink does anything; callers check it before building a
    /// document.
    fn enabled(&self) -> bool {
        true
    }

    /// Hands off one document; returns at once, delivery is best-effort.
    fn emit(&self, doc: Value);
}

/// The default sink: disabled, so nothing is ever built for it.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoopDiagnosticSink;

impl DiagnosticSink for NoopDiagnosticSink {
    fn enabled(&self) -> bool {
        false
    }

    fn emit(&self, _doc: Value) {}
}
