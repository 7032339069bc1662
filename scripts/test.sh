#!/usr/bin/env bash
# The test command: installs what is missing, then runs every test of the
# workspace, live etcd tests included (each starts its own etcd on free
# loopback ports), plus the benchmark harness smoke run; then the live etcd
# store suites once more against etcd 3.5.1 (the version matrix).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

# Cargo runs one test binary at a time; within one, at most four tests run at
# once, each with its own etcd (a 2-core machine keeps their heartbeats going).
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-4}"

echo "== every test, etcd $(/usr/bin/etcd --version | sed -n 's/^etcd Version: //p') (Debian)"
cargo test --workspace --locked

# The second version: the store's live suites (connect, faults, compaction,
# staleness, prefix, expiry, secure, handles, model, race) and the
# publisher's, against the etcd 3.5.1 binary that install-deps.sh put in .deps.
ETCD35_BIN_DIR="$PWD/.deps/etcd-3.5.1/bin"
echo "== live etcd suites, etcd $("$ETCD35_BIN_DIR/etcd" --version | sed -n 's/^etcd Version: //p') (${ETCD35_BIN_DIR})"
OSPROXY_ETCD_BIN_DIR="$ETCD35_BIN_DIR" cargo test --locked -p osproxy-etcd
