//! Shared helpers for the CLI and HTTP end-to-end tests: run the built
//! binary, start `serve`/`watch` processes that are killed on drop, and wait
//! for their output with bounds (never sleeps).
#![allow(dead_code, unused_imports)]
// Test helpers: a failure to spawn, read or parse fails the test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use osproxy_test_support::fixtures::{
    lease_count, mod_revision, set_body, shared_cluster, unused_endpoint, PROMPTLY,
};
pub use osproxy_test_support::{eventually, unique_key, wait_until, EtcdCluster};

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_osproxy-directives")
}

/// A command for the binary with a clean environment: no inherited
/// `OSPROXY_*` settings, no `RUST_LOG`.
pub fn command() -> Command {
    let mut cmd = Command::new(bin());
    for (name, _) in std::env::vars_os() {
        let name_text = name.to_string_lossy();
        if name_text.starts_with("OSPROXY_") || name_text == "RUST_LOG" {
            cmd.env_remove(&name);
        }
    }
    cmd
}

/// What a finished run printed and returned.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Stdout parsed as one JSON value.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    /// Asserts the exit code, showing everything on failure.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "unexpected exit code: {self:#?}");
        self
    }
}

/// Runs the binary to completion.
pub fn run(args: &[&str]) -> Run {
    run_with_stdin(args, None)
}

