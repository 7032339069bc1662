//! Finding the `etcd` and `etcdctl` executables.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// The panic message when `etcd` (or `etcdctl`) is not installed.
///
/// Tests never skip for a missing etcd: a skipped integration test looks
/// exactly like a passing one.
pub const ETCD_NOT_FOUND: &str = "etcd not found: install it with `apt-get install -y etcd-server etcd-client` (or run scripts/install-deps.sh)";

/// `/usr/bin/<name>` (the Debian packages' location) or else `<name>` on
/// `PATH`; panics with [`ETCD_NOT_FOUND`] when neither exists.
pub(crate) fn require(name: &str) -> PathBuf {
    locate(name, std::env::var_os("PATH").as_deref())
        .unwrap_or_else(|| panic!("{ETCD_NOT_FOUND} (looked for `{name}` in /usr/bin and on PATH)"))
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
    fn binary_on_path_is_found() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let fake = dir.path().join("osproxy-fake-etcd");
        std::fs::write(&fake, b"").unwrap_or_else(|e| panic!("write: {e}"));
        let found = locate("osproxy-fake-etcd", Some(dir.path().as_os_str()));
        assert_eq!(found, Some(fake));
    }
}
