//! The operator side of osproxy diagnostics directives (SPEC §6): the
//! `osproxy-directives` binary's subcommands ([`cli`]) and one instance's
//! admin HTTP surface ([`admin`]).
//!
//! Layering: [`cli`] parses flags and prints; it publishes through
//! [`osproxy_etcd::Publisher`] and serves through [`admin::router`], so the
//! binary adds no second decoder or encoder: every channel goes through
//! `osproxy_observe`'s.
//!
//! Exit codes of every subcommand: 0 success, 1 runtime failure (etcd
//! unreachable, revision conflict, …), 2 usage or validation error.
#![deny(missing_docs)]

pub mod admin;
pub mod cli;
pub mod diff;
pub mod duration;
pub mod explain;
pub mod local_etcd;
pub mod reference;
