//! A reference data plane: a small HTTP service instrumented with the
//! `osproxy-tracing` recorder, with this crate's admin surface beside it, so
//! the whole loop can be seen on one machine.
//!
//! ```text
//! cargo run -p osproxy-directives --example reference_service -- \
//!     --listen 127.0.0.1:8080 --admin 127.0.0.1:9090 [--otlp http://127.0.0.1:4318/v1/traces]
//! ```
//!
//! Then: publish a directive through the admin surface
//! (`POST /admin/directives`, e.g. `ShapeTiming` for tenant `acme` with
//! `"ring_buffer": true`), send traffic for several tenants
//! (`GET /{index}/_search?q=…` with `x-tenant`, `x-principal`,
//! `x-request-id` and an `authorization` header), and read
//! `GET /admin/breakglass`: only the targeted tenant's requests are there,
//! each naming the directive and revision, and none of the requests' values
//! (only `status` is declared safe). With `--otlp`, the same requests arrive
//! at the collector as spans stamped `osproxy.directive.id`. After the
//! directive expires or is removed nothing more is recorded.
//!
//! The service's own output stays at its baseline (`info`, on its fmt
//! layer as a per-layer filter), whatever the directives ask. That output
//! is the service's, not the recorder's: its log lines print the span
//! fields, the careless `authorization` and `query` included, exactly as
//! they would without the recorder.
#![allow(clippy::print_stdout)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use clap::Parser;
use osproxy_core::SystemClock;
use osproxy_directives::admin::{router, AdminOptions, AdminState, Backend};
use osproxy_observe::{BreakGlassBuffer, InMemoryDirectiveStore};
use osproxy_tracing::{OtlpConfig, OtlpExport, Recorder};
use serde_json::{json, Value};
use tracing::Instrument;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::prelude::*;

/// A small HTTP service recorded per request by diagnostics directives.
#[derive(Parser, Debug)]
struct Opts {
    /// The service's address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The admin surface's address (loopback: it has no token here).
    #[arg(long, default_value = "127.0.0.1:9090")]
    admin: SocketAddr,
    /// An OTLP/HTTP traces URL to export recorded spans to.
    #[arg(long)]
    otlp: Option<String>,
}

#[derive(Clone)]
struct App {
    next: Arc<AtomicU64>,
}

async fn search(
    State(app): State<App>,
    Path(index): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
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
    let span = tracing::info_span!(
        "request",
        tenant = tenant.as_str(),
        index = index.as_str(),
        principal = principal.as_str(),
        endpoint = "search",
        request_id = request_id.as_str(),
        // Request values a careless service puts on its spans: recorded by
        // size only, since they are not declared safe.
        authorization = header("authorization").as_str(),
        query = query.as_deref().unwrap_or(""),
    );
    let body = handle(&index, query.as_deref().unwrap_or(""))
        .instrument(span)
        .await;
    Json(body)
}

async fn handle(index: &str, query: &str) -> Value {
    let parsed = {
        let _parse = tracing::info_span!("parse", bytes = query.len()).entered();
        tracing::debug!(raw = query, "parsed the query");
        query.split('&').count()
    };
    let hits = async {
        tracing::debug!(user_id = 987_654_321u64, "resolved the caller");
        tracing::info!(status = 200u64, clauses = parsed, "searched");
        0u64
    }
    .instrument(tracing::info_span!("search", index = index))
    .await;
    json!({ "index": index, "hits": hits })
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let opts = Opts::parse();
    let store = InMemoryDirectiveStore::new();
    let tape = Arc::new(BreakGlassBuffer::new(256));
    let mut builder = Recorder::builder(store.shared().clone())
        .tape(tape.clone())
        .safe_fields(["status", "clauses"])
        .service_name("reference-service");
    if let Some(url) = &opts.otlp {
        let export = OtlpExport::start(OtlpConfig::new(url.clone()))
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        builder = builder.otlp(export);
    }
    let recorder = builder.build();
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_filter(LevelFilter::INFO))
        .with(recorder.layer())
        .init();

    let mut options = AdminOptions::new(Arc::new(SystemClock));
    options.breakglass = Some(tape);
    let admin = router(AdminState::new(Backend::InMemory(store), options));
    let service = Router::new()
        .route("/{index}/_search", get(search))
        .with_state(App {
            next: Arc::new(AtomicU64::new(0)),
        });
    let admin_listener = tokio::net::TcpListener::bind(opts.admin).await?;
    let listener = tokio::net::TcpListener::bind(opts.listen).await?;
    println!(
        "service on http://{}, admin on http://{}",
        listener.local_addr()?,
        admin_listener.local_addr()?
    );
    tokio::spawn(async move { axum::serve(admin_listener, admin).await });
    axum::serve(listener, service).await
}
