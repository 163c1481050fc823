#!/usr/bin/env python3
"""Differential test: bsradm against drbdadm (drbd-utils) over tests/config/corpus.

For every corpus config, `bsradm -d CMD RES` must print the same calls as
`drbdadm -d CMD RES` (drbdsetup/drbdmeta renamed to bsrsetup/bsrmeta, metadata format
token v09 -> bsr1, options compared as sets per call), the sh-* queries must agree,
and `bsradm dump` must hold the same explicit options as `drbdadm dump`.

Deliberate differences, each handled by name below:
  FORMAT_TOKEN      bsrmeta's metadata format token is bsr1 where drbdmeta says v09.
  CREATE_MD_FORCE   bsradm puts --force before the minor (bsrmeta [--force] MINOR ...),
                    drbdadm after create-md; compared as an option, so position aside.
  CONNECTION_NAME   drbdadm 9 drops `connection NAME` names (deprecated); bsr keeps them
                    in dump.
  DRBD83_SYNTAX     configs drbdadm 9 rejects (syncer { rate }, ...): a sibling
                    NAME.drbd file holds the DRBD 9 spelling given to drbdadm instead.
  SH_DEV_MINOR      for `device minor N;` bsradm sh-dev says /dev/bsrN, drbdadm
                    /dev/drbdN.
  RESYNC_AFTER_DUMP drbdadm dump leaves out resync-after (it still passes it to attach
                    as a minor, as bsradm does); dump lines with it are not compared.
  WINDOWS_FORMS     bsr's Windows spellings (device e minor 2) that drbdadm 9 refuses:
                    the NAME.drbd sibling spells the device /dev/drbd_e and a
                    `# diff-map: /dev/drbd_e=e` header maps drbdadm's output back.
  OUTDATE_FORM      drbdadm -d prints `drbdsetup outdate RES MINOR`; bsradm plans
                    drbdsetup's documented form `bsrsetup outdate MINOR`; the resource
                    name is dropped from drbdadm's line before comparing.
  CALL_ORDER        within a run of calls of one kind (e.g. peer-device-options for
                    several volumes) drbdadm's order is not meaningful; such runs are
                    compared sorted. The order of the kinds themselves must match.
Prints 'N passed, N failed' and exits non-zero on any mismatch.
"""
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
BIN = os.path.abspath(os.environ.get("BSR_BIN", os.path.join(HERE, "..", "..", "build", "bin")))
BSRADM = os.path.join(BIN, "bsradm")
COMMANDS = ["up", "down", "attach", "detach", "connect", "disconnect", "primary --force",
            "secondary", "create-md", "show-gi", "invalidate-remote", "pause-sync", "adjust",
            "disconnect --force", "invalidate", "resume-sync", "verify", "status", "dump-md",
            "apply-al", "wipe-md", "get-gi", "outdate", "resize", "suspend-io", "resume-io",
            # drbdsetup options drbdadm passes on
            "connect --discard-my-data --tentative", "adjust --discard-my-data", "verify --start=8",
            "invalidate --reset-bitmap=no", "invalidate-remote --reset-bitmap=no", "detach --force",
            "secondary --force", "resize --size=10G", "attach --al-extents=100"]
SH = ["sh-ll-dev", "sh-md-dev", "sh-minor", "sh-ip", "sh-dev"]
NOBODY = "diff-test-no-such-node"


MAPS = []  # (drbd spelling, bsr spelling) of the file being compared (WINDOWS_FORMS)


def run(argv, env_extra=None):
    env = dict(os.environ)
    for k in ("BSR_NODE", "__DRBD_NODE__"):
        env.pop(k, None)
    env.update(env_extra or {})
    p = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=CORPUS, timeout=60)
    out = p.stdout
    if argv[0] == "drbdadm":
        for a, b in MAPS:
            out = out.replace(a, b)
    return p.returncode, out, p.stderr


def calls(text, tool_prefix):
    """Lines that are tool calls -> list of (positional tuple, option set)."""
    out = []
    for line in text.splitlines():
        if not line.startswith(tool_prefix):
            continue
        words = shlex.split(line)
        words[0] = words[0].replace("drbdsetup", "bsrsetup").replace("drbdmeta", "bsrmeta")
        words = ["bsr1" if w == "v09" else w for w in words]  # FORMAT_TOKEN
        if tool_prefix == "drbd" and words[1] == "outdate" and len(words) == 4:
            del words[2]  # OUTDATE_FORM
        pos = tuple(w for w in words if not w.startswith("--"))
        opts = frozenset(w for w in words if w.startswith("--"))  # CREATE_MD_FORCE
        out.append((pos, opts))
    # CALL_ORDER: sort runs of the same (tool, command).
    runs, cur = [], []
    for c in out:
        if cur and cur[-1][0][:2] != c[0][:2]:
            runs.append(sorted(cur, key=repr))
            cur = []
        cur.append(c)
    if cur:
        runs.append(sorted(cur, key=repr))
    return [c for r in runs for c in r]


def tokens(text):
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif c in "{};":
            yield c
            i += 1
        elif c == '"':
            j = i + 1
            s = ""
            while j < n and text[j] != '"':
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                s += text[j]
                j += 1
            yield ("w", s)
            i = j + 1
        else:
            j = i
            while j < n and not text[j].isspace() and text[j] not in '{};"':
                j += 1
            yield ("w", text[i:j])
            i = j


