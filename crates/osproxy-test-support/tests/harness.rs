//! The harness against real etcd processes: launching, faults, TLS + auth and
//! the TCP forwarder. Every wait is a bounded poll.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use osproxy_test_support::{
    eventually, unique_key, wait_until, EtcdCluster, TcpForwarder, TestPki, KEEP_ENV,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Short client timeouts for requests that are expected to fail.
const FAIL_FAST: [&str; 2] = ["--dial-timeout=500ms", "--command-timeout=700ms"];

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn output(mut cmd: Command, args: &[&str]) -> Output {
    cmd.args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

#[test]
fn single_member_serves_etcdctl_and_is_torn_down_on_drop() {
    let cluster = EtcdCluster::single();
    let endpoints = cluster.endpoints();
    assert_eq!(endpoints.len(), 1);
    assert!(endpoints[0].starts_with("127.0.0.1:"), "{endpoints:?}");
    assert_eq!(cluster.member(0).endpoint(), endpoints[0]);
    assert_eq!(
        cluster.member(0).client_url(),
        format!("http://{}", endpoints[0])
    );

    let key = unique_key("put-get");
    cluster.etcdctl(&["put", &key, "hello"]);
    assert_eq!(
        cluster.etcdctl(&["get", &key, "--print-value-only"]),
        "hello\n"
    );
    assert_eq!(cluster.get(&key).as_deref(), Some("hello"));
    assert_eq!(cluster.get(&unique_key("absent")), None);
    assert!(cluster.revision() >= 2);
    let status = cluster.member(0).status();
    assert!(status.is_leader(), "{status:?}");
    assert!(status.version.starts_with("3."), "{status:?}");

    let pid = cluster.member(0).pid().unwrap();
    let dir = cluster.dir().to_path_buf();
    assert!(cluster.member(0).data_dir().starts_with(&dir));
    drop(cluster);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "etcd {pid} survived the drop"
    );
    if std::env::var(KEEP_ENV).is_err() {
        assert!(!dir.exists(), "{} survived the drop", dir.display());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_and_restart_keep_the_data() {
    let cluster = EtcdCluster::single();
    let key = unique_key("restart");
    cluster.put(&key, "durable");
    let revision = cluster.revision();
    let member = cluster.member(0);
    let old_pid = member.pid();

    member.kill();
    assert!(!member.is_running());
    assert!(!member.is_healthy());
    let down = member.try_etcdctl(&[&["get", &key][..], &FAIL_FAST[..]].concat());
    assert!(!down.status.success(), "a killed member answered");

    member.restart();
    assert!(member.is_running());
    assert_ne!(member.pid(), old_pid);
    assert_eq!(cluster.get(&key).as_deref(), Some("durable"));
    assert_eq!(cluster.revision(), revision);
}

#[test]
fn restart_empty_starts_a_new_cluster_at_revision_one() {
    let cluster = EtcdCluster::single();
    let key = unique_key("wiped");
    for value in ["a", "b", "c"] {
        cluster.put(&key, value);
    }
    let before = cluster.member(0).status();
    assert!(before.revision >= 4, "{before:?}");
    let endpoints = cluster.endpoints();

    cluster.restart_empty();

    let after = cluster.member(0).status();
    assert_eq!(after.revision, 1, "{after:?}");
    assert_ne!(after.cluster_id, before.cluster_id);
    assert_eq!(cluster.endpoints(), endpoints, "ports must not change");
    assert_eq!(cluster.get(&key), None);
}

#[test]
fn three_members_survive_losing_the_leader() {
    let cluster = EtcdCluster::three();
    let endpoints = cluster.endpoints();
    assert_eq!(endpoints.len(), 3);
    let leader_id = cluster.member(0).status().leader;
    let leader = (0..3)
        .find(|&i| cluster.member(i).status().member_id == leader_id)
        .unwrap();
    let (a, b) = ((leader + 1) % 3, (leader + 2) % 3);

    cluster.member(leader).kill();
    let key = unique_key("failover");
    // The survivors elect a new leader first: retry until the write goes in.
    wait_until(
        Duration::from_secs(10),
        "a survivor accepts a write",
        || {
            cluster
                .member(a)
                .try_etcdctl(&["put", &key, "after-kill"])
                .status
                .success()
        },
    );
    assert_eq!(
        cluster
            .member(b)
            .etcdctl(&["get", &key, "--print-value-only"]),
        "after-kill\n"
    );

    cluster.member(leader).restart();
    assert_eq!(
        cluster
            .member(leader)
            .etcdctl(&["get", &key, "--print-value-only"]),
        "after-kill\n"
    );

    cluster.stop_all();
    assert!(cluster.members().iter().all(|m| !m.is_running()));
    cluster.start_all();
    assert_eq!(cluster.get(&key).as_deref(), Some("after-kill"));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigstop_makes_requests_time_out_until_sigcont() {
    let cluster = EtcdCluster::single();
    let key = unique_key("frozen-member");
    cluster.put(&key, "v");
    let member = cluster.member(0);

    member.stop();
    let stalled = member.try_etcdctl(&[&["get", &key][..], &FAIL_FAST[..]].concat());
    assert!(!stalled.status.success(), "a SIGSTOPped member answered");
    assert!(member.is_running(), "SIGSTOP must not end the process");

    member.cont();
    wait_until(
        Duration::from_secs(10),
        "the resumed member answers",
        || member.try_etcdctl(&["get", &key]).status.success(),
    );
    assert_eq!(cluster.get(&key).as_deref(), Some("v"));
}

#[test]
fn compaction_hides_old_revisions_and_defrag_works() {
    let cluster = EtcdCluster::single();
    let key = unique_key("compact");
    cluster.put(&key, "v1");
    let first = cluster.revision();
    cluster.put(&key, "v2");
    let latest = cluster.revision();

    cluster.compact(latest);
    let old = cluster.try_etcdctl(&["get", &key, &format!("--rev={first}")]);
    assert!(!old.status.success());
    assert!(
        stderr(&old).contains("revision has been compacted"),
        "{}",
        stderr(&old)
    );
    cluster.defrag();
    assert_eq!(cluster.get(&key).as_deref(), Some("v2"));
}

/// Sends `GET /version` on an HTTP/1.1 keep-alive connection.
async fn request_version(conn: &mut TcpStream) {
    conn.write_all(b"GET /version HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap_or_else(|e| panic!("cannot send a request through the proxy: {e}"));
}

/// Reads until a complete `/version` body arrived.
async fn read_version(conn: &mut TcpStream) -> String {
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&response).contains("etcdcluster") {
        let n = conn
            .read(&mut buf)
            .await
            .unwrap_or_else(|e| panic!("read through the proxy failed: {e}"));
        assert!(n > 0, "connection closed mid-response");
        response.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarder_passes_freezes_thaws_cuts_and_retargets() {
    let cluster = EtcdCluster::single();
    let proxy = TcpForwarder::start(cluster.member(0).client_addr());
    assert_eq!(proxy.endpoint(), proxy.addr().to_string());
    let via_proxy = || cluster.etcdctl_command_for(&[proxy.endpoint()]);

    // Bytes pass: etcdctl and raw HTTP through the proxy.
    let key = unique_key("forwarder");
    let put = output(via_proxy(), &["put", &key, "proxied"]);
    assert!(put.status.success(), "{}", stderr(&put));
    assert_eq!(cluster.get(&key).as_deref(), Some("proxied"));
    let mut conn = TcpStream::connect(proxy.addr()).await.unwrap();
    request_version(&mut conn).await;
    assert!(read_version(&mut conn).await.contains("etcdserver"));
    eventually(
        Duration::from_secs(5),
        "only the raw connection is open",
        || async { proxy.connection_count() == 1 },
    )
    .await;

    // Frozen: silence on the open connection, which stays open.
    proxy.freeze();
    request_version(&mut conn).await;
    let mut buf = [0u8; 1];
    let silent = tokio::time::timeout(Duration::from_millis(300), conn.read(&mut buf)).await;
    assert!(silent.is_err(), "bytes moved while frozen: {silent:?}");
    assert_eq!(proxy.connection_count(), 1);

    // Thawed: the held request goes through and its answer arrives.
    proxy.thaw();
    let answer = tokio::time::timeout(Duration::from_secs(5), read_version(&mut conn))
        .await
        .expect("no answer after thaw");
    assert!(answer.contains("etcdserver"), "{answer}");

    // Frozen again: new connections are accepted but get nothing either.
    proxy.freeze();
    let stalled = output(via_proxy(), &[&["get", &key][..], &FAIL_FAST[..]].concat());
    assert!(
        !stalled.status.success(),
        "etcdctl got through a frozen proxy"
    );
    proxy.thaw();

    // Cut: every open connection goes, the listener stays.
    proxy.cut();
    assert_eq!(proxy.connection_count(), 0);
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(_)) | Ok(Err(_))),
        "cut connection still open"
    );
    let get = output(via_proxy(), &["get", &key, "--print-value-only"]);
    assert_eq!(
        String::from_utf8_lossy(&get.stdout),
        "proxied\n",
        "{}",
        stderr(&get)
    );

    // Retarget: new connections reach an echo server.
    let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = echo.accept().await.unwrap();
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).await.unwrap();
        s.write_all(&buf[..n]).await.unwrap();
    });
    proxy.set_target(echo_addr);
    assert_eq!(proxy.target(), echo_addr);
    let mut echoed = TcpStream::connect(proxy.addr()).await.unwrap();
    echoed.write_all(b"ping").await.unwrap();
    let mut pong = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), echoed.read_exact(&mut pong))
        .await
        .expect("no echo")
        .unwrap();
    assert_eq!(&pong, b"ping");

    drop(proxy);
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), echoed.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "dropping the forwarder left a connection open"
    );
}

