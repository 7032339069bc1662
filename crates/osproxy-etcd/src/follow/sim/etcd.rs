//! The simulated etcd: one cluster's MVCC state and history, and the
//! simulation's deterministic random generator.

use std::collections::BTreeMap;

use crate::follow::{Event, Header, Kv, LivenessRead, Snapshot};

/// A small deterministic generator (xorshift64*), so a seed replays exactly.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub(super) fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

/// The simulated etcd: one cluster's MVCC state and history.
pub(super) struct Etcd {
    pub(super) cluster_id: u64,
    pub(super) revision: i64,
    pub(super) compacted: i64,
    /// key → (value, create revision, mod revision)
    pub(super) kvs: BTreeMap<Vec<u8>, (Vec<u8>, i64, i64)>,
    /// Events by revision (one transaction each).
    pub(super) history: BTreeMap<i64, Vec<Event>>,
}

impl Etcd {
    pub(super) fn new(cluster_id: u64, revision: i64) -> Etcd {
        Etcd {
            cluster_id,
            revision,
            compacted: 0,
            kvs: BTreeMap::new(),
            history: BTreeMap::new(),
        }
    }

    pub(super) fn header(&self) -> Header {
        Header {
            revision: self.revision,
            cluster_id: self.cluster_id,
        }
    }

    /// Applies one transaction of puts (`Some(value)`) and deletes.
    pub(super) fn txn(&mut self, ops: Vec<(Vec<u8>, Option<Vec<u8>>)>) {
        let rev = self.revision + 1;
        let mut events = Vec::new();
        for (key, op) in ops {
            match op {
                Some(value) => {
                    let create = self.kvs.get(&key).map_or(rev, |e| e.1);
                    self.kvs.insert(key.clone(), (value.clone(), create, rev));
                    events.push(Event::Put(Kv {
                        key,
                        value,
                        mod_revision: rev,
                        create_revision: create,
                    }));
                }
                None => {
                    if self.kvs.remove(&key).is_some() {
                        events.push(Event::Delete(Kv {
                            key,
                            value: Vec::new(),
                            mod_revision: rev,
                            create_revision: 0,
                        }));
                    }
                }
            }
        }
        if !events.is_empty() {
            self.revision = rev;
            self.history.insert(rev, events);
        }
    }

    pub(super) fn snapshot(&self) -> Snapshot {
        Snapshot {
            header: self.header(),
            kvs: self
                .kvs
                .iter()
                .map(|(k, (v, c, m))| Kv {
                    key: k.clone(),
                    value: v.clone(),
                    mod_revision: *m,
                    create_revision: *c,
                })
                .collect(),
        }
    }

    pub(super) fn liveness_read(&self, min_mod_revision: i64) -> LivenessRead {
        LivenessRead {
            header: self.header(),
            newer_keys: usize::from(self.kvs.values().any(|e| e.2 >= min_mod_revision)),
            count: self.kvs.len(),
        }
    }
}
