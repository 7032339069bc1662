//! [`Follower`]: the transition function of the watch core. It takes etcd's
//! answers (a [`Snapshot`], each [`WatchMsg`], a [`LivenessRead`]) and says
//! what they mean: apply these changes, confirm freshness as of a revision,
//! keep the resume point, read afresh, or drop the connection. The recovery
//! rules of SPEC §5 and §7 live here, once:
//!
//! - a read at revision R is applied whole and the watch resumes at R+1;
//!   keys that vanished from a read are deletes nobody saw;
//! - events below the resume point are duplicates (etcd 3.4 repeats them, a
//!   watch can travel back in time) and are ignored; the events of one
//!   transaction share a revision, so the floor is the resume point as it
//!   was before the message;
//! - a compaction error, a changed cluster id, or a header revision below
//!   one already seen means the history we follow is gone: read afresh,
//!   never resume from the compact revision;
//! - a progress reply (no events) confirms freshness but never moves the
//!   resume point;
//! - a liveness read confirms only a range that provably did not change
//!   after what was applied.

use std::sync::Arc;

use osproxy_core::Clock;
use osproxy_observe::{DecodeLimits, DirectiveSet, RejectReason, TrustStore};

use super::applied::{AppliedState, Outcome};
use super::types::{Event, LivenessRead, Snapshot, WatchMsg};
use crate::status::Rejection;

/// Why the current watch must end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// Compacted, rebuilt, gone backwards, or the watch missed a change:
    /// take a fresh read.
    Reread,
    /// The connection is unusable: reconnect and resume.
    Reconnect(&'static str),
}

/// What applying a read or a watch message did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Applied {
    /// Whether the served set may have changed (compose and swap).
    pub(crate) outcome: Outcome,
    /// Values rejected by this step (their keys' last good keeps serving).
    pub(crate) rejected: Vec<RejectReason>,
    /// Fresh as of this revision.
    pub(crate) confirmed: i64,
    /// A watch was (re)established: the backoff may reset.
    pub(crate) created: bool,
    /// A read found the cluster rebuilt: its old revisions mean nothing.
    pub(crate) rebuilt: bool,
}

impl Applied {
    fn nothing(confirmed: i64) -> Applied {
        Applied {
            outcome: Outcome::Unchanged,
            rejected: Vec::new(),
            confirmed,
            created: false,
            rebuilt: false,
        }
    }
}

/// The core's state: what was applied, and which history it came from.
#[derive(Debug)]
pub(crate) struct Follower {
    applied: AppliedState,
    /// Highest header revision seen from the current cluster.
    header_revision: i64,
    cluster_id: Option<u64>,
}

impl Follower {
    /// A follower that has applied nothing.
    pub(crate) fn new(prefix_layout: bool, limits: DecodeLimits) -> Follower {
        Follower {
            applied: AppliedState::new(prefix_layout, limits),
            header_revision: 0,
            cluster_id: None,
        }
    }

    /// Decodes through `shared` (see [`super::shared::SharedDecodes`]).
    pub(crate) fn with_shared_decodes(mut self, shared: Arc<super::shared::SharedDecodes>) -> Self {
        self.applied.share_decodes(shared);
        self
    }

    /// Prefix layout: refuses a key whose suffix after `prefix` is not its
    /// directive's id (`key_id_mismatch`).
    pub(crate) fn with_prefix(mut self, prefix: &str) -> Follower {
        self.applied.set_prefix(prefix);
        self
    }

    /// Starts anti-rollback from this high-water mark.
    pub(crate) fn with_high_water(mut self, high: super::rollback::HighWater) -> Follower {
        self.applied.set_high_water(high);
        self
    }

    /// Rejections the last composition found, not counted before.
    pub(crate) fn take_fresh_rejections(&mut self) -> Vec<RejectReason> {
        self.applied.take_fresh_rejections()
    }

    /// Applies only values signed by a key in `trust` (SPEC §9).
    pub(crate) fn trusting(mut self, trust: Option<Arc<TrustStore>>) -> Follower {
        self.applied.set_trust(trust);
        self
    }

    /// The newest applied change's revision (deletes included).
    pub(crate) fn revision(&self) -> i64 {
        self.applied.revision()
    }

    /// The set to serve now (see [`AppliedState::compose`]).
    pub(crate) fn compose(&mut self) -> Arc<DirectiveSet> {
        self.applied.compose()
    }

    /// Every standing rejection.
    pub(crate) fn rejections(&self) -> Vec<Rejection> {
        self.applied.rejections()
    }

