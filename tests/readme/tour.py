#!/usr/bin/env python3
"""Runs README.md's shell blocks, verbatim, as a newcomer would paste them (./test.sh runs it).

    python3 tests/readme/tour.py [README.md]

Every ```sh block carries a marker on the line before its fence, an HTML comment GitHub
does not show:

    <!-- readme: run -->              pasted into one bash session, in README order
    <!-- readme: syntax: REASON -->   needs what a test machine has not (systemd, a NATS
                                      cluster, sudo, a release build): `bash -n` only
    <!-- readme: file NAME -->        (any language) the block is written to NAME in the
                                      session's directory, at its place in the order

A shell block without a marker fails the tour, so no new example escapes it. The session
runs in a scratch directory, with `set -euo pipefail`, `keyledger` on the PATH (the
binary `cargo test` built, or $KEYLEDGER_BIN's directory), no KEYLEDGER_* variables from
outside, and a time limit; at its end every process it left running is stopped, and a
`nginx.pid` in the directory is told to quit. Any failing command fails the tour, named
by its README line.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

MARKER = re.compile(r"^<!-- readme: (run|syntax: .+|file [A-Za-z0-9._-]+) -->$")
FENCE = re.compile(r"^```(\S*)")
LIMIT_SECONDS = 300


def blocks(lines):
    """(language, marker or None, first line number of the body, body) of every fenced block."""
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        lang = m.group(1)
        start = i + 1
        end = start
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        prev = i - 1
        while prev >= 0 and not lines[prev].strip():
            prev -= 1
        marker = MARKER.match(lines[prev].strip()) if prev >= 0 else None
        yield lang, (marker.group(1) if marker else None), start + 1, "".join(lines[start:end])
        i = end + 1


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    readme = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "README.md")
    with open(readme, encoding="utf-8") as f:
        lines = f.readlines()
    binary = os.environ.get("KEYLEDGER_BIN", os.path.join(root, "target", "debug", "keyledger"))
    if not os.access(binary, os.X_OK):
        sys.exit(f"readme tour: {binary} is missing: run cargo build first")

    script = ["set -euo pipefail"]
    unmarked, runs, checked = [], 0, 0
    for lang, marker, line, body in blocks(lines):
        if marker is None:
            if lang in ("sh", "bash", "shell", "console"):
                unmarked.append(line)
            continue
        if marker.startswith("file "):
            name = marker[len("file "):]
            delimiter = "README_TOUR_END_OF_FILE"
            assert delimiter not in body
            script.append(f"cat > {name} <<'{delimiter}'\n{body}{delimiter}")
            continue
        if lang not in ("sh", "bash"):
            sys.exit(f"readme tour: {readme}:{line}: `{marker}` on a {lang or 'plain'} block")
        if marker == "run":
            runs += 1
            script.append(f"echo '--- README.md line {line}' >&2")
            script.append(body)
        else:
            checked += 1
            syntax = subprocess.run(["bash", "-n"], input=body, text=True, capture_output=True)
            if syntax.returncode != 0:
                sys.exit(f"readme tour: {readme}:{line}: not valid bash: {syntax.stderr}")
    if unmarked:
        where = ", ".join(f"line {n}" for n in unmarked)
        sys.exit(f"readme tour: shell blocks without a `<!-- readme: ... -->` marker at {where}")

    work = tempfile.mkdtemp(prefix="keyledger-readme-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYLEDGER_")}
    env["PATH"] = os.path.dirname(os.path.abspath(binary)) + os.pathsep + env.get("PATH", "")
    env["HOME"] = work
    session = subprocess.Popen(
        ["bash", "-c", "\n".join(script)], cwd=work, env=env, start_new_session=True
    )
    try:
        status = session.wait(timeout=LIMIT_SECONDS)
    except subprocess.TimeoutExpired:
        status = f"no end within {LIMIT_SECONDS} s"
    finally:
        # Whatever the session left running (servers started with `&`, an app), then nginx,
        # which left the session's process group when it went to the background.
        try:
            os.killpg(session.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        session.wait()
        pid_file = os.path.join(work, "nginx.pid")
        if os.path.exists(pid_file):
            with open(pid_file) as f:
                try:
                    os.kill(int(f.read().strip()), signal.SIGQUIT)
                except (ValueError, ProcessLookupError):
                    pass
        shutil.rmtree(work, ignore_errors=True)
    if status != 0:
        sys.exit(f"readme tour: failed ({status}); the last `--- README.md line N` above names the block")
    print(f"readme tour: {runs} blocks run in one session, {checked} checked for syntax only")


if __name__ == "__main__":
    main()
