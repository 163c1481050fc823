#!/usr/bin/python3
"""Split brain, invalidate and the crashed-Primary resync on a real pair of bsrd nodes
(network namespaces): a real split brain (disconnect, both nodes write as Primary),
reconnect, and each after-sb policy ends with identical disks holding the winner's data;
the unresolved case goes StandAlone with DRBD's log line and the split-brain handler,
and `connect --discard-my-data` on the victim recovers it. invalidate / invalidate-remote
copy the whole disk (the before-/after-resync handlers run); a Primary killed with -9
during writes resyncs its activity-log extents after the restart. Needs root (ip netns)
and python3-libnbd; BSR_BIN names the binaries. Run one test: split_brain_test.py
test_invalidate."""

import os
import random
import re
import stat
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Cluster, TestFailure, check, conn_state, connect,  # noqa: E402
                     data_size, peer_dev, run_tests, same_data, synced, wait_for)

PREFIX = os.environ.get("BSR_NETNS_PREFIX", "bsrsb")
NET = os.environ.get("BSR_NET", "10.93")
SIZE_MIB = 16
BLOCK = 4096


def cluster():
    """Two nodes; their handlers go to a script that logs the call with its BSR_*
    environment and exits 0, or 1 for a handler named in <work>/fail-handlers."""
    c = Cluster(2, size_mib=SIZE_MIB, prefix=PREFIX, net=NET)
    c.handler_log = os.path.join(c.work, "handlers.log")
    c.fail_file = os.path.join(c.work, "fail-handlers")
    path = os.path.join(c.work, "helper.sh")
    with open(path, "w") as f:
        f.write("#!/bin/sh\n"
                f'echo "$1 $2 node=$BSR_MY_NODE_ID peer=$BSR_PEER_NODE_ID vol=$BSR_VOLUME '
                f'minor=$BSR_MINOR res=$BSR_RESOURCE" >> {c.handler_log}\n'
                f'grep -qx "$1" {c.fail_file} 2>/dev/null && exit 1\n'
                "exit 0\n")
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    os.environ["BSR_USERMODE_HELPER"] = path
    return c


def handler_calls(c, name=None, node=None):
    try:
        with open(c.handler_log) as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    return [l for l in lines if (name is None or l.split()[0] == name)
            and (node is None or f"node={node.node_id} " in l)]


def role(node):
    return node.status()["role"]


def start_pair(c, net_opts=()):
    """Both nodes up and connected, node0 Primary after the initial full sync."""
    a, b = c.nodes
    c.start_mesh(list(net_opts))
    a.setup("primary", "r0", "--force")
    wait_for("initial sync done", lambda: synced(a, b), timeout=60)
    return a, b


def write_blocks(node, blocks, tag):
    """Writes 4 KiB blocks (indexes) through NBD; returns {block: data}."""
    h = node.nbd()
    out = {}
    try:
        for blk in blocks:
            data = (f"{tag}:{blk}:".encode() + os.urandom(32)).ljust(BLOCK, b"x")
            h.pwrite(data, blk * BLOCK)
            out[blk] = data
        h.flush()
    finally:
        h.shutdown()
    return out


def read_block(node, blk):
    with open(node.disk, "rb") as f:
        f.seek(blk * BLOCK)
        return f.read(BLOCK)


def make_split_brain(a, b, a_blocks, b_blocks, a_primary=False, b_primary=False):
    """From a connected, synced pair with node0 Primary: disconnect, node0 writes
    a_blocks, node1 is promoted and writes b_blocks; each stays Primary if asked."""
    a.setup("disconnect", "r0", "1")
    b.setup("disconnect", "r0", "0")
    wait_for("both StandAlone",
             lambda: conn_state(a, b) == "StandAlone" and conn_state(b, a) == "StandAlone")
    if role(a) != "Primary":
        a.setup("primary", "r0")
    wa = write_blocks(a, a_blocks, "node0")
    if not a_primary:
        a.setup("secondary", "r0")
    b.setup("primary", "r0")
    wb = write_blocks(b, b_blocks, "node1")
    if not b_primary:
        b.setup("secondary", "r0")
    return wa, wb


def expect_winner(c, winner, loser, written, size, timeout=30):
    """The resync after the split brain went from winner to loser: identical disks that
    hold the winner's blocks."""
    wait_for("resync after the split brain done", lambda: synced(winner, loser), timeout=timeout)
    check(same_data(winner, loser, size), "both disks identical after the resync")
    for blk, data in written.items():
        if read_block(loser, blk) != data:
            raise TestFailure(f"block {blk} on node{loser.index} is not the winner's data")
    check(True, f"node{loser.index} holds node{winner.index}'s {len(written)} written blocks")


