//! The watch core: pure logic over crate-owned types, no I/O, no clock of
//! its own, no `etcd_client` type (SPEC §5, §7).
//!
//! | module | what it decides |
//! |---|---|
//! | [`types`] | the inputs: [`Kv`], [`Event`], [`WatchMsg`], [`Snapshot`], [`LivenessRead`] |
//! | [`applied`] | per-key last good values, the composition of the served set |
//! | [`follower`] | the transition function: a read, a watch message, a liveness read → apply / confirm / re-read / reconnect |
//! | [`liveness`] | the timers of one connection: ask for progress, fall back to reads, give up |
//! | [`shared`] | one decode per key revision for every store of a process that shares a clock |
//! | [`failsafe`] | the store's fail-safe timer: engage after `failsafe_after` without confirmation, release on the next |
//!
//! The watch session (`crate::session`) wraps it with everything else a
//! watch decides (endpoint, resume or read, timers, backoff, the swap), and
//! one driver (`crate::session::driver`) carries the session's commands out
//! for both consumers, the store's watcher (`crate::watcher`) and the change
//! feed (`crate::changes`). `follow::sim` (tests) drives that same session
//! against a simulated etcd for a hundred thousand seeded steps and checks
//! the store's invariants after each.

pub(crate) mod applied;
pub(crate) mod failsafe;
pub(crate) mod follower;
pub(crate) mod liveness;
pub(crate) mod rollback;
pub(crate) mod shared;
#[cfg(test)]
mod sim;
pub(crate) mod types;

pub(crate) use applied::Outcome;
pub(crate) use follower::{End, Follower};
pub(crate) use liveness::{Action, Liveness};
pub(crate) use types::{Event, Header, Kv, LivenessRead, Snapshot, WatchMsg};
