//! SPEC §5.2 no lost update, with writes racing `connect`: 150 stores connect
//! concurrently while a writer publishes 300 increasing sets; after the last
//! write every store serves it.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use etcd_client::Client;
use osproxy_etcd::{EtcdDirectiveStore, Layout};
use tokio::task::JoinSet;

const STORES: usize = 150;
const WRITES: usize = 300;

/// Write `i`: a set whose ids name the generation, growing from 1 to 3
/// directives so that both the value and its length change.
fn generation(i: usize) -> (Vec<String>, String) {
    let ids: Vec<String> = (0..=i % 3).map(|k| format!("g{i}-{k}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let body = set_body(&refs, 600);
    (ids, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_connecting_during_a_write_storm_all_end_on_the_last_write() {
    let cluster = EtcdCluster::single();
    let key = unique_key("race");
    let endpoints = cluster.endpoints();
    let mut writer = Client::connect(&endpoints, None)
        .await
        .expect("writer connects");
    writer
        .put(key.as_str(), generation(0).1, None)
        .await
        .expect("first write");

    let connected = Arc::new(AtomicUsize::new(0));
    let mut stores = JoinSet::new();
    let spawn_store = |stores: &mut JoinSet<_>| {
        let endpoints = endpoints.clone();
        let key = key.clone();
        let connected = Arc::clone(&connected);
        stores.spawn(async move {
            let store = EtcdDirectiveStore::builder(&endpoints, Layout::Key(key), clock())
                .connect_timeout(Duration::from_secs(30))
                .connect()
                .await
                .expect("connect");
            connected.fetch_add(1, Ordering::SeqCst);
            // The revision it read at connect (or soon after).
            let first = store.status().applied_revision;
            (store, first)
        });
    };
    // Half the stores start connecting before the storm, the rest during its
    // first half, one every other write: the connects race the writes
    // however fast this machine serves them.
    for _ in 0..STORES / 2 {
        spawn_store(&mut stores);
    }

    let mut last_revision = 0;
    for i in 1..WRITES {
        if i <= STORES && i % 2 == 0 {
            spawn_store(&mut stores);
        }
        let resp = writer
            .put(key.as_str(), generation(i).1, None)
            .await
            .expect("write");
        last_revision = resp.header().expect("header").revision();
        if i == WRITES / 2 {
            // Make sure the second half of the storm overlaps connects that
            // already finished (their watches must catch up) while others are
            // still connecting.
            let what = "a first batch of stores has connected";
            eventually(PROMPTLY, what, || async {
                connected.load(Ordering::SeqCst) >= 10
            })
            .await;
        }
    }
    let connected_during_storm = connected.load(Ordering::SeqCst);

    let mut all = Vec::with_capacity(STORES);
    while let Some(joined) = stores.join_next().await {
        all.push(joined.expect("connect task"));
    }
    assert_eq!(all.len(), STORES);
    let first_revisions: std::collections::BTreeSet<i64> = all.iter().map(|(_, r)| *r).collect();
    assert!(
        first_revisions.len() > 1 && connected_during_storm > 0,
        "the connects really raced the writes (first revisions seen: {first_revisions:?}, \
         connected while writing: {connected_during_storm})"
    );

    let (want, _) = generation(WRITES - 1);
    let what = format!("all {STORES} stores serve the last write {want:?}");
    eventually(Duration::from_secs(60), &what, || async {
        all.iter().all(|(s, _)| ids(s) == want)
    })
    .await;
    for (store, _) in &all {
        let status = store.status();
        assert_eq!(status.applied_revision, last_revision, "{status:?}");
        assert!(status.rejected.is_empty(), "{status:?}");
    }
}
