#!/usr/bin/env bash
# The hot path's benchmark figures (SPEC §8, BENCHMARKS.md), all from one run:
#
#  1. the empty-set and non-matching rows of this checkout against a baseline
#     commit in this same session (this machine's speed moves 2-3x over a day
#     and in phases of tens of seconds, so figures measured apart do not
#     compare): each row is run on both binaries back to back, ROUNDS pairs,
#     and judged on the median of the pairs' ratios (scripts/bench_ab.py);
#  2. one matching budgeted, counted directive on one thread and on two
#     (criterion, this checkout);
#  3. the two-thread scaling of that case, interleaved with its same-run
#     ceilings (benches/scaling.rs).
#
# Usage: scripts/bench-hot-path.sh [BASE_COMMIT] [ROUNDS]
#   BASE_COMMIT defaults to 919fcec (the last commit before budgets and
#   counters); ROUNDS to 8. The baseline is built once in its own worktree and
#   target directory under ${TMPDIR:-/tmp}, this checkout in another (both
#   kept for the next run: `git worktree remove --force DIR`, then
#   `rm -rf DIR-target-aligned "${TMPDIR:-/tmp}/osproxy-bench-head-target-aligned"`
#   deletes them). Needs python3 (scripts/install-deps.sh provides it).
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-919fcec}
rounds=${2:-8}
base_sha=$(git rev-parse --short "$base^{commit}")
tmp=${TMPDIR:-/tmp}
base_dir="$tmp/osproxy-bench-base-$base_sha"
export CARGO_TERM_COLOR=never

# The bench executable cargo builds for this checkout (run from the directory
# given), printed by its JSON messages.
bench_binary() {
    (cd "$1" && cargo bench -p osproxy-bench --bench hot_path --no-run --locked \
        --message-format=json 2>/dev/null) |
        python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") \
            and m["target"]["name"] == "hot_path":
        print(m["executable"])
'
}

# Both binaries are built with every loop aligned to 64 bytes: without it,
# where the linker happens to place a benchmark's loop moves the
# sub-nanosecond rows by 20 % between two builds of the same library code
# (BENCHMARKS.md). Each build has its own target directory, so these flags
# never invalidate the checkout's ordinary `target/`.
export RUSTFLAGS="-C llvm-args=-align-loops=64"
head_target="$tmp/osproxy-bench-head-target-aligned"

if [ ! -d "$base_dir" ]; then
    git worktree add --detach "$base_dir" "$base_sha" >/dev/null
fi
echo "building the baseline ($base_sha) in $base_dir ..." >&2
old=$(CARGO_TARGET_DIR="$base_dir-target-aligned" bench_binary "$base_dir" | tail -1)
echo "building this checkout ..." >&2
new=$(CARGO_TARGET_DIR="$head_target" bench_binary . | tail -1)
if [ -z "$old" ] || [ -z "$new" ]; then
    echo "bench-hot-path: a benchmark binary did not build" >&2
    exit 1
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "budget, one and two threads ..." >&2
CRITERION_HOME="$out/home-new" "$new" --bench '^budget/flood/' >"$out/budget.txt" 2>/dev/null
echo "scaling ..." >&2
CARGO_TARGET_DIR="$head_target" cargo bench -p osproxy-bench --bench scaling --locked 2>/dev/null >"$out/scaling.txt"

python3 scripts/bench_ab.py "$old" "$new" "$rounds" "$out" "$base_sha" "$(git rev-parse --short HEAD)"
