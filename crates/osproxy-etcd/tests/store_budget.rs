//! SPEC §8 budgets on a live store: a `max_per_sec: 100` directive published
//! through etcd and hit by a bounded burst (about 2,000 requests a second for
//! three seconds on one instance) applies to 100 ± 10 requests in every whole
//! second; the rest evaluate as if it did not apply (a lower directive wins),
//! and its counters say so.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use osproxy_core::{Clock, EndpointKind, PartitionId, RequestId, SystemClock};
use osproxy_observe::{DiagLevel, DirectiveStore, RequestAttrs};

const SET: &str = r#"{"directives":[
  {"id":"budgeted","level":"ShapeTiming","tenant":"acme","ttl_secs":600,"max_per_sec":100},
  {"id":"floor","level":"Shape","tenant":"acme","ttl_secs":600}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_of_100_per_second_applies_to_100_requests_a_second() {
    let cluster = shared_cluster();
    let key = unique_key("budget");
    put_via(cluster.member(0), &key, SET).await;
    let store = key_store(cluster, &key).await;
    wait_ids(&store, &["budgeted", "floor"]).await;
    let set = store.load();

    let per_second = tokio::task::spawn_blocking(move || {
        let clock = SystemClock;
        let tenant = PartitionId::from("acme");
        let attrs = RequestAttrs::new(EndpointKind::Search).with_tenant(&tenant);
        let start = clock.now();
        let mut windows: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
        // Bounded: 3 s of requests, at most 10,000 of them, paced at about
        // 2,000 a second (20 per 10 ms).
        for i in 0..10_000u64 {
            let now = clock.now();
            if now.saturating_duration_since(start) > Duration::from_secs(3) {
                break;
            }
            let id = RequestId::from(format!("r-{i}").as_str());
            let d = set.decide(&attrs, now, &id);
            let w = windows.entry(now.as_nanos() / 1_000_000_000).or_default();
            w.1 += 1;
            match set.winner(&d).map(|w| w.id.as_str()) {
                Some("budgeted") => {
                    assert_eq!(d.level, DiagLevel::ShapeTiming);
                    w.0 += 1;
                }
                Some("floor") => assert_eq!(d.level, DiagLevel::Shape),
                other => panic!("unexpected winner {other:?}"),
            }
            if i % 20 == 19 {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        (windows, set)
    })
    .await
    .unwrap();
    let (windows, set) = per_second;
    let whole: Vec<(u64, u64)> = windows
        .values()
        .copied()
        .collect::<Vec<_>>()
        .iter()
        .skip(1)
        .rev()
        .skip(1)
        .copied()
        .collect();
    assert!(!whole.is_empty(), "no whole second in {windows:?}");
    for (applied, requests) in &whole {
        assert!(
            *requests > 300,
            "the burst was too slow to test the budget: {windows:?}"
        );
        assert!(
            (90..=110).contains(applied),
            "{applied} of {requests} in one second: {windows:?}"
        );
    }
    let counts = set.counts(0);
    let total: u64 = windows.values().map(|w| w.1).sum();
    assert_eq!(counts.applied + counts.over_budget, total);
    assert_eq!(counts.applied, windows.values().map(|w| w.0).sum::<u64>());
    assert_eq!(
        set.counts(1).applied,
        total,
        "the floor applies to every request"
    );
}