    /// Applies a fresh read; the watch then starts at `revision() .max(read
    /// revision) + 1`, i.e. at `Applied::confirmed + 1`.
    pub(crate) fn on_read(&mut self, snap: Snapshot, clock: &dyn Clock) -> Applied {
        let Snapshot { header, kvs } = snap;
        let rebuilt = self.cluster_id.is_some_and(|id| id != header.cluster_id)
            || header.revision < self.header_revision;
        if rebuilt {
            // A rebuilt cluster: its revisions start afresh.
            self.applied.forget_revision();
        }
        self.header_revision = header.revision;
        self.cluster_id = Some(header.cluster_id);
        let mut rejected = Vec::new();
        let outcome = self.applied.replace_all(kvs, clock, &mut rejected);
        Applied {
            outcome,
            rejected,
            confirmed: header.revision,
            created: false,
            rebuilt,
        }
    }

    /// Applies one watch message, moving `next_revision` past what it
    /// applied, or says why the watch must end.
    pub(crate) fn on_watch(
        &mut self,
        msg: WatchMsg,
        next_revision: &mut i64,
        clock: &dyn Clock,
    ) -> Result<Applied, End> {
        let header = msg.header;
        if self
            .cluster_id
            .is_some_and(|id| id != header.cluster_id && header.cluster_id != 0)
        {
            return Err(End::Reread);
        }
        if msg.compact_revision != 0 {
            return Err(End::Reread);
        }
        if msg.canceled {
            return Err(End::Reconnect("watch canceled"));
        }
        if msg.created && header.revision < *next_revision - 1 {
            // A new watch whose cluster is behind where we resume from was
            // rebuilt (revision went backwards): what we wait for may never
            // come.
            return Err(End::Reread);
        }
        if msg.events.is_empty() {
            // Progress reply or creation: liveness only; the resume point stays.
            let mut applied = Applied::nothing(header.revision.min(*next_revision - 1));
            applied.created = msg.created;
            return Ok(applied);
        }
        if header.revision < self.header_revision {
            return Err(End::Reread);
        }
        self.header_revision = header.revision;
        let mut applied = Applied::nothing(0);
        applied.created = msg.created;
        let floor = *next_revision;
        for event in msg.events {
            let revision = event.kv().mod_revision;
            if revision < floor {
                continue; // a duplicate, or a watch travelling back in time
            }
            let o = match event {
                Event::Put(kv) => self.applied.put(kv, clock, &mut applied.rejected),
                Event::Delete(kv) => self.applied.delete(&kv.key, revision),
            };
            if o == Outcome::Changed {
                applied.outcome = Outcome::Changed;
            }
            *next_revision = (*next_revision).max(revision + 1);
        }
        applied.confirmed = *next_revision - 1;
        Ok(applied)
    }

    /// The `min_mod_revision` a liveness read asks with.
    pub(crate) fn liveness_floor(&self) -> i64 {
        self.applied.revision() + 1
    }

