//! Model-based tests (SPEC §5.2, §5.3, §5.4, §5.10): a random sequence of
//! operations — valid and malformed publishes, deletes, compactions, member
//! restarts, outages during which writes and a compaction happen, and (rarely)
//! an etcd rebuilt from scratch — is applied both to a real etcd and to a
//! trivially correct model; at every quiescent point the store must serve
//! exactly what the model says and report exactly the model's rejections.
//!
//! The seed is printed; set `OSPROXY_MODEL_SEED=<n>` to replay a run.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use osproxy_etcd::{EtcdDirectiveStore, Layout};
use osproxy_observe::DirectiveStore;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const LEVELS: [&str; 4] = ["Off", "Shape", "ShapeTiming", "ShapeRewriteDiff"];

/// Bodies the decoder must reject, each for a different reason.
const MALFORMED: [&str; 5] = [
    "not json",
    r#"{"id":"x","level":"Shape","tennant":"acme","ttl_secs":60}"#,
    r#"{"id":"x","level":"Shape","ttl_secs":0}"#,
    r#"{"id":"x","level":"Shape"}"#,
    r#"{"id":"x","level":"Loud","ttl_secs":60}"#,
];

fn seed() -> u64 {
    let seed = std::env::var("OSPROXY_MODEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("model seed: OSPROXY_MODEL_SEED={seed}");
    seed
}

/// What a store serves, as comparable text: `id level tenant` per directive.
fn served(store: &EtcdDirectiveStore) -> Vec<String> {
    store
        .load()
        .directives()
        .iter()
        .map(|d| {
            let tenant = d.match_.tenant.as_ref().map_or("*", |t| t.as_str());
            format!("{} {:?} {tenant} {}", d.id, d.level, d.sample_per_mille)
        })
        .collect()
}

/// One directive as the model keeps it and as etcd gets it.
#[derive(Clone, Debug, PartialEq)]
struct Directive {
    id: String,
    level: &'static str,
    tenant: String,
    /// Tells one write of a key from the next (a key's id is its suffix).
    sample: u16,
}

impl Directive {
    fn random(rng: &mut StdRng, id: String) -> Self {
        Directive {
            id,
            level: LEVELS[rng.random_range(0..LEVELS.len())],
            tenant: format!("t{}", rng.random_range(0..3)),
            sample: rng.random_range(0..=1000),
        }
    }

    fn json(&self) -> String {
        format!(
            r#"{{"id":"{}","level":"{}","tenant":"{}","sample_per_mille":{},"ttl_secs":600}}"#,
            self.id, self.level, self.tenant, self.sample
        )
    }

    fn served(&self) -> String {
        format!("{} {} {} {}", self.id, self.level, self.tenant, self.sample)
    }
}

/// The prefix layout's model: per key, the last good directive and whether
/// the newest value is rejected.
#[derive(Default, Debug)]
struct PrefixModel {
    good: BTreeMap<String, Directive>,
    rejected: BTreeMap<String, bool>,
}

impl PrefixModel {
    fn served(&self) -> Vec<String> {
        self.good.values().map(Directive::served).collect()
    }

    fn rejected_keys(&self) -> Vec<String> {
        self.rejected
            .iter()
            .filter(|(_, r)| **r)
            .map(|(k, _)| k.clone())
            .collect()
    }
}

/// Applies one random write under `prefix` to etcd and to the model.
fn random_prefix_write(
    rng: &mut StdRng,
    cluster: &EtcdCluster,
    prefix: &str,
    model: &mut PrefixModel,
    generation: &mut u32,
    log: &mut Vec<String>,
) {
    let id = format!("k{}", rng.random_range(0..4));
    let key = format!("{prefix}{id}");
    *generation += 1;
    match rng.random_range(0..10) {
        0..=4 => {
            // A key holds the directive its suffix names.
            let d = Directive::random(rng, id);
            cluster.put(&key, &d.json());
            log.push(format!("put {key} {}", d.json()));
            model.good.insert(key.clone(), d);
            model.rejected.insert(key, false);
        }
        5..=7 => {
            let body = MALFORMED[rng.random_range(0..MALFORMED.len())];
            cluster.put(&key, body);
            log.push(format!("put {key} {body}"));
            model.rejected.insert(key, true);
        }
        _ => {
            cluster.etcdctl(&["del", &key]);
            log.push(format!("del {key}"));
            model.good.remove(&key);
            model.rejected.remove(&key);
        }
    }
}

/// Waits until the store agrees with the model (served set, rejections, and
/// a status at least as new as the last write), or panics with the history.
async fn converge(
    store: &EtcdDirectiveStore,
    want: &[String],
    want_rejected: &[String],
    min_revision: i64,
    log: &[String],
) {
    let check = || {
        let s = store.status();
        let mut rejected: Vec<String> = s.rejected.iter().map(|r| r.key.clone()).collect();
        rejected.sort();
        served(store) == want
            && rejected == want_rejected
            && s.connected
            && s.applied_revision >= min_revision
    };
    let bound = Duration::from_secs(30);
    let waited = tokio::time::timeout(bound, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    if waited.is_err() {
        panic!(
            "store diverged from the model after:\n  {}\nwant {want:?} rejected {want_rejected:?} \
             (revision >= {min_revision})\nserves {:?}\nstatus {:#?}",
            log.join("\n  "),
            served(store),
            store.status()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_store_follows_a_random_history() {
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let cluster = EtcdCluster::single();
    let proxy = TcpForwarder::start(cluster.member(0).client_addr());
    let prefix = format!("{}/", unique_key("model"));
    let store = quick(&[proxy.endpoint()], Layout::Prefix(prefix.clone()))
        .connect()
        .await
        .expect("connect");
    let mut model = PrefixModel::default();
    let mut log = vec![format!("seed {seed}")];
    let mut generation = 0;
    let mut outages = 0;
    let mut rebuilt = false;

    for _ in 0..40 {
        match rng.random_range(0..100) {
            0..=69 => random_prefix_write(
                &mut rng,
                &cluster,
                &prefix,
                &mut model,
                &mut generation,
                &mut log,
            ),
            70..=79 => {
                compact_now(&cluster);
                log.push("compact".into());
            }
            80..=87 => {
                cluster.member(0).restart();
                log.push("restart etcd".into());
            }
            88..=96 if outages < 2 => {
                // An outage during which writes land and get compacted.
                outages += 1;
                proxy.freeze();
                let before = store.status().reconnects;
                wait_status(&store, "the store is cut off", PROMPTLY, |s| {
                    !s.connected && s.reconnects > before
                })
                .await;
                let seen = model.good.clone();
                for _ in 0..rng.random_range(1..=3) {
                    random_prefix_write(
                        &mut rng,
                        &cluster,
                        &prefix,
                        &mut model,
                        &mut generation,
                        &mut log,
                    );
                }
                compact_now(&cluster);
                // The compaction erases the values written in between: the
                // store sees only each key's final value, so a key whose
                // final value is rejected keeps the last good directive the
                // store saw, from before the outage.
                for (key, rejected) in &model.rejected {
                    if *rejected {
                        match seen.get(key) {
                            Some(d) => model.good.insert(key.clone(), d.clone()),
                            None => model.good.remove(key),
                        };
                    }
                }
                proxy.thaw();
                log.push("outage with the writes above, compacted".into());
            }
            97..=99 if !rebuilt => {
                rebuilt = true;
                cluster.restart_empty();
                model = PrefixModel::default();
                log.push("etcd rebuilt from scratch".into());
            }
            _ => {
                random_prefix_write(
                    &mut rng,
                    &cluster,
                    &prefix,
                    &mut model,
                    &mut generation,
                    &mut log,
                );
            }
        }
        converge(
            &store,
            &model.served(),
            &model.rejected_keys(),
            newest_under(&cluster, &prefix),
            &log,
        )
        .await;
    }
}

/// The newest modification revision under `prefix` (what the store must
/// have applied at least), 0 when the prefix is empty.
fn newest_under(cluster: &EtcdCluster, prefix: &str) -> i64 {
    let out = cluster.etcdctl(&["get", prefix, "--prefix", "--write-out=json"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_default();
    v["kvs"]
        .as_array()
        .map(|kvs| {
            kvs.iter()
                .filter_map(|kv| kv["mod_revision"].as_i64())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_store_follows_a_random_history() {
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let cluster = EtcdCluster::single();
    let key = unique_key("model-key");
    let store = quick(&cluster.endpoints(), Layout::Key(key.clone()))
        .connect()
        .await
        .expect("connect");
    // The model: the last good set, and whether the newest value is rejected.
    let mut good: Vec<Directive> = Vec::new();
    let mut rejected = false;
    let mut log = vec![format!("seed {seed}")];

    for generation in 1..=40 {
        match rng.random_range(0..100) {
            0..=49 => {
                let n = rng.random_range(0..4);
                good = (0..n)
                    .map(|i| Directive::random(&mut rng, format!("g{generation}-{i}")))
                    .collect();
                let list: Vec<String> = good.iter().map(Directive::json).collect();
                let body = format!(r#"{{"directives":[{}]}}"#, list.join(","));
                cluster.put(&key, &body);
                log.push(format!("put {body}"));
                rejected = false;
            }
            50..=69 => {
                let body = MALFORMED[rng.random_range(0..MALFORMED.len())];
                // A set-level fault too: two directives sharing an id.
                let body = if rng.random_bool(0.2) {
                    r#"{"directives":[{"id":"d","level":"Shape","ttl_secs":60},{"id":"d","level":"Shape","ttl_secs":60}]}"#
                } else {
                    body
                };
                cluster.put(&key, body);
                log.push(format!("put {body}"));
                rejected = true;
            }
            70..=84 => {
                cluster.etcdctl(&["del", &key]);
                log.push("del".into());
                good.clear();
                rejected = false;
            }
            85..=92 => {
                compact_now(&cluster);
                log.push("compact".into());
            }
            _ => {
                cluster.member(0).restart();
                log.push("restart etcd".into());
            }
        }
        let want: Vec<String> = good.iter().map(Directive::served).collect();
        let want_rejected = if rejected { vec![key.clone()] } else { vec![] };
        converge(
            &store,
            &want,
            &want_rejected,
            mod_revision(&cluster, &key),
            &log,
        )
        .await;
    }
}
