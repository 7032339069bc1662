//! The reference data plane: a small HTTP search service recorded per
//! request by the `osproxy-tracing` recorder, with this crate's admin
//! surface beside it (`/admin/breakglass` reads its tape).
//!
//! Why it lives in the library: the example binary
//! (`examples/reference_service.rs`), `demo` and the live tests run this
//! same code, so what the README shows is what the tests check.
//!
//! The service: `GET` or `POST /{index}/_search` with `x-tenant`,
//! `x-principal` and `x-request-id` headers. It opens one `request` span per
//! request with those ids and, like a careless service, also puts the
//! `authorization` and `x-api-key` headers, the raw query and the body's
//! fields on its spans and events. Only [`SAFE_FIELDS`] are declared safe:
//! everything else reaches the recorder's tape, sink and OTLP spans as a
//! name, type and size. Its own log output (stdout, at [`BASELINE`], when
//! enabled) is the service's, not the recorder's.
//!
//! Each service has its own `tracing` dispatcher (requests run under it),
//! so several can share a process, as in `demo` and the tests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use osproxy_core::Clock;
use osproxy_observe::{BreakGlassBuffer, DiagnosticSink, NoopDiagnosticSink, SharedDirectiveSet};
use osproxy_tracing::{OtlpConfig, OtlpError, OtlpExport, Recorder};
use serde_json::{json, Value};
use tracing::instrument::WithSubscriber;
use tracing::{Dispatch, Instrument};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::prelude::*;

use crate::admin::{router, AdminOptions, AdminState, Backend};

/// The fields whose values the service declares safe to record.
pub const SAFE_FIELDS: [&str; 2] = ["status", "clauses"];

/// The service's own output level (its fmt layer's per-layer filter, and
/// the baseline it hands the recorder).
pub const BASELINE: LevelFilter = LevelFilter::INFO;

/// Most body bytes the service reads.
const MAX_BODY: usize = 64 * 1024;

/// Settings of a [`ReferenceService`].
#[derive(Clone)]
pub struct ReferenceOptions {
    /// `service.name` of exported spans.
    pub service_name: String,
    /// An OTLP/HTTP traces URL recorded spans are exported to.
    pub otlp: Option<String>,
    /// Where `capture: true` documents go.
    pub sink: Arc<dyn DiagnosticSink>,
    /// Whether the service logs to stdout at [`BASELINE`].
    pub log: bool,
    /// The admin surface's settings (`breakglass` and `recorder` are set
    /// here).
    pub admin: AdminOptions,
    /// Requests the tape keeps.
    pub tape_capacity: usize,
    /// How often the recorder checks for a changed or expired set.
    pub refresh_every: Duration,
}

impl ReferenceOptions {
    /// Defaults: no export, no sink, logging on, an open admin surface
    /// (loopback only), a tape of 256, a 100 ms refresh.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        ReferenceOptions {
            service_name: "reference-service".into(),
            otlp: None,
            sink: Arc::new(NoopDiagnosticSink),
            log: true,
            admin: AdminOptions::new(clock),
            tape_capacity: 256,
            refresh_every: Duration::from_millis(100),
        }
    }
}

/// One reference service: its routers, its recorder and its dispatcher.
#[derive(Clone, Debug)]
pub struct ReferenceService {
    recorder: Recorder,
    dispatch: Dispatch,
    service: Router,
    admin: Router,
}

#[derive(Clone)]
struct App {
    next: Arc<AtomicU64>,
    dispatch: Dispatch,
}

fn shared_of(backend: &Backend) -> SharedDirectiveSet {
    match backend {
        Backend::InMemory(store) => store.shared().clone(),
        Backend::Etcd(etcd) => etcd.store().shared().clone(),
    }
}

