#!/usr/bin/python3
"""1 GiB cluster tests (sparse backing files, removed afterwards):

- test_sync_and_resync_1g: initial full sync of a 1 GiB volume between two namespaces
  (timed, data areas identical); then disconnect, write 1% of the volume at random 4 KiB
  blocks, reconnect: the bytes on the veth link during the resync (counted both ways) and
  the resync's size must match the changed data (TCP payload <= 1.05 x changed + 64 KiB),
  and the disks are byte-identical.
- test_three_nodes_1g: 1:N, one Primary and two Secondaries on a bridge: initial sync to
  both, application writes, all three data areas identical.

Needs root (ip netns) and python3-libnbd; BSR_BIN names the binaries."""

import os
import random
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Cluster, MIB, TestFailure, check, connected, data_size, peer_dev,  # noqa: E402
                     run_tests, wait_for)

PREFIX = os.environ.get("BSR_NETNS_PREFIX", "bsrft")
NET = os.environ.get("BSR_NET", "10.96")
SIZE_MIB = 1024
BLOCK = 4096
# Per frame on the veth: Ethernet 14 + IPv4 20 + TCP 20 + timestamps option 12.
FRAME_HEADERS = 66
FIXED_OVERHEAD = 64 * 1024
# ping-timeout 2 s: on a loaded 2-core machine the default 0.5 s can be missed during
# heavy I/O; these tests measure sync volume and time, not ping scheduling.
NET_OPTS = ["--protocol=C", "--ping-timeout=20"]


def synced(src, dst):
    if not connected(src, dst):
        return False
    pd = peer_dev(src, dst)
    return (dst.disk_state() == "UpToDate" and pd["peer-disk-state"] == "UpToDate"
            and pd["replication-state"] == "Established"
            and peer_dev(dst, src)["replication-state"] == "Established")


def identical(a, b, size):
    """cmp of the first `size` bytes (the data area) of both backing files."""
    p = subprocess.run(["cmp", "-n", str(size), a.disk, b.disk], capture_output=True, text=True)
    if p.returncode not in (0, 1):
        raise TestFailure(f"cmp failed: {p.stderr}")
    if p.returncode:
        print(f"  differ: {p.stdout.strip()}", flush=True)
    return p.returncode == 0


def write_blocks(h, offsets, data_fn, qd=32):
    """Asynchronous writes, qd in flight; raises on any failed write."""
    import nbd
    inflight = []
    bufs = {}
    for off in offsets:
        while len(inflight) >= qd:
            h.poll(-1)
            for c in list(inflight):
                if h.aio_command_completed(c):
                    inflight.remove(c)
                    del bufs[c]
        buf = nbd.Buffer.from_bytearray(data_fn())
        c = h.aio_pwrite(buf, off)
        inflight.append(c)
        bufs[c] = buf
    while inflight:
        h.poll(-1)
        for c in list(inflight):
            if h.aio_command_completed(c):
                inflight.remove(c)
                del bufs[c]
    h.flush()


def wire(node):
    return node.link_counters()


def wire_delta(before, after):
    raw = (after["tx_bytes"] - before["tx_bytes"]) + (after["rx_bytes"] - before["rx_bytes"])
    frames = ((after["tx_packets"] - before["tx_packets"])
              + (after["rx_packets"] - before["rx_packets"]))
    return raw, frames, raw - frames * FRAME_HEADERS


