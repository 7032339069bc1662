#!/usr/bin/env bash
# The test command: installs what is missing, then runs every test of the
# workspace, live etcd tests included (each starts its own etcd on free
# loopback ports), plus the benchmark harness smoke run.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

# Live tests start etcd clusters; two test binaries at a time is what a
# 2-core machine sustains without starving etcd's heartbeats.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-4}"
cargo test --workspace --locked
