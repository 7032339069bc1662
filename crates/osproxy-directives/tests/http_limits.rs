//! The admin listener's limits against a real `serve` process: idle clients
//! holding half a request line, more of them than the process may open
//! files, never take `/healthz` or `/readyz` down, and each is disconnected
//! within the header-read timeout (SPEC §6).

// Test helpers below: a failure to spawn, read or parse fails the test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use tokio::time::Instant;

use common::{bin, listen_url, Proc, PROMPTLY};

/// The open-file limit `serve` runs under: its connection cap becomes
/// 128 − 64 = 64.
const FD_LIMIT: u32 = 128;
/// Idle clients: more than the process could hold open at once.
const IDLE: usize = 200;
const HEADER_TIMEOUT: Duration = Duration::from_secs(3);
/// Slack on "closed within the header timeout" for a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(2);

/// A `serve` under `ulimit -n FD_LIMIT` (killed on drop) and its address.
struct LimitedServe {
    proc: Proc,
    addr: SocketAddr,
}

impl LimitedServe {
    fn start() -> LimitedServe {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("ulimit -n {FD_LIMIT} && exec \"$0\" \"$@\""))
            .arg(bin())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--header-read-timeout",
                "3s",
            ])
            .env_remove("RUST_LOG");
        let mut proc = Proc::from_command(cmd);
        let line = proc.next_line(PROMPTLY);
        let url = listen_url(&line)
            .unwrap_or_else(|| panic!("no listening line ({line:?}); stderr:\n{}", proc.stderr()));
        let addr = url
            .trim_start_matches("http://")
            .parse()
            .expect("address in the listening line");
        LimitedServe { proc, addr }
    }

    fn stderr(&self) -> String {
        self.proc.stderr()
    }
}

/// One complete request on a fresh connection; the status line's code.
fn get(addr: SocketAddr, path: &str) -> Result<u16, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)
        .map_err(|e| format!("read: {e}"))?;
    answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {answer:?}"))
}

/// An idle client: connected, half a request line sent, then nothing.
struct Idle {
    stream: TcpStream,
    opened: Instant,
    closed: Option<Instant>,
}

impl Idle {
    fn open(addr: SocketAddr) -> Idle {
        let mut stream = TcpStream::connect(addr).expect("connect an idle client");
        stream.write_all(b"GET /healthz HT").expect("half a line");
        stream.set_nonblocking(true).expect("nonblocking");
        Idle {
            stream,
            opened: Instant::now(),
            closed: None,
        }
    }

    /// Notes the moment the server closed it (EOF or reset).
    fn poll(&mut self, now: Instant) {
        if self.closed.is_some() {
            return;
        }
        let mut buf = [0u8; 512];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => continue, // an error answer before the close
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => break, // reset
            }
        }
        self.closed = Some(now);
    }
}

#[test]
fn idle_half_requests_beyond_the_file_limit_leave_health_checks_answering() {
    let serve = LimitedServe::start();
    let start = Instant::now();
    let mut idle: Vec<Idle> = (0..IDLE).map(|_| Idle::open(serve.addr)).collect();

    let mut checks = 0;
    let mut failures = Vec::new();
    // Bounded: the header timeout plus slack, polled every 100 ms.
    let deadline = start + HEADER_TIMEOUT + SLACK + Duration::from_secs(3);
    while Instant::now() < deadline {
        for path in ["/healthz", "/readyz"] {
            checks += 1;
            match get(serve.addr, path) {
                Ok(200) => {}
                other => failures.push(format!("{path} at {:?}: {other:?}", start.elapsed())),
            }
        }
        let now = Instant::now();
        for c in &mut idle {
            c.poll(now);
        }
        if idle.iter().all(|c| c.closed.is_some()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    assert!(
        failures.is_empty(),
        "health checks failed while idle clients were held:\n{}\nstderr:\n{}",
        failures.join("\n"),
        serve.stderr()
    );
    assert!(checks >= 4, "only {checks} health checks ran");
    let open: Vec<usize> = (0..IDLE).filter(|&i| idle[i].closed.is_none()).collect();
    assert!(
        open.is_empty(),
        "{} idle clients still connected after {:?}",
        open.len(),
        start.elapsed()
    );
    let slowest = idle
        .iter()
        .filter_map(|c| c.closed.map(|t| t.duration_since(c.opened)))
        .max()
        .unwrap_or_default();
    assert!(
        slowest <= HEADER_TIMEOUT + SLACK,
        "an idle client was held {slowest:?}, over the {HEADER_TIMEOUT:?} header timeout"
    );
    // More clients than the cap: the cap was reached, said so, and made room.
    let log = serve.stderr();
    assert!(
        log.contains("admin connection cap reached"),
        "no cap line in stderr:\n{log}"
    );
    assert!(
        !log.contains("Too many open files"),
        "the process ran out of files:\n{log}"
    );
    // And the instance still serves afterwards.
    assert_eq!(get(serve.addr, "/healthz"), Ok(200));
}

/// Whether the server closed `s` (EOF or reset), without blocking.
fn is_closed(s: &TcpStream) -> bool {
    s.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 1];
    let closed = match s.peek(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != ErrorKind::WouldBlock,
    };
    s.set_nonblocking(false).expect("blocking");
    closed
}

/// A slow POST: a whole head announcing a body, then only part of it, so the
/// request stays in flight.
fn slow_post(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect a slow client");
    write!(
        s,
        "POST /admin/directives HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"directives\":"
    )
    .expect("a head and part of a body");
    s
}

#[test]
fn slow_bodies_on_every_connection_leave_health_checks_answering() {
    let mut proc = Proc::spawn(&["serve", "--listen", "127.0.0.1:0", "--max-connections", "4"]);
    let line = proc.next_line(PROMPTLY);
    let addr: SocketAddr = listen_url(&line)
        .unwrap()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    // Every regular connection holds a request in flight. A slow POST is in
    // flight once the server has read its head; until then it is idle and a
    // newcomer evicts it: reopen what was closed until a request lands on
    // the reserve (503 for anything but a health check). Bounded.
    let mut slow: Vec<TcpStream> = (0..4).map(|_| slow_post(addr)).collect();
    let mut reserved = false;
    for _ in 0..50 {
        if get(addr, "/admin/directives") == Ok(503) {
            reserved = true;
            break;
        }
        for s in &mut slow {
            if is_closed(s) {
                *s = slow_post(addr);
            }
        }
    }
    assert!(reserved, "never reached the reserve:\n{}", proc.stderr());
    let mut answers = Vec::new();
    for _ in 0..10 {
        answers.push((get(addr, "/healthz"), get(addr, "/readyz")));
    }
    assert!(
        answers.iter().all(|(h, r)| *h == Ok(200) && *r == Ok(200)),
        "{answers:?}\nstderr:\n{}",
        proc.stderr()
    );
    drop(slow);
    common::wait_until(
        PROMPTLY,
        "regular service resumes once the slow clients leave",
        || get(addr, "/admin/directives") == Ok(200),
    );
}