#[test]
fn tls_and_auth_cluster_requires_certificates_and_credentials() {
    let pki = TestPki::generate();
    let cluster = EtcdCluster::builder()
        .tls(pki.clone())
        .auth("s3cret-pw")
        .launch();
    let endpoint = &cluster.endpoints()[0];
    assert!(endpoint.starts_with("https://127.0.0.1:"), "{endpoint}");
    assert_eq!(cluster.credentials(), Some(("root", "s3cret-pw")));

    // The helper passes certificates and --user.
    let key = unique_key("secure");
    cluster.etcdctl(&["put", &key, "secret"]);
    assert_eq!(cluster.get(&key).as_deref(), Some("secret"));

    // Plain HTTP on the client port fails.
    let port = cluster.member(0).client_addr().port();
    let mut plain = Command::new("etcdctl");
    plain
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints=http://127.0.0.1:{port}"));
    let out = output(plain, &[&["get", &key][..], &FAIL_FAST[..]].concat());
    assert!(!out.status.success(), "plain HTTP was served");

    // TLS without a client certificate fails.
    let mut no_cert = Command::new("etcdctl");
    no_cert
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .arg(format!("--cacert={}", pki.ca_path().display()))
        .arg("--user=root:s3cret-pw");
    let out = output(no_cert, &[&["get", &key][..], &FAIL_FAST[..]].concat());
    assert!(
        !out.status.success(),
        "served a client without a certificate"
    );

    // A wrong password fails.
    let out = output(
        cluster.etcdctl_command(),
        &["--user=root:wrong", "get", &key],
    );
    assert!(!out.status.success(), "a wrong password was accepted");
    assert!(
        stderr(&out).contains("authentication failed"),
        "{}",
        stderr(&out)
    );

    // Without a password the certificate's CN is the user: a stranger is
    // refused, root (the default client certificate) is let in.
    let stranger = pki.issue_client_cert("stranger");
    let out = output(
        cluster.etcdctl_command(),
        &[
            "--user=",
            &format!("--cert={}", stranger.cert_path.display()),
            &format!("--key={}", stranger.key_path.display()),
            "get",
            &key,
        ],
    );
    assert!(!out.status.success(), "an unknown user read a key");
    let out = output(
        cluster.etcdctl_command(),
        &["--user=", "get", &key, "--print-value-only"],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "secret\n",
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_cluster_that_does_not_come_up_panics_with_its_logs_and_cleans_up() {
    let panic = std::panic::catch_unwind(|| {
        EtcdCluster::builder()
            .startup_timeout(Duration::from_millis(1))
            .launch()
    })
    .expect_err("launch with a 1 ms bound succeeded");
    let message = panic
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_else(|| panic!("panic without a message"));
    assert!(message.contains("did not become healthy"), "{message}");
    assert!(message.contains("---- etcd member m0 ("), "{message}");
    // The member directory named in the message is gone: Drop ran on unwind.
    let start = message.find("---- etcd member m0 (").unwrap() + "---- etcd member m0 (".len();
    let dir = &message[start..start + message[start..].find(')').unwrap()];
    if std::env::var(KEEP_ENV).is_err() {
        assert!(!Path::new(dir).exists(), "{dir} survived the panic");
    }
}
