//! SPEC §5.1 fail-fast start: `connect` against a silent endpoint fails within
//! the connect timeout naming the endpoint and the cause, a bad option is a
//! configuration error before any I/O, and a dead first endpoint fails over to
//! a live second one at connect.

mod common;

use std::time::Duration;

use common::*;
use osproxy_etcd::{ConfigError, ConnectCause, EtcdDirectiveStore, EtcdError, Layout};
use tokio::time::Instant;

/// Slack for a loaded 2-core machine on top of a configured timeout.
const MARGIN: Duration = Duration::from_millis(1500);

/// A listener that completes TCP handshakes (the kernel does, from its
/// backlog) but never reads or answers: a black hole.
#[allow(clippy::expect_used)] // a test helper: a failure fails the test
fn black_hole() -> (std::net::TcpListener, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = listener.local_addr().expect("addr").to_string();
    (listener, endpoint)
}

fn assert_connect_timeout(err: &EtcdError, endpoints: &[String]) {
    let EtcdError::Connect(e) = err else {
        panic!("expected EtcdError::Connect, got {err:?}");
    };
    assert!(
        matches!(e.cause, ConnectCause::Timeout(_)),
        "a silent endpoint is a timeout: {:?}",
        e.cause
    );
    let text = err.to_string();
    for endpoint in endpoints {
        assert!(text.contains(endpoint.as_str()), "names {endpoint}: {text}");
    }
    assert!(text.contains("no answer within"), "names the cause: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_endpoint_fails_within_the_connect_timeout() {
    let (_listener, endpoint) = black_hole();
    let endpoints = vec![endpoint];
    let timeout = Duration::from_secs(2);
    let started = Instant::now();
    let err = EtcdDirectiveStore::builder(&endpoints, Layout::Key("/k".into()), clock())
        .connect_timeout(timeout)
        .connect()
        .await
        .expect_err("a black hole never answers");
    let took = started.elapsed();
    assert!(took < timeout + MARGIN, "took {took:?}");
    assert!(
        took >= timeout - Duration::from_millis(100),
        "gave up early: {took:?}"
    );
    assert_connect_timeout(&err, &endpoints);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_member_fails_the_seed_constructor_within_the_default_5s() {
    let cluster = EtcdCluster::single();
    let proxy = TcpForwarder::start(cluster.member(0).client_addr());
    proxy.freeze();
    let endpoints = vec![proxy.endpoint()];
    let started = Instant::now();
    let err = EtcdDirectiveStore::connect(&endpoints, unique_key("frozen"), clock())
        .await
        .expect_err("a frozen member never answers");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5) + MARGIN, "took {took:?}");
    assert_connect_timeout(&err, &endpoints);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_silent_endpoints_share_one_connect_timeout() {
    let (_a, first) = black_hole();
    let (_b, second) = black_hole();
    let endpoints = vec![first, second];
    let timeout = Duration::from_secs(2);
    let started = Instant::now();
    let err = EtcdDirectiveStore::builder(&endpoints, Layout::Key("/k".into()), clock())
        .connect_timeout(timeout)
        .connect()
        .await
        .expect_err("nothing answers");
    let took = started.elapsed();
    assert!(
        took < timeout + MARGIN,
        "connect as a whole is bounded: {took:?}"
    );
    assert_connect_timeout(&err, &endpoints);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_options_are_configuration_errors() {
    let ok = vec!["127.0.0.1:2379".to_owned()];
    let layout = || Layout::Key("/k".into());
    for bad in [
        "",
        "host",
        "host:",
        ":2379",
        "host:0",
        "host:99999",
        "ftp://h:1",
        "h:1/x",
    ] {
        let err = EtcdDirectiveStore::builder(&[bad.to_owned()], layout(), clock())
            .connect()
            .await
            .expect_err(bad);
        assert!(
            matches!(err, EtcdError::Config(ConfigError::BadEndpoint(_))),
            "{bad:?}: {err:?}"
        );
    }
    let err = EtcdDirectiveStore::builder(&[], layout(), clock())
        .connect()
        .await
        .expect_err("no endpoints");
    assert!(matches!(err, EtcdError::Config(ConfigError::NoEndpoints)));

    let err = EtcdDirectiveStore::builder(&ok, Layout::Prefix(String::new()), clock())
        .connect()
        .await
        .expect_err("empty prefix");
    assert!(matches!(err, EtcdError::Config(ConfigError::EmptyKey)));

    let err =
        EtcdDirectiveStore::builder(&["https://127.0.0.1:2379".to_owned()], layout(), clock())
            .connect()
            .await
            .expect_err("https without TLS");
    assert!(matches!(
        err,
        EtcdError::Config(ConfigError::SchemeMismatch(_))
    ));

    let err = EtcdDirectiveStore::builder(&ok, layout(), clock())
        .keepalive(Duration::from_secs(1), Duration::from_secs(1))
        .connect()
        .await
        .expect_err("keepalive below etcd's minimum");
    assert!(matches!(err, EtcdError::Config(ConfigError::Range { .. })));

    let err = EtcdDirectiveStore::builder(&ok, layout(), clock())
        .stale_after(Duration::from_secs(2))
        .progress_interval(Duration::from_secs(2))
        .connect()
        .await
        .expect_err("progress interval not below the staleness bound");
    assert!(matches!(err, EtcdError::Config(ConfigError::Range { .. })));

    let err = EtcdDirectiveStore::builder(&ok, layout(), clock())
        .backoff(Duration::from_secs(2), Duration::from_secs(1))
        .connect()
        .await
        .expect_err("inverted backoff");
    assert!(matches!(err, EtcdError::Config(ConfigError::Range { .. })));

    let err = EtcdDirectiveStore::builder(&ok, layout(), clock())
        .connect_timeout(Duration::ZERO)
        .connect()
        .await
        .expect_err("zero connect timeout");
    assert!(matches!(err, EtcdError::Config(ConfigError::Range { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_first_endpoint_fails_over_to_a_live_second_at_connect() {
    let cluster = EtcdCluster::single();
    let key = unique_key("failover-at-connect");
    cluster.put(&key, &set_body(&["a"], 600));

    // Refused: nobody listens on this port any more.
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").to_string()
    };
    let live = cluster.member(0).endpoint();
    let store =
        EtcdDirectiveStore::builder(&[refused, live.clone()], Layout::Key(key.clone()), clock())
            .connect_timeout(Duration::from_secs(4))
            .connect()
            .await
            .expect("the second endpoint answers");
    assert_eq!(ids(&store), ["a"], "read at connect");
    // The watch starts in the background right after the read.
    eventually(PROMPTLY, "the watch is established", || async {
        store.status().connected
    })
    .await;
    let status = store.status();
    assert!(
        status
            .endpoint
            .as_deref()
            .is_some_and(|e| e.ends_with(&live)),
        "{status:?}"
    );

    // Silent rather than refused: the first endpoint's share of the timeout
    // runs out, and the second still gets its turn within the bound.
    let (_hole, silent) = black_hole();
    let started = Instant::now();
    let store =
        EtcdDirectiveStore::builder(&[silent, live.clone()], Layout::Key(key.clone()), clock())
            .connect_timeout(Duration::from_secs(4))
            .connect()
            .await
            .expect("the second endpoint answers after the first stays silent");
    assert!(started.elapsed() < Duration::from_secs(4) + MARGIN);
    assert_eq!(ids(&store), ["a"]);

    // And the watch it starts is live.
    cluster.put(&key, &set_body(&["a", "b"], 600));
    wait_ids(&store, &["a", "b"]).await;
    assert!(store.status().connected);
}

/// `connect` is awaited inside spawned tasks (servers start stores in their
/// own tasks): its future must be `Send`, and the store `Send + Sync`.
#[test]
fn connect_futures_are_send_and_the_store_is_send_and_sync() {
    fn send<T: Send>(_: &T) {}
    fn send_sync<T: Send + Sync + Clone + std::fmt::Debug + 'static>() {}
    let endpoints = vec!["127.0.0.1:1".to_owned()];
    let by_builder =
        EtcdDirectiveStore::builder(&endpoints, Layout::Key("/k".into()), clock()).connect();
    send(&by_builder);
    let seed = EtcdDirectiveStore::connect(&endpoints, "/k", clock());
    send(&seed);
    send_sync::<EtcdDirectiveStore>();
}