def policy_case(name, net_opts, a_blocks, b_blocks, winner_index, a_primary=False,
                b_primary=False, check_log=None):
    with cluster() as c:
        a, b = start_pair(c, net_opts)
        size = data_size(a)
        wa, wb = make_split_brain(a, b, a_blocks, b_blocks, a_primary, b_primary)
        connect(a, b, wait=False)
        winner, loser = (a, b) if winner_index == 0 else (b, a)
        expect_winner(c, winner, loser, wa if winner is a else wb, size)
        for n in (a, b):
            check(len(handler_calls(c, "initial-split-brain", n)) >= 1,
                  f"{name}: initial-split-brain handler ran on node{n.index}")
        check(not handler_calls(c, "split-brain"), f"{name}: no split-brain handler (resolved)")
        text = loser.log_text()
        check("automatically solved. Sync from peer node" in text,
              f"{name}: node{loser.index} logs the automatic resolution")
        check("automatically solved. Sync from this node" in winner.log_text(),
              f"{name}: node{winner.index} logs it from its side")
        if check_log:
            check_log(a, b)
        return a, b


def test_unresolved_then_discard_my_data():
    """Default after-sb policies (disconnect): both StandAlone with DRBD's line, the
    initial-split-brain and split-brain handlers ran with the BSR_* environment; then
    `connect --discard-my-data` on node1 makes it SyncTarget of node0's data."""
    with cluster() as c:
        a, b = start_pair(c)
        size = data_size(a)
        wa, wb = make_split_brain(a, b, [1, 2, 3, 100], [2, 200, 201])
        connect(a, b, wait=False)
        for n, p in ((a, b), (b, a)):
            wait_for(f"node{n.index} StandAlone after the split brain",
                     lambda: conn_state(n, p) == "StandAlone", timeout=20)
            check("Split-Brain detected but unresolved, dropping connection!" in n.log_text(),
                  f"node{n.index} logs DRBD's split-brain line")
        wait_for("split-brain handler on both nodes",
                 lambda: len({l.split()[2] for l in handler_calls(c, "split-brain")}) == 2)
        for n, p in ((a, b), (b, a)):
            calls = handler_calls(c, "split-brain", n)
            check(f"peer={p.node_id} vol=0 minor=0 res=r0" in calls[0],
                  f"split-brain handler on node{n.index} saw BSR_PEER_NODE_ID, BSR_VOLUME, "
                  f"BSR_MINOR, BSR_RESOURCE: {calls[0]}")
            check(handler_calls(c, "initial-split-brain", n),
                  f"initial-split-brain ran on node{n.index}")
        check(read_block(b, 200) == wb[200], "node1 still has its own data while StandAlone")
        # Manual recovery (seed 002 / DRBD): the victim discards its data.
        b.setup("connect", "r0", "0", "--discard-my-data")
        a.setup("connect", "r0", "1")
        expect_winner(c, a, b, wa, size)
        check(read_block(b, 200) == read_block(a, 200), "node1's own writes were discarded")
        check("Split-Brain detected, manually solved. Sync from peer node" in b.log_text(),
              "node1 logs the manual resolution")


def test_discard_least_changes():
    policy_case("discard-least-changes", ["--after-sb-0pri=discard-least-changes"],
                [1, 2], [10, 11, 12, 13, 14], winner_index=1)


def test_discard_zero_changes():
    policy_case("discard-zero-changes", ["--after-sb-0pri=discard-zero-changes"],
                [], [5, 6, 7], winner_index=1)


def test_discard_younger_primary():
    # node0 was Primary when the nodes split; node1 was promoted afterwards (younger),
    # although it wrote more.
    policy_case("discard-younger-primary", ["--after-sb-0pri=discard-younger-primary"],
                [1], [10, 11, 12, 13], winner_index=0)


def test_discard_older_primary():
    policy_case("discard-older-primary", ["--after-sb-0pri=discard-older-primary"],
                [1, 2, 3, 4], [10], winner_index=1)


def test_one_primary_discard_secondary():
    # node0 is still Primary at the reconnect; node1 wrote more but is Secondary.
    policy_case("after-sb-1pri discard-secondary",
                ["--after-sb-0pri=discard-least-changes", "--after-sb-1pri=discard-secondary"],
                [1], [10, 11, 12], winner_index=0, a_primary=True)