def test_sync_and_resync_1g():
    with Cluster(2, size_mib=SIZE_MIB, prefix=PREFIX, net=NET) as c:
        a, b = c.nodes
        c.start_mesh(NET_OPTS)
        size = data_size(a)
        w0 = wire(a)
        t0 = time.monotonic()
        a.setup("primary", "r0", "--force")
        h = a.nbd()
        # Some distinct data across the volume, written while the sync runs.
        write_blocks(h, [random.randrange(0, size // MIB) * MIB for _ in range(32)],
                     lambda: os.urandom(MIB))
        wait_for("initial sync of 1 GiB", lambda: synced(a, b), timeout=240, interval=0.2)
        secs = time.monotonic() - t0
        raw, frames, payload = wire_delta(w0, wire(a))
        print(f"initial sync of {size / MIB:.0f} MiB: {secs:.1f} s "
              f"({size / MIB / secs:.0f} MiB/s); link bytes {raw / MIB:.1f} MiB in {frames} "
              f"frames", flush=True)
        check(payload >= size, f"the full sync carried the whole volume ({payload / MIB:.1f} MiB "
              f"of TCP payload)")
        check(identical(a, b, size), "1 GiB data areas identical after the initial sync")

        # Disconnect, change 1% at random 4 KiB blocks, reconnect.
        a.setup("disconnect", "r0", "1")
        wait_for("node0 StandAlone", lambda: a.conn(1)["connection-state"] == "StandAlone")
        wait_for("node1 lost node0", lambda: b.conn(0)["connection-state"] != "Connected")
        nblocks = size // BLOCK // 100
        blocks = random.sample(range(size // BLOCK), nblocks)
        write_blocks(h, [blk * BLOCK for blk in blocks], lambda: os.urandom(BLOCK))
        changed = nblocks * BLOCK
        oos = peer_dev(a, b)["out-of-sync"]
        check(oos * 1024 == changed, f"{nblocks} blocks ({changed} bytes) marked out of sync")
        recv0 = peer_dev(b, a)["received"]
        w1 = wire(a)
        t1 = time.monotonic()
        a.setup("connect", "r0", "1")
        wait_for("resync of 1%", lambda: synced(a, b) and peer_dev(a, b)["out-of-sync"] == 0,
                 timeout=120, interval=0.1)
        secs = time.monotonic() - t1
        raw, frames, payload = wire_delta(w1, wire(a))
        recv = (peer_dev(b, a)["received"] - recv0) * 1024
        m = re.findall(r"resync started as SyncTarget: (\d+) KiB", b.log_text())
        rs_kib = int(m[-1]) if m else -1
        print(f"resync of {nblocks} random 4 KiB blocks ({changed / MIB:.2f} MiB changed): "
              f"{secs:.2f} s incl. reconnect; link {raw} bytes in {frames} frames "
              f"= {raw / changed:.3f}x changed; TCP payload {payload} bytes = "
              f"{payload / changed:.3f}x changed; resync {rs_kib} KiB; node1 received "
              f"{recv} bytes", flush=True)
        check(rs_kib * 1024 == changed, f"the resync covered exactly the {nblocks} changed blocks")
        check(recv == changed, f"node1 received exactly the changed data ({recv} bytes)")
        check(payload <= 1.05 * changed + FIXED_OVERHEAD,
              f"resent bytes on the wire {payload} <= 1.05 x {changed} + {FIXED_OVERHEAD}")
        check(identical(a, b, size), "1 GiB data areas identical after the resync")


def test_three_nodes_1g():
    with Cluster(3, size_mib=SIZE_MIB, prefix=PREFIX, net=NET) as c:
        nodes = c.nodes
        c.start_mesh(NET_OPTS)
        a, b, d = nodes
        size = data_size(a)
        t0 = time.monotonic()
        a.setup("primary", "r0", "--force")
        wait_for("both Secondaries synced", lambda: synced(a, b) and synced(a, d),
                 timeout=300, interval=0.2)
        secs = time.monotonic() - t0
        print(f"1:2 initial sync of {size / MIB:.0f} MiB: {secs:.1f} s "
              f"({2 * size / MIB / secs:.0f} MiB/s leaving the Primary)", flush=True)
        h = a.nbd()
        nblocks = 2000
        write_blocks(h, [random.randrange(0, size // BLOCK) * BLOCK for _ in range(nblocks)],
                     lambda: os.urandom(BLOCK))
        write_blocks(h, [random.randrange(0, size // MIB) * MIB for _ in range(16)],
                     lambda: os.urandom(MIB))
        for p in (b, d):
            lost = p.log_text().count("connection lost")
            if lost:
                print(f"  node{p.index} lost a connection during the writes ({lost}x); "
                      f"waiting for its resync", flush=True)
            wait_for(f"node{p.index} in sync", lambda: synced(a, p)
                     and peer_dev(a, p)["out-of-sync"] == 0, timeout=60)
            check(peer_dev(a, p)["out-of-sync"] == 0, f"nothing out of sync toward node{p.index}")
        check(identical(a, b, size) and identical(a, d, size),
              "all three 1 GiB data areas identical after the sync and the writes")


TESTS = [test_sync_and_resync_1g, test_three_nodes_1g]


if __name__ == "__main__":
    sys.exit(run_tests(TESTS, needs_netns=TESTS))