def flatten(text):
    """Dump text -> Counter of 'section path | words' strings."""
    out = Counter()
    text = re.sub(r"^\s*resync-after\s[^;]*;", "", text, flags=re.M)  # RESYNC_AFTER_DUMP
    stack, words = [], []
    for t in tokens(text):
        if t == "{":
            head = words
            if head and head[0] == "connection":  # CONNECTION_NAME
                head = head[:1]
            stack.append(" ".join(head))
            words = []
        elif t == "}":
            if stack:
                stack.pop()
            words = []
        elif t == ";":
            out["/".join(stack) + " | " + " ".join(words)] += 1
            words = []
        else:
            words.append(t[1])
    return out


def header(path, key):
    with open(path) as f:
        for line in f:
            m = re.match(r"#\s*%s:\s*(.*)" % re.escape(key), line)
            if m:
                return m.group(1).strip()
    return None


def main():
    if not os.access(BSRADM, os.X_OK):
        print(f"bsradm not found at {BSRADM} (set BSR_BIN)")
        return 1
    if not shutil.which("drbdadm"):
        print("drbdadm not found: install drbd-utils (scripts/install-deps does)")
        return 1
    passed = failed = 0
    files = sorted(f for f in os.listdir(CORPUS) if f.endswith(".res"))
    for name in files:
        path = os.path.join(CORPUS, name)
        node = header(path, "diff-node")
        MAPS.clear()
        m = header(path, "diff-map")
        if m:
            MAPS.extend(tuple(x.split("=", 1)) for x in m.split())
        drbd_file = name[:-4] + ".drbd"  # DRBD83_SYNTAX
        drbd_input = drbd_file if os.path.exists(os.path.join(CORPUS, drbd_file)) else name
        problems = []
        rc, res_out, err = run([BSRADM, "-c", name, "--node", node, "sh-resources"])
        if rc != 0:
            problems.append(f"bsradm sh-resources failed: {err.strip()}")
            resources = []
        else:
            resources = res_out.split()
        rc2, dres, _ = run(["drbdadm", "-c", drbd_input, "sh-resources"], {"__DRBD_NODE__": node})
        if sorted(dres.split()) != sorted(resources):
            problems.append(f"sh-resources: bsradm {resources} drbdadm {dres.split()}")
        for res in resources:
            for cmd in COMMANDS:
                brc, bout, berr = run([BSRADM, "-c", name, "--node", node, "-d"] + cmd.split() + [res])
                drc, dout, derr = run(["drbdadm", "-c", drbd_input, "-d"] + cmd.split() + [res],
                                      {"__DRBD_NODE__": node})
                if (brc == 0) != (drc == 0):
                    problems.append(f"{cmd} {res}: exit bsradm {brc} drbdadm {drc}: {berr.strip()} | "
                                    f"{derr.strip()[-200:]}")
                    continue
                b = calls(bout, "bsr")
                d = calls(dout, "drbd")
                if b != d:
                    problems.append(f"{cmd} {res}:\n  bsradm:  {b}\n  drbdadm: {d}")
            for q in SH:
                _, bout, _ = run([BSRADM, "-c", name, "--node", node, q, res])
                _, dout, _ = run(["drbdadm", "-c", drbd_input, q, res], {"__DRBD_NODE__": node})
                dlines = [l for l in dout.split("\n") if l and not l.startswith("modinfo")]
                if q == "sh-dev":  # SH_DEV_MINOR
                    dlines = [re.sub(r"^/dev/drbd(\d+)$", r"/dev/bsr\1", l) for l in dlines]
                    blines = [re.sub(r"^/dev/drbd(\d+)$", r"/dev/bsr\1", l) for l in bout.split("\n") if l]
                else:
                    blines = [l for l in bout.split("\n") if l]
                if blines != dlines:
                    problems.append(f"{q} {res}: bsradm {blines} drbdadm {dlines}")
        # dump: same explicit options.
        brc, bdump, berr = run([BSRADM, "-c", name, "dump"])
        drc, ddump, derr = run(["drbdadm", "-c", drbd_input, "dump"], {"__DRBD_NODE__": NOBODY})
        if brc != 0 or drc != 0:
            problems.append(f"dump: exit bsradm {brc} drbdadm {drc}: {berr.strip()} {derr.strip()[-300:]}")
        else:
            fb, fd = flatten(bdump), flatten(ddump)
            if fb != fd:
                problems.append("dump differs:\n  only bsradm:  %s\n  only drbdadm: %s" %
                                (sorted((fb - fd).elements()), sorted((fd - fb).elements())))
            # Round trip: the dump parses back and dumps identically.
            tmp = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"bsr-diff-{os.getpid()}.res")
            with open(tmp, "w") as f:
                f.write(bdump)
            rrc, again, rerr = run([BSRADM, "-c", tmp, "dump"])
            os.unlink(tmp)
            strip = lambda s: "\n".join(l for l in s.splitlines() if not l.startswith("#"))
            if rrc != 0 or strip(again) != strip(bdump):
                problems.append(f"dump round trip differs: {rerr.strip()}")
        if problems:
            failed += 1
            print(f"FAIL {name}")
            for p in problems:
                print("   " + p)
        else:
            passed += 1
            print(f"ok   {name} ({len(resources)} resources)")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or passed < 30 else 0


if __name__ == "__main__":
    sys.exit(main())
