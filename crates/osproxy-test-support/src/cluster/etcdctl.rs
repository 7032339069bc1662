//! Running `etcdctl` with a bound while capturing its output, and parsing
//! what it prints (`get --print-value-only`, JSON headers, `endpoint status`
//! into [`MemberStatus`]). The command itself, with the cluster's TLS and
//! auth flags, is built by `config`.

use std::ffi::OsStr;
use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::wait::Deadline;

/// A member's view of itself, from `etcdctl endpoint status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatus {
    /// The cluster id (changes with
    /// [`EtcdCluster::restart_empty`](super::EtcdCluster::restart_empty)).
    pub cluster_id: u64,
    /// This member's id.
    pub member_id: u64,
    /// The member's current revision.
    pub revision: i64,
    /// The raft term.
    pub raft_term: u64,
    /// The id of the leader this member knows of.
    pub leader: u64,
    /// The etcd server version, e.g. `3.4.23`.
    pub version: String,
}

impl MemberStatus {
    /// Whether this member is the leader.
    pub fn is_leader(&self) -> bool {
        self.leader == self.member_id
    }
}

/// Bound on one `etcdctl` invocation (its own timeouts are shorter).
const ETCDCTL_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) fn flag(name: &str, value: &OsStr) -> std::ffi::OsString {
    let mut s = std::ffi::OsString::from(name);
    s.push(value);
    s
}

/// Runs `cmd args...` with a 30 s bound, capturing output.
pub(super) fn run(mut cmd: Command, args: &[&str]) -> Output {
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run etcdctl {args:?}: {e}"));
    let stdout = child.stdout.take().map(read_in_background);
    let stderr = child.stderr.take().map(read_in_background);
    let deadline = Deadline::after(ETCDCTL_TIMEOUT);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if deadline.expired() => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("etcdctl {args:?} did not finish within {ETCDCTL_TIMEOUT:?}");
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("cannot wait for etcdctl {args:?}: {e}"),
        }
    };
    let join = |h: Option<std::thread::JoinHandle<Vec<u8>>>| {
        h.map(|h| h.join().unwrap_or_default()).unwrap_or_default()
    };
    Output {
        status,
        stdout: join(stdout),
        stderr: join(stderr),
    }
}

fn read_in_background(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

pub(super) fn expect_success(out: Output, args: &[&str]) -> String {
    if !out.status.success() {
        panic!(
            "etcdctl {args:?} failed ({}):\nstderr: {}\nstdout: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end(),
            String::from_utf8_lossy(&out.stdout).trim_end()
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `get --print-value-only` prints the value plus a newline, or nothing.
pub(super) fn parse_value(stdout: &str) -> Option<String> {
    if stdout.is_empty() {
        return None;
    }
    Some(stdout.strip_suffix('\n').unwrap_or(stdout).to_owned())
}

fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("etcdctl printed invalid JSON ({e}): {stdout}"))
}

pub(super) fn header_revision(stdout: &str) -> i64 {
    let v = json(stdout);
    v["header"]["revision"]
        .as_i64()
        .unwrap_or_else(|| panic!("no header.revision in etcdctl output: {stdout}"))
}

pub(super) fn parse_status(stdout: &str) -> MemberStatus {
    let v = json(stdout);
    let status = &v[0]["Status"];
    let header = &status["header"];
    let u = |x: &serde_json::Value, what: &str| {
        x.as_u64()
            .unwrap_or_else(|| panic!("no {what} in etcdctl output: {stdout}"))
    };
    MemberStatus {
        cluster_id: u(&header["cluster_id"], "cluster_id"),
        member_id: u(&header["member_id"], "member_id"),
        revision: header["revision"]
            .as_i64()
            .unwrap_or_else(|| panic!("no revision in etcdctl output: {stdout}")),
        raft_term: u(&header["raft_term"], "raft_term"),
        leader: u(&status["leader"], "leader"),
        version: status["version"].as_str().unwrap_or_default().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_values_and_json() {
        assert_eq!(parse_value(""), None);
        assert_eq!(parse_value("\n").as_deref(), Some(""));
        assert_eq!(parse_value("v1\n").as_deref(), Some("v1"));
        let get = r#"{"header":{"cluster_id":15534692384254201323,"member_id":1381540707029590151,"revision":2,"raft_term":2}}"#;
        assert_eq!(header_revision(get), 2);
        let status = r#"[{"Endpoint":"127.0.0.1:23790","Status":{"header":{"cluster_id":15534692384254201323,"member_id":1381540707029590151,"revision":2,"raft_term":2},"version":"3.4.23","dbSize":20480,"leader":1381540707029590151,"raftIndex":14,"raftTerm":2,"raftAppliedIndex":14,"dbSizeInUse":20480}}]"#;
        let s = parse_status(status);
        assert_eq!(s.cluster_id, 15534692384254201323);
        assert_eq!(s.revision, 2);
        assert!(s.is_leader());
        assert_eq!(s.version, "3.4.23");
    }
}
