#!/usr/bin/python3
"""Two bsrd nodes in network namespaces: connect, auth refusal, initial full sync after
primary --force, protocol C writes, disconnect/write/reconnect bitmap resync.
Needs root (ip netns) and python3-libnbd; BSR_BIN names the binaries."""

import os
import random
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Cluster, MIB, check, connected, data_size, peer_dev, run_tests,  # noqa: E402
                     same_data, wait_for)

SIZE_MIB = 128


def test_wrong_secret():
    with Cluster(2, size_mib=16) as c:
        a, b = c.nodes
        for n in (a, b):
            n.start()
        a.up(b, ["--cram-hmac-alg=sha256", "--shared-secret=right"])
        b.up(a, ["--cram-hmac-alg=sha256", "--shared-secret=wrong"])
        a.setup("connect", "r0", "1")
        b.setup("connect", "r0", "0")
        for n, p in ((a, b), (b, a)):
            wait_for(f"node{n.index} StandAlone after auth failure",
                     lambda: n.conn(p.node_id)["connection-state"] == "StandAlone", timeout=20)
        for n in (a, b):
            check(re.search(r"authentication of peer node-id \d failed", n.log_text()) is not None,
                  f"node{n.index} logs why the peer was refused")
        check(a.conn(1)["peer-role"] == "Unknown", "the refused peer is not shown as connected")


def test_option_mismatch():
    with Cluster(2, size_mib=16) as c:
        a, b = c.nodes
        for n in (a, b):
            n.start()
        a.up(b, ["--protocol=C"])
        b.up(a, ["--protocol=A"])
        a.setup("connect", "r0", "1")
        b.setup("connect", "r0", "0")
        for n, p in ((a, b), (b, a)):
            wait_for(f"node{n.index} StandAlone after the option mismatch",
                     lambda: n.conn(p.node_id)["connection-state"] == "StandAlone", timeout=20)
            check("incompatible net options: protocol" in n.log_text(),
                  f"node{n.index} logs which option differs")


