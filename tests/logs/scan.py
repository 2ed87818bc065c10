#!/usr/bin/env python3
"""Reads every line every `keyledger serve` wrote during a test run (the files the tests'
support code puts in $KEYLEDGER_TEST_LOGS, see tests/support/served.rs) and fails on any
key-shaped text: the key prefix followed by a key character. A redacted key keeps only its
prefix and its last four characters after an ellipsis (`klk_…wxyz`), which passes.

    python3 tests/logs/scan.py DIR
"""
import pathlib
import re
import sys

# keyledger's key prefix, then a character of a key's alphabet (base62, `_`, `-`).
KEY_SHAPED = re.compile(r"klk_[A-Za-z0-9_-]")


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: scan.py DIR", file=sys.stderr)
        return 2
    files = sorted(pathlib.Path(sys.argv[1]).glob("*.log"))
    if not files:
        print(f"no server logs in {sys.argv[1]}: was KEYLEDGER_TEST_LOGS set for cargo test?", file=sys.stderr)
        return 1
    lines = 0
    found = []
    for path in files:
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            lines += 1
            if KEY_SHAPED.search(line):
                # Name the place, never the text: it may be a secret.
                found.append(f"{path.name}:{number}")
    if found:
        print(f"key-shaped text in {len(found)} server log lines: {', '.join(found[:20])}", file=sys.stderr)
        return 1
    print(f"server logs: {lines} lines in {len(files)} files, no key-shaped text")
    return 0


if __name__ == "__main__":
    sys.exit(main())
