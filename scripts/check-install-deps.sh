#!/usr/bin/env bash
# Checks that scripts/install-deps.sh leaves other people's etcd alone: starts
# an unrelated etcd (its own data dir, free loopback ports), runs the install
# script, and fails unless that etcd is still running and answering. Also
# fails if the script names a process-killing command, and checks that a
# second run installs nothing (idempotent). Stops only the etcd it started,
# by pid.
set -euo pipefail
cd "$(dirname "$0")/.."

if grep -nE '\b(pkill|killall|kill)\b|systemctl +(stop|kill|restart)' scripts/install-deps.sh; then
  echo "check-install-deps: install-deps.sh must not stop or kill processes" >&2
  exit 1
fi

scripts/install-deps.sh
ETCD="$(command -v etcd)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
client_port="$(free_port)"
peer_port="$(free_port)"
data="$(mktemp -d)"
"$ETCD" --name unrelated --data-dir "$data" \
  --listen-client-urls "http://127.0.0.1:${client_port}" \
  --advertise-client-urls "http://127.0.0.1:${client_port}" \
  --listen-peer-urls "http://127.0.0.1:${peer_port}" \
  --initial-advertise-peer-urls "http://127.0.0.1:${peer_port}" \
  --initial-cluster "unrelated=http://127.0.0.1:${peer_port}" >"$data/log" 2>&1 &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$data"; }
trap cleanup EXIT

answering() { ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:${client_port}" endpoint health >/dev/null 2>&1; }
for _ in $(seq 1 100); do answering && break; sleep 0.1; done
answering || { echo "check-install-deps: the unrelated etcd did not start" >&2; cat "$data/log" >&2; exit 1; }

out="$(scripts/install-deps.sh 2>&1)"
if [ -n "$out" ]; then
  echo "check-install-deps: a second run was not a no-op:" >&2
  echo "$out" >&2
  exit 1
fi
kill -0 "$pid" 2>/dev/null || { echo "check-install-deps: the unrelated etcd (pid $pid) died" >&2; exit 1; }
answering || { echo "check-install-deps: the unrelated etcd stopped answering" >&2; exit 1; }
echo "check-install-deps: an unrelated etcd (pid $pid) kept running through install-deps.sh; a second run installed nothing"
