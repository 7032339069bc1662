//! SPEC §8 capture safety on a live etcd: the fail-safe withholds a capture
//! directive once the store has gone `failsafe_after` without confirmation
//! (etcd stopped, or a frozen connection) and applies it again, with its
//! original expiry, when etcd is back; local ceilings clamp what the fleet
//! publishes and report it.

// Test helpers: a failed step is a failed test.
#![allow(clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use osproxy_etcd::{Ceilings, Clamp, ClampedDirective, EtcdDirectiveStore, Layout, StoreStatus};
use osproxy_observe::{DiagLevel, DirectiveStore};

/// The fail-safe wait the tests configure: below the staleness bound, so a
/// frozen connection engages it while the store still holds the connection.
const FAILSAFE_AFTER: Duration = Duration::from_millis(1500);

/// A plain `Shape` directive and a capture one, both living ten minutes
/// (relative lifetimes: the store anchors them once, when it first reads
/// them, and must never re-anchor them).
const BODY: &str = r#"{"directives":[
  {"id":"shape","level":"Shape","tenant":"acme","ttl_secs":600},
  {"id":"cap","level":"Shape","tenant":"acme","capture":true,"ttl_secs":600}
]}"#;

/// The capture directive's expiry as served: (monotonic, wall-clock).
fn cap_expiry(store: &EtcdDirectiveStore) -> (u64, Option<u64>) {
    let set = store.load();
    let cap = set.get("cap").expect("cap is served");
    (cap.expires_at.as_nanos(), cap.expires_at_unix_nanos)
}

fn engaged(s: &StoreStatus) -> bool {
    s.failsafe && s.failsafe_since_unix_nanos.is_some() && s.failsafe_withheld == 1
}

