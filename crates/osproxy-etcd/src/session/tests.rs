//! The session's decisions, command by command, without etcd.

use std::sync::Arc;
use std::time::Duration;

use osproxy_core::ManualClock;
use osproxy_observe::DecodeLimits;
use tokio::time::Instant;

use super::distrust::{FOREIGN_KEY_EVENT, SECOND_CREATED};
use super::*;
use crate::backoff::BackoffPolicy;
use crate::follow::{Event, Header, Kv};

const S: fn(u64) -> Duration = Duration::from_secs;

fn body(id: &str) -> Vec<u8> {
    format!(r#"{{"id":"{id}","level":"Shape","ttl_secs":60}}"#).into_bytes()
}

fn kv(key: &str, rev: i64, id: &str) -> Kv {
    Kv {
        key: key.as_bytes().to_vec(),
        value: body(id),
        mod_revision: rev,
        create_revision: rev,
    }
}

fn header(revision: i64) -> Header {
    Header {
        revision,
        cluster_id: 7,
    }
}

/// A prefix session over two endpoints, watching from revision 6 after a
/// read of `/p/a` at 5.
fn watching(t0: Instant) -> Session {
    let settings = Settings {
        endpoints: 2,
        range: Range::new(b"/p/", true),
        progress_every: S(10),
        stale_after: S(15),
        backoff: BackoffPolicy::default(),
        per_revision: false,
        seed: 1,
    };
    let follower = Follower::new(true, DecodeLimits::default()).with_prefix("/p/");
    let mut s = Session::new(settings, follower, Arc::new(ManualClock::new()));
    s.start(0);
    assert!(matches!(s.poll(), Some(Command::Connect { endpoint: 0 })));
    s.handle_connected();
    assert!(matches!(s.poll(), Some(Command::Read)));
    s.handle_read(Snapshot {
        header: header(5),
        kvs: vec![kv("/p/a", 5, "a")],
    });
    assert!(matches!(s.poll(), Some(Command::Swap { revision: 5, .. })));
    assert!(matches!(s.poll(), Some(Command::Watch { from: 6 })));
    s.handle_watch_opened(t0);
    s.handle_watch_msg(
        t0,
        WatchMsg {
            header: header(5),
            created: true,
            ..WatchMsg::default()
        },
    );
    while s.poll_note().is_some() {}
    assert!(s.poll().is_none());
    s
}

fn ids(s: &Session) -> Vec<String> {
    s.served()
        .directives()
        .iter()
        .map(|d| d.id.clone())
        .collect()
}

fn notes(s: &mut Session) -> Vec<Note> {
    std::iter::from_fn(|| s.poll_note()).collect()
}

#[test]
fn an_event_of_another_prefix_is_refused_and_the_range_read_afresh() {
    let t0 = Instant::now();
    let mut s = watching(t0);
    let foreign = WatchMsg {
        header: header(6),
        events: vec![Event::Put(kv("/q/x", 6, "x"))],
        ..WatchMsg::default()
    };
    s.handle_watch_msg(t0, foreign);
    assert!(notes(&mut s).contains(&Note::Refused {
        slug: FOREIGN_KEY_EVENT
    }));
    // Nothing applied; a new connection to the same endpoint reads afresh.
    assert_eq!(ids(&s), ["a"]);
    assert!(matches!(s.poll(), Some(Command::Connect { endpoint: 0 })));
    s.handle_connected();
    assert!(matches!(s.poll(), Some(Command::Read)));
}

#[test]
fn a_neighbour_key_sharing_the_prefix_bytes_is_not_in_the_key_layout() {
    let key = Range::new(b"/k", false);
    assert!(key.contains(b"/k"));
    assert!(!key.contains(b"/k2"));
    let prefix = Range::new(b"/p/", true);
    assert!(prefix.contains(b"/p/x"));
    assert!(!prefix.contains(b"/p"));
}

#[test]
fn a_second_creation_on_one_stream_is_refused() {
    let t0 = Instant::now();
    let mut s = watching(t0);
    let again = WatchMsg {
        header: header(6),
        created: true,
        events: vec![Event::Put(kv("/p/b", 6, "b"))],
        ..WatchMsg::default()
    };
    s.handle_watch_msg(t0, again);
    assert!(notes(&mut s).contains(&Note::Refused {
        slug: SECOND_CREATED
    }));
    assert_eq!(ids(&s), ["a"]);
    assert!(matches!(s.poll(), Some(Command::Connect { endpoint: 0 })));
}

#[test]
fn a_stale_connection_is_given_up_for_the_next_endpoint_after_a_backoff() {
    let t0 = Instant::now();
    let mut s = watching(t0);
    assert_eq!(s.poll_timeout(), Some(t0 + S(10)));
    s.handle_timeout(t0 + S(10));
    assert!(matches!(s.poll(), Some(Command::RequestProgress)));
    s.handle_timeout(s.poll_timeout().unwrap());
    let Some(Command::LivenessRead { deadline, .. }) = s.poll() else {
        panic!("a liveness read replaces the unanswered progress request");
    };
    assert_eq!(deadline, t0 + S(15));
    s.handle_timeout(deadline);
    assert!(matches!(
        s.poll(),
        Some(Command::GiveUp {
            endpoint: 0,
            why: "stale connection"
        })
    ));
    let Some(Command::Sleep { until }) = s.poll() else {
        panic!("a backoff follows a failure");
    };
    assert!(until > deadline && until <= deadline + Duration::from_millis(100));
    s.handle_timeout(until);
    assert!(matches!(s.poll(), Some(Command::Connect { endpoint: 1 })));
    // Resumes where it stood, once etcd confirms it still holds revision 5.
    s.handle_connected();
    assert!(matches!(s.poll(), Some(Command::CheckHeld { revision: 5 })));
    s.handle_held(true);
    assert!(matches!(s.poll(), Some(Command::Watch { from: 6 })));
}

#[test]
fn a_watch_that_misses_changes_twice_leaves_its_endpoint_degraded() {
    let t0 = Instant::now();
    let mut s = watching(t0);
    let missed = LivenessRead {
        header: header(9),
        newer_keys: 1,
        count: 1,
    };
    let liveness_read = |s: &mut Session, at: Instant| {
        s.handle_timeout(at);
        while let Some(c) = s.poll() {
            if matches!(c, Command::LivenessRead { .. }) {
                return;
            }
        }
        s.handle_timeout(s.poll_timeout().unwrap());
        assert!(matches!(s.poll(), Some(Command::LivenessRead { .. })));
    };
    // First miss: read afresh on the same endpoint.
    liveness_read(&mut s, t0 + S(10));
    s.handle_liveness_read(t0 + S(11), &missed);
    assert!(matches!(s.poll(), Some(Command::Connect { endpoint: 0 })));
    s.handle_connected();
    assert!(matches!(s.poll(), Some(Command::Read)));
    s.handle_read(Snapshot {
        header: header(9),
        kvs: vec![kv("/p/a", 9, "a2")],
    });
    let t1 = t0 + S(12);
    while s.poll().is_some() {}
    s.handle_watch_opened(t1);
    notes(&mut s);
    // The new watch (the same dead broadcast) misses the next change too.
    liveness_read(&mut s, t1 + S(10));
    s.handle_liveness_read(
        t1 + S(11),
        &LivenessRead {
            header: header(10),
            ..missed
        },
    );
    assert!(notes(&mut s).contains(&Note::Degraded {
        endpoint: 0,
        degraded: true
    }));
    assert_eq!(s.degraded().collect::<Vec<_>>(), [0]);
    assert!(matches!(
        s.poll(),
        Some(Command::GiveUp {
            endpoint: 0,
            why: "degraded endpoint"
        })
    ));
    assert!(matches!(s.poll(), Some(Command::Connect { endpoint: 1 })));
}

#[test]
fn per_revision_reports_each_transaction_of_a_batch() {
    let t0 = Instant::now();
    let mut s = watching(t0);
    s.settings.per_revision = true;
    let batch = WatchMsg {
        header: header(7),
        events: vec![
            Event::Put(kv("/p/b", 6, "b")),
            Event::Put(kv("/p/c", 7, "c")),
        ],
        ..WatchMsg::default()
    };
    s.handle_watch_msg(t0, batch);
    let applied: Vec<i64> = notes(&mut s)
        .into_iter()
        .filter_map(|n| match n {
            Note::Applied {
                revision,
                moved: true,
                ..
            } => Some(revision),
            _ => None,
        })
        .collect();
    assert_eq!(applied, [6, 7]);
    assert_eq!(ids(&s), ["a", "b", "c"]);
}
