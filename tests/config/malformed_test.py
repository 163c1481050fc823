#!/usr/bin/env python3
"""Malformed-config test: every tests/config/malformed/*.res must be refused by bsradm
with exit status != 0, nothing on stdout, and an error line "FILE:LINE:COL: message"
matching its first line:
    # expect: LINE:COL: message-prefix        (FILE is the config file itself)
    # expect-at: FILE:LINE:COL: message-prefix (error inside an included file)
Each file is checked through `dump` and through `-d up all` (nothing is planned).
Prints 'N passed, N failed'.
"""
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DIR = os.path.join(HERE, "malformed")
BIN = os.path.abspath(os.environ.get("BSR_BIN", os.path.join(HERE, "..", "..", "build", "bin")))
BSRADM = os.path.join(BIN, "bsradm")


def main():
    if not os.access(BSRADM, os.X_OK):
        print(f"bsradm not found at {BSRADM} (set BSR_BIN)")
        return 1
    passed = failed = 0
    for name in sorted(f for f in os.listdir(DIR) if f.endswith(".res")):
        with open(os.path.join(DIR, name)) as f:
            first = f.readline()
        m = re.match(r"#\s*expect:\s*(\d+:\d+:)\s*(.*)", first)
        if m:
            want_loc, want_msg = f"{name}:{m.group(1)}", m.group(2).strip()
        else:
            m = re.match(r"#\s*expect-at:\s*(\S+:\d+:\d+:)\s*(.*)", first)
            if not m:
                print(f"FAIL {name}: no '# expect:' header")
                failed += 1
                continue
            want_loc, want_msg = m.group(1), m.group(2).strip()
        problems = []
        for args in (["dump"], ["--node", "alice", "-d", "up", "all"]):
            env = {k: v for k, v in os.environ.items() if k not in ("BSR_NODE", "__DRBD_NODE__")}
            p = subprocess.run([BSRADM, "-c", name] + args, capture_output=True, text=True, cwd=DIR,
                               env=env, timeout=30)
            if p.returncode == 0:
                problems.append(f"{' '.join(args)}: exit 0")
            if p.stdout:
                problems.append(f"{' '.join(args)}: printed to stdout: {p.stdout[:200]!r}")
            lines = p.stderr.splitlines()
            if not any(l.startswith(want_loc) and l[len(want_loc):].strip().startswith(want_msg) for l in lines):
                problems.append(f"{' '.join(args)}: want '{want_loc} {want_msg}', got {lines}")
            if any(not re.match(r"\S+:\d+:\d+: ", l) for l in lines):
                problems.append(f"{' '.join(args)}: a line is not FILE:LINE:COL: {lines}")
        if problems:
            failed += 1
            print(f"FAIL {name}")
            for pr in problems:
                print("   " + pr)
        else:
            passed += 1
            print(f"ok   {name}: {want_loc} {want_msg}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or passed < 40 else 0


if __name__ == "__main__":
    sys.exit(main())