def test_protocol_a_writes_during_resync():
    """Protocol A; the initial sync is slowed down (fixed resync-rate, c-plan-ahead 0) while the Primary keeps
    writing: the writes overtake resync replies, and both disks still end identical."""
    with Cluster(2, size_mib=64) as c:
        a, b = c.nodes
        c.start_mesh(["--protocol=A"],
                     peer_device_opts=["--c-plan-ahead=0", "--resync-rate=8M", "--c-min-rate=0"])
        a.setup("primary", "r0", "--force")
        h = a.nbd()
        size = data_size(a)
        wait_for("SyncSource", lambda: peer_dev(a, b)["replication-state"] == "SyncSource",
                 timeout=10, interval=0.02)
        writes = 0
        done_seen = []
        while peer_dev(a, b)["replication-state"] == "SyncSource":
            # Sample progress first: the last iteration may see the resync end.
            m = re.search(r"done:([\d.]+)", a.setup("status", "r0").stdout)
            if m:
                done_seen.append(float(m.group(1)))
            # Hot range near the resync front and random ones everywhere.
            for _ in range(10):
                off = random.randrange(0, size // 4096) * 4096
                h.pwrite(os.urandom(4096 * random.choice((1, 2, 16))), min(off, size - 65536))
                writes += 1
        print(f"{writes} writes during the resync; done: samples {done_seen[:3]}..."
              f"{done_seen[-3:]}", flush=True)
        check(writes >= 100, f"the Primary wrote during the resync ({writes} writes)")
        check(len(done_seen) >= 2 and done_seen[0] < done_seen[-1],
              "status shows done: progress while syncing")
        h.flush()
        wait_for("sync done", lambda: b.disk_state() == "UpToDate"
                 and peer_dev(a, b)["peer-disk-state"] == "UpToDate", timeout=60)
        check(same_data(a, b, size), "identical after writes during the resync (protocol A)")


def test_replication():
    with Cluster(2, size_mib=SIZE_MIB) as c:
        a, b = c.nodes
        # (a) connect: both Connected, each shows the peer.
        c.start_mesh(["--protocol=C", "--cram-hmac-alg=sha256", "--shared-secret=s3cret"])
        check(all("feature bits 0x7f " in n.log_text() for n in (a, b)),
              "two current nodes negotiate every feature bit (blocks outside the frame crc)")
        check(a.conn(1)["peer-role"] == "Secondary" and b.conn(0)["peer-role"] == "Secondary",
              "status shows the peer's role")
        check(peer_dev(a, b)["peer-disk-state"] == "Inconsistent",
              "fresh metadata: peer disk Inconsistent")
        text = a.setup("status", "r0").stdout
        check("node1 role:Secondary" in text and "peer-disk:Inconsistent" in text,
              "status text lists the peer: " + text.replace("\n", " | "))

        # (b) primary --force on node0: full initial sync to node1.
        size = data_size(a)
        h = a_nbd = None
        try:
            # Put some data down first so the sync has something to carry.
            a.setup("primary", "r0", "--force")
            t0 = time.monotonic()
            a_nbd = a.nbd()
            pattern = bytes(random.getrandbits(8) for _ in range(64 * 1024))
            for off in range(0, 8 * MIB, len(pattern)):
                a_nbd.pwrite(pattern, off)
            sync_seen = [False]

            def synced():
                st = b.disk_state()
                pd = peer_dev(b, a)
                if pd["replication-state"] in ("SyncTarget", "WFBitMapT"):
                    sync_seen[0] = True
                return st == "UpToDate" and peer_dev(a, b)["peer-disk-state"] == "UpToDate"

            wait_for("initial sync done", synced, timeout=90, interval=0.05)
            secs = time.monotonic() - t0
            print(f"initial sync of {size // MIB} MiB: {secs:.2f} s "
                  f"({size / MIB / secs:.1f} MiB/s)", flush=True)
            check(sync_seen[0] or "resync started as SyncTarget" in b.log_text(),
                  "node1 was SyncTarget")
            a_nbd.flush()
            check(same_data(a, b, size), "after the initial sync both data areas are identical")

            # (c) protocol C writes reach the secondary's disk before they complete.
            blk = os.urandom(4096)
            lat = []
            for i in range(200):
                off = random.randrange(0, size // 4096) * 4096
                t = time.perf_counter()
                a_nbd.pwrite(blk, off)
                lat.append(time.perf_counter() - t)
                if i % 50 == 0:
                    with open(b.disk, "rb") as f:
                        f.seek(off)
                        check(f.read(4096) == blk, f"write at {off} is on node1's disk at ack")
            lat.sort()
            print(f"protocol C 4K write latency: p50 {lat[len(lat) // 2] * 1e3:.2f} ms, "
                  f"p99 {lat[int(len(lat) * 0.99)] * 1e3:.2f} ms", flush=True)
            big = os.urandom(3 * MIB)  # split into 1 MiB packets
            a_nbd.pwrite(big, 17 * MIB)
            a_nbd.flush()
            check(same_data(a, b, size), "after protocol C writes both data areas are identical")
            check(peer_dev(a, b)["out-of-sync"] == 0, "nothing out of sync toward node1")

            # (d) disconnect, write, reconnect: only the marked blocks are resent.
            a.setup("disconnect", "r0", "1")
            wait_for("node0 StandAlone", lambda: a.conn(1)["connection-state"] == "StandAlone")
            wait_for("node1 lost node0",
                     lambda: b.conn(0)["connection-state"] != "Connected", timeout=15)
            blocks = set()
            for _ in range(300):
                blocks.add(random.randrange(0, size // 4096))
            for blkno in sorted(blocks):
                a_nbd.pwrite(os.urandom(4096), blkno * 4096)
            a_nbd.flush()
            oos_kib = peer_dev(a, b)["out-of-sync"]
            check(oos_kib == len(blocks) * 4,
                  f"node0 marks exactly the {len(blocks)} written blocks ({oos_kib} KiB)")
            recv_before = peer_dev(b, a)["received"]
            a.setup("connect", "r0", "1")
            wait_for("resync after reconnect done",
                     lambda: connected(a, b) and b.disk_state() == "UpToDate"
                     and peer_dev(a, b)["replication-state"] == "Established"
                     and peer_dev(a, b)["peer-disk-state"] == "UpToDate", timeout=60)
            recv = peer_dev(b, a)["received"] - recv_before
            check(recv == len(blocks) * 4,
                  f"node1 received exactly the marked blocks: {recv} KiB for {len(blocks)} blocks")
            m = re.findall(r"resync started as SyncTarget: (\d+) KiB", b.log_text())
            check(m and int(m[-1]) == len(blocks) * 4, f"bitmap-based resync of {m[-1:]} KiB")
            check(same_data(a, b, size), "after the resync both data areas are identical")
        finally:
            if a_nbd is not None:
                a_nbd.shutdown()
            del h


def test_mixed_feature_bits():
    """A node that does not offer the block-outside-crc feature (BSR_TEST_FEATURE_BITS=0x3f:
    what a bsr from before it offers) against this build, as Primary and as Secondary: both
    log the negotiated bits 0x3f, the full sync and 4 KiB / 1 MiB writes arrive (the old side
    checks every block's crc), the disks end identical and no crc mismatch is logged."""
    for old in (0, 1):
        with Cluster(2, size_mib=32) as c:
            a, b = c.nodes
            for n in c.nodes:
                n.start(env={"BSR_TEST_FEATURE_BITS": "0x3f"} if n.index == old else None)
            for n, p in ((a, b), (b, a)):
                n.up(p, ["--protocol=C"])
            for n, p in ((a, b), (b, a)):
                n.setup("connect", "r0", str(p.node_id))
            wait_for("both Connected", lambda: connected(a, b), timeout=20)
            for n in (a, b):
                check("feature bits 0x3f " in n.log_text(),
                      f"node{n.index} negotiated 0x3f with an old node{old}")
            a.setup("primary", "r0", "--force")
            wait_for("initial sync", lambda: b.disk_state() == "UpToDate"
                     and peer_dev(a, b)["peer-disk-state"] == "UpToDate", timeout=60)
            h = a.nbd()
            for off in range(0, 4 * MIB, 4096 * 7):
                h.pwrite(os.urandom(4096), off)
            for i in range(4):
                h.pwrite(os.urandom(MIB), 8 * MIB + i * MIB)
            h.flush()
            wait_for("in sync", lambda: peer_dev(a, b)["out-of-sync"] == 0, timeout=20)
            check(same_data(a, b, data_size(a)), f"identical disks (old node{old})")
            for n in (a, b):
                check("crc mismatch" not in n.log_text(), f"node{n.index}: no crc mismatch")


def test_dead_peer():
    """A frozen peer (SIGSTOP) misses its PingAck: NetworkFailure, Connecting, writes go
    to its bitmap; after SIGCONT it reconnects and gets exactly those blocks. Then a
    kill -9 of the Secondary and a restart of its bsrd: same outcome."""
    with Cluster(2, size_mib=32) as c:
        try:
            a, b = c.nodes
            c.start_mesh(["--protocol=C"])
            a.setup("primary", "r0", "--force")
            wait_for("initial sync done", lambda: b.disk_state() == "UpToDate"
                     and peer_dev(a, b)["peer-disk-state"] == "UpToDate", timeout=60)
            check(b.conn(0)["peer-role"] == "Primary", "node1 shows node0 as Primary")
            h = a.nbd()
            size = data_size(a)

            # Freeze node1: its PingAck stops (ping-int 1 s, ping-timeout 0.5 s).
            b.proc.send_signal(signal.SIGSTOP)
            t0 = time.monotonic()
            wait_for("node0 notices the dead peer",
                     lambda: a.conn(1)["connection-state"] != "Connected", timeout=10)
            print(f"dead peer detected after {time.monotonic() - t0:.2f} s", flush=True)
            check("PingAck did not arrive" in a.log_text(), "node0 logs the missing PingAck")
            check(a.conn(1)["connection-state"] == "Connecting", "node0 is Connecting again")
            blocks = {random.randrange(0, size // 4096) for _ in range(100)}
            for blkno in blocks:
                h.pwrite(os.urandom(4096), blkno * 4096)
            h.flush()
            check(peer_dev(a, b)["out-of-sync"] == len(blocks) * 4, "writes marked for node1")
            b.proc.send_signal(signal.SIGCONT)
            wait_for("reconnected and resynced",
                     lambda: connected(a, b) and peer_dev(a, b)["peer-disk-state"] == "UpToDate"
                     and peer_dev(a, b)["replication-state"] == "Established"
                     and b.disk_state() == "UpToDate", timeout=60)
            check(same_data(a, b, size), "identical after the frozen peer came back")

            # kill -9 the Secondary, write, restart its bsrd and bring it up again.
            b.stop(signal.SIGKILL)
            wait_for("node0 sees node1 gone", lambda: a.conn(1)["connection-state"] == "Connecting",
                     timeout=10)
            blocks = {random.randrange(0, size // 4096) for _ in range(50)}
            for blkno in blocks:
                h.pwrite(os.urandom(4096), blkno * 4096)
            h.flush()
            b.start()
            b.up(a, ["--protocol=C"])
            b.setup("connect", "r0", "0")
            wait_for("restarted node1 resynced",
                     lambda: connected(a, b) and peer_dev(a, b)["peer-disk-state"] == "UpToDate"
                     and peer_dev(a, b)["replication-state"] == "Established"
                     and b.disk_state() == "UpToDate", timeout=60)
            m = re.findall(r"resync started as SyncTarget: (\d+) KiB", b.log_text())
            check(m and int(m[-1]) == len(blocks) * 4,
                  f"after kill -9 only the {len(blocks)} written blocks were resynced "
                  f"({m[-1:]} KiB)")
            check(same_data(a, b, size), "identical after the restart")
        finally:
            for n in c.nodes:
                if n.proc and n.proc.poll() is None:
                    n.proc.send_signal(signal.SIGCONT)


def test_three_nodes():
    """1:N: node0 Primary, node1 and node2 Secondaries, a full mesh on one port per
    node: initial sync to both, writes on both, all three disks identical."""
    with Cluster(3, size_mib=32) as c:
        nodes = c.nodes
        c.start_mesh(["--protocol=C"])
        a, b, d = nodes
        a.setup("primary", "r0", "--force")
        wait_for("both Secondaries synced", lambda: b.disk_state() == "UpToDate"
                 and d.disk_state() == "UpToDate", timeout=60)
        check(b.conn(0)["peer-role"] == "Primary" and d.conn(0)["peer-role"] == "Primary",
              "both Secondaries see node0 as Primary")
        h = a.nbd()
        size = data_size(a)
        for _ in range(100):
            h.pwrite(os.urandom(8192), random.randrange(0, size // 8192) * 8192)
        h.flush()
        check(same_data(a, b, size) and same_data(a, d, size), "all three disks identical")
        r = b.setup("primary", "r0", check_rc=False)
        check(r.returncode != 0 and "Primary" in r.stderr,
              f"a second Primary is refused: {r.stderr.strip()}")


TESTS = [test_wrong_secret, test_option_mismatch, test_replication, test_mixed_feature_bits,
         test_dead_peer, test_protocol_a_writes_during_resync, test_three_nodes]


if __name__ == "__main__":
    sys.exit(run_tests(TESTS, needs_netns=TESTS))
