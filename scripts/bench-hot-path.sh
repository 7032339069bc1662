#!/usr/bin/env bash
# The hot path's benchmark figures (SPEC §8, BENCHMARKS.md), all from one run:
#
#  1. the empty-set and non-matching rows of this checkout against a baseline
#     commit, both benchmark binaries run alternately ROUNDS times in this
#     same session (this machine's speed moves 2-3x over a day, so figures
#     from different sessions do not compare); the median of each is reported
#     with the range of its runs;
#  2. one matching budgeted, counted directive on one thread and on two
#     (criterion, this checkout);
#  3. the two-thread scaling of that case, interleaved with its same-run
#     ceilings (benches/scaling.rs).
#
# Usage: scripts/bench-hot-path.sh [BASE_COMMIT] [ROUNDS]
#   BASE_COMMIT defaults to 919fcec (the last commit before budgets and
#   counters); ROUNDS to 3. The baseline is built once in its own worktree and
#   target directory under ${TMPDIR:-/tmp} (kept for the next run; delete them
#   with `git worktree remove --force DIR` and `rm -rf DIR-target`).
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-919fcec}
rounds=${2:-3}
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

if [ ! -d "$base_dir" ]; then
    git worktree add --detach "$base_dir" "$base_sha" >/dev/null
fi
echo "building the baseline ($base_sha) in $base_dir ..." >&2
old=$(CARGO_TARGET_DIR="$base_dir-target" bench_binary "$base_dir" | tail -1)
echo "building this checkout ..." >&2
new=$(bench_binary . | tail -1)
if [ -z "$old" ] || [ -z "$new" ]; then
    echo "bench-hot-path: a benchmark binary did not build" >&2
    exit 1
fi

rows='^(read_path/reader_evaluate_empty|evaluate/reader/(none|one)/(0|1|1000))$'
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for i in $(seq 1 "$rounds"); do
    for which in old new; do
        bin=${!which}
        echo "round $i/$rounds: $which" >&2
        # Separate criterion homes: criterion would otherwise call one
        # binary's figures a "change" from the other's.
        CRITERION_HOME="$out/home-$which" "$bin" --bench "$rows" >"$out/$which-$i.txt" 2>/dev/null
    done
done
echo "budget, one and two threads ..." >&2
CRITERION_HOME="$out/home-new" "$new" --bench '^budget/flood/' >"$out/budget.txt" 2>/dev/null
echo "scaling ..." >&2
cargo bench -p osproxy-bench --bench scaling --locked 2>/dev/null >"$out/scaling.txt"

python3 - "$out" "$rounds" "$base_sha" "$(git rev-parse --short HEAD)" <<'EOF'
import re, statistics, sys
out, rounds, base, head = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
UNIT = {"ps": 1e-3, "ns": 1.0, "µs": 1e3, "us": 1e3, "ms": 1e6, "s": 1e9}
PAT = re.compile(r"^(\S+)\s*(?:\n\s*)?time:\s+\[\S+ \S+ (\S+) (\S+) \S+ \S+\]", re.M)

def parse(path):
    text = open(path).read()
    return {m.group(1): float(m.group(2)) * UNIT[m.group(3)] for m in PAT.finditer(text)}

runs = {w: [parse(f"{out}/{w}-{i}.txt") for i in range(1, rounds + 1)] for w in ("old", "new")}
print(f"## Same-session A/B: {base} against {head}, {rounds} alternating runs each\n")
print(f"| case | {base} (median; range) | {head} (median; range) | ratio | within 10 % |")
print("|---|---:|---:|---:|---|")
ids = sorted(set().union(*[r.keys() for r in runs["new"]]))
for name in ids:
    o = [r[name] for r in runs["old"] if name in r]
    n = [r[name] for r in runs["new"] if name in r]
    if not o or not n:
        continue
    mo, mn = statistics.median(o), statistics.median(n)
    ratio = mn / mo if mo > 0 else None
    target = name.startswith("read_path/") or "/none/" in name
    if ratio is None:
        verdict = "n/a (baseline ≤ 0)"
    elif not target:
        verdict = "– (context)"
    elif ratio <= 1.10:
        verdict = "met"
    else:
        spread = max(max(o) - min(o), max(n) - min(n))
        verdict = (f"not met (difference {mn - mo:.3f} ns; one binary's own spread "
                   f"{spread:.3f} ns)")
    r = "n/a" if ratio is None else f"{ratio:.2f}×"
    print(f"| `{name}` | {mo:.3f} ns ({min(o):.3f}–{max(o):.3f}) | "
          f"{mn:.3f} ns ({min(n):.3f}–{max(n):.3f}) | {r} | {verdict} |")

b = parse(f"{out}/budget.txt")
one, two = b.get("budget/flood/1"), b.get("budget/flood/2")
print("\n## One matching budgeted, counted directive (criterion)\n")
if one:
    print(f"- one thread: {one:.2f} ns per decision (target ≤ 40 ns): "
          f"{'met' if one <= 40 else 'not met'}")
if one and two:
    print(f"- two threads: {two:.2f} ns per round of one decision on each thread, "
          f"so {2 * one / two:.2f}× one thread's throughput (the interleaved figure "
          "below is the one the target is judged on)")
print("\n## Two-thread scaling (benches/scaling.rs)")
print(open(f"{out}/scaling.txt").read())
EOF
