#!/usr/bin/env bash
# The test command: installs what is missing, then runs every test of the
# workspace, live etcd tests included (each starts its own etcd on free
# loopback ports), plus the benchmark harness smoke run.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

# Cargo runs one test binary at a time; within one, at most four tests run at
# once, each with its own etcd (a 2-core machine keeps their heartbeats going).
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-4}"
cargo test --workspace --locked
