//! The break-glass tape: a bounded, in-order ring of recent request records,
//! kept only when a directive asks for it (`ring_buffer: true`).
//!
//! Why a ring and not a store keyed by request id: an operator turns it on
//! when a class of requests misbehaves and the ids are not known up front;
//! reading the last N matching requests back is the point. It lives on the
//! instance that handled the requests and is bounded, so it costs nothing
//! until used and cannot grow once on. It holds whatever documents it is
//! given: the recorders that feed it build shape-only documents (ids, names,
//! sizes, durations), so the tape can reveal no request value.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde_json::Value;

/// A bounded in-memory ring of recent explanation documents, captured on
/// demand. Shared between threads by `&self` (put it in an `Arc`).
#[derive(Debug)]
pub struct BreakGlassBuffer {
    capacity: usize,
    entries: Mutex<VecDeque<Value>>,
}

impl BreakGlassBuffer {
    /// Creates a buffer holding at most `capacity` recent captures. A zero
    /// capacity holds one, so a flipped directive always keeps at least the
    /// most recent request.
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        BreakGlassBuffer {
            capacity,
            // Grown on demand: a large tape that is never used costs nothing.
            entries: Mutex::new(VecDeque::new()),
        }
    }

    /// Captures one document, evicting the oldest when full.
    pub fn capture(&self, doc: Value) {
        let mut entries = self.lock();
        while entries.len() >= self.capacity {
            entries.pop_front();
        }
        entries.push_back(doc);
    }

    /// A copy of the tape, oldest first.
    pub fn snapshot(&self) -> Vec<Value> {
        self.lock().iter().cloned().collect()
    }

    /// How many captures the tape holds.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the tape is empty.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// The most captures the tape holds (at least 1).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Value>> {
        // A panic while holding the lock can only have happened between
        // whole-entry pushes and pops: the queue itself stays consistent.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_empty_buffer_has_no_captures() {
        let buf = BreakGlassBuffer::new(4);
        assert!(buf.is_empty());
        assert_eq!(buf.len(), 0);
        assert!(buf.snapshot().is_empty());
    }

    #[test]
    fn the_oldest_is_evicted_past_capacity() {
        let buf = BreakGlassBuffer::new(2);
        for id in ["a", "b", "c"] {
            buf.capture(json!({ "request_id": id }));
        }
        let tape = buf.snapshot();
        assert_eq!(tape.len(), 2);
        assert_eq!(tape[0]["request_id"], "b");
        assert_eq!(tape[1]["request_id"], "c");
    }

    #[test]
    fn a_zero_capacity_holds_one() {
        let buf = BreakGlassBuffer::new(0);
        buf.capture(json!({ "request_id": "x" }));
        buf.capture(json!({ "request_id": "y" }));
        assert_eq!(buf.len(), 1);
        assert_eq!(buf.snapshot()[0]["request_id"], "y");
        assert_eq!(buf.capacity(), 1);
    }
}
