#!/usr/bin/env python3
"""Paired same-session A/B of two criterion benchmark binaries, and the
report of the hot path's figures (called by scripts/bench-hot-path.sh).

This machine changes speed in phases of tens of seconds (the same binary's
run of one row reads 0.68 ns or 1.4 ns depending on when it runs), so two
figures measured minutes apart do not compare. Here every row is measured
as *pairs*: the baseline binary and this checkout's, back to back on that
row alone (the order flipped every round), and the verdict is on the median
of the pairs' ratios, with the range of the ratios beside it.

Usage: bench_ab.py OLD_BIN NEW_BIN ROUNDS OUT_DIR BASE_NAME HEAD_NAME
"""

import os
import re
import statistics
import subprocess
import sys

UNIT = {"ps": 1e-3, "ns": 1.0, "µs": 1e3, "us": 1e3, "ms": 1e6, "s": 1e9}
TIME = re.compile(r"^(\S+)\s*(?:\n\s*)?time:\s+\[\S+ \S+ (\S+) (\S+) \S+ \S+\]", re.M)

# The rows the target judges (empty set and non-matching) and, for
# context, the counted match.
ROWS = [
    ("read_path/reader_evaluate_empty", True),
    ("evaluate/reader/none/0", True),
    ("evaluate/reader/none/1", True),
    ("evaluate/reader/none/1000", True),
    ("evaluate/reader/one/1000", False),
]
TOLERANCE = 1.10
# One matching budgeted, counted directive (this checkout), paired with the
# baseline's one uncounted match: the absolute target, and how the case
# compares with the same machine's baseline in the same minute.
BUDGET_ROW = "budget/flood/1"
BUDGET_ANCHOR = "evaluate/reader/one/1000"
BUDGET_TARGET_NS = 40.0


def run(binary, row, home):
    """The row's criterion point estimate in ns, or None."""
    env = dict(os.environ, CRITERION_HOME=home)
    out = subprocess.run(
        [binary, "--bench", f"^{re.escape(row)}$"],
        capture_output=True, text=True, env=env, check=False,
    ).stdout
    for m in TIME.finditer(out):
        if m.group(1) == row:
            return float(m.group(2)) * UNIT[m.group(3)]
    return None


def parse_all(path):
    text = open(path, encoding="utf-8").read()
    return {m.group(1): float(m.group(2)) * UNIT[m.group(3)] for m in TIME.finditer(text)}


def main():
    old, new, rounds, out, base, head = sys.argv[1:7]
    rounds = int(rounds)
    pairs = {row: [] for row, _ in ROWS}
    budget = []
    for r in range(rounds):
        jobs = [(row, row) for row, _ in ROWS] + [(BUDGET_ANCHOR, BUDGET_ROW)]
        for old_row, new_row in jobs:
            order = [("old", old, old_row), ("new", new, new_row)]
            if r % 2:
                order.reverse()
            got = {w: run(b, row, f"{out}/home-{w}") for w, b, row in order}
            if got["old"] is not None and got["new"] is not None:
                target = budget if new_row == BUDGET_ROW else pairs[new_row]
                target.append((got["old"], got["new"]))
        print(f"A/B round {r + 1}/{rounds} done", file=sys.stderr)

    print(f"## Same-session A/B: {base} against {head}, {rounds} pairs per row\n")
    print("Each pair: the row alone on each binary, back to back. Verdict on the "
          "median of the pairs' ratios.\n")
    print(f"| case | {base} (median; range) | {head} (median; range) | "
          "ratio, median of pairs (range) | within 10 % |")
    print("|---|---:|---:|---:|---|")
    for row, judged in ROWS:
        p = pairs[row]
        if not p:
            print(f"| `{row}` | – | – | – | no figures |")
            continue
        o = [a for a, _ in p]
        n = [b for _, b in p]
        ratios = [b / a for a, b in p if a > 0]
        if not ratios:
            ratio_cell, verdict = "n/a", "n/a (baseline ≤ 0)"
        else:
            med = statistics.median(ratios)
            ratio_cell = f"{med:.2f}× ({min(ratios):.2f}–{max(ratios):.2f})"
            if not judged:
                verdict = "– (context)"
            else:
                verdict = "met" if med <= TOLERANCE else "not met"
        print(f"| `{row}` | {statistics.median(o):.3f} ns ({min(o):.3f}–{max(o):.3f}) | "
              f"{statistics.median(n):.3f} ns ({min(n):.3f}–{max(n):.3f}) | "
              f"{ratio_cell} | {verdict} |")

    print("\n## One matching budgeted, counted directive, one thread\n")
    if budget:
        n = [b for _, b in budget]
        o = [a for a, _ in budget]
        med = statistics.median(n)
        ratios = [b / a for a, b in budget if a > 0]
        print(f"- `{BUDGET_ROW}`, {len(n)} runs: median {med:.2f} ns (range "
              f"{min(n):.2f}–{max(n):.2f}); target ≤ {BUDGET_TARGET_NS:.0f} ns: "
              f"{'met' if med <= BUDGET_TARGET_NS else 'not met'}")
        print(f"- paired with {base}'s `{BUDGET_ANCHOR}` (one match, no budget, no "
              f"counters: median {statistics.median(o):.2f} ns, range "
              f"{min(o):.2f}–{max(o):.2f}): median ratio "
              + (f"{statistics.median(ratios):.2f}×" if ratios else "n/a"))
    b = parse_all(f"{out}/budget.txt")
    one, two = b.get("budget/flood/1"), b.get("budget/flood/2")
    if one and two:
        print(f"- two threads: {two:.2f} ns per round of one decision on each thread, "
              f"{2 * one / two:.2f}× one thread's throughput (criterion runs the two "
              "seconds apart; the interleaved figure below is the one judged)")
    print("\n## Two-thread scaling (benches/scaling.rs)")
    print(open(f"{out}/scaling.txt", encoding="utf-8").read())


if __name__ == "__main__":
    main()
