//! The reference data plane, runnable: a small HTTP search service recorded
//! per request by diagnostics directives, with the admin surface beside it
//! (the code is `osproxy_directives::reference_service`).
//!
//! ```text
//! cargo run -p osproxy-directives --example reference_service -- \
//!     --listen 127.0.0.1:8080 --admin 127.0.0.1:9090 \
//!     [--otlp http://127.0.0.1:4318/v1/traces] \
//!     [--etcd http://127.0.0.1:2379 --key /osproxy/directives]
//! ```
//!
//! Then publish a directive (`POST /admin/directives`, or
//! `osproxy-directives publish` into etcd with `--etcd`), e.g.
//! `ShapeTiming` for tenant `acme` with `"ring_buffer": true`; send traffic
//! for several tenants (`GET /{index}/_search?q=…` with `x-tenant`,
//! `x-principal`, `x-request-id` and an `authorization` header); read
//! `GET /admin/breakglass` (or the page, `/ui`): only the targeted tenant's
//! requests are there, each naming the directive and revision, and none of
//! the requests' values (only `status` and `clauses` are declared safe).
//! With `--otlp`, the same requests arrive at the collector as spans stamped
//! `osproxy.directive.id`. After the directive expires or is removed,
//! nothing more is recorded.
#![allow(clippy::print_stdout)]

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Parser;
use osproxy_core::{Clock, SystemClock};
use osproxy_directives::admin::{Backend, EtcdBackend};
use osproxy_directives::reference_service::{ReferenceOptions, ReferenceService};
use osproxy_etcd::{EtcdDirectiveStore, Layout};
use osproxy_observe::InMemoryDirectiveStore;

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
    /// etcd endpoints to read directives from (default: in memory, published
    /// through the admin surface).
    #[arg(long, value_delimiter = ',')]
    etcd: Vec<String>,
    /// The etcd key holding the directive set.
    #[arg(long, default_value = "/osproxy/directives")]
    key: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let opts = Opts::parse();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let backend = if opts.etcd.is_empty() {
        Backend::InMemory(InMemoryDirectiveStore::new())
    } else {
        let layout = Layout::Key(opts.key.clone());
        let store = EtcdDirectiveStore::builder(&opts.etcd, layout, clock.clone())
            .connect()
            .await?;
        Backend::Etcd(Box::new(EtcdBackend::new(store)))
    };
    let mut options = ReferenceOptions::new(clock);
    options.otlp = opts.otlp;
    let service = ReferenceService::new(backend, options)?;
    // The service's other logs go through the same subscriber.
    tracing::dispatcher::set_global_default(service.dispatch().clone())?;
    let admin_listener = tokio::net::TcpListener::bind(opts.admin).await?;
    let listener = tokio::net::TcpListener::bind(opts.listen).await?;
    println!(
        "service on http://{}, admin on http://{} (page: /ui)",
        listener.local_addr()?,
        admin_listener.local_addr()?
    );
    let admin = service.admin();
    tokio::spawn(async move { axum::serve(admin_listener, admin).await });
    axum::serve(listener, service.service()).await?;
    Ok(())
}
