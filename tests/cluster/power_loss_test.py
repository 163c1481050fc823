#!/usr/bin/python3
"""Power loss of the Secondary (two bsrd nodes in network namespaces).

The Secondary's disk has a volatile write cache: its backing file is served by nbdkit with
the cache filter (cache=writeback: a write reaches the file only at a flush) behind
nbdfuse. A power cut is kill -9 of the Secondary's bsrd and of that nbdkit: every write the
Secondary had not flushed is gone, although it had acknowledged it (protocol C's WriteAck
says "written", not "stable"). The cut comes while writes still fly, so the Primary has
not closed the epoch for a pause (it does 100 ms after the last write).

- test_protocol_c_secondary_power_loss: protocol C writes, then the Secondary's power cut
  before any barrier. As in DRBD, the Primary keeps every write in its transfer log until
  the epoch's BarrierAck (the Secondary sends it after flushing the epoch) and marks what
  is left there out of sync when the connection is lost, so the Secondary's restart and
  resync restore the lost writes: both data areas must end identical.
- test_secondary_power_cut_then_primary_lost: three nodes; node2's power cut and, right
  after, the Primary's loss (kill -9). The other Secondary, promoted, must resync to node2
  every write node2 had acknowledged but not flushed. It knows them because the Primary's
  peer acks (which tell it that node2 holds a write, so it can stop tracking the write)
  wait for node2's BarrierAck, as DRBD's P_PEER_ACK waits for the request to leave the
  transfer log.

Needs root for namespaces (without it: loopback addresses), python3-libnbd, nbdkit and
nbdfuse; BSR_BIN names the binaries. Details: docs/testing.md."""

import contextlib
import os
import random
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from harness import (MIB, Cluster, check, data_size, peer_dev, run_tests,  # noqa: E402
                     same_data, synced, wait_for)
from kit_disk import KitDisk  # noqa: E402

PREFIX = os.environ.get("BSR_NETNS_PREFIX", "bsrpl")
NET = os.environ.get("BSR_NET", "10.88")
BLOCK = 4096


def in_sync(src, dst):
    if not synced(src, dst):
        return False
    pd = peer_dev(src, dst)
    return pd["peer-disk-state"] == "UpToDate" and pd["out-of-sync"] == 0


