#!/usr/bin/env bash
# The docs check (CI runs it after the tests, which built the binaries):
#
# 1. every relative link in README.md, BENCHMARKS.md and docs/**/*.md points
#    at a file that exists, and a `#fragment` at a heading of that file
#    (GitHub's anchor rule); links to other sites are not fetched (CI talks to
#    loopback only);
# 2. every shell block whose info string is `sh run` is executed, from the
#    repository root, with `bash -e`, in a session of its own: whatever it
#    started in the background is stopped (by the pids of that session) when
#    the block ends, failed or not, or after its time limit.
#
# `scripts/check-docs.sh --links` checks the links only.
set -euo pipefail
cd "$(dirname "$0")/.."

exec python3 - "$@" <<'PY'
import glob, os, re, signal, subprocess, sys, tempfile, time

BLOCK_TIMEOUT_S = 180
files = ["README.md", "BENCHMARKS.md"] + sorted(glob.glob("docs/**/*.md", recursive=True))
failures = []

def strip_code(text):
    """The text without fenced blocks and inline code (links there are not links)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)

def anchors(path):
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to '-'."""
    seen, out = {}, set()
    text = re.sub(r"^```.*?^```", "", open(path, encoding="utf-8").read(), flags=re.S | re.M)
    for m in re.finditer(r"^#{1,6} +(.+?) *$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out

links = 0
for f in files:
    for target in re.findall(r"\]\(([^)\s]+)\)", strip_code(open(f, encoding="utf-8").read())):
        if re.match(r"^[a-z]+:", target):
            continue  # another site: not fetched
        links += 1
        path, _, frag = target.partition("#")
        dest = os.path.normpath(os.path.join(os.path.dirname(f), path)) if path else f
        if not os.path.exists(dest):
            failures.append(f"{f}: link to a missing file: {target}")
        elif frag and dest.endswith(".md") and frag not in anchors(dest):
            failures.append(f"{f}: link to a missing heading: {target}")
print(f"docs: {links} relative links in {len(files)} files checked")

def session_pids(sid):
    out = subprocess.run(["ps", "-eo", "pid=,sid="], capture_output=True, text=True).stdout
    return [int(p) for p, s in (l.split() for l in out.splitlines()) if int(s) == sid]

def run_block(name, code):
    with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as script:
        script.write(code)
    started = time.monotonic()
    proc = subprocess.Popen(["bash", "-e", script.name], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=BLOCK_TIMEOUT_S)
        status = proc.returncode
    except subprocess.TimeoutExpired:
        status, output = "timeout", ""
    finally:
        # Everything the block started is in the session it leads (its sid is its pid).
        for pid in session_pids(proc.pid):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        if proc.poll() is None:
            proc.kill()
            output = (proc.communicate()[0] or "")
        os.unlink(script.name)
    took = time.monotonic() - started
    if status != 0:
        failures.append(f"{name}: exited {status} after {took:.1f} s; its output:\n{output}")
    else:
        print(f"docs: {name}: ran in {took:.1f} s")

if "--links" not in sys.argv[1:]:
    for f in files:
        text = open(f, encoding="utf-8").read()
        for i, m in enumerate(re.finditer(r"^```sh run\n(.*?)^```", text, re.S | re.M)):
            line = text[: m.start()].count("\n") + 1
            run_block(f"{f}:{line} (runnable block {i + 1})", m.group(1))

for failure in failures:
    print(f"docs: {failure}", file=sys.stderr)
sys.exit(1 if failures else 0)
PY
