#!/usr/bin/python3
"""Smaller DRBD behaviours on a real pair of bsrd nodes (network namespaces):
pause-sync shows PausedSyncS/PausedSyncT on both nodes (resync-suspended:user where it
was paused, :peer on the other) and resume-sync returns to SyncSource/SyncTarget.
net-options on a Connected peer: ping-int, timeout, ko-count and sndbuf-size take
effect at once; protocol and cram-hmac-alg are refused with the state unchanged.
fencing resource-and-stonith: a Primary that loses its UpToDate peer runs fence-peer
(exit 7: peer Outdated, I/O goes on; a failing handler: I/O suspended until resume-io),
and unfence-peer once the peer is UpToDate again.
fencing at promotion: a Secondary whose fenced peer is unreachable runs fence-peer
before it becomes Primary (4: goes on, peer Outdated; 6: refused, own disk Outdated;
--force goes on anyway); fencing dont-care runs nothing; exit 6 on a Primary that lost
its peer leaves it Primary and UpToDate (the self-outdate is refused and logged).
Needs root (ip netns) and python3-libnbd; BSR_BIN names the binaries.
Run one test: feat_test.py test_paused_sync."""

import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (BIN, MIB, Cluster, check, conn_state, connect, data_size,  # noqa: E402
                     peer_dev, run_tests, same_data, synced, wait_for)

PREFIX = os.environ.get("BSR_NETNS_PREFIX", "bsrfe")
NET = os.environ.get("BSR_NET", "10.89")