def writes_then_cut(h, size, count, cut, fatal=False):
    """Random 4 KiB writes to distinct blocks, 16 in flight; once `count` are acknowledged,
    cut() runs while writes still fly (so the Primary's epoch is open, not closed by a
    pause), then the rest complete (unless `fatal`: the cut ended the Primary, and this
    returns at once). Returns {offset: data} of those acknowledged before."""
    import nbd
    acked, inflight = {}, {}
    offsets = random.sample(range(size // BLOCK), count + 64)
    while offsets or inflight:
        while offsets and len(inflight) < 16:
            off = offsets.pop() * BLOCK
            data = os.urandom(BLOCK)
            buf = nbd.Buffer.from_bytearray(bytearray(data))
            inflight[h.aio_pwrite(buf, off)] = (off, data, buf)
        h.poll(100)
        for k in [k for k in inflight if h.aio_command_completed(k)]:
            off, data, _ = inflight.pop(k)
            if len(acked) < count:
                acked[off] = data
                if len(acked) == count:
                    cut()
                    if fatal:
                        return acked
                    offsets = offsets[:16]
    return acked


@contextlib.contextmanager
def primary_with_cached_disk(c, node, opts):
    """`node`'s disk behind nbdkit's cache filter (cache=writeback: a volatile write
    cache), the mesh up with `opts`, node0 Primary after the initial sync, and a flush:
    everything so far is on `node`'s file, not only in its cache. Yields the KitDisk, the
    raw file's path, the data size and an NBD handle on node0; at the end stops every
    node, then the disk."""
    a = c.nodes[0]
    disk = KitDisk(c.work, node.disk, ["cache"], ["cache=writeback"])
    raw = node.disk
    try:
        disk.start()
        node.disk = disk.path
        c.start_mesh(opts)
        a.setup("primary", "r0", "--force")
        wait_for("initial sync", lambda: all(in_sync(a, n) for n in c.nodes[1:]), timeout=120)
        h = a.nbd()
        h.flush()
        yield disk, raw, data_size(a), h
    finally:
        for n in c.nodes:
            n.stop()
        disk.stop()


def test_protocol_c_secondary_power_loss(rounds=3):
    opts = ["--protocol=C"]
    with Cluster(2, size_mib=64, prefix=PREFIX, net=NET) as c:
        a, b = c.nodes
        with primary_with_cached_disk(c, b, opts) as (disk, raw, size, h):
            for rnd in range(rounds):
                def power_cut():
                    b.kill()
                    disk.power_loss()
                written = writes_then_cut(h, size, 300, power_cut)
                lost = lost_blocks(raw, written)
                check(lost > 0, f"round {rnd + 1}: the power cut dropped acknowledged writes "
                      f"from node1's cache (else this round tests nothing)")
                wait_for("node0 lost node1",
                         lambda: a.conn(1)["connection-state"] != "Connected", timeout=15)
                oos = peer_dev(a, b)["out-of-sync"]
                print(f"round {rnd + 1}: {len(written)} writes acknowledged, {lost} of them "
                      f"lost with node1's cache; node0 marked {oos} KiB for node1", flush=True)
                check(oos >= lost * 4, f"round {rnd + 1}: node0 marked the writes node1 had "
                      f"not flushed ({oos} KiB for {lost} lost blocks)")
                disk.start()
                b.start()
                b.up(a, opts)
                b.setup("connect", "r0", "0")
                wait_for("resync after node1's power cut", lambda: in_sync(a, b), timeout=120)
                m = re.findall(r"resync started as SyncTarget: (\d+) KiB", b.log_text())
                check(m and int(m[-1]) == oos,
                      f"round {rnd + 1}: the resync carried the marked {oos} KiB ({m[-1:]})")
                check(same_data(a, b, size), f"round {rnd + 1}: identical after node1's "
                      f"restart and resync")
                # No flush before the next round: the resync's own writes must be stable
                # when it ends (its metadata update flushes the disk), or the next power cut
                # loses them with node1 UpToDate.


def lost_blocks(path, written):
    """How many of the writes in {offset: data} the file at `path` does not hold."""
    lost = 0
    with open(path, "rb") as f:
        for off, data in written.items():
            f.seek(off)
            lost += f.read(BLOCK) != data
    return lost


def test_secondary_power_cut_then_primary_lost():
    opts = ["--protocol=C"]
    with Cluster(3, size_mib=64, prefix=PREFIX, net=NET) as c:
        a, b, n2 = c.nodes
        with primary_with_cached_disk(c, n2, opts) as (disk, raw, size, h):
            def double_failure():
                n2.kill()
                disk.power_loss()
                a.kill()
            written = writes_then_cut(h, size, 300, double_failure, fatal=True)
            lost = lost_blocks(raw, written)
            check(lost > 0, "the power cut dropped acknowledged writes from node2's cache "
                  "(else this tests nothing)")
            wait_for("node1 lost both peers", lambda: all(
                b.conn(p)["connection-state"] != "Connected" for p in (0, 2)), timeout=15)
            oos = peer_dev(b, n2)["out-of-sync"]
            print(f"{len(written)} writes acknowledged, {lost} of them lost with node2's "
                  f"cache; node1 marked {oos} KiB for node2", flush=True)
            check(oos >= lost * 4, f"node1 marked the writes node2 had not flushed ({oos} KiB "
                  f"for {lost} lost blocks)")
            b.setup("primary", "r0")
            disk.start()
            n2.start()
            n2.up_many([a, b], opts)
            n2.setup("connect", "r0", "1")
            wait_for("node2 resynced from node1", lambda: in_sync(b, n2), timeout=120)
            check(same_data(b, n2, size), "node2 has node1's data after the resync")
            h1 = b.nbd()
            missing = sum(h1.pread(BLOCK, off) != data for off, data in written.items())
            check(missing == 0, f"every acknowledged write is on the new Primary ({missing} "
                  f"missing)")


TESTS = [test_protocol_c_secondary_power_loss, test_secondary_power_cut_then_primary_lost]


if __name__ == "__main__":
    sys.exit(run_tests(TESTS))