def test_one_primary_call_pri_lost_after_sb():
    """node0 is Primary with fewer changes: call-pri-lost-after-sb makes it give up the
    Primary role and become SyncTarget of node1."""

    def demoted(a, b):
        check(role(a) == "Secondary", "the losing Primary became Secondary")
        check("Successfully gave up primary role." in a.log_text(), "node0 logs the demotion")

    policy_case("after-sb-1pri call-pri-lost-after-sb",
                ["--after-sb-0pri=discard-least-changes",
                 "--after-sb-1pri=call-pri-lost-after-sb"],
                [1], [10, 11, 12], winner_index=1, a_primary=True, check_log=demoted)


def test_invalidate():
    """invalidate / invalidate-remote copy every block: blocks changed behind bsrd's
    back on a backing file are repaired; the before-/after-resync handlers run; a failing
    before-resync-target handler stops the resync; refusals name the reason."""
    with cluster() as c:
        a, b = start_pair(c)
        size = data_size(a)
        blocks = random.sample(range(size // BLOCK), 20)

        def scribble(node):
            with open(node.disk, "r+b") as f:
                for blk in blocks:
                    f.seek(blk * BLOCK)
                    f.write(os.urandom(BLOCK))
                f.flush()
                os.fsync(f.fileno())
            check(not same_data(a, b, size), f"node{node.index}'s disk changed behind bsrd")

        # Refused: on the Primary, and without a connection.
        p = a.setup("invalidate", "0", check_rc=False)
        check(p.returncode != 0 and "Primary" in p.stdout + p.stderr,
              f"invalidate on the Primary refused: {(p.stdout + p.stderr).strip()}")
        p = b.setup("invalidate-remote", "r0", "0", "0", check_rc=False)
        check(p.returncode != 0 and "Primary" in p.stdout + p.stderr,
              f"invalidate-remote of a Primary refused: {(p.stdout + p.stderr).strip()}")

        scribble(b)
        b.setup("invalidate", "0")
        wait_for("invalidate resync done", lambda: synced(a, b), timeout=30)
        check(same_data(a, b, size), "invalidate: node1's disk is node0's again")
        check(re.search(r"resync started as SyncTarget: (\d+) KiB", b.log_text()) is not None
              and f"resync started as SyncTarget: {size // 1024} KiB" in b.log_text(),
              "invalidate resynced the whole disk")
        wait_for("resync handlers", lambda: handler_calls(c, "after-resync-target", b))
        check(handler_calls(c, "before-resync-target", b), "before-resync-target ran on node1")
        check(handler_calls(c, "before-resync-source", a), "before-resync-source ran on node0")

        scribble(b)
        n_before = b.log_text().count(f"resync started as SyncTarget: {size // 1024} KiB")
        a.setup("invalidate-remote", "r0", "1", "0")
        wait_for("invalidate-remote resync done", lambda: synced(a, b)
                 and b.log_text().count(f"resync started as SyncTarget: {size // 1024} KiB")
                 > n_before, timeout=30)
        check(same_data(a, b, size), "invalidate-remote: node1's disk is node0's again")

        # A failing before-resync-target handler: the resync does not start.
        with open(c.fail_file, "w") as f:
            f.write("before-resync-target\n")
        b.setup("invalidate", "0")
        wait_for("connection dropped by the handler", lambda: conn_state(b, a) == "StandAlone")
        check("before-resync-target handler returned 1, dropping connection." in b.log_text(),
              "node1 logs why")
        os.unlink(c.fail_file)
        p = b.setup("invalidate", "0", check_rc=False)
        check(p.returncode != 0 and "connection" in p.stdout + p.stderr,
              f"invalidate without a connection refused: {(p.stdout + p.stderr).strip()}")
        # Reconnect: node1 is Inconsistent, so it becomes SyncTarget again.
        b.setup("connect", "r0", "0")
        wait_for("resync after reconnect", lambda: synced(a, b), timeout=30)
        check(same_data(a, b, size), "identical after the reconnect")


def test_crashed_primary():
    """kill -9 of the Primary during writes; the Secondary stays Secondary; the old
    Primary restarts and reconnects: its activity-log extents are resynced from it (it
    has the newer data), not the whole disk, and both disks end identical."""
    with cluster() as c:
        a, b = start_pair(c)
        size = data_size(a)
        stop = threading.Event()
        errors = []

        def writer():
            try:
                h = a.nbd()
            except Exception as e:  # noqa: BLE001
                errors.append(e)
                return
            rnd = random.Random(7)
            try:
                while not stop.is_set():
                    # Two hot 4 MiB extents: the activity log holds them.
                    blk = rnd.choice((0, 1024)) + rnd.randrange(1024)
                    h.pwrite(os.urandom(BLOCK), blk * BLOCK)
            except Exception:  # noqa: BLE001 - the server is killed under it
                pass

        t = threading.Thread(target=writer)
        t.start()
        time.sleep(1.0)
        a.kill()
        stop.set()
        t.join(timeout=10)
        check(not errors, f"writer ran ({errors})")
        wait_for("node1 lost node0", lambda: conn_state(b, a) != "Connected", timeout=20)
        check(role(b) == "Secondary", "the Secondary stays Secondary")
        a.start()
        a.up(b)
        a.setup("connect", "r0", "1")
        wait_for("resync after the restart", lambda: synced(a, b), timeout=60)
        text = a.log_text()
        check("crashed as Primary" in text, "node0 decided as a crashed Primary")
        m = re.findall(r"resync started as SyncSource: (\d+) KiB", text)
        check(m and 0 < int(m[-1]) <= 8 * 1024,
              f"only the activity-log extents were resynced ({m[-1] if m else '?'} KiB)")
        check(same_data(a, b, size), "both disks identical after the resync")
        check(role(a) == "Secondary" and role(b) == "Secondary", "both Secondary")


def test_failover_keeps_uuids_in_step():
    """A failover while connected (node0 demotes, node1 is promoted and writes): node0
    adopts node1's new data generation, so after a later disconnect only the blocks
    written meanwhile are resynced (bitmap-based, not a full sync)."""
    with cluster() as c:
        a, b = start_pair(c)
        size = data_size(a)
        a.setup("secondary", "r0")
        b.setup("primary", "r0")
        write_blocks(b, [1, 2, 3], "node1")
        wait_for("node0 adopted node1's generation",
                 lambda: "adopting it" in a.log_text(), timeout=10)
        b.setup("disconnect", "r0", "0")
        a.setup("disconnect", "r0", "1")
        written = write_blocks(b, [50, 51, 52, 53], "node1")
        connect(a, b, wait=False)
        wait_for("resync done", lambda: synced(a, b), timeout=30)
        text = a.log_text()
        m = re.findall(r"resync started as SyncTarget: (\d+) KiB", text)
        check(m and int(m[-1]) == 16, f"only the 4 blocks written while apart were resynced "
              f"({m[-1] if m else '?'} KiB)")
        check(same_data(a, b, size), "identical after the resync")
        for blk, data in written.items():
            check(read_block(a, blk) == data, f"block {blk} reached node0")


def test_interrupted_full_sync_resumes():
    """kill -9 of the SyncSource (the forced Primary) during the initial full sync: after
    its restart the sync goes on as a bitmap-based one (the sync UUID both took at the
    start), not as a new full sync, and ends with identical disks."""
    with cluster() as c:
        a, b = c.nodes
        c.start_mesh(peer_device_opts=["--c-plan-ahead=0", "--resync-rate=2M"])
        size = data_size(a)
        a.setup("primary", "r0", "--force")
        wait_for("full sync under way",
                 lambda: peer_dev(b, a)["replication-state"] == "SyncTarget", timeout=20)
        # About 6 of 16 MiB (8 s in all: a slow machine still kills it midway); the bitmap
        # is written every 2 s meanwhile.
        time.sleep(3.0)
        check(peer_dev(b, a)["replication-state"] == "SyncTarget", "the sync still runs")
        a.kill()
        wait_for("node1 lost node0", lambda: conn_state(b, a) != "Connected", timeout=20)
        check(b.disk_state() == "Inconsistent", "the target stays Inconsistent")
        a.start()
        a.up(b)
        a.setup("peer-device-options", "r0", "1", "0", "--c-plan-ahead=0", "--resync-rate=64M")
        a.setup("connect", "r0", "1")
        wait_for("sync done after the restart", lambda: synced(a, b), timeout=60)
        decisions = re.findall(r"sync decision: ([a-z -]+sync as Sync\w+)", a.log_text())
        check(decisions and decisions[-1] == "bitmap-based sync as SyncSource",
              f"the restarted source resumes with a bitmap-based sync ({decisions[-1:]})")
        sizes = re.findall(r"resync started as SyncTarget: (\d+) KiB", b.log_text())
        check(len(sizes) == 2 and int(sizes[1]) < int(sizes[0]),
              f"the resumed sync copies less than the whole disk (resync sizes on the target: "
              f"{sizes} KiB)")
        check(same_data(a, b, size), "identical after the resumed sync")


TESTS = [test_unresolved_then_discard_my_data, test_discard_least_changes,
         test_discard_zero_changes, test_discard_younger_primary, test_discard_older_primary,
         test_one_primary_discard_secondary, test_one_primary_call_pri_lost_after_sb,
         test_invalidate, test_crashed_primary, test_failover_keeps_uuids_in_step,
         test_interrupted_full_sync_resumes]


if __name__ == "__main__":
    sys.exit(run_tests(TESTS, needs_netns=TESTS))
