//! [`Browser`]: a real headless Chromium driven over the DevTools protocol,
//! for tests of the operator's page.
//!
//! Chromium runs with `--remote-debugging-pipe`: the protocol travels over
//! two inherited pipes (file descriptors 3 and 4, NUL-delimited JSON), so no
//! debugging port is opened at all, and a host-resolver rule maps every
//! name but `127.0.0.1` to "not found", so the page under test can reach
//! loopback only. Each browser gets its own temporary profile
//! (`--user-data-dir`), is closed over the protocol and then killed by its
//! pid on drop. It runs with `--no-sandbox`, which is for tests only: the
//! suites run as root in containers, where Chromium's sandbox cannot start.
//!
//! Like etcd, Chromium is never optional: without it [`Browser::launch`]
//! panics with the install command.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};

use crate::wait::Deadline;

/// Environment variable naming the Chromium binary to use instead of the
/// Debian package's.
pub const CHROMIUM_VAR: &str = "OSPROXY_CHROMIUM";

/// The panic message when no Chromium is found.
pub const CHROMIUM_NOT_FOUND: &str = "chromium not found: install it with `apt-get install -y chromium` (or run scripts/install-deps.sh)";

/// Where Debian's `chromium` package puts the browser itself (the
/// `/usr/bin/chromium` launcher is a shell script that does not `exec` it,
/// so its pid would not be the browser's).
const DEBIAN_CHROMIUM: &str = "/usr/lib/chromium/chromium";

/// How long one protocol call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a closed browser gets to exit before it is killed.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// A running headless Chromium; see the module docs.
pub struct Browser {
    child: Child,
    commands: Mutex<ChildStdin>,
    replies: Mutex<Receiver<Value>>,
    next_id: AtomicU64,
    profile: tempfile::TempDir,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("pid", &self.child.id())
            .field("profile", &self.profile.path())
            .finish()
    }
}

/// The Chromium binary: [`CHROMIUM_VAR`], else Debian's.
fn chromium_binary() -> PathBuf {
    if let Some(path) = std::env::var_os(CHROMIUM_VAR) {
        return PathBuf::from(path);
    }
    let debian = Path::new(DEBIAN_CHROMIUM);
    if debian.is_file() {
        return debian.to_path_buf();
    }
    panic!("{CHROMIUM_NOT_FOUND}");
}

impl Browser {
    /// Starts Chromium headless with a fresh profile and a 1280x1100 window.
    ///
    /// # Panics
    /// When Chromium is missing or does not answer the protocol.
    pub fn launch() -> Browser {
        let binary = chromium_binary();
        let profile = tempfile::Builder::new()
            .prefix("osproxy-chromium-")
            .tempdir()
            .unwrap_or_else(|e| panic!("temporary profile: {e}"));
        let log = std::fs::File::create(profile.path().join("chromium.log"))
            .unwrap_or_else(|e| panic!("chromium log: {e}"));
        // `exec` keeps the pid: the shell only moves our pipes to fds 3/4.
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg("exec \"$0\" \"$@\" 3<&0 4>&1 0</dev/null 1>/dev/null")
            .arg(&binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--remote-debugging-pipe",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-sync",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-default-apps",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--window-size=1280,1100",
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}; {CHROMIUM_NOT_FOUND}", binary.display()));
        let commands = child
            .stdin
            .take()
            .unwrap_or_else(|| panic!("stdin is piped"));
        let replies_pipe = child
            .stdout
            .take()
            .unwrap_or_else(|| panic!("stdout is piped"));
        let (tx, replies) = channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(replies_pipe);
            let mut message = Vec::new();
            while matches!(reader.read_until(0, &mut message), Ok(n) if n > 0) {
                if message.last() == Some(&0) {
                    message.pop();
                }
                if let Ok(v) = serde_json::from_slice::<Value>(&message) {
                    // Events (no "id") are not needed: tests poll the DOM.
                    if v.get("id").is_some() && tx.send(v).is_err() {
                        break;
                    }
                }
                message.clear();
            }
        });
        let browser = Browser {
            child,
            commands: Mutex::new(commands),
            replies: Mutex::new(replies),
            next_id: AtomicU64::new(1),
            profile,
        };
        let version = browser.call(None, "Browser.getVersion", json!({}));
        assert!(
            version["product"].is_string(),
            "unexpected Browser.getVersion answer: {version}"
        );
        browser
    }

    /// The browser's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What Chromium logged so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.profile.path().join("chromium.log")).unwrap_or_default()
    }

    /// Sends one protocol command (to the page `session` when given) and
    /// returns its `result`.
    ///
    /// # Panics
    /// On a protocol error or no answer within 30 s.
    pub fn call(&self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            message["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap_or_default();
        bytes.push(0);
        {
            let mut pipe = self
                .commands
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Err(e) = pipe.write_all(&bytes).and_then(|()| pipe.flush()) {
                panic!(
                    "{method}: cannot write to chromium: {e}; log:\n{}",
                    self.log()
                );
            }
        }
        let replies = self
            .replies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let deadline = Deadline::after(CALL_TIMEOUT);
        loop {
            match replies.recv_timeout(deadline.remaining()) {
                Ok(reply) if reply["id"] == id => {
                    if let Some(error) = reply.get("error") {
                        panic!("{method} failed: {error}");
                    }
                    return reply["result"].clone();
                }
                // A reply to an earlier call that timed out.
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "{method}: no answer within {CALL_TIMEOUT:?}; log:\n{}",
                        self.log()
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("{method}: chromium exited; log:\n{}", self.log())
                }
            }
        }
    }

    /// Opens `url` in a new tab and returns it.
    pub fn open(&self, url: &str) -> Tab<'_> {
        let target = self.call(None, "Target.createTarget", json!({"url": "about:blank"}));
        let target_id = target["targetId"].as_str().unwrap_or_default().to_owned();
        let attached = self.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        );
        let session = attached["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {attached}"))
            .to_owned();
        let tab = Tab {
            browser: self,
            session,
        };
        tab.navigate(url);
        tab
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ask first (Chromium then ends its helper processes), then kill the
        // very process we started, by its pid, if it is still there.
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut pipe) = self.commands.lock() {
            let mut bytes = serde_json::to_vec(&json!({"id": id, "method": "Browser.close"}))
                .unwrap_or_default();
            bytes.push(0);
            let _ = pipe.write_all(&bytes).and_then(|()| pipe.flush());
        }
        let deadline = Deadline::after(CLOSE_GRACE);
        while !deadline.expired() {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One tab of a [`Browser`].
#[derive(Debug)]
pub struct Tab<'a> {
    browser: &'a Browser,
    session: String,
}

