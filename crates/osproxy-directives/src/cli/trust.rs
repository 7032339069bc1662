//! What the trust subcommands and flags share (SPEC §9): reading a private
//! key file ([`read_signer`], `--sign-key`) and a trust store file
//! ([`read_trust_store`], `--trust-store`), and [`SignArgs`], the
//! `--sign-key` flag of `publish`, `add` and `remove`.

use std::path::{Path, PathBuf};

use clap::Args;
use osproxy_etcd::Publisher;
use osproxy_observe::{KeyError, SignedFormat, SignerKey, TrustStore};

use super::common::{meaningless_flag, CliError, Given};

/// Longest key or trust store file read, in bytes.
const MAX_KEY_FILE: u64 = 64 * 1024;

/// `--sign-key`: sign every value written.
#[derive(Args, Clone, Debug, Default)]
#[command(next_help_heading = "Signing")]
pub struct SignArgs {
    /// Sign what is written with this private key file (from `keygen`), for
    /// instances that enforce a trust store.
    #[arg(long, env = "OSPROXY_SIGN_KEY", value_name = "FILE")]
    pub sign_key: Option<PathBuf>,
    /// The signed format to write: v1, or v2 (also signs a sequence number,
    /// the time and the note, so instances refuse an old value put back).
    /// Upgrade every instance before writing v2.
    #[arg(
        long,
        env = "OSPROXY_SIGNED_FORMAT",
        value_name = "VERSION",
        default_value = "v1",
        value_parser = ["v1", "v2"]
    )]
    pub signed_format: String,
}

impl SignArgs {
    /// Refuses `--signed-format` typed without `--sign-key`: nothing would
    /// be signed (exit 2 `meaningless_flag`).
    ///
    /// # Errors
    /// That usage error.
    pub fn refuse_meaningless(&self, given: &Given) -> Result<(), CliError> {
        if given.has("signed_format") && self.sign_key.is_none() {
            return Err(meaningless_flag(
                "--signed-format",
                "without --sign-key (nothing is signed)",
                "add --sign-key, or drop --signed-format",
            ));
        }
        Ok(())
    }

    /// `publisher`, signing with the key when one is given.
    ///
    /// # Errors
    /// A usage error when the key file cannot be read.
    pub fn apply(&self, publisher: Publisher) -> Result<Publisher, CliError> {
        Ok(match &self.sign_key {
            Some(path) => publisher
                .with_signer(read_signer(path)?)
                .with_signed_format(self.format()),
            None => publisher,
        })
    }

    /// The signed format asked for (`--signed-format`).
    pub fn format(&self) -> SignedFormat {
        match self.signed_format.as_str() {
            "v2" => SignedFormat::V2,
            _ => SignedFormat::V1,
        }
    }
}

/// Reads a private key file.
///
/// # Errors
/// `unreadable_key` or the key's slug (`malformed_key`, …); never echoes the
/// file's content.
pub fn read_signer(path: &Path) -> Result<SignerKey, CliError> {
    check_private(path)?;
    SignerKey::parse(&read_small(path)?).map_err(|e| key_error(e, path))
}

/// Refuses a secret file (a private key, a token) that a group or others
/// can read or write, as ssh does: whoever else can read it can sign or
/// publish as its owner.
///
/// # Errors
/// `unreadable_key` when the file cannot be inspected, `key_permissions`
/// when its mode allows group or other access.
pub fn check_private(path: &Path) -> Result<(), CliError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| {
        CliError::usage("unreadable_key", format!("cannot read {}", path.display())).caused_by(&e)
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(CliError::usage(
            "key_permissions",
            format!(
                "{} is accessible by group or others (mode {mode:03o}); it must be private",
                path.display()
            ),
        )
        .hint("chmod 600 the file (in Kubernetes, mount the secret with defaultMode: 0400)"));
    }
    Ok(())
}

/// Reads a trust store file (public-key lines).
///
/// # Errors
/// `unreadable_key` or the store's slug (`duplicate_key_id`, …).
pub fn read_trust_store(path: &Path) -> Result<TrustStore, CliError> {
    TrustStore::parse(&read_small(path)?).map_err(|e| key_error(e, path))
}

pub(crate) fn read_small(path: &Path) -> Result<String, CliError> {
    use std::io::Read;
    let unreadable = |e: &std::io::Error| {
        CliError::usage("unreadable_key", format!("cannot read {}", path.display())).caused_by(e)
    };
    let file = std::fs::File::open(path).map_err(|e| unreadable(&e))?;
    let mut text = String::new();
    file.take(MAX_KEY_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| unreadable(&e))?;
    if text.len() as u64 > MAX_KEY_FILE {
        return Err(CliError::usage(
            "too_large",
            format!("{} is larger than a key file can be", path.display()),
        ));
    }
    Ok(text)
}

fn key_error(e: KeyError, path: &Path) -> CliError {
    CliError::usage(e.slug(), format!("{}: {e}", path.display()))
}