/// Runs the binary with `input` on stdin.
pub fn run_with_stdin(args: &[&str], input: Option<&[u8]>) -> Run {
    let mut cmd = command();
    cmd.args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn the binary");
    if let (Some(bytes), Some(mut stdin)) = (input, child.stdin.take()) {
        // A large input may be refused early; a broken pipe is then fine.
        let _ = stdin.write_all(bytes);
    }
    let out = child.wait_with_output().expect("wait for the binary");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `--endpoints <all endpoints of cluster>`.
pub fn endpoints_arg(cluster: &EtcdCluster) -> String {
    cluster.endpoints().join(",")
}

/// Runs the binary against `cluster` and the directive `key`: `args` then
/// `--endpoints … --key …`.
pub fn run_on(cluster: &EtcdCluster, key: &str, args: &[&str]) -> Run {
    let endpoints = endpoints_arg(cluster);
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--endpoints", &endpoints, "--key", key]);
    run(&all)
}

/// A running child process of the binary, killed and reaped on drop. Its
/// stdout lines arrive on a channel; its stderr is collected.
pub struct Proc {
    child: Child,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl Proc {
    /// Spawns the binary with `args`.
    pub fn spawn(args: &[&str]) -> Proc {
        Self::spawn_with_env(args, &[])
    }

    /// Spawns the binary with `args` and extra environment variables.
    pub fn spawn_with_env(args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut cmd = command();
        cmd.args(args).envs(env.iter().copied());
        Self::from_command(cmd)
    }

    /// Spawns `cmd` as it is (e.g. the binary under a wrapper shell), with
    /// stdin closed and stdout and stderr collected as for [`Proc::spawn`].
    pub fn from_command(mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the binary");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().expect("stderr is piped");
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Proc {
            child,
            lines,
            stderr,
        }
    }

    /// The next stdout line, waiting at most `within`; panics with the
    /// process's stderr when none comes.
    pub fn next_line(&mut self, within: Duration) -> String {
        match self.lines.recv_timeout(within) {
            Ok(line) => line,
            Err(e) => {
                let status = self.child.try_wait().ok().flatten();
                panic!(
                    "no stdout line within {within:?} ({e}); exited: {status:?}; stderr:\n{}",
                    self.stderr()
                )
            }
        }
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until stderr contains `needle`.
    pub fn wait_stderr(&self, needle: &str) {
        wait_until(PROMPTLY, &format!("stderr contains {needle:?}"), || {
            self.stderr().contains(needle)
        });
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to exit (bounded) and returns its exit code;
    /// panics with what the process wrote to stderr when it does not exit.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let mut status = None;
        let exited = osproxy_test_support::wait_within(within, || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        assert!(
            exited,
            "timed out after {within:?} waiting until the process exits; its stderr:\n{}",
            self.stderr()
        );
        status.and_then(|s| s.code())
    }

    /// Every stdout line that arrived so far, without waiting.
    pub fn drain_lines(&mut self) -> Vec<String> {
        self.lines.try_iter().collect()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `serve`: its base URL, parsed from the line it prints.
pub struct Serve {
    pub proc: Proc,
    pub url: String,
}

impl Serve {
    /// Starts `serve` on a free loopback port with extra `args` and waits
    /// for its `listening on` line.
    pub fn start(args: &[&str]) -> Serve {
        let mut all = vec!["serve", "--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        Self::start_exact(&all)
    }

    /// Starts the binary with exactly `args` and waits for the line.
    pub fn start_exact(args: &[&str]) -> Serve {
        Self::start_with_env(args, &[])
    }

    /// Starts the binary with exactly `args` and extra environment
    /// variables, and waits for the line.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Serve {
        let mut proc = Proc::spawn_with_env(args, env);
        let line = proc.next_line(PROMPTLY);
        let url = listen_url(&line).unwrap_or_else(|| {
            panic!("unexpected first line {line:?}; stderr:\n{}", proc.stderr())
        });
        Serve { proc, url }
    }

    /// `url` + `path`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }
}

/// The URL in `listening on http://ADDR (store: …)`.
pub fn listen_url(line: &str) -> Option<String> {
    let rest = line.strip_prefix("listening on ")?;
    let url = rest.split_whitespace().next()?;
    (url.starts_with("http://") || url.starts_with("https://")).then(|| url.to_owned())
}

/// Writes `body` to a fresh temporary file and returns it.
pub fn temp_file(body: &[u8]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(body).expect("write temp file");
    f
}

/// The ids of a canonical set printed by `get --json`.
pub fn ids_of(set: &serde_json::Value) -> Vec<String> {
    set["directives"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| d["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A blocking GET for sync tests: status code and body.
pub fn http_get(url: &str) -> (u16, String) {
    let (status, _, body) = http_get_etag(url);
    (status, body)
}

/// A client that declares every body JSON, as the admin API requires of a
/// POST (`Content-Type: application/json`).
pub fn json_client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::CONTENT_TYPE,
        reqwest::header::HeaderValue::from_static("application/json"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("HTTP client")
}

/// A blocking POST for sync tests, with an optional `If-Match`: status code
/// and body.
pub fn http_post(url: &str, body: Vec<u8>, if_match: Option<&str>) -> (u16, String) {
    block_on(async {
        let mut req = json_client().post(url).body(body);
        if let Some(tag) = if_match {
            req = req.header("If-Match", tag);
        }
        let resp = req.send().await.expect("POST");
        let status = resp.status().as_u16();
        (status, resp.text().await.expect("body"))
    })
}

/// The status and JSON body of an answer (a body that is not JSON fails
/// the test).
pub async fn json_answer(resp: reqwest::Response) -> (reqwest::StatusCode, serde_json::Value) {
    let status = resp.status();
    let text = resp.text().await.expect("body");
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"));
    (status, v)
}

/// A blocking GET with a bearer token: status code and body.
pub fn http_get_with_token(url: &str, token: &str) -> (u16, String) {
    block_on(async {
        let resp = json_client()
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .expect("GET");
        let status = resp.status().as_u16();
        (status, resp.text().await.expect("body"))
    })
}

/// A blocking JSON POST with a bearer token: status code and body.
pub fn http_post_with_token(url: &str, body: Vec<u8>, token: &str) -> (u16, String) {
    block_on(async {
        let resp = json_client()
            .post(url)
            .bearer_auth(token)
            .body(body)
            .send()
            .await
            .expect("POST");
        let status = resp.status().as_u16();
        (status, resp.text().await.expect("body"))
    })
}

/// A blocking GET returning the status, the `ETag` header and the body.
pub fn http_get_etag(url: &str) -> (u16, Option<String>, String) {
    block_on(async {
        let resp = reqwest::get(url).await.expect("GET");
        let status = resp.status().as_u16();
        let etag = resp
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        (status, etag, resp.text().await.expect("body"))
    })
}

/// Runs `request` to completion on a fresh current-thread runtime, for the
/// blocking HTTP helpers of sync tests.
fn block_on<T>(request: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(request)
}

/// `--endpoints E --prefix P` followed by `args`, run to completion.
pub fn run_prefix(endpoints: &str, prefix: &str, args: &[&str]) -> Run {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--endpoints", endpoints, "--prefix", prefix]);
    run(&all)
}

/// The revision `get --json` reports (on stderr: `revision N`).
pub fn revision_from_get(r: &Run) -> i64 {
    r.stderr
        .lines()
        .find_map(|l| l.strip_prefix("revision "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no revision line: {r:?}"))
}

/// An etcd with a small `--max-request-bytes` (a one-member
/// [`EtcdCluster`], so launched, watched and torn down like every other).
pub struct SmallEtcd {
    _cluster: EtcdCluster,
    pub endpoint: String,
}

impl SmallEtcd {
    /// Starts it on free loopback ports and waits until it is healthy.
    pub fn start(max_request_bytes: usize) -> SmallEtcd {
        let cluster = EtcdCluster::builder()
            .max_request_bytes(max_request_bytes)
            .launch();
        let endpoint = cluster.endpoints().remove(0);
        SmallEtcd {
            _cluster: cluster,
            endpoint,
        }
    }
}
