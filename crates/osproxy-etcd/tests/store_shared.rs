//! Stores of one process on the system clock decode each key revision once
//! and share the result (`follow::shared`): two stores on one key serve the
//! very same decoded set, anchored once (a `ttl_secs` value gets one expiry,
//! not one per store), while a store on its own test clock decodes alone.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::*;
use osproxy_core::{Clock, ManualClock, SystemClock};
use osproxy_etcd::{EtcdDirectiveStore, Layout};
use osproxy_observe::DirectiveStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_on_the_system_clock_share_one_decode() {
    let cluster = shared_cluster();
    let key = unique_key("shared-decode");
    let member = cluster.member(0);
    put_via(member, &key, &set_body(&["a"], 600)).await;
    // Two separately made system clocks: one timeline.
    let connect = |clock: Arc<dyn Clock>| {
        EtcdDirectiveStore::builder(&cluster.endpoints(), Layout::Key(key.clone()), clock).connect()
    };
    let one = connect(Arc::new(SystemClock)).await.unwrap();
    let two = connect(Arc::new(SystemClock)).await.unwrap();
    let manual = ManualClock::new();
    let own = connect(Arc::new(manual)).await.unwrap();
    for s in [&one, &two, &own] {
        wait_ids(s, &["a"]).await;
    }
    assert!(Arc::ptr_eq(&one.load(), &two.load()), "one decode, shared");
    assert!(
        !Arc::ptr_eq(&one.load(), &own.load()),
        "a test clock decodes alone"
    );

    // A new revision: again one decode for both, never a mix.
    put_via(member, &key, &set_body(&["b"], 600)).await;
    for s in [&one, &two, &own] {
        wait_ids(s, &["b"]).await;
    }
    assert!(Arc::ptr_eq(&one.load(), &two.load()));
    let (a, b) = (one.load(), two.load());
    assert_eq!(
        a.directives()[0].expires_at_unix_nanos,
        b.directives()[0].expires_at_unix_nanos,
        "a ttl_secs value is anchored once"
    );
}
