//! The settings a cluster and its members share ([`Config`]), and the
//! `etcdctl` command they imply (TLS files, `root` credentials once auth is
//! on).

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::etcdctl::flag;
use crate::pki::TestPki;

/// Settings shared by the cluster and its members.
pub(super) struct Config {
    pub(super) etcd_bin: PathBuf,
    pub(super) etcdctl_bin: PathBuf,
    pub(super) tls: Option<TestPki>,
    pub(super) root_password: Option<String>,
    /// Set once `auth enable` went through; etcdctl then sends `--user`.
    pub(super) auth_enabled: AtomicBool,
    pub(super) startup_timeout: Duration,
    /// `--max-request-bytes`, when set.
    pub(super) max_request_bytes: Option<usize>,
    /// `--enable-pprof`.
    pub(super) pprof: bool,
    /// `--initial-cluster-token` of the current incarnation.
    pub(super) token: Mutex<String>,
}

impl Config {
    pub(super) fn token(&self) -> MutexGuard<'_, String> {
        self.token.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// An `etcdctl` command (API v3) aimed at `endpoints`, with the TLS and
    /// auth flags this cluster needs.
    pub(super) fn etcdctl_command(&self, endpoints: &[String]) -> Command {
        let mut cmd = Command::new(&self.etcdctl_bin);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("ETCDCTL_") {
                cmd.env_remove(&name);
            }
        }
        cmd.env("ETCDCTL_API", "3");
        cmd.arg(format!("--endpoints={}", endpoints.join(",")));
        cmd.arg("--dial-timeout=2s").arg("--command-timeout=5s");
        if let Some(pki) = &self.tls {
            cmd.arg(flag("--cacert=", pki.ca_path().as_os_str()));
            cmd.arg(flag("--cert=", pki.client_cert_path().as_os_str()));
            cmd.arg(flag("--key=", pki.client_key_path().as_os_str()));
        }
        if let (true, Some(password)) = (
            self.auth_enabled.load(Ordering::SeqCst),
            &self.root_password,
        ) {
            cmd.arg(format!("--user=root:{password}"));
        }
        cmd
    }
}
