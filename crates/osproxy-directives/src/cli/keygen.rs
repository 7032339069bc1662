//! `keygen`: a new Ed25519 key for signing directive sets and request
//! headers. Writes the private key to a new file with 0600 permissions and
//! prints the public key line, for the instances' trust store.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use osproxy_observe::SignerKey;
use serde_json::json;

use super::common::{finish, print_json, CliError, OutputArgs};

/// Examples shown in `--help`.
pub const EXAMPLES: &str = "\
Examples:
  osproxy-directives keygen --key-id ops-2026 --out ops-2026.key >> fleet.trust
  osproxy-directives serve --etcd --trust-store fleet.trust
  osproxy-directives publish --sign-key ops-2026.key directives.json

The private key file is created new (never overwritten) with mode 0600; keep
it off the instances. The printed line goes into every instance's trust store
file; several keys may be trusted at once, so rotate by adding the new key,
switching the signers, then removing the old one.";

/// Options of `keygen`.
#[derive(Args, Debug)]
pub struct KeygenOpts {
    /// The key id signatures name: 1–64 characters of [A-Za-z0-9._-].
    #[arg(long, value_name = "ID")]
    pub key_id: String,
    /// Where to write the private key (a new file, mode 0600).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Output format.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Runs `keygen`.
pub async fn run(opts: KeygenOpts) -> ExitCode {
    finish(opts.output.json, async { execute(&opts) }).await
}

fn execute(opts: &KeygenOpts) -> Result<(), CliError> {
    let key =
        SignerKey::generate(&opts.key_id).map_err(|e| CliError::usage(e.slug(), e.to_string()))?;
    write_private(&opts.out, &key)?;
    let public = key.to_public_line();
    if opts.output.json {
        print_json(&json!({
            "key_id": key.id(),
            "private_key_file": opts.out.display().to_string(),
            "public_key": public.trim_end(),
        }));
    } else {
        print!("{public}");
    }
    Ok(())
}

/// Creates `path` with mode 0600 (refusing an existing file) and writes the
/// private key line.
fn write_private(path: &std::path::Path, key: &SignerKey) -> Result<(), CliError> {
    use std::os::unix::fs::OpenOptionsExt;
    let fail = |e: std::io::Error| {
        let slug = if e.kind() == std::io::ErrorKind::AlreadyExists {
            "file_exists"
        } else {
            "unwritable_key"
        };
        CliError::usage(slug, format!("cannot create {}", path.display())).caused_by(&e)
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(fail)?;
    file.write_all(key.to_private_line().as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(fail)
}
