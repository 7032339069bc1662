//! The seed's observation seams, written only from their published
//! signatures: `BreakGlassBuffer`, `DiagnosticSink` / `NoopDiagnosticSink`
//! and `SpanExporter` / `NoopExporter`, at the crate root, with their
//! derives and documented behaviour. Nothing of our richer API is named.
#![allow(clippy::unwrap_used, clippy::default_constructed_unit_structs)]

use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use osproxy_observe::{
    BreakGlassBuffer, DiagnosticSink, NoopDiagnosticSink, NoopExporter, SpanExporter,
};
use serde_json::{json, Value};

fn is_clone_copy_debug_default<T: Clone + Copy + Debug + Default>() {}
fn is_send_sync<T: Send + Sync + 'static>() {}

#[test]
fn signatures_are_the_seeds() {
    let _new: fn(usize) -> BreakGlassBuffer = BreakGlassBuffer::new;
    let _capture: fn(&BreakGlassBuffer, Value) = BreakGlassBuffer::capture;
    let _snapshot: fn(&BreakGlassBuffer) -> Vec<Value> = BreakGlassBuffer::snapshot;
    let _len: fn(&BreakGlassBuffer) -> usize = BreakGlassBuffer::len;
    let _is_empty: fn(&BreakGlassBuffer) -> bool = BreakGlassBuffer::is_empty;
    is_send_sync::<BreakGlassBuffer>();
    let buffer = BreakGlassBuffer::new(1);
    let _: &dyn Debug = &buffer;

    is_clone_copy_debug_default::<NoopDiagnosticSink>();
    is_clone_copy_debug_default::<NoopExporter>();
    let _: Box<dyn DiagnosticSink> = Box::new(NoopDiagnosticSink);
    let _: Box<dyn SpanExporter> = Box::new(NoopExporter);
}

#[test]
fn the_buffer_keeps_the_newest_oldest_first() {
    let buffer = BreakGlassBuffer::new(3);
    assert!(buffer.is_empty());
    for i in 0..5 {
        buffer.capture(json!({ "n": i }));
    }
    assert_eq!(buffer.len(), 3);
    assert!(!buffer.is_empty());
    let tape = buffer.snapshot();
    let ns: Vec<_> = tape.iter().map(|d| d["n"].as_i64().unwrap()).collect();
    assert_eq!(ns, [2, 3, 4]);
}

#[test]
fn a_zero_capacity_buffer_holds_one() {
    let buffer = BreakGlassBuffer::new(0);
    buffer.capture(json!("a"));
    buffer.capture(json!("b"));
    assert_eq!(buffer.snapshot(), vec![json!("b")]);
}

#[test]
fn the_buffer_is_shared_between_threads_by_reference() {
    let buffer = Arc::new(BreakGlassBuffer::new(1000));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let buffer = Arc::clone(&buffer);
            std::thread::spawn(move || {
                for i in 0..100 {
                    buffer.capture(json!([t, i]));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(buffer.len(), 400);
}

#[test]
fn the_noops_are_disabled_and_do_nothing() {
    assert!(!NoopDiagnosticSink.enabled());
    NoopDiagnosticSink::default().emit(json!({}));
    assert!(!NoopExporter.enabled());
    NoopExporter::default().export(json!({}));
}

#[derive(Default)]
struct Collect(Mutex<Vec<Value>>);

impl DiagnosticSink for Collect {
    fn emit(&self, doc: Value) {
        self.0.lock().unwrap().push(doc);
    }
}

impl SpanExporter for Collect {
    fn export(&self, payload: Value) {
        self.0.lock().unwrap().push(payload);
    }
}

#[test]
fn a_user_sink_and_exporter_are_enabled_by_default() {
    let c = Collect::default();
    assert!(DiagnosticSink::enabled(&c));
    assert!(SpanExporter::enabled(&c));
    c.emit(json!(1));
    c.export(json!(2));
    assert_eq!(*c.0.lock().unwrap(), vec![json!(1), json!(2)]);
}
