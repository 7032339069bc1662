//! Anti-rollback for signed format v2 (`osproxy_observe::signed`): the
//! [`HighWater`] mark of one key or prefix, and the rules that refuse an old
//! signed value put back by someone who cannot sign.
//!
//! Why: a signature says who wrote a value, not that it is still the
//! current one. With etcd write access and no key, an attacker can put back
//! the bytes of a capture set the operator replaced with an empty one, and
//! they verify. Format v2 signs a sequence number that grows with every
//! write of the key (or, in the prefix layout, of the prefix's manifest);
//! an instance remembers the highest it accepted and refuses anything
//! lower (`replayed`) while the last good set keeps serving.
//!
//! # What survives what
//! - The mark lives in memory for the store's life.
//! - With a state directory ([`EtcdStoreBuilder::state_dir`](crate::EtcdStoreBuilder::state_dir))
//!   it survives a restart: one small file per key or prefix, replaced
//!   atomically (written to a temporary file, synced, renamed) whenever the
//!   mark rises.
//! - A fresh instance (no mark yet) cannot know the current sequence, so it
//!   bounds what it accepts by time: a value signed longer ago than the
//!   longest directive lifetime (plus the clock-skew allowance) is refused as
//!   `stale_signature`. Such a value can serve nothing anyway (every
//!   directive it holds has expired), so refusing it loses nothing; the
//!   slug differs from `replayed` because it proves no replay, only age. A
//!   quiet fleet clears it with any publish, which re-signs.
//! - Once a key or prefix has a mark, a format v1 value for it is refused
//!   as `legacy_signature` (no downgrade to the format without a sequence).
//!
//! # State file
//! `<state-dir>/highwater-<first 16 bytes of sha256(key or prefix), hex>`:
//! ```text
//! osproxy-highwater v1 <seq>
//! <key or prefix>
//! ```

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use osproxy_observe::manifest::value_hash;
use osproxy_observe::signed::SignedMeta;
use osproxy_observe::RejectReason;

use crate::error::ConfigError;

const STATE_TAG: &str = "osproxy-highwater v1";

/// The highest sequence accepted for one key or prefix.
#[derive(Debug, Default)]
pub(crate) struct HighWater {
    seq: Option<u64>,
    /// Where it is kept across restarts, if anywhere.
    file: Option<StateFile>,
}

#[derive(Debug)]
struct StateFile {
    path: PathBuf,
    key: String,
}

impl HighWater {
    /// The mark for `key` (the single key, or the prefix), read from
    /// `dir` when given (a missing file is no mark yet).
    ///
    /// # Errors
    /// [`ConfigError::StateDir`] when the directory or the file cannot be
    /// read, or the file is not one this crate wrote for this key.
    pub(crate) fn load(dir: Option<&Path>, key: &str) -> Result<HighWater, ConfigError> {
        let Some(dir) = dir else {
            return Ok(HighWater::default());
        };
        let err = |why: &'static str| ConfigError::StateDir {
            path: dir.display().to_string(),
            why,
        };
        if !dir.is_dir() {
            return Err(err("not a directory"));
        }
        let name: String = value_hash(key.as_bytes())[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let path = dir.join(format!("highwater-{name}"));
        let seq = match read_bounded(&path) {
            Ok(bytes) => Some(parse_state(&bytes, key).ok_or(err("unreadable high-water file"))?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(_) => return Err(err("cannot read the high-water file")),
        };
        Ok(HighWater {
            seq,
            file: Some(StateFile {
                path,
                key: key.to_owned(),
            }),
        })
    }

    /// The highest sequence accepted, if any.
    pub(crate) fn get(&self) -> Option<u64> {
        self.seq
    }

    /// Whether a v2 value with `meta` may apply: `replayed` below the mark;
    /// `stale_signature` for news (no mark, or above it) signed more than
    /// `max_age` before `now_unix_nanos`.
    pub(crate) fn judge(
        &self,
        meta: &SignedMeta,
        now_unix_nanos: u64,
        max_age: Duration,
    ) -> Result<(), RejectReason> {
        if self.seq.is_some_and(|h| meta.seq < h) {
            return Err(RejectReason::Replayed);
        }
        let news = self.seq.is_none_or(|h| meta.seq > h);
        let max_age = u64::try_from(max_age.as_nanos()).unwrap_or(u64::MAX);
        if news && meta.signed_at_unix_nanos.saturating_add(max_age) < now_unix_nanos {
            return Err(RejectReason::StaleSignature);
        }
        Ok(())
    }

    /// Records that `seq` was accepted (keeps the higher mark), writing the
    /// state file when the mark rose. A failed write is logged and the mark
    /// kept in memory: serving never stops for the state directory.
    pub(crate) fn raise(&mut self, seq: u64) {
        if self.seq.is_some_and(|h| h >= seq) {
            return;
        }
        self.seq = Some(seq);
        if let Some(file) = &self.file {
            if let Err(e) = write_atomically(&file.path, &file.key, seq) {
                tracing::warn!(
                    error = %e,
                    "cannot write the high-water file; the mark is kept in memory only"
                );
            }
        }
    }
}

/// Longest state file read: a sequence and a key fit well within it.
const MAX_STATE_FILE: u64 = 16 * 1024;

/// The file's first [`MAX_STATE_FILE`] bytes and one more (so that a longer
/// file does not parse).
fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_STATE_FILE + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn parse_state(bytes: &[u8], key: &str) -> Option<u64> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut lines = text.split('\n');
    let seq = lines.next()?.strip_prefix(STATE_TAG)?.strip_prefix(' ')?;
    let seq = seq.parse::<u64>().ok()?;
    (lines.next()? == key && lines.next() == Some("") && lines.next().is_none()).then_some(seq)
}