def cluster(size_mib, handler_exit=0):
    """Two nodes; handlers go to a script that logs the call (with its BSR_* environment)
    and exits 0; fence-peer exits with the code in <work>/handler_exit (handler_exit)."""
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
                f'[ "$1" = fence-peer ] && exit $(cat {c.handler_exit})\n'
                "exit 0\n")
    os.chmod(c.helper, os.stat(c.helper).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    os.environ["BSR_USERMODE_HELPER"] = c.helper
    return c


def repl(node, peer):
    return peer_dev(node, peer)["replication-state"]


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
    with cluster(17) as c:
        a, b = c.nodes
        c.start_mesh(peer_device_opts=["--c-plan-ahead=0", "--resync-rate=4M"])
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


def show(node):
    return node.setup("show", "r0").stdout


def test_net_options_live():
    """Connected with pings every 60 s and ko-count off: protocol / cram-hmac-alg /
    after-sb changes are refused (show unchanged); ko-count 3 * timeout 0.5 s set live
    drops a SIGSTOPped peer within seconds; ping-int 1 set live drops it by the missing
    PingAck; sndbuf-size set live shows on the sockets."""
    with cluster(9) as c:
        a, b = c.nodes
        for n in (a, b):
            n.start()
        slow = ["--ping-int=60", "--ping-timeout=30", "--timeout=600", "--ko-count=0"]
        for n, p in ((a, b), (b, a)):
            n.up(p, slow)
        connect(a, b)
        a.setup("primary", "r0", "--force")
        wait_for("initial sync", lambda: synced(a, b), timeout=30)
        before = show(a)
        check(re.search(r"ping-int\s+60;", before) is not None, "show has the configured ping-int: " + one_line(before))
        for bad in (["--protocol=A"], ["--cram-hmac-alg=sha256", "--shared-secret=x"],
                    ["--after-sb-0pri=discard-local"], ["--data-integrity-alg=crc32c"]):
            r = a.setup("net-options", "r0", "1", *bad, check_rc=False)
            out = (r.stdout + r.stderr).strip()
            check(r.returncode != 0 and "while connected" in out,
                  f"net-options {' '.join(bad)} refused on a Connected peer: {out}")
        r = a.setup("net-options", "r0", "1", "--ping-int=0", check_rc=False)
        check(r.returncode != 0, "ping-int 0 is out of range: " + (r.stdout + r.stderr).strip())
        check(show(a) == before, "the refused changes left show unchanged")
        check(synced(a, b), "and the connection as it was")

        # sndbuf-size applies to the live sockets (the kernel doubles SO_SNDBUF).
        a.setup("net-options", "r0", "1", "--sndbuf-size=256k")
        ss = subprocess.run(["ip", "netns", "exec", a.ns, "ss", "-tmn", "( sport = :7789 or "
                             "dport = :7789 )"], capture_output=True, text=True).stdout
        tbs = re.findall(r"\btb(\d+)", ss)
        check(len(tbs) >= 2 and all(int(t) == 2 * 256 * 1024 for t in tbs),
              f"both sockets have the new send buffer: tb {tbs}")

        # ko-count/timeout set live drop a stuck peer (they were off: ~90 s before).
        a.setup("net-options", "r0", "1", "--timeout=5", "--ko-count=3")
        now = show(a)
        check(re.search(r"ko-count\s+3;", now) and re.search(r"\stimeout\s+5;", now),
              "show has the new values: " + one_line(now))
        h = a.nbd()
        h.pwrite(os.urandom(4096), 0)
        b.proc.send_signal(signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            h.pwrite(os.urandom(65536), MIB)
            took = time.monotonic() - t0
            check(took < 5.0, f"the write to the stuck peer completed after {took:.2f} s")
            # The line is logged as the session ends, which may be just after the write
            # it released completed.
            wait_for("node0 dropped node1 by the live ko-count * timeout",
                     lambda: "ko-count (3) * timeout (500 ms)" in a.log_text(), timeout=5)
        finally:
            b.proc.send_signal(signal.SIGCONT)
        wait_for("reconnected and resynced", lambda: synced(a, b),
                 timeout=30)

        # ping-int set live: a stuck idle peer misses the next PingAck.
        a.setup("net-options", "r0", "1", "--ko-count=0", "--ping-timeout=5")
        b.proc.send_signal(signal.SIGSTOP)
        try:
            time.sleep(1.5)
            check(a.conn(b.node_id)["connection-state"] == "Connected",
                  "idle and ping-int 60: still Connected")
            t0 = time.monotonic()
            a.setup("net-options", "r0", "1", "--ping-int=1")
            wait_for("node0 drops node1", lambda: a.conn(b.node_id)["connection-state"]
                     != "Connected", timeout=5, interval=0.05)
            print(f"dropped {time.monotonic() - t0:.2f} s after ping-int 1", flush=True)
            check("PingAck did not arrive within ping-timeout (500 ms)" in a.log_text(),
                  "by the missing PingAck")
        finally:
            b.proc.send_signal(signal.SIGCONT)
        wait_for("reconnected", lambda: synced(a, b), timeout=30)
        h.flush()
        check(same_data(a, b, data_size(a)), "identical at the end")


def handler_lines(c, name):
    try:
        with open(c.handler_log) as f:
            return [l.strip() for l in f if l.startswith(name + " ")]
    except OSError:
        return []


def test_fencing():
    """fencing resource-and-stonith on a Primary whose link to its UpToDate peer is cut:
    fence-peer runs with BSR_PEER_NODE_ID; exit 7 marks the peer Outdated and I/O goes
    on; after the heal and resync unfence-peer runs; a failing fence-peer keeps I/O
    suspended (suspended:fencing) until resume-io."""
    with cluster(9, handler_exit=7) as c:
        a, b = c.nodes
        c.start_mesh(["--fencing=resource-and-stonith"])
        a.setup("primary", "r0", "--force")
        wait_for("initial sync", lambda: synced(a, b), timeout=30)
        check(handler_lines(c, "fence-peer") == [], "no fence-peer while connected")
        h = a.nbd()
        h.pwrite(os.urandom(4096), 0)

        c.cut(a, b)
        wait_for("fence-peer ran", lambda: handler_lines(c, "fence-peer"), timeout=10)
        line = handler_lines(c, "fence-peer")[0]
        check(line == "fence-peer r0 node=0 peer=1 fencing=resource-and-stonith",
              f"fence-peer on the Primary with the peer's node-id: {line}")
        wait_for("peer-disk Outdated (exit 7: stonithed)",
                 lambda: peer_dev(a, b)["peer-disk-state"] == "Outdated", timeout=5)
        check("suspended:no" in events_now(a), "I/O is not suspended after exit 7")
        t0 = time.monotonic()
        h.pwrite(os.urandom(MIB), MIB)
        check(time.monotonic() - t0 < 2, "a write completes while the peer is fenced")
        c.heal(a, b)
        wait_for("resynced after the heal", lambda: synced(a, b),
                 timeout=30)
        wait_for("unfence-peer ran", lambda: handler_lines(c, "unfence-peer"), timeout=5)
        check(handler_lines(c, "unfence-peer")[0].startswith("unfence-peer r0 node=0 peer=1"),
              "unfence-peer names the peer")

        # A failing fence-peer: I/O stays suspended until resume-io.
        with open(c.handler_exit, "w") as f:
            f.write("1\n")
        c.cut(a, b)
        wait_for("suspended:fencing", lambda: "suspended:fencing" in text_status(a),
                 timeout=10)
        wait_for("second fence-peer", lambda: len(handler_lines(c, "fence-peer")) == 2,
                 timeout=5)
        time.sleep(0.5)
        check("suspended:fencing" in text_status(a), "still suspended after the handler failed")
        done = []
        w = threading.Thread(target=lambda: (h.pwrite(os.urandom(65536), 2 * MIB),
                                             done.append(time.monotonic())))
        w.start()
        time.sleep(1.0)
        check(not done, "a write waits while I/O is suspended")
        t0 = time.monotonic()
        a.setup("resume-io", "0")
        w.join(timeout=10)
        check(done and done[0] - t0 < 3, "resume-io lets the held write complete")
        check("suspended" not in text_status(a), "not suspended after resume-io")
        c.heal(a, b)
        wait_for("resynced after the second heal", lambda: synced(a, b),
                 timeout=30)
        h.flush()
        check(same_data(a, b, data_size(a)), "identical at the end")


def fence_lines(c, node_id):
    return [l for l in handler_lines(c, "fence-peer") if f" node={node_id} " in l]


def test_fencing_at_promotion():
    """Exit 6 on a Primary that lost its peer: the self-outdate is refused, logged.
    DRBD 9 drbd_set_role: with fencing resource-only, node1 (Secondary, UpToDate) whose
    peer node0 is gone runs fence-peer before it becomes Primary. dont-care: no handler;
    exit 4: Primary, the peer's disk Outdated; exit 6 (peer is Primary): refused with the
    reason and node1's own disk Outdated; --force then promotes anyway (with an Outdated
    disk no fence-peer runs, as in DRBD) and counts node0 as Outdated."""
    with cluster(9, handler_exit=6) as c:
        a, b = c.nodes
        c.start_mesh(["--fencing=resource-only"])
        a.setup("primary", "r0", "--force")
        wait_for("initial sync", lambda: synced(a, b), timeout=30)

        # Exit 6 on a Primary that lost its UpToDate peer: DRBD's self-outdate is refused
        # by the state engine (a Primary keeps its UpToDate disk) and logged as such.
        c.cut(a, b)
        wait_for("node0's fence-peer", lambda: fence_lines(c, 0), timeout=15)
        wait_for("node0 logs the refused self-outdate",
                 lambda: "Refusing to outdate the disk of a Primary" in a.log_text(), timeout=5)
        check(a.status()["role"] == "Primary" and a.disk_state() == "UpToDate",
              f"exit 6 on the Primary: still Primary/UpToDate: {a.disk_state()}")
        a.stop()
        wait_for("node1 lost node0", lambda: conn_state(b, a) != "Connected", timeout=10)
        with open(c.handler_exit, "w") as f:
            f.write("4\n")
        check(peer_dev(b, a)["peer-disk-state"] == "DUnknown", "node0's disk is unknown")

        b.setup("net-options", "r0", "0", "--fencing=dont-care")
        b.setup("primary", "r0")
        check(b.status()["role"] == "Primary", "dont-care: Primary")
        check(fence_lines(c, 1) == [], "dont-care: no fence-peer")
        b.setup("secondary", "r0")
        b.setup("net-options", "r0", "0", "--fencing=resource-only")

        b.setup("primary", "r0")
        lines = fence_lines(c, 1)
        check(lines == ["fence-peer r0 node=1 peer=0 fencing=resource-only"],
              f"exit 4: fence-peer ran once for node0 before the promotion: {lines}")
        check(b.status()["role"] == "Primary", "exit 4: Primary")
        check(peer_dev(b, a)["peer-disk-state"] == "Outdated", "exit 4: peer-disk Outdated")
        b.setup("secondary", "r0")

        # disconnect: the peer's disk is unknown again.
        b.setup("disconnect", "r0", "0")
        with open(c.handler_exit, "w") as f:
            f.write("6\n")
        r = b.setup("primary", "r0", check_rc=False)
        out = r.stdout + r.stderr
        check(r.returncode != 0, f"exit 6: primary refused: {out}")
        check("returned 6" in out and "outdating myself" in out,
              f"exit 6: the reason says the peer is Primary: {out.strip()}")
        check(len(fence_lines(c, 1)) == 2, "exit 6: fence-peer ran")
        st = b.status()
        check(st["role"] == "Secondary", f"exit 6: still Secondary: {st['role']}")
        check(b.disk_state() == "Outdated", f"exit 6: own disk Outdated: {b.disk_state()}")

        r = b.setup("primary", "r0", "--force", check_rc=False)
        check(r.returncode == 0, f"--force promotes past the failed fencing: {r.stdout}{r.stderr}")
        check(b.status()["role"] == "Primary", "--force: Primary")
        # As DRBD's conn_try_outdate_peer: no fence-peer with our disk below Consistent.
        check(len(fence_lines(c, 1)) == 2, "--force, disk Outdated: no fence-peer")
        check("Forced into split brain" in b.log_text(), "--force logs the forced split brain")
        check(peer_dev(b, a)["peer-disk-state"] == "Outdated",
              "--force: the unfenced peer counts as Outdated")
        check(b.disk_state() == "UpToDate", f"--force: own disk UpToDate: {b.disk_state()}")


TESTS = [test_paused_sync, test_net_options_live, test_fencing, test_fencing_at_promotion]

if __name__ == "__main__":
    sys.exit(run_tests(TESTS))