impl Tab<'_> {
    /// Sends a protocol command to this tab.
    pub fn call(&self, method: &str, params: Value) -> Value {
        self.browser.call(Some(&self.session), method, params)
    }

    /// Loads `url` and waits until its document has loaded.
    pub fn navigate(&self, url: &str) {
        self.call("Page.enable", json!({}));
        self.call("Page.navigate", json!({"url": url}));
        self.wait_for(
            &format!("{url} has loaded"),
            "document.readyState === 'complete' && location.href !== 'about:blank'",
        );
    }

    /// Evaluates `expression` in the page (promises awaited) and returns its
    /// value as JSON.
    ///
    /// # Panics
    /// When the expression throws.
    pub fn eval(&self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("`{expression}` threw: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Polls `expression` until it is truthy (not `false`, `null`, `0` or
    /// `""`), for at most 20 s, and returns that value; panics naming
    /// `what` and the last value otherwise.
    pub fn wait_for(&self, what: &str, expression: &str) -> Value {
        let timeout = crate::fixtures::PROMPTLY;
        let deadline = Deadline::after(timeout);
        loop {
            let v = self.eval(expression);
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return v;
            }
            if deadline.expired() {
                panic!("timed out after {timeout:?} waiting until {what}; last value: {v}");
            }
            std::thread::sleep(Duration::from_millis(50).min(deadline.remaining()));
        }
    }

    /// Clicks the element `selector` names (a DOM `click()`).
    ///
    /// # Panics
    /// When no element matches.
    pub fn click(&self, selector: &str) {
        let sel = serde_json::to_string(selector).unwrap_or_default();
        let clicked = self.eval(&format!(
            "(() => {{ const e = document.querySelector({sel}); if (!e) return false; e.click(); return true; }})()"
        ));
        assert_eq!(clicked, Value::Bool(true), "no element matches {selector}");
    }

    /// A PNG screenshot of the viewport.
    pub fn screenshot_png(&self) -> Vec<u8> {
        let r = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let data = r["data"].as_str().unwrap_or_default();
        decode_base64(data).unwrap_or_else(|| panic!("screenshot is not base64"))
    }
}

/// Decodes standard base64 (with `=` padding); `None` on any other byte.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    fn sextet(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let bytes = text.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= sextet(*c)? << (18 - 6 * i);
        }
        let produced = chunk.len().saturating_sub(1);
        for i in 0..produced {
            out.push((acc >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::decode_base64;

    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(decode_base64("aGVsbG8=").as_deref(), Some(&b"hello"[..]));
        assert_eq!(decode_base64("aGk=").as_deref(), Some(&b"hi"[..]));
        assert_eq!(decode_base64("YWJj").as_deref(), Some(&b"abc"[..]));
        assert_eq!(decode_base64("").as_deref(), Some(&b""[..]));
        assert_eq!(decode_base64("a*c="), None);
    }
}