fn write_atomically(path: &Path, key: &str, seq: u64) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(format!("{STATE_TAG} {seq}\n{key}\n").as_bytes())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const DAY: u64 = 24 * 3600 * 1_000_000_000;

    fn meta(seq: u64, signed_at: u64) -> SignedMeta {
        SignedMeta {
            seq,
            signed_at_unix_nanos: signed_at,
            ..SignedMeta::default()
        }
    }

    #[test]
    fn lower_sequences_are_replays_and_old_news_is_stale() {
        let max = Duration::from_secs(7 * 24 * 3600);
        let now = 100 * DAY;
        let mut hw = HighWater::default();
        // Fresh: bounded by time only.
        assert_eq!(hw.judge(&meta(1, now - DAY), now, max), Ok(()));
        assert_eq!(
            hw.judge(&meta(1, now - 8 * DAY), now, max),
            Err(RejectReason::StaleSignature)
        );
        hw.raise(5);
        assert_eq!(
            hw.judge(&meta(4, now), now, max),
            Err(RejectReason::Replayed)
        );
        // The accepted value itself, read again, however old.
        assert_eq!(hw.judge(&meta(5, now - 30 * DAY), now, max), Ok(()));
        assert_eq!(hw.judge(&meta(6, now), now, max), Ok(()));
        assert_eq!(
            hw.judge(&meta(6, now - 8 * DAY), now, max),
            Err(RejectReason::StaleSignature)
        );
        hw.raise(3);
        assert_eq!(hw.get(), Some(5), "the mark never goes down");
    }

    #[test]
    fn the_mark_survives_in_the_state_dir_and_a_foreign_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("osproxy-hw-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut hw = HighWater::load(Some(&dir), "/p/").unwrap();
        assert_eq!(hw.get(), None);
        hw.raise(7);
        assert_eq!(HighWater::load(Some(&dir), "/p/").unwrap().get(), Some(7));
        assert_eq!(HighWater::load(Some(&dir), "/q/").unwrap().get(), None);
        let path = hw.file.as_ref().unwrap().path.clone();
        std::fs::write(&path, "osproxy-highwater v1 7\n/q/\n").unwrap();
        assert!(matches!(
            HighWater::load(Some(&dir), "/p/"),
            Err(ConfigError::StateDir { .. })
        ));
        std::fs::write(&path, "garbage").unwrap();
        assert!(HighWater::load(Some(&dir), "/p/").is_err());
        assert!(HighWater::load(Some(&dir.join("missing")), "/p/").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
