//! Shared helpers for the live etcd store tests.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use osproxy_core::{Clock, SystemClock};
use osproxy_etcd::{EtcdDirectiveStore, Layout};
use osproxy_observe::DirectiveStore;
pub use osproxy_test_support::{eventually, unique_key, EtcdCluster};

/// Generous bound for anything that should happen "promptly" on a loaded
/// 2-core machine.
pub const PROMPTLY: Duration = Duration::from_secs(20);

/// The system clock, shared.
pub fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// A set body with one directive per id, each living `ttl` seconds.
pub fn set_body(ids: &[&str], ttl: u64) -> String {
    let list: Vec<String> = ids
        .iter()
        .map(|id| {
            format!(r#"{{"id":"{id}","level":"ShapeTiming","tenant":"t-{id}","ttl_secs":{ttl}}}"#)
        })
        .collect();
    format!(r#"{{"directives":[{}]}}"#, list.join(","))
}

/// One directive object (prefix layout value).
pub fn directive_body(id: &str, ttl: u64) -> String {
    format!(r#"{{"id":"{id}","level":"Shape","tenant":"t-{id}","ttl_secs":{ttl}}}"#)
}

/// The ids a store currently serves, in order.
pub fn ids(store: &impl DirectiveStore) -> Vec<String> {
    store
        .load()
        .directives()
        .iter()
        .map(|d| d.id.clone())
        .collect()
}

/// Waits until the store serves exactly `want` ids.
pub async fn wait_ids(store: &impl DirectiveStore, want: &[&str]) {
    let what = format!("store serves {want:?}");
    eventually(PROMPTLY, &what, || async { ids(store) == want }).await;
}

/// A single-key store on `cluster` with quick staleness settings for tests.
pub async fn key_store(cluster: &EtcdCluster, key: &str) -> EtcdDirectiveStore {
    EtcdDirectiveStore::builder(&cluster.endpoints(), Layout::Key(key.to_owned()), clock())
        .connect()
        .await
        .expect("connect")
}
