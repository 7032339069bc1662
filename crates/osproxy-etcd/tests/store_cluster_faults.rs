//! SPEC §5.2 (loss of a member), §5.3 (an outage keeps the last good set) and
//! §5.9 (status during faults) on a three-member cluster: the member a store
//! uses is killed, then the whole cluster is down for 5 s and comes back.

mod common;

use std::time::Duration;

use common::*;
use osproxy_etcd::{EtcdDirectiveStore, Layout, WatchPhase};
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_member_in_use_and_then_the_whole_cluster_loses_no_update() {
    let cluster = EtcdCluster::three();
    let key = unique_key("faults");
    cluster.put(&key, &set_body(&["a"], 600));
    let store = connected_quick_store(&cluster, Layout::Key(key.clone())).await;
    let endpoint = store.status().endpoint.expect("an endpoint in use");
    let used = member_index(&cluster, &endpoint).expect("a member's endpoint");

    // 1. The member in use dies; the next publish goes through another one.
    cluster.member(used).kill();
    let other = cluster.member((used + 1) % 3);
    put_via(other, &key, &set_body(&["a", "b"], 600)).await;
    wait_ids_within(&store, &["a", "b"], PROMPTLY).await;
    let status = store.status();
    assert!(status.connected, "{status:?}");
    assert!(status.reconnects >= 1, "the loss was counted: {status:?}");
    let now_used = status
        .endpoint
        .as_deref()
        .and_then(|e| member_index(&cluster, e));
    assert_ne!(
        now_used,
        Some(used),
        "moved off the dead member: {status:?}"
    );

    // 2. The whole cluster is down for 5 s: the last good set keeps serving
    // and status says so.
    let reconnects_before = status.reconnects;
    cluster.stop_all();
    eventually(PROMPTLY, "the store notices the outage", || async {
        !store.status().connected
    })
    .await;
    let outage = Duration::from_secs(5);
    let down_since = Instant::now();
    while down_since.elapsed() < outage {
        assert_eq!(
            ids(&store),
            ["a", "b"],
            "last good set serves during the outage"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = store.status();
    assert!(!status.connected, "{status:?}");
    assert!(
        matches!(status.phase, WatchPhase::Backoff | WatchPhase::Connecting),
        "{status:?}"
    );
    assert!(status.last_error.is_some(), "{status:?}");
    assert!(
        status.staleness.is_some_and(|s| s >= outage),
        "staleness grows while etcd is away: {status:?}"
    );
    assert!(
        status.reconnects > reconnects_before + 1,
        "it keeps retrying: {status:?}"
    );

    // 3. The cluster comes back; a publish right after arrives.
    cluster.start_all();
    put_via(cluster.member(0), &key, &set_body(&["c"], 600)).await;
    wait_ids_within(&store, &["c"], PROMPTLY).await;
    let revision = mod_revision(&cluster, &key);
    eventually(
        PROMPTLY,
        "status shows the store connected again",
        || async {
            let s = store.status();
            s.connected && s.phase == WatchPhase::Watching && s.last_error.is_none()
        },
    )
    .await;
    let status = store.status();
    assert_eq!(status.applied_revision, revision, "{status:?}");
    assert!(status.reconnects > reconnects_before, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_made_while_the_store_is_disconnected_is_not_lost() {
    let cluster = EtcdCluster::three();
    let key = unique_key("faults-missed");
    cluster.put(&key, &set_body(&["a"], 600));
    let store = connected_quick_store(&cluster, Layout::Key(key.clone())).await;
    let used = member_in_use(&cluster, &store);

    // Two writes (the second a delete, then a put) land while the store has
    // no connection at all: both must be replayed from the resume point.
    cluster.stop_all();
    eventually(PROMPTLY, "the store notices the outage", || async {
        !store.status().connected
    })
    .await;
    for (i, member) in cluster.members().iter().enumerate() {
        if i != used {
            member.start();
        }
    }
    let writer = cluster.member((used + 1) % 3);
    etcdctl_retry(writer, &["del", &key]).await;
    put_via(writer, &key, &set_body(&["z"], 600)).await;
    cluster.member(used).start();
    cluster.wait_healthy();
    wait_ids_within(&store, &["z"], PROMPTLY).await;
    assert_eq!(
        store.status().applied_revision,
        mod_revision(&cluster, &key)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_loses_quorum_drops_the_watch_before_the_staleness_bound() {
    // The watch asks for a leader (require-leader): a member cut off from its
    // quorum closes it instead of leaving it silently stuck, well before the
    // default 15 s staleness bound would.
    let cluster = EtcdCluster::three();
    let key = unique_key("faults-quorum");
    cluster.put(&key, &set_body(&["a"], 600));
    let store =
        EtcdDirectiveStore::builder(&cluster.endpoints(), Layout::Key(key.clone()), clock())
            .backoff(Duration::from_millis(100), Duration::from_secs(1))
            .connect()
            .await
            .expect("connect");
    wait_status(&store, "the watch is established", PROMPTLY, |s| {
        s.connected
    })
    .await;
    let used = member_in_use(&cluster, &store);
    let lost_at = Instant::now();
    for (i, member) in cluster.members().iter().enumerate() {
        if i != used {
            member.kill();
        }
    }
    wait_status(
        &store,
        "the leaderless member's watch is dropped",
        Duration::from_secs(12),
        |s| !s.connected,
    )
    .await;
    eprintln!("watch dropped {:?} after quorum loss", lost_at.elapsed());
    assert_eq!(ids(&store), ["a"], "the last good set serves");

    for member in cluster.members() {
        if !member.is_running() {
            member.start();
        }
    }
    cluster.wait_healthy();
    put_via(cluster.member(used), &key, &set_body(&["b"], 600)).await;
    wait_ids_within(&store, &["b"], PROMPTLY).await;
    wait_status(&store, "connected again", PROMPTLY, |s| s.connected).await;
}
