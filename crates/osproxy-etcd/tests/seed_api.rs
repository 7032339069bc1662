//! The etcd half of the seed-API check: `osproxy_etcd` exactly as its
//! published 1.0.2 docs show it (docs.rs: `EtcdDirectiveStore::connect`,
//! `impl Clone + Debug + DirectiveStore`, `EtcdError::Connect`,
//! `impl From<etcd_client::Error> for EtcdError`).
//!
//! It lives here because this crate depends on osproxy-core,
//! osproxy-observe, etcd-client and tokio, so all the seed's types are
//! nameable; osproxy-observe's tests cannot see osproxy-etcd.
//!
//! Needs no etcd: everything is compile-time, a future that is built but never
//! polled, and one connect to a loopback port where nothing listens.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::{Debug, Display};
use std::future::Future;
use std::sync::Arc;

use osproxy_core::{Clock, ManualClock, SystemClock};
use osproxy_etcd::{EtcdDirectiveStore, EtcdError};
use osproxy_observe::{DirectiveSet, DirectiveStore};

/// The seed's constructor, called exactly as its docs show it:
/// `pub async fn connect(endpoints: &[String], key: impl Into<String>,
/// clock: Arc<dyn Clock>) -> Result<Self, EtcdError>`, with both usual key
/// types, and the result used only through the seed's API. Compiled, never run.
#[allow(dead_code)]
async fn connect_like_the_seed(endpoints: Vec<String>) -> Result<usize, EtcdError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let by_str: EtcdDirectiveStore =
        EtcdDirectiveStore::connect(&endpoints, "osproxy/directives", Arc::clone(&clock)).await?;
    let by_string: EtcdDirectiveStore =
        EtcdDirectiveStore::connect(&endpoints[..], String::from("osproxy/directives"), clock)
            .await?;
    let handed_to_admin = by_str.clone();
    let set: Arc<DirectiveSet> = handed_to_admin.load();
    let _ = format!("{by_string:?}");
    Ok(set.len())
}

/// Pins the future's output type without polling it.
fn resolves_to_store<F>(future: F) -> F
where
    F: Future<Output = Result<EtcdDirectiveStore, EtcdError>>,
{
    future
}

#[test]
fn connect_builds_a_lazy_future_of_the_seed_type() {
    let endpoints = vec!["127.0.0.1:2379".to_owned()];
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new());
    let future = resolves_to_store(EtcdDirectiveStore::connect(&endpoints, "k", clock));
    // Not stated by the docs, but true of the seed's `connect` (everything it
    // holds across an await is Send) and relied on by anyone who spawns it.
    fn assert_send<T: Send>(_: &T) {}
    assert_send(&future);
    // Never polled: no runtime, no network.
    drop(future);
}

#[test]
fn the_store_and_error_have_the_seed_impls() {
    fn store_like<T: DirectiveStore + Clone + Debug + Send + Sync + 'static>() {}
    store_like::<EtcdDirectiveStore>();
    let _: fn(&EtcdDirectiveStore) -> Arc<DirectiveSet> =
        <EtcdDirectiveStore as DirectiveStore>::load;

    fn error_like<E: std::error::Error + Debug + Display + From<etcd_client::Error> + 'static>() {}
    error_like::<EtcdError>();

    // Usable behind the observe seam like any other store.
    fn takes_dyn(_: Option<Arc<dyn DirectiveStore>>) {}
    takes_dyn(None::<Arc<EtcdDirectiveStore>>.map(|s| s as Arc<dyn DirectiveStore>));
}

#[tokio::test]
async fn an_unreachable_etcd_fails_fast_with_connect() {
    // Port 1 on loopback: nothing listens, the connection is refused.
    let endpoints = vec!["127.0.0.1:1".to_owned()];
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let err = EtcdDirectiveStore::connect(&endpoints, "osproxy/directives", clock)
        .await
        .expect_err("nothing listens on 127.0.0.1:1");
    // The seed's variant; a seed program matches it with a tuple pattern.
    assert!(matches!(err, EtcdError::Connect(_)), "got {err:?}");
    if let EtcdError::Connect(cause) = &err {
        // Whatever the payload, a seed program can print it.
        let _ = format!("{cause}");
    }
    let as_error: &dyn std::error::Error = &err;
    assert!(!as_error.to_string().is_empty());
}
