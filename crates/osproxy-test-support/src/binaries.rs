//! Finding the `etcd` and `etcdctl` executables, and which etcd they are.
//!
//! `OSPROXY_ETCD_BIN_DIR` picks the directory (the version matrix: the test
//! command runs the live suites with Debian's 3.4 in `/usr/bin` and again
//! with `OSPROXY_ETCD_BIN_DIR=.deps/etcd-<version>/bin` for 3.5, 3.6 and
//! 3.7); without it, Debian's `/usr/bin`, then `PATH`. [`etcd_release`]
//! tells a test which release it runs against. The first cluster a test process starts prints
//! the version in use to stderr, once.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The variable naming the directory that holds `etcd` and `etcdctl`.
pub const ETCD_BIN_DIR_VAR: &str = "OSPROXY_ETCD_BIN_DIR";

/// The panic message when `etcd` (or `etcdctl`) is not installed.
///
/// Tests never skip for a missing etcd: a skipped integration test looks
/// exactly like a passing one.
pub const ETCD_NOT_FOUND: &str = "etcd not found: install it with `apt-get install -y etcd-server etcd-client` (or run scripts/install-deps.sh)";

/// `<OSPROXY_ETCD_BIN_DIR>/<name>` when the variable is set (and nothing
/// else then: a matrix run must not fall back to another version), else
/// `/usr/bin/<name>` (the Debian packages' location), else `<name>` on
/// `PATH`; panics with [`ETCD_NOT_FOUND`] when it is not there.
pub(crate) fn require(name: &str) -> PathBuf {
    find(
        name,
        std::env::var_os(ETCD_BIN_DIR_VAR).as_deref(),
        std::env::var_os("PATH").as_deref(),
    )
    .unwrap_or_else(|where_| panic!("{ETCD_NOT_FOUND} (looked for `{name}` in {where_})"))
}

/// `<dir>/etcd` and `<dir>/etcdctl` when `dir` is given (a caller that
/// picks its etcd itself, e.g. a benchmark comparing versions in one run),
/// else [`require`] of each; panics with [`ETCD_NOT_FOUND`] when missing.
pub(crate) fn etcd_pair(dir: Option<&Path>) -> (PathBuf, PathBuf) {
    let Some(dir) = dir else {
        return (require("etcd"), require("etcdctl"));
    };
    let pick = |name: &str| {
        let path = dir.join(name);
        if !is_file(&path) {
            panic!(
                "{ETCD_NOT_FOUND} (looked for `{name}` in {})",
                dir.display()
            );
        }
        path
    };
    (pick("etcd"), pick("etcdctl"))
}

/// [`require`] over explicit variables; `Err` says where it looked.
fn find(name: &str, bin_dir: Option<&OsStr>, path_var: Option<&OsStr>) -> Result<PathBuf, String> {
    if let Some(dir) = bin_dir.filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(name);
        return if is_file(&candidate) {
            Ok(candidate)
        } else {
            Err(format!("{ETCD_BIN_DIR_VAR}={}", Path::new(dir).display()))
        };
    }
    locate(name, path_var).ok_or_else(|| "/usr/bin and on PATH".to_owned())
}

/// The version `etcd --version` reports for `etcd_bin` (`3.4.23`, `3.5.1`),
/// or `unknown`.
pub fn etcd_version(etcd_bin: &Path) -> String {
    std::process::Command::new(etcd_bin)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout).lines().find_map(|l| {
                l.strip_prefix("etcd Version: ")
                    .map(|v| v.trim().to_owned())
            })
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The release of the etcd the live tests start (`OSPROXY_ETCD_BIN_DIR`'s,
/// else Debian's, else `PATH`'s) as `(major, minor, patch)`, for tests whose
/// expectation differs between versions. Read once per test process.
///
/// Panics when etcd is missing or its version cannot be parsed: a version
/// check must never quietly take one branch.
pub fn etcd_release() -> (u32, u32, u32) {
    static RELEASE: OnceLock<(u32, u32, u32)> = OnceLock::new();
    *RELEASE.get_or_init(|| {
        let bin = require("etcd");
        let version = etcd_version(&bin);
        parse_release(&version).unwrap_or_else(|| {
            panic!(
                "cannot parse the version of {} ({version:?})",
                bin.display()
            )
        })
    })
}

/// `3.6.15` → `(3, 6, 15)`; a suffix after the patch (`3.7.0-rc.1`) is
/// ignored.
fn parse_release(version: &str) -> Option<(u32, u32, u32)> {
    let mut parts = version.splitn(3, '.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch_text = parts.next()?;
    let digits = patch_text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(patch_text.len());
    let patch = patch_text[..digits].parse().ok()?;
    Some((major, minor, patch))
}

/// Prints the etcd in use to stderr, the first time only.
pub(crate) fn announce(etcd_bin: &Path) {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        eprintln!(
            "osproxy-test-support: etcd {} ({})",
            etcd_version(etcd_bin),
            etcd_bin.display()
        );
    });
}

fn locate(name: &str, path_var: Option<&OsStr>) -> Option<PathBuf> {
    let preferred = Path::new("/usr/bin").join(name);
    if is_file(&preferred) {
        return Some(preferred);
    }
    let path_var = path_var?;
    std::env::split_paths(path_var)
        .map(|dir| dir.join(name))
        .find(|candidate| is_file(candidate))
}

fn is_file(path: &Path) -> bool {
    path.metadata().map(|m| m.is_file()).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binary_is_not_found_anywhere() {
        let name = "osproxy-definitely-not-an-installed-binary";
        assert_eq!(
            locate(name, Some(OsStr::new("/nonexistent:/also/not"))),
            None
        );
        assert_eq!(locate(name, None), None);
        let message = std::panic::catch_unwind(|| require(name))
            .err()
            .and_then(|e| e.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        assert!(message.starts_with(ETCD_NOT_FOUND), "{message}");
    }

    #[test]
    fn the_bin_dir_variable_wins_and_never_falls_back() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let fake = dir.path().join("osproxy-fake-etcd");
        std::fs::write(&fake, b"").unwrap_or_else(|e| panic!("write: {e}"));
        let found = find("osproxy-fake-etcd", Some(dir.path().as_os_str()), None);
        assert_eq!(found, Ok(fake));
        // `sh` exists in /usr/bin, but the variable names another directory.
        let missing = find("sh", Some(dir.path().as_os_str()), None).unwrap_err();
        assert!(missing.starts_with(ETCD_BIN_DIR_VAR), "{missing}");
        // Empty means unset.
        assert!(find("sh", Some(OsStr::new("")), None).is_ok());
    }

    #[test]
    fn releases_parse() {
        assert_eq!(parse_release("3.4.23"), Some((3, 4, 23)));
        assert_eq!(parse_release("3.7.0-rc.1"), Some((3, 7, 0)));
        assert_eq!(parse_release("unknown"), None);
        assert_eq!(parse_release("3.6"), None);
    }

    #[test]
    fn binary_on_path_is_found() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let fake = dir.path().join("osproxy-fake-etcd");
        std::fs::write(&fake, b"").unwrap_or_else(|e| panic!("write: {e}"));
        let found = locate("osproxy-fake-etcd", Some(dir.path().as_os_str()));
        assert_eq!(found, Some(fake));
    }
}
