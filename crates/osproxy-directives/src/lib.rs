//! The operator side of osproxy diagnostics directives (SPEC §6): the
//! `osproxy-directives` binary's subcommands (`cli`) and one instance's
//! admin HTTP surface ([`admin`]).
//!
//! Layering: `cli` parses flags and prints; it publishes through
//! [`osproxy_etcd::Publisher`] and serves through [`admin::router`], so the
//! binary adds no second decoder or encoder: every channel goes through
//! `osproxy_observe`'s.
//!
//! The reference (`docs/reference/`: the CLI with its exit codes, the admin
//! HTTP routes and their error slugs, the man pages) is rendered from the
//! code by [`mod@reference`]; a test fails when a checked-in page is stale.
#![deny(missing_docs)]

pub mod admin;
mod cli;
mod diff;
mod duration;
mod explain;
mod local_etcd;
pub mod reference;
pub mod reference_service;

pub use cli::main;