impl ReferenceService {
    /// A service recording against `backend`'s directives (the recorder
    /// reads the same store the admin surface serves).
    ///
    /// # Errors
    /// [`OtlpError`] when the OTLP exporter cannot start.
    pub fn new(backend: Backend, options: ReferenceOptions) -> Result<Self, OtlpError> {
        let tape = Arc::new(BreakGlassBuffer::new(options.tape_capacity));
        let mut builder = Recorder::builder(shared_of(&backend))
            .clock(Arc::clone(&options.admin.clock))
            .tape(Arc::clone(&tape))
            .sink(options.sink)
            .safe_fields(SAFE_FIELDS)
            .refresh_every(Some(options.refresh_every))
            .service_name(options.service_name.clone());
        if let Some(url) = &options.otlp {
            let mut config = OtlpConfig::new(url.clone());
            config.service_name = options.service_name;
            builder = builder.otlp(OtlpExport::start(config)?);
        }
        let recorder = builder.build();
        let log = options.log.then(|| {
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stdout)
                .with_filter(BASELINE)
        });
        // The baseline the recorder filters for besides itself: what the
        // service's own output enables (nothing when it logs nothing).
        let baseline = if options.log {
            BASELINE
        } else {
            LevelFilter::OFF
        };
        let dispatch = Dispatch::new(
            tracing_subscriber::registry()
                .with(log)
                .with(recorder.layer_with_baseline(baseline)),
        );
        let mut admin_options = options.admin;
        admin_options.breakglass = Some(tape);
        admin_options.recorder = Some(recorder.clone());
        let admin = router(AdminState::new(backend, admin_options));
        let service = Router::new()
            .route("/{index}/_search", get(search).post(search))
            .with_state(App {
                next: Arc::new(AtomicU64::new(0)),
                dispatch: dispatch.clone(),
            });
        Ok(ReferenceService {
            recorder,
            dispatch,
            service,
            admin,
        })
    }

    /// The search service's router.
    pub fn service(&self) -> Router {
        self.service.clone()
    }

    /// The admin surface's router (serve it with
    /// `serve`'s admin server or `axum::serve`).
    pub fn admin(&self) -> Router {
        self.admin.clone()
    }

    /// The recorder.
    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// The service's `tracing` dispatcher (requests run under it).
    pub fn dispatch(&self) -> &Dispatch {
        &self.dispatch
    }
}

async fn search(
    State(app): State<App>,
    Path(index): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Json<Value> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let n = app.next.fetch_add(1, Ordering::Relaxed);
    let request_id = match header("x-request-id") {
        id if id.is_empty() => format!("req-{n}"),
        id => id,
    };
    let (tenant, principal) = (header("x-tenant"), header("x-principal"));
    let query = query.unwrap_or_default();
    let span = tracing::dispatcher::with_default(&app.dispatch, || {
        tracing::info_span!(
            "request",
            tenant = tenant.as_str(),
            index = index.as_str(),
            principal = principal.as_str(),
            endpoint = "search",
            request_id = request_id.as_str(),
            // Request values a careless service puts on its spans: recorded
            // by size only, since they are not declared safe.
            authorization = header("authorization").as_str(),
            api_key = header("x-api-key").as_str(),
            query = query.as_str(),
        )
    });
    let body = handle(&index, &query, &body[..body.len().min(MAX_BODY)])
        .instrument(span)
        .with_subscriber(app.dispatch.clone())
        .await;
    Json(body)
}

async fn handle(index: &str, query: &str, body: &[u8]) -> Value {
    let clauses = {
        let _parse = tracing::info_span!("parse", bytes = query.len() + body.len()).entered();
        tracing::debug!(raw = query, "parsed the query");
        body_fields(body);
        query.split('&').filter(|c| !c.is_empty()).count()
    };
    let hits = async {
        tracing::debug!(user_id = 987_654_321u64, "resolved the caller");
        tracing::info!(status = 200u64, clauses = clauses, "searched");
        0u64
    }
    .instrument(tracing::info_span!("search", index = index))
    .await;
    json!({ "index": index, "hits": hits })
}

/// Logs each top-level field of a JSON body, value included, as a careless
/// service would (strings and numbers keep their type).
fn body_fields(body: &[u8]) {
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    for (name, value) in fields.iter().take(64) {
        match value {
            Value::String(s) => tracing::debug!(field = name.as_str(), value = s.as_str(), "body"),
            Value::Number(n) => match n.as_u64() {
                Some(u) => tracing::debug!(field = name.as_str(), value = u, "body"),
                None => tracing::debug!(field = name.as_str(), value = %n, "body"),
            },
            other => tracing::debug!(field = name.as_str(), value = %other, "body"),
        }
    }
}
