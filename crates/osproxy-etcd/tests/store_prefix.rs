//! SPEC §5.10 the prefix layout: one directive per key, added and removed
//! independently; a prefix ends in `/` and each key holds the directive its
//! suffix names; a malformed key is rejected alone and reported while the
//! others apply (§5.3 per key: a malformed update keeps that key's last good
//! directive); an empty prefix is the empty set (§5.4); and a key bound to an
//! etcd lease disappears from the store when etcd expires the lease.

mod common;

use common::*;
use osproxy_etcd::config::ConnectionConfig;
use osproxy_etcd::{ConfigError, EtcdDirectiveStore, EtcdError, Layout, PublishError, Publisher};
use osproxy_observe::{DiagLevel, DirectiveStore};

fn prefix() -> String {
    format!("{}/", unique_key("prefix"))
}

#[allow(clippy::expect_used)] // a test helper: a failure fails the test
async fn prefix_store(cluster: &EtcdCluster, prefix: &str) -> EtcdDirectiveStore {
    quick(&cluster.endpoints(), Layout::Prefix(prefix.to_owned()))
        .connect()
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directives_are_added_and_removed_independently() {
    let cluster = EtcdCluster::single();
    let p = prefix();
    // A sibling key that shares the prefix's text but not its slash, and
    // the prefix itself without the slash: neither is under the prefix.
    cluster.put(p.trim_end_matches('/'), &directive_body("outside", 600));
    cluster.put(
        &format!("{}-sibling", p.trim_end_matches('/')),
        &directive_body("sib", 600),
    );

    let store = prefix_store(&cluster, &p).await;
    assert!(store.load().is_empty(), "an empty prefix is the empty set");

    cluster.put(&format!("{p}a"), &directive_body("a", 600));
    wait_ids(&store, &["a"]).await;
    cluster.put(&format!("{p}b"), &directive_body("b", 600));
    wait_ids(&store, &["a", "b"]).await;
    cluster.etcdctl(&["del", &format!("{p}a")]);
    wait_ids(&store, &["b"]).await;
    cluster.put(&format!("{p}c"), &directive_body("c", 600));
    wait_ids(&store, &["b", "c"]).await;
    // Updating one key leaves the others alone.
    cluster.put(
        &format!("{p}c"),
        r#"{"id":"c","level":"ShapeRewriteDiff","ttl_secs":600}"#,
    );
    eventually(PROMPTLY, "c is updated", || async {
        store
            .load()
            .get("c")
            .is_some_and(|d| d.level == DiagLevel::ShapeRewriteDiff)
    })
    .await;
    assert_eq!(ids(&store), ["b", "c"]);

    // Removing everything under the prefix at once: delete means off.
    cluster.etcdctl(&["del", &p, "--prefix"]);
    wait_ids(&store, &[]).await;
    assert!(store.status().rejected.is_empty());
    assert!(store.status().connected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_key_is_rejected_alone_and_reported() {
    let cluster = EtcdCluster::single();
    let p = prefix();
    cluster.put(&format!("{p}a"), &directive_body("a", 600));
    cluster.put(&format!("{p}bad"), "not json");
    cluster.put(&format!("{p}c"), &directive_body("c", 600));

    // At connect: the bad key is reported, the others apply.
    let store = prefix_store(&cluster, &p).await;
    assert_eq!(ids(&store), ["a", "c"]);
    assert_eq!(rejections(&store), [(format!("{p}bad"), "malformed_json")]);

    // While running: another bad key, rejected alone.
    cluster.put(
        &format!("{p}typo"),
        r#"{"id":"typo","level":"Shape","tennant":"acme","ttl_secs":60}"#,
    );
    eventually(PROMPTLY, "the typo is reported", || async {
        rejections(&store).len() == 2
    })
    .await;
    assert_eq!(
        rejections(&store),
        [
            (format!("{p}bad"), "malformed_json"),
            (format!("{p}typo"), "unknown_field")
        ]
    );
    assert_eq!(ids(&store), ["a", "c"], "the typo widened nothing");
    let status = store.status();
    assert_eq!(status.rejected_total.get("unknown_field"), Some(&1));
    assert_eq!(status.rejected_total.get("malformed_json"), Some(&1));
    let typo_revision = mod_revision(&cluster, &format!("{p}typo"));
    assert!(status
        .rejected
        .iter()
        .any(|r| r.key.ends_with("typo") && r.revision == typo_revision));

    // Fixing a bad key applies it and clears its rejection.
    cluster.put(&format!("{p}bad"), &directive_body("bad", 600));
    wait_ids(&store, &["a", "bad", "c"]).await;
    assert_eq!(rejections(&store), [(format!("{p}typo"), "unknown_field")]);
    // Deleting a rejected key clears its rejection too.
    cluster.etcdctl(&["del", &format!("{p}typo")]);
    eventually(PROMPTLY, "no standing rejection", || async {
        rejections(&store).is_empty()
    })
    .await;
    assert_eq!(ids(&store), ["a", "bad", "c"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_update_keeps_that_keys_last_good_directive() {
    let cluster = EtcdCluster::single();
    let p = prefix();
    let a = format!("{p}a");
    cluster.put(
        &a,
        r#"{"id":"a","level":"ShapeTiming","tenant":"acme","ttl_secs":600}"#,
    );
    cluster.put(&format!("{p}b"), &directive_body("b", 600));
    let store = prefix_store(&cluster, &p).await;
    let good = store.load().get("a").cloned().expect("a applies");

    // Both a malformed body and a valid-JSON body that fails validation.
    for bad in [
        r#"{"id":"a","level":"Shape","tenant":"acme""#,
        r#"{"id":"a","level":"Loud","tenant":"acme","ttl_secs":600}"#,
        r#"{"id":"a","level":"Shape","ttl_secs":0}"#,
    ] {
        cluster.put(&a, bad);
        let revision = mod_revision(&cluster, &a);
        wait_status(&store, "the bad update is reported", PROMPTLY, |s| {
            s.rejected
                .iter()
                .any(|r| r.key == a && r.revision == revision)
        })
        .await;
        assert_eq!(
            store.load().get("a"),
            Some(&good),
            "a's last good directive keeps serving"
        );
        assert_eq!(ids(&store), ["a", "b"]);
    }

    cluster.put(&a, &directive_body("a", 600));
    eventually(PROMPTLY, "a is replaced", || async {
        store.load().get("a").is_some_and(|d| *d != good)
    })
    .await;
    assert!(store.status().rejected.is_empty());
}

/// Two keys cannot serve one id: each key must hold the directive its
/// suffix names, so a second key carrying a taken id is `key_id_mismatch`
/// (before the key layout's `duplicate_id` could even be asked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_key_with_a_taken_id_is_rejected_and_never_serves() {
    let cluster = EtcdCluster::single();
    let p = prefix();
    cluster.put(&format!("{p}same"), &directive_body("same", 600));
    let store = prefix_store(&cluster, &p).await;
    cluster.put(&format!("{p}2"), &directive_body("same", 600));
    cluster.put(&format!("{p}other"), &directive_body("other", 600));
    wait_ids(&store, &["other", "same"]).await;
    wait_status(&store, "the copy is reported", PROMPTLY, |s| {
        s.rejected
            .iter()
            .any(|r| r.key == format!("{p}2") && r.reason == "key_id_mismatch")
    })
    .await;
    // Removing the first key does not let the copy serve.
    cluster.etcdctl(&["del", &format!("{p}same")]);
    wait_ids(&store, &["other"]).await;
    assert_eq!(rejections(&store), [(format!("{p}2"), "key_id_mismatch")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_whose_lease_expires_disappears() {
    let cluster = EtcdCluster::single();
    let p = prefix();
    cluster.put(&format!("{p}kept"), &directive_body("kept", 600));
    let store = prefix_store(&cluster, &p).await;
    let lease = lease_grant(&cluster, 2);
    cluster.etcdctl(&[
        "put",
        &format!("--lease={lease}"),
        &format!("{p}leased"),
        &directive_body("leased", 600),
    ]);
    wait_ids(&store, &["kept", "leased"]).await;
    // etcd deletes the key when the lease runs out (not precisely on time).
    wait_ids(&store, &["kept"]).await;
    assert_eq!(cluster.get(&format!("{p}leased")), None);
}

/// A prefix is a directory: `/env/prod` (no trailing `/`) would also take
/// the keys of `/env/prod-staging/`, so the store and the publisher refuse
/// it; and a key must hold the directive its suffix names, or a value copied
/// to another name (or a neighbour's key) would serve under it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_needs_its_slash_and_a_key_must_name_its_directive() {
    let cluster = tokio::task::spawn_blocking(shared_cluster)
        .await
        .expect("cluster");
    let env = unique_key("env");
    let prod = format!("{env}/prod");
    cluster.put(&format!("{env}/prod-staging/n"), &directive_body("n", 600));
    let err = quick(&cluster.endpoints(), Layout::Prefix(prod.clone()))
        .connect()
        .await
        .expect_err("a prefix without its slash");
    assert!(
        matches!(&err, EtcdError::Config(ConfigError::PrefixWithoutSlash(p)) if *p == prod),
        "{err:?}"
    );
    assert!(err.to_string().contains("must end in '/'"), "{err}");
    let err = Publisher::connect(
        ConnectionConfig::new(&cluster.endpoints()),
        Layout::Prefix(prod.clone()),
        clock(),
    )
    .await
    .expect_err("a publisher with a prefix without its slash");
    assert!(
        matches!(
            err,
            PublishError::Config(ConfigError::PrefixWithoutSlash(_))
        ),
        "{err:?}"
    );

    // With the slash: the neighbour is not taken; a key holding another
    // directive's id is rejected alone while the others serve.
    let p = format!("{prod}/");
    cluster.put(&format!("{p}a"), &directive_body("a", 600));
    cluster.put(&format!("{p}x"), &directive_body("y", 600));
    let store = prefix_store(cluster, &p).await;
    assert_eq!(ids(&store), ["a"]);
    assert_eq!(rejections(&store), [(format!("{p}x"), "key_id_mismatch")]);
    cluster.put(&format!("{p}b"), &directive_body("b", 600));
    wait_ids(&store, &["a", "b"]).await;
    // Put while running: counted like any rejection.
    cluster.put(&format!("{p}z"), &directive_body("a", 600));
    eventually(PROMPTLY, "z is rejected", || async {
        rejections(&store).len() == 2
    })
    .await;
    assert_eq!(
        rejections(&store),
        [
            (format!("{p}x"), "key_id_mismatch"),
            (format!("{p}z"), "key_id_mismatch")
        ]
    );
    assert_eq!(ids(&store), ["a", "b"]);
    // Counted like any rejection: x at connect, z while running.
    assert_eq!(
        store.status().rejected_total.get("key_id_mismatch"),
        Some(&2)
    );
    // The publisher's view agrees with the instances'.
    let publisher = Publisher::connect(
        ConnectionConfig::new(&cluster.endpoints()),
        Layout::Prefix(p.clone()),
        clock(),
    )
    .await
    .expect("publisher");
    let live = publisher.live().await.expect("live");
    let slugs: Vec<(&str, &str)> = live
        .rejected
        .iter()
        .map(|r| (r.key.as_str(), r.error.slug()))
        .collect();
    assert_eq!(
        slugs,
        [
            (format!("{p}x").as_str(), "key_id_mismatch"),
            (format!("{p}z").as_str(), "key_id_mismatch")
        ]
    );
}
