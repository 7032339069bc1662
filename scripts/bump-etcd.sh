#!/usr/bin/env bash
# Usage: scripts/bump-etcd.sh VERSION...   e.g. scripts/bump-etcd.sh 3.6.16 3.7.3
#
# Pins the version matrix's vendored etcd releases: fetches each VERSION of
# crates.io's etcd-bin-vendored-linux-amd64, checks that its bin/etcd reports
# that version, and rewrites scripts/etcd-vendored.txt with the versions and
# their sha256 (replacing every pinned version). Then run
# scripts/install-deps.sh, and update the versions named in scripts/test.sh,
# the README's "Supported etcd versions" and the CI comment. `cargo info
# etcd-bin-vendored-linux-amd64` shows the newest version.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { sed -n '2,10s/^# \{0,1\}//p' "$0" >&2; exit 2; }
pins=scripts/etcd-vendored.txt
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
lines=()
for version in "$@"; do
  scripts/fetch-vendored-etcd.sh "$version" "$tmp/etcd"
  reported="$("$tmp/etcd" --version | sed -n 's/^etcd Version: //p')"
  if [ "$reported" != "$version" ]; then
    echo "bump-etcd: etcd-bin-vendored-linux-amd64 ${version} ships etcd '${reported}'" >&2
    exit 1
  fi
  lines+=("${version} $(sha256sum "$tmp/etcd" | cut -d' ' -f1)")
  echo "bump-etcd: ${lines[-1]}" >&2
done
{ grep '^#' "$pins"; printf '%s\n' "${lines[@]}"; } >"$tmp/pins"
mv "$tmp/pins" "$pins"
