//! A real OTLP/HTTP trace receiver on a loopback port, decoding with the
//! `opentelemetry-proto` types, so tests assert on the spans a collector
//! would see rather than on what an exporter meant to send.
//!
//! It speaks enough HTTP/1.1 for an OTLP exporter: `POST /v1/traces` with a
//! `Content-Length` body, keep-alive, `application/x-protobuf` (decoded with
//! prost) or `application/json` (OTLP/JSON, decoded with the types' serde
//! mapping). Anything else gets a 4xx and is counted as rejected. Each
//! connection runs on its own thread; everything stops on drop.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// The largest body accepted (a test never sends more).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// How a request's body was encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtlpEncoding {
    /// `application/x-protobuf`.
    Protobuf,
    /// `application/json`.
    Json,
}

#[derive(Default)]
struct Received {
    requests: Mutex<Vec<(OtlpEncoding, ExportTraceServiceRequest)>>,
    rejected: AtomicU64,
}

/// A running OTLP/HTTP receiver.
pub struct OtlpReceiver {
    addr: SocketAddr,
    received: Arc<Received>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for OtlpReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpReceiver")
            .field("addr", &self.addr)
            .finish()
    }
}

impl OtlpReceiver {
    /// Starts a receiver on a free loopback port.
    ///
    /// # Panics
    /// When no loopback port can be bound.
    #[allow(clippy::expect_used)] // test support: a failure to bind is the test's failure
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("bound address");
        let received = Arc::new(Received::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (Arc::clone(&received), Arc::clone(&stop));
        let acceptor = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::Acquire) {
                    return;
                }
                if let Ok(conn) = conn {
                    let r = Arc::clone(&r);
                    std::thread::spawn(move || serve(conn, &r));
                }
            }
        });
        OtlpReceiver {
            addr,
            received,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// The traces URL: `http://127.0.0.1:<port>/v1/traces`.
    pub fn traces_url(&self) -> String {
        format!("http://{}/v1/traces", self.addr)
    }

    /// The receiver's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every export request received, decoded, with its encoding.
    pub fn requests(&self) -> Vec<(OtlpEncoding, ExportTraceServiceRequest)> {
        self.lock().clone()
    }

    /// Every span received, flattened out of its resource and scope.
    pub fn spans(&self) -> Vec<Span> {
        self.lock()
            .iter()
            .flat_map(|(_, r)| r.resource_spans.iter())
            .flat_map(|rs| rs.scope_spans.iter())
            .flat_map(|ss| ss.spans.iter().cloned())
            .collect()
    }

    /// Requests refused (bad path, method, content type or body).
    pub fn rejected(&self) -> u64 {
        self.received.rejected.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(OtlpEncoding, ExportTraceServiceRequest)>> {
        self.received
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wake the acceptor so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
    }
}

/// The string value of attribute `key`, if the span (or list) has it.
pub fn attr_str<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| match &v.value {
            Some(any_value::Value::StringValue(s)) => Some(s.as_str()),
            _ => None,
        })
}

/// The integer value of attribute `key`, if present.
pub fn attr_int(attrs: &[KeyValue], key: &str) -> Option<i64> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| match &v.value {
            Some(any_value::Value::IntValue(i)) => Some(*i),
            _ => None,
        })
}

fn serve(conn: TcpStream, received: &Received) {
    let Ok(write) = conn.try_clone() else {
        return;
    };
    let mut write = write;
    let mut reader = BufReader::new(conn);
    loop {
        let mut request_line = String::new();
        match reader.read_line(&mut request_line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut content_length = 0usize;
        let mut content_type = String::new();
        let mut close = false;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let value = value.trim();
                match name.to_ascii_lowercase().as_str() {
                    "content-length" => content_length = value.parse().unwrap_or(usize::MAX),
                    "content-type" => content_type = value.to_ascii_lowercase(),
                    "connection" => close = value.eq_ignore_ascii_case("close"),
                    _ => {}
                }
            }
        }
        if content_length > MAX_BODY {
            received.rejected.fetch_add(1, Ordering::Relaxed);
            let _ = respond(&mut write, 413, "text/plain", b"");
            return;
        }
        let mut body = vec![0; content_length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let mut parts = request_line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        if method != "POST" || path != "/v1/traces" {
            received.rejected.fetch_add(1, Ordering::Relaxed);
            let _ = respond(&mut write, 404, "text/plain", b"");
            if close {
                return;
            }
            continue;
        }
        let decoded = if content_type.starts_with("application/x-protobuf") {
            ExportTraceServiceRequest::decode(body.as_slice())
                .ok()
                .map(|r| (OtlpEncoding::Protobuf, r))
        } else if content_type.starts_with("application/json") {
            serde_json::from_slice::<ExportTraceServiceRequest>(&body)
                .ok()
                .map(|r| (OtlpEncoding::Json, r))
        } else {
            None
        };
        let Some((encoding, request)) = decoded else {
            received.rejected.fetch_add(1, Ordering::Relaxed);
            let _ = respond(&mut write, 400, "text/plain", b"");
            if close {
                return;
            }
            continue;
        };
        received
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((encoding, request));
        let ok = match encoding {
            OtlpEncoding::Protobuf => respond(&mut write, 200, "application/x-protobuf", b""),
            OtlpEncoding::Json => respond(&mut write, 200, "application/json", b"{}"),
        };
        if ok.is_err() || close {
            return;
        }
    }
}

fn respond(w: &mut TcpStream, status: u16, content_type: &str, body: &[u8]) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        _ => "Payload Too Large",
    };
    write!(
        w,
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )?;
    w.write_all(body)?;
    w.flush()
}
