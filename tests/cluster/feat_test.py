#!/usr/bin/python3
"""Smaller DRBD behaviours on a real pair of bsrd nodes (network namespaces):
pause-sync shows PausedSyncS/PausedSyncT on both nodes (resync-suspended:user where it
was paused, :peer on the other) and resume-sync returns to SyncSource/SyncTarget.
Needs root (ip netns) and python3-libnbd; BSR_BIN names the binaries.
Run one test: feat_test.py test_paused_sync."""

import os
import re
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BIN, Cluster, check, data_size, same_data, wait_for, run_tests  # noqa: E402

PREFIX = "bsrfe"
NET = "10.89"


def cluster(size_mib, handler_exit=0):
    """Two nodes; handlers go to a script that logs the call (with its BSR_* environment)
    and exits with the code in <work>/handler_exit (default handler_exit)."""
    c = Cluster(2, size_mib=size_mib, prefix=PREFIX, net=NET)
    c.handler_log = os.path.join(c.work, "handlers.log")
    c.handler_exit = os.path.join(c.work, "handler_exit")
    with open(c.handler_exit, "w") as f:
        f.write(f"{handler_exit}\n")
    c.helper = os.path.join(c.work, "helper.sh")
    with open(c.helper, "w") as f:
        f.write("#!/bin/sh\n"
                f'echo "$1 $2 node=$BSR_MY_NODE_ID peer=$BSR_PEER_NODE_ID '
                f'fencing=$BSR_FENCING" >> {c.handler_log}\n'
                f"exit $(cat {c.handler_exit})\n")
    os.chmod(c.helper, os.stat(c.helper).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    os.environ["BSR_USERMODE_HELPER"] = c.helper
    return c


def peer_dev(node, peer):
    return node.conn(peer.node_id)["peer_devices"][0]


def repl(node, peer):
    return peer_dev(node, peer)["replication-state"]


def connected(a, b):
    ca, cb = a.conn(b.node_id), b.conn(a.node_id)
    return (ca and cb and ca["connection-state"] == "Connected"
            and cb["connection-state"] == "Connected")


def synced(a, b):
    return (a.disk_state() == "UpToDate" and b.disk_state() == "UpToDate"
            and repl(a, b) == "Established" and repl(b, a) == "Established")


def connect(a, b):
    a.setup("connect", "r0", str(b.node_id))
    b.setup("connect", "r0", str(a.node_id))
    wait_for("both Connected", lambda: connected(a, b), timeout=20)


def text_status(node, *flags):
    return node.setup("status", "r0", *flags).stdout


def one_line(s):
    return s.strip().replace("\n", " | ")


def events_now(node):
    """`bsrsetup events2 --now r0`: one line per object, then exits."""
    p = subprocess.run([os.path.join(BIN, "bsrsetup"), "--socket", node.sock, "events2",
                        "--now", "r0"], capture_output=True, text=True, timeout=10)
    return p.stdout


def check_paused(node, peer, state, flag):
    st = text_status(node)
    check(f"replication:{state}" in st and f"resync-suspended:{flag}" in st,
          f"node{node.index} shows {state} resync-suspended:{flag}: {one_line(st)}")
    pj = peer_dev(node, peer)
    check(pj["replication-state"] == state, f"status --json says {state}: {pj}")
    ev = events_now(node)
    check(re.search(rf"exists peer-device .*replication:{state}", ev) is not None,
          f"events2 --now shows {state}: {one_line(ev)}")


def test_paused_sync():
    """pause-sync on the target: PausedSyncT (user) there, PausedSyncS (peer) on the
    source, no progress; resume-sync: SyncTarget/SyncSource again. Then the same paused
    from the source; both pause (user+peer on both), one resumes: still paused; the
    other resumes: the sync finishes with identical data."""
    c = cluster(17)
    ok = False
    try:
        a, b = c.nodes
        for n in (a, b):
            n.start()
        for n, p in ((a, b), (b, a)):
            n.up(p)
            n.setup("peer-device-options", "r0", str(p.node_id), "0", "--c-plan-ahead=0",
                    "--resync-rate=4M")
        connect(a, b)
        size = data_size(a)
        a.setup("primary", "r0", "--force")
        wait_for("SyncTarget", lambda: repl(b, a) == "SyncTarget", timeout=10, interval=0.02)

        b.setup("pause-sync", "r0", "0", "0")
        check_paused(b, a, "PausedSyncT", "user")
        wait_for("the source shows PausedSyncS", lambda: repl(a, b) == "PausedSyncS", timeout=5)
        check_paused(a, b, "PausedSyncS", "peer")
        time.sleep(0.5)
        left = peer_dev(b, a)["out-of-sync"]
        time.sleep(1.0)
        check(peer_dev(b, a)["out-of-sync"] == left and left > 0,
              f"no progress while paused ({left} KiB stays out of sync)")
        b.setup("resume-sync", "r0", "0", "0")
        wait_for("both back to SyncSource/SyncTarget",
                 lambda: repl(a, b) == "SyncSource" and repl(b, a) == "SyncTarget", timeout=5)
        check("resync-suspended" not in text_status(a) + text_status(b),
              "resume-sync: neither node is suspended")
        wait_for("resync runs again", lambda: peer_dev(b, a)["out-of-sync"] < left, timeout=5,
                 interval=0.05)

        a.setup("pause-sync", "r0", "1", "0")
        check_paused(a, b, "PausedSyncS", "user")
        wait_for("the target shows PausedSyncT", lambda: repl(b, a) == "PausedSyncT", timeout=5)
        check_paused(b, a, "PausedSyncT", "peer")

        # Both paused: each node shows user and peer; one resume is not enough.
        b.setup("pause-sync", "r0", "0", "0")
        wait_for("both flags on both nodes", lambda: all(
            "resync-suspended:user,peer" in text_status(n) for n in (a, b)), timeout=5)
        a.setup("resume-sync", "r0", "1", "0")
        wait_for("source: only the peer's pause is left",
                 lambda: "resync-suspended:peer" in text_status(a), timeout=5)
        time.sleep(0.5)
        check(repl(a, b) == "PausedSyncS" and repl(b, a) == "PausedSyncT",
              f"still paused while the target's pause stays: {repl(a, b)}/{repl(b, a)}")
        b.setup("resume-sync", "r0", "0", "0")
        wait_for("sync done", lambda: synced(a, b), timeout=30)
        check(same_data(a, b, size), "identical after the paused and resumed sync")
        ok = True
    finally:
        c.close(keep_logs_on_failure=not ok)


TESTS = [test_paused_sync]

if __name__ == "__main__":
    sys.exit(run_tests(TESTS))
