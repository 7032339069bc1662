//! `explain`: how a request would be decided, directive by directive (SPEC
//! §8) — asked of a running instance (`--instance URL`: its applied set, with
//! its clamps, budgets and counters) or evaluated here on the live set in
//! etcd (the set as published, before any instance's ceilings).
//!
//! The document is [`crate::explain::explain_json`]'s, the same as
//! `GET /admin/explain`.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::common::{clock, finish, print_json, CliError, FleetArgs};
use crate::explain::{explain_json, ExplainRequest};

/// Examples shown in `--help`.
pub const EXAMPLES: &str = "\
Examples:
  osproxy-directives explain --tenant acme --endpoint Search --request-id r-42
  osproxy-directives explain --instance http://127.0.0.1:9464 --tenant acme --request-id r-42
  osproxy-directives explain --tenant acme --json | jq '.directives[] | select(.applies)'

Without --instance the live set is read from etcd and evaluated here (no
instance's ceilings, budgets or counters); with it, the instance answers.";

/// How long `--instance` waits for the instance.
const INSTANCE_TIMEOUT: Duration = Duration::from_secs(5);
/// The most of an answer `--instance` reads.
const MAX_ANSWER_BYTES: u64 = 16 * 1024 * 1024;

/// Options of `explain`.
#[derive(Args, Debug)]
pub struct ExplainOpts {
    /// The request's attributes (unset: absent; endpoint `Unknown`).
    #[command(flatten)]
    pub targets: super::common::TargetArgs,
    /// The request id (sampling hashes it); empty if unset.
    #[arg(long, default_value = "")]
    pub request_id: String,
    /// Ask this running instance (`http://HOST:PORT`, its admin listener)
    /// instead of evaluating the live set from etcd.
    #[arg(long, value_name = "URL")]
    pub instance: Option<String>,
    /// The instance's admin token, if it has one.
    #[arg(long, env = "OSPROXY_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Where the directives live, how to reach etcd, limits and output.
    #[command(flatten)]
    pub fleet: FleetArgs,
}

impl ExplainOpts {
    fn pairs(&self) -> Vec<(&'static str, &str)> {
        let mut pairs = self.targets.pairs();
        pairs.push(("request_id", self.request_id.as_str()));
        pairs
    }
}

/// Runs `explain`.
pub async fn run(opts: ExplainOpts) -> ExitCode {
    let json = opts.fleet.output.json;
    finish(json, async {
        let req = ExplainRequest::from_pairs(opts.pairs())
            .map_err(|slug| CliError::usage(slug, "the request to explain is invalid"))?;
        let doc = match &opts.instance {
            Some(url) => ask_instance(url, opts.token.as_deref(), &opts.pairs()).await?,
            None => {
                let publisher = opts.fleet.publisher().await?;
                let live = publisher.live().await?;
                let set = live
                    .set
                    .with_revision(u64::try_from(live.revision).unwrap_or(0));
                explain_json(&set, &req, clock().now(), &[])
            }
        };
        if json {
            print_json(&doc);
        } else {
            print_human(&doc);
        }
        Ok(())
    })
    .await
}

/// `GET /admin/explain` on a running instance (plain HTTP/1.1).
async fn ask_instance(
    url: &str,
    token: Option<&str>,
    pairs: &[(&str, &str)],
) -> Result<Value, CliError> {
    let bad_url = || CliError::usage("invalid_instance", "--instance must be http://HOST:PORT");
    let authority = url
        .strip_prefix("http://")
        .ok_or_else(bad_url)?
        .trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') {
        return Err(bad_url());
    }
    let query: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", percent_encode(v)))
        .collect();
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!(
        "GET /admin/explain?{} HTTP/1.1\r\nHost: {authority}\r\n{auth}Connection: close\r\n\r\n",
        query.join("&")
    );
    let unreachable = |e: std::io::Error| {
        CliError::runtime("instance_unreachable", "cannot reach the instance").caused_by(&e)
    };
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(authority)
            .await
            .map_err(unreachable)?;
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(unreachable)?;
        let mut answer = Vec::new();
        stream
            .take(MAX_ANSWER_BYTES)
            .read_to_end(&mut answer)
            .await
            .map_err(unreachable)?;
        Ok::<_, CliError>(answer)
    };
    let answer = tokio::time::timeout(INSTANCE_TIMEOUT, exchange)
        .await
        .map_err(|_| {
            CliError::runtime("instance_timeout", "the instance did not answer in time")
        })??;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let ok = head.starts_with("HTTP/1.1 200");
    let doc: Value = serde_json::from_str(body)
        .map_err(|_| CliError::runtime("instance_answer", "the instance's answer is not JSON"))?;
    if !ok {
        let slug = doc["error"].as_str().unwrap_or("instance_error");
        let message = format!("the instance refused: {slug}");
        return Err(match slug {
            "unauthorized" => CliError::usage("unauthorized", message),
            _ => CliError::usage("instance_refused", message),
        });
    }
    Ok(doc)
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn print_human(doc: &Value) {
    let d = &doc["decision"];
    let mut out = std::io::stdout().lock();
    let winner = d["directive"]
        .as_str()
        .map_or_else(String::new, |w| format!(" from {w}"));
    let revision = d["revision"]
        .as_u64()
        .map_or_else(String::new, |r| format!(" (revision {r})"));
    let _ = writeln!(
        out,
        "decision: {}{winner}{revision}; ring buffer {}, capture {}; request bucket {}",
        d["level"].as_str().unwrap_or("Off"),
        yes(&d["ring_buffer"]),
        yes(&d["capture"]),
        doc["request"]["bucket"],
    );
    let _ = writeln!(
        out,
        "{:<32} {:<16} {:<8} {:<12} {:<10} BUDGET",
        "DIRECTIVE", "LEVEL", "APPLIES", "WHY NOT", "SAMPLE"
    );
    for e in doc["directives"].as_array().map_or(&[][..], Vec::as_slice) {
        let budget = match &e["budget"] {
            Value::Null => "-".to_owned(),
            b => format!("{}/{} this second", b["used_this_second"], b["max_per_sec"]),
        };
        let _ = writeln!(
            out,
            "{:<32} {:<16} {:<8} {:<12} {:<10} {}",
            e["id"].as_str().unwrap_or(""),
            e["level"].as_str().unwrap_or(""),
            if e["winner"] == Value::Bool(true) {
                "winner"
            } else {
                yes(&e["applies"])
            },
            e["why_not"].as_str().unwrap_or("-"),
            format!("{}‰", e["sample_per_mille"]),
            budget,
        );
    }
}

fn yes(v: &Value) -> &'static str {
    if v.as_bool() == Some(true) {
        "yes"
    } else {
        "no"
    }
}