/// Waits until the fail-safe withholds `cap`, checks it engaged no sooner
/// than `FAILSAFE_AFTER` after the last confirmation, then restores etcd
/// with `restore` and checks `cap` is back with its original expiry.
async fn withholds_then_restores(store: &EtcdDirectiveStore, restore: impl FnOnce()) {
    let before = cap_expiry(store);
    wait_status(store, "the fail-safe engages", PROMPTLY, engaged).await;
    assert_eq!(ids(store), ["shape"], "only the capture directive stops");
    let s = store.status();
    let (since, confirmed) = (
        s.failsafe_since_unix_nanos.expect("since"),
        s.last_confirmed_unix_nanos.expect("confirmed once"),
    );
    let waited = Duration::from_nanos(since.saturating_sub(confirmed));
    assert!(waited >= FAILSAFE_AFTER, "engaged after {waited:?}: {s:?}");

    restore();
    wait_status(store, "the fail-safe releases", PROMPTLY, |s| {
        !s.failsafe && s.failsafe_since_unix_nanos.is_none() && s.failsafe_withheld == 0
    })
    .await;
    wait_ids(store, &["shape", "cap"]).await;
    assert_eq!(
        cap_expiry(store),
        before,
        "the original expiry, not re-anchored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_stopped_engages_the_failsafe_and_its_return_releases_it() {
    let cluster = EtcdCluster::single();
    let key = unique_key("failsafe-stopped");
    cluster.put(&key, BODY);
    let store = connect_watching(
        quick(&cluster.endpoints(), Layout::Key(key.clone())).failsafe_after(FAILSAFE_AFTER),
    )
    .await;
    wait_ids(&store, &["shape", "cap"]).await;
    assert!(!store.status().failsafe);

    cluster.stop_all();
    withholds_then_restores(&store, || cluster.start_all()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_connection_engages_the_failsafe_and_thawing_releases_it() {
    let cluster = shared_cluster();
    let proxy = TcpForwarder::start(cluster.member(0).client_addr());
    let key = unique_key("failsafe-frozen");
    cluster.put(&key, BODY);
    let store = connect_watching(
        quick(&[proxy.endpoint()], Layout::Key(key.clone())).failsafe_after(FAILSAFE_AFTER),
    )
    .await;
    wait_ids(&store, &["shape", "cap"]).await;

    proxy.freeze();
    withholds_then_restores(&store, || proxy.thaw()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prefix_layout_withholds_and_restores_alike() {
    let cluster = shared_cluster();
    let proxy = TcpForwarder::start(cluster.member(0).client_addr());
    let prefix = format!("{}/", unique_key("failsafe-prefix"));
    cluster.put(&format!("{prefix}shape"), &directive_body("shape", 600));
    cluster.put(
        &format!("{prefix}cap"),
        r#"{"id":"cap","level":"Shape","capture":true,"ttl_secs":600}"#,
    );
    let store = connect_watching(
        quick(&[proxy.endpoint()], Layout::Prefix(prefix)).failsafe_after(FAILSAFE_AFTER),
    )
    .await;
    // The prefix layout lists keys in key order.
    wait_ids(&store, &["cap", "shape"]).await;
    let before = cap_expiry(&store);
    proxy.freeze();
    wait_status(&store, "the fail-safe engages", PROMPTLY, engaged).await;
    assert_eq!(ids(&store), ["shape"]);
    proxy.thaw();
    wait_status(&store, "the fail-safe releases", PROMPTLY, |s| !s.failsafe).await;
    wait_ids(&store, &["cap", "shape"]).await;
    assert_eq!(cap_expiry(&store), before, "the original expiry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failsafe_level_keeps_what_is_at_or_below_it() {
    let cluster = shared_cluster();
    let proxy = TcpForwarder::start(cluster.member(0).client_addr());
    let key = unique_key("failsafe-level");
    // set_body's directives are ShapeTiming: above the default level.
    cluster.put(&key, &set_body(&["a", "b"], 600));
    let store = connect_watching(
        quick(&[proxy.endpoint()], Layout::Key(key.clone()))
            .failsafe_after(FAILSAFE_AFTER)
            .failsafe_level(DiagLevel::ShapeTiming),
    )
    .await;
    wait_ids(&store, &["a", "b"]).await;
    proxy.freeze();
    wait_status(&store, "the fail-safe engages", PROMPTLY, |s| s.failsafe).await;
    assert_eq!(
        ids(&store),
        ["a", "b"],
        "nothing above ShapeTiming to withhold"
    );
    assert_eq!(store.status().failsafe_withheld, 0);
    proxy.thaw();
    wait_status(&store, "the fail-safe releases", PROMPTLY, |s| !s.failsafe).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_failsafe_the_last_good_set_keeps_serving() {
    let cluster = shared_cluster();
    let proxy = TcpForwarder::start(cluster.member(0).client_addr());
    let key = unique_key("failsafe-off");
    cluster.put(&key, BODY);
    let store = connect_watching(quick(&[proxy.endpoint()], Layout::Key(key.clone()))).await;
    wait_ids(&store, &["shape", "cap"]).await;
    proxy.freeze();
    // Stale past the staleness bound: the store has noticed and reconnects.
    wait_status(&store, "the store notices", PROMPTLY, |s| {
        s.staleness.is_some_and(|st| st > QUICK_STALE_AFTER)
    })
    .await;
    assert_eq!(ids(&store), ["shape", "cap"], "the seed's semantics");
    assert!(!store.status().failsafe);
    proxy.thaw();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ceilings_clamp_a_published_set_and_report_each_clamp() {
    let cluster = shared_cluster();
    let key = unique_key("ceilings");
    let ceilings = Ceilings {
        max_level: Some(DiagLevel::ShapeTiming),
        max_sample_per_mille: Some(100),
        capture_allowed: false,
        ..Ceilings::NONE
    };
    let store =
        connect_watching(quick(&cluster.endpoints(), Layout::Key(key.clone())).ceilings(ceilings))
            .await;
    cluster.put(
        &key,
        r#"{"directives":[
          {"id":"diff","level":"ShapeRewriteDiff","tenant":"acme","sample_per_mille":500,"capture":true,"ring_buffer":true,"ttl_secs":600},
          {"id":"low","level":"Shape","tenant":"acme","sample_per_mille":50,"ttl_secs":600}
        ]}"#,
    );
    wait_ids(&store, &["diff", "low"]).await;
    let set = store.load();
    let diff = set.get("diff").expect("clamped, not dropped");
    assert_eq!(diff.level, DiagLevel::ShapeTiming);
    assert_eq!(diff.sample_per_mille, 100);
    assert!(!diff.capture);
    assert!(diff.ring_buffer, "the ring buffer is allowed here");
    let low = set.get("low").expect("low");
    assert_eq!((low.level, low.sample_per_mille), (DiagLevel::Shape, 50));
    assert_eq!(
        store.status().clamped,
        vec![ClampedDirective {
            id: "diff".into(),
            clamps: vec![Clamp::Level, Clamp::SamplePerMille, Clamp::Capture],
        }]
    );

    // A set within the ceilings clears the report.
    cluster.put(
        &key,
        r#"{"directives":[{"id":"a","level":"Shape","sample_per_mille":10,"ttl_secs":600}]}"#,
    );
    wait_ids(&store, &["a"]).await;
    wait_status(&store, "no clamp left", PROMPTLY, |s| s.clamped.is_empty()).await;
}

#[tokio::test]
async fn a_zero_failsafe_wait_or_an_impossible_ceiling_is_a_config_error() {
    let endpoints = [unused_endpoint()];
    let builder = || quick(&endpoints, Layout::Key(unique_key("failsafe-config")));
    let zero = builder().failsafe_after(Duration::ZERO).connect().await;
    assert!(
        matches!(zero, Err(osproxy_etcd::EtcdError::Config(_))),
        "{zero:?}"
    );
    let ceilings = Ceilings {
        max_sample_per_mille: Some(1001),
        ..Ceilings::NONE
    };
    let over = builder().ceilings(ceilings).connect().await;
    assert!(
        matches!(over, Err(osproxy_etcd::EtcdError::Config(_))),
        "{over:?}"
    );
}