    /// Judges a liveness read: `Ok(revision)` when it proves that nothing in
    /// the range changed after what was applied (no key newer than the
    /// applied revision, as many keys as applied, the same cluster, a header
    /// revision not gone backwards): fresh as of its header revision.
    /// Otherwise the watch missed something, or the cluster was rebuilt:
    /// [`End::Reread`].
    pub(crate) fn on_liveness_read(&mut self, read: &LivenessRead) -> Result<i64, End> {
        let same_cluster = self
            .cluster_id
            .is_none_or(|id| id == read.header.cluster_id || read.header.cluster_id == 0);
        let current = same_cluster
            && read.header.revision >= self.header_revision
            && read.newer_keys == 0
            && read.count == self.applied.key_count();
        if !current {
            return Err(End::Reread);
        }
        self.header_revision = read.header.revision;
        Ok(read.header.revision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::follow::types::{Header, Kv};
    use osproxy_core::ManualClock;

    fn body(id: &str) -> Vec<u8> {
        format!(r#"{{"directives":[{{"id":"{id}","level":"Shape","ttl_secs":60}}]}}"#).into_bytes()
    }

    fn kv(rev: i64, id: &str) -> Kv {
        Kv {
            key: b"k".to_vec(),
            value: body(id),
            mod_revision: rev,
            create_revision: 2,
        }
    }

    fn header(revision: i64) -> Header {
        Header {
            revision,
            cluster_id: 7,
        }
    }

    fn ids(f: &mut Follower) -> Vec<String> {
        f.compose()
            .directives()
            .iter()
            .map(|d| d.id.clone())
            .collect()
    }

    /// A follower that read `k` = a at revision 5.
    fn follower(clock: &ManualClock) -> (Follower, i64) {
        let mut f = Follower::new(false, DecodeLimits::default());
        let snap = Snapshot {
            header: header(5),
            kvs: vec![kv(5, "a")],
        };
        let applied = f.on_read(snap, clock);
        assert_eq!(applied.outcome, Outcome::Changed);
        assert_eq!(applied.confirmed, 5);
        (f, applied.confirmed + 1)
    }

    fn events(rev: i64, list: Vec<Event>) -> WatchMsg {
        WatchMsg {
            header: header(rev),
            events: list,
            ..WatchMsg::default()
        }
    }

    #[test]
    fn events_below_the_resume_point_are_duplicates() {
        let clock = ManualClock::new();
        let (mut f, mut next) = follower(&clock);
        let dup = events(5, vec![Event::Put(kv(5, "old"))]);
        let applied = f.on_watch(dup, &mut next, &clock).unwrap();
        assert_eq!(applied.outcome, Outcome::Unchanged);
        assert_eq!((next, ids(&mut f)), (6, vec!["a".to_owned()]));
        let new = events(6, vec![Event::Put(kv(6, "b"))]);
        let applied = f.on_watch(new, &mut next, &clock).unwrap();
        assert_eq!(
            (applied.outcome, applied.confirmed, next),
            (Outcome::Changed, 6, 7)
        );
        assert_eq!(ids(&mut f), ["b"]);
    }

    #[test]
    fn a_progress_reply_confirms_but_never_moves_the_resume_point() {
        let clock = ManualClock::new();
        let (mut f, mut next) = follower(&clock);
        let applied = f.on_watch(events(40, vec![]), &mut next, &clock).unwrap();
        assert_eq!((applied.confirmed, next), (5, 6));
    }

    #[test]
    fn lost_histories_are_read_afresh() {
        let clock = ManualClock::new();
        let (mut f, mut next) = follower(&clock);
        let compacted = WatchMsg {
            compact_revision: 9,
            ..events(10, vec![])
        };
        assert_eq!(f.on_watch(compacted, &mut next, &clock), Err(End::Reread));
        let other_cluster = WatchMsg {
            header: Header {
                revision: 10,
                cluster_id: 8,
            },
            ..events(10, vec![Event::Put(kv(10, "x"))])
        };
        assert_eq!(
            f.on_watch(other_cluster, &mut next, &clock),
            Err(End::Reread)
        );
        let behind = WatchMsg {
            created: true,
            ..events(2, vec![])
        };
        assert_eq!(f.on_watch(behind, &mut next, &clock), Err(End::Reread));
        let backwards = events(4, vec![Event::Put(kv(7, "x"))]);
        assert_eq!(f.on_watch(backwards, &mut next, &clock), Err(End::Reread));
        let canceled = WatchMsg {
            canceled: true,
            ..events(6, vec![])
        };
        assert!(matches!(
            f.on_watch(canceled, &mut next, &clock),
            Err(End::Reconnect(_))
        ));
        assert_eq!(ids(&mut f), ["a"], "nothing was applied");
    }

    #[test]
    fn an_unchanged_re_read_changes_nothing_and_a_rebuilt_cluster_is_noticed() {
        let clock = ManualClock::new();
        let (mut f, _) = follower(&clock);
        let same = Snapshot {
            header: header(9),
            kvs: vec![kv(5, "a")],
        };
        let applied = f.on_read(same, &clock);
        assert_eq!(
            (applied.outcome, applied.rebuilt),
            (Outcome::Unchanged, false)
        );
        let rebuilt = Snapshot {
            header: header(3),
            kvs: vec![kv(2, "z")],
        };
        let applied = f.on_read(rebuilt, &clock);
        assert!(applied.rebuilt);
        assert_eq!((f.revision(), ids(&mut f)), (2, vec!["z".to_owned()]));
    }

    #[test]
    fn a_liveness_read_confirms_only_an_unchanged_range() {
        let clock = ManualClock::new();
        let read = |revision: i64, cluster_id: u64, newer_keys: usize, count: usize| LivenessRead {
            header: Header {
                revision,
                cluster_id,
            },
            newer_keys,
            count,
        };
        let (mut f, _) = follower(&clock);
        assert_eq!(f.liveness_floor(), 6);
        // Writes elsewhere moved the header on: still current.
        assert_eq!(f.on_liveness_read(&read(5, 7, 0, 1)), Ok(5));
        assert_eq!(f.on_liveness_read(&read(90, 7, 0, 1)), Ok(90));
        // A proxy or member that does not report a cluster id.
        assert_eq!(f.on_liveness_read(&read(90, 0, 0, 1)), Ok(90));
        // A put the watch did not deliver; a delete (one key fewer).
        assert_eq!(f.on_liveness_read(&read(91, 7, 1, 1)), Err(End::Reread));
        assert_eq!(f.on_liveness_read(&read(91, 7, 0, 0)), Err(End::Reread));
        // A rebuilt cluster: another id, or revisions gone backwards.
        assert_eq!(f.on_liveness_read(&read(91, 8, 0, 1)), Err(End::Reread));
        assert_eq!(f.on_liveness_read(&read(89, 7, 0, 1)), Err(End::Reread));
    }
}
