#!/usr/bin/python3
"""Connection-level behaviour between two bsrd nodes in network namespaces: an IPv6
path, several paths (the first one cut with nftables), a local address that appears
late, socket buffer options, ko-count dropping a stuck peer, simultaneous promotion
(two-phase commit), data-integrity-alg with a damaged block, Ahead/Behind under
congestion. Needs root and python3-libnbd; BSR_BIN names the binaries.
Namespaces "bsrnet<pid>-*", addresses from 10.95.0.0/16 and fd95::/64."""

import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (BIN, Cluster, MIB, TestFailure, check, conn_state, connect, connected,  # noqa: E402
                     data_size, peer_dev, run, run_tests, same_data, wait_for)

PREFIX = os.environ.get("BSR_NETNS_PREFIX", "bsrnet")
NET = os.environ.get("BSR_NET", "10.95")
FAST = ["--connect-int=1", "--ping-int=1"]


def new_cluster(size_mib=16):
    return Cluster(2, size_mib=size_mib, prefix=PREFIX, net=NET)


def sub(c):
    """The cluster's third octet: extra addresses of this run stay in its /24."""
    return c.nodes[0].addr.split(".")[2]


def add_addr(node, addr, v6=False):
    ns, dev = node.cluster.links[node.index]
    args = ["ip", "-n", ns, "addr", "add", addr, "dev", dev]
    if v6:
        args.append("nodad")  # usable at once, no duplicate address detection delay
    p = run(args)
    if p.returncode != 0:
        raise TestFailure(f"{' '.join(args)}: {p.stderr.strip()}")


def up(node, peer, paths, net_opts=()):
    """r0, volume 0, one connection to `peer` with `paths` [(local, remote), ...]."""
    node.setup("new-resource", "r0", str(node.node_id))
    node.setup("new-minor", "r0", "0", "0")
    node.setup("attach", "0", node.disk, node.disk, "internal")
    node.setup("new-peer", "r0", str(peer.node_id), f"--_name=node{peer.index}", *net_opts)
    for local, remote in paths:
        node.setup("new-path", "r0", str(peer.node_id), local, remote)


def initial_sync(a, b, timeout=60):
    a.setup("primary", "r0", "--force")
    wait_for("initial sync done",
             lambda: b.disk_state() == "UpToDate"
             and peer_dev(a, b)["peer-disk-state"] == "UpToDate", timeout=timeout)


def established_sockets(node, port):
    p = run(["ip", "netns", "exec", node.ns, "ss", "-tnmH", "state", "established",
             f"( sport = :{port} or dport = :{port} )"])
    return p.stdout


def test_ipv6_pair():
    """An IPv6 path: connect, initial sync, a protocol C write is on the peer's disk;
    sndbuf-size/rcvbuf-size reach the sockets."""
    with new_cluster() as c:
        a, b = c.nodes
        s = int(sub(c))
        a6, b6 = f"fd95::{s:x}:1", f"fd95::{s:x}:2"
        add_addr(a, f"{a6}/64", v6=True)
        add_addr(b, f"{b6}/64", v6=True)
        for n in (a, b):
            n.start()
        opts = FAST + ["--sndbuf-size=256K", "--rcvbuf-size=256K"]
        up(a, b, [(f"ipv6:[{a6}]:7789", f"ipv6:[{b6}]:7789")], opts)
        up(b, a, [(f"ipv6:[{b6}]:7789", f"ipv6:[{a6}]:7789")], opts)
        connect(a, b, wait=False)
        wait_for("Connected over IPv6", lambda: connected(a, b), timeout=20)
        socks = established_sockets(a, 7789)
        check(a6 in socks and b6 in socks, "the sockets use the IPv6 addresses")
        # Linux reports twice the requested size (its bookkeeping share included).
        check(len(re.findall(r"tb524288", socks)) >= 2 and
              len(re.findall(r"rb524288", socks)) >= 2,
              "sndbuf-size/rcvbuf-size 256K are set on the data and meta socket")
        initial_sync(a, b)
        h = a.nbd()
        blk = os.urandom(4096)
        h.pwrite(blk, 5 * MIB)
        with open(b.disk, "rb") as f:
            f.seek(5 * MIB)
            check(f.read(4096) == blk, "a protocol C write over IPv6 is on the peer at ack")


def test_two_paths_first_cut():
    """Two paths; the first is cut (nftables drops it) before connecting: the
    connection comes up over the second, and replicates over it."""
    with new_cluster() as c:
        a, b = c.nodes
        s = sub(c)
        a2, b2 = f"{NET}.{s}.101", f"{NET}.{s}.102"
        add_addr(a, f"{a2}/24")
        add_addr(b, f"{b2}/24")
        for n in (a, b):
            n.start()
        c.cut(a, b, port=7789)  # first path: both addresses, port 7789
        up(a, b, [(f"ipv4:{a.addr}:7789", f"ipv4:{b.addr}:7789"),
                  (f"ipv4:{a2}:7790", f"ipv4:{b2}:7790")], FAST)
        up(b, a, [(f"ipv4:{b.addr}:7789", f"ipv4:{a.addr}:7789"),
                  (f"ipv4:{b2}:7790", f"ipv4:{a2}:7790")], FAST)
        t0 = time.monotonic()
        connect(a, b, wait=False)
        wait_for("Connected over the second path", lambda: connected(a, b), timeout=20)
        print(f"connected after {time.monotonic() - t0:.1f} s with the first path cut", flush=True)
        socks = established_sockets(a, 7790)
        check(a2 in socks and b2 in socks, "the connection runs over the second path")
        check(not established_sockets(a, 7789).strip(), "nothing is established on the cut path")
        initial_sync(a, b)
        check(same_data(a, b, data_size(a)), "the initial sync over the second path completed")


def test_local_address_added_late():
    """node1's path uses a local address the host does not have yet: the connection
    keeps trying (Connecting, not StandAlone) and connects once it is added."""
    with new_cluster() as c:
        a, b = c.nodes
        late = f"{NET}.{sub(c)}.122"
        for n in (a, b):
            n.start()
        up(a, b, [(f"ipv4:{a.addr}:7789", f"ipv4:{late}:7789")], FAST)
        up(b, a, [(f"ipv4:{late}:7789", f"ipv4:{a.addr}:7789")], FAST)
        connect(a, b, wait=False)
        time.sleep(2.5)
        check(conn_state(b, a) == "Connecting" and conn_state(a, b) == "Connecting",
              "without the local address both stay Connecting")
        check(f"cannot listen on ipv4:{late}:7789" in b.log_text(),
              "node1 logs that it cannot listen on the missing address yet")
        add_addr(b, f"{late}/24")
        t0 = time.monotonic()
        wait_for("Connected after the address appeared", lambda: connected(a, b), timeout=15)
        print(f"connected {time.monotonic() - t0:.1f} s after the address was added", flush=True)


def test_ko_count():
    """timeout 0.5 s, ko-count 3: a stuck Secondary (SIGSTOP) is dropped after about
    1.5 s; the write completes on the Primary with its blocks marked; after SIGCONT
    the peer reconnects and is resynced."""
    with new_cluster() as c:
        a, b = c.nodes
        for n in (a, b):
            n.start()
        # Pings are rare and slow to time out here, so ko-count is what must act.
        opts = ["--connect-int=1", "--ping-int=10", "--ping-timeout=30", "--timeout=5",
                "--ko-count=3"]
        up(a, b, [(f"ipv4:{a.addr}:7789", f"ipv4:{b.addr}:7789")], opts)
        up(b, a, [(f"ipv4:{b.addr}:7789", f"ipv4:{a.addr}:7789")], opts)
        connect(a, b, wait=False)
        wait_for("both Connected", lambda: connected(a, b), timeout=20)
        initial_sync(a, b)
        h = a.nbd()
        h.pwrite(os.urandom(4096), 0)  # warm: the connection works
        b.proc.send_signal(signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            h.pwrite(os.urandom(65536), 3 * MIB)
            took = time.monotonic() - t0
            print(f"write to a stuck peer completed after {took:.2f} s", flush=True)
            check(1.2 <= took <= 4.0, f"the write completed after ko-count*timeout ({took:.2f} s)")
            # The reply to the write may leave before the log line is written.
            wait_for("node0 logs that node1 missed ko-count * timeout",
                     lambda: "ko-count (3) * timeout (500 ms)" in a.log_text(), timeout=5)
            check(conn_state(a, b) != "Connected", "node1 is no longer Connected on node0")
            check(peer_dev(a, b)["out-of-sync"] >= 64, "the write is marked out of sync for node1")
        finally:
            b.proc.send_signal(signal.SIGCONT)
        wait_for("resynced after SIGCONT",
                 lambda: connected(a, b) and peer_dev(a, b)["out-of-sync"] == 0
                 and peer_dev(a, b)["peer-disk-state"] == "UpToDate", timeout=30)
        h.flush()
        check(same_data(a, b, data_size(a)), "identical after the resync")


def test_simultaneous_primary():
    """primary on both nodes at the same moment: exactly one becomes Primary, the other
    is refused with the reason; a later primary on the Secondary is refused too."""
    with new_cluster() as c:
        a, b = c.nodes
        for n in (a, b):
            n.start()
        for n, p in ((a, b), (b, a)):
            up(n, p, [(f"ipv4:{n.addr}:7789", f"ipv4:{p.addr}:7789")], FAST)
        connect(a, b, wait=False)
        wait_for("both Connected", lambda: connected(a, b), timeout=20)
        initial_sync(a, b)
        a.setup("secondary", "r0")
        wait_for("node1 sees node0 Secondary", lambda: b.conn(0)["peer-role"] == "Secondary")
        for rnd in range(3):
            procs = [subprocess.Popen([os.path.join(BIN, "bsrsetup"), "--socket", n.sock,
                                       "primary", "r0"], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True) for n in (a, b)]
            res = [(p.wait(timeout=30), p.stderr.read()) for p in procs]
            roles = [n.status()["role"] for n in (a, b)]
            print(f"round {rnd}: rc {[r[0] for r in res]}, roles {roles}, "
                  f"refusal {[r[1].strip() for r in res if r[0]]}", flush=True)
            check(roles.count("Primary") == 1, "exactly one node is Primary")
            winner = roles.index("Primary")
            check(res[winner][0] == 0 and res[1 - winner][0] != 0,
                  "the winner's primary succeeded, the other's failed")
            check("State change failed" in res[1 - winner][1],
                  f"the loser gets the reason: {res[1 - winner][1].strip()}")
            (a, b)[winner].setup("secondary", "r0")
            wait_for("both Secondary again",
                     lambda: a.conn(1)["peer-role"] == "Secondary"
                     and b.conn(0)["peer-role"] == "Secondary")
        a.setup("primary", "r0")
        r = b.setup("primary", "r0", check_rc=False)
        check(r.returncode != 0 and "node 0 is Primary" in r.stderr + r.stdout,
              f"primary on the Secondary is refused: {r.stderr.strip()}")
        check(b.status()["role"] == "Secondary", "the refused node stays Secondary")


def test_data_integrity():
    """data-integrity-alg sha256; node0 damages its next Data packet after the digest
    ($BSR_TEST_CORRUPT_DATA=1): node1 detects it, the connection drops and comes back,
    the block is resynced and both disks are identical."""
    with new_cluster() as c:
        a, b = c.nodes
        os.environ["BSR_TEST_CORRUPT_DATA"] = "1"
        try:
            a.start()
        finally:
            del os.environ["BSR_TEST_CORRUPT_DATA"]
        b.start()
        opts = FAST + ["--data-integrity-alg=sha256"]
        for n, p in ((a, b), (b, a)):
            up(n, p, [(f"ipv4:{n.addr}:7789", f"ipv4:{p.addr}:7789")], opts)
        connect(a, b, wait=False)
        wait_for("both Connected", lambda: connected(a, b), timeout=20)
        initial_sync(a, b)
        h = a.nbd()
        blk = os.urandom(4096)
        h.pwrite(blk, 7 * MIB)
        wait_for("node1 detected the damaged block",
                 lambda: "Digest integrity check FAILED" in b.log_text(), timeout=10)
        wait_for("reconnected and resynced",
                 lambda: connected(a, b) and peer_dev(a, b)["out-of-sync"] == 0
                 and b.disk_state() == "UpToDate", timeout=30)
        with open(b.disk, "rb") as f:
            f.seek(7 * MIB)
            check(f.read(4096) == blk, "the damaged block was resynced with the right data")
        h.flush()
        check(same_data(a, b, data_size(a)), "identical after the integrity failure")


def pull_ahead_pair(c, net_opts):
    """Both nodes up with on-congestion pull-ahead and `net_opts`, connected, initial sync
    done; returns (node0, node1)."""
    a, b = c.nodes
    for n in (a, b):
        n.start()
    # ping-timeout 3 s: the congested link may hold a PingAck for a few 100 ms.
    opts = FAST + ["--ping-timeout=30", "--on-congestion=pull-ahead", *net_opts]
    for n, p in ((a, b), (b, a)):
        up(n, p, [(f"ipv4:{n.addr}:7789", f"ipv4:{p.addr}:7789")], opts)
    connect(a, b, wait=False)
    wait_for("both Connected", lambda: connected(a, b), timeout=20)
    initial_sync(a, b)
    return a, b


def slow_link(c):
    """The link between the two nodes at 16 Mbit/s (tc tbf on node0's end)."""
    ns, dev = c.links[0]
    p = run(["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root", "tbf",
             "rate", "16mbit", "burst", "32kb", "latency", "400ms"])
    if p.returncode != 0:
        raise TestFailure(f"tc tbf: {p.stderr.strip()}")


def test_ahead_behind():
    """protocol A, on-congestion pull-ahead, congestion-fill 256 KiB, a 16 Mbit/s link:
    a burst of writes makes node0 Ahead (node1 Behind); once the link drained node0
    resyncs what it marked and both disks are identical."""
    with new_cluster(size_mib=32) as c:
        a, b = pull_ahead_pair(c, ["--protocol=A", "--congestion-fill=512"])
        slow_link(c)
        h = a.nbd()
        seen = set()
        for i in range(64):
            h.pwrite(os.urandom(128 * 1024), i * 128 * 1024)
            seen.add(peer_dev(a, b)["replication-state"])
            if "Ahead" in seen:
                break
        check("Ahead" in seen, f"node0 went Ahead under congestion (saw {sorted(seen)})")
        wait_for("node1 Behind", lambda: peer_dev(b, a)["replication-state"] in
                 ("Behind", "WFBitMapT", "SyncTarget"), timeout=10, interval=0.02)
        check("going Ahead" in a.log_text(), "node0 logs why it went Ahead")
        for i in range(64, 96):  # writes while Ahead only mark bits
            h.pwrite(os.urandom(128 * 1024), i * 128 * 1024)
        wait_for("back to Established after the resync",
                 lambda: peer_dev(a, b)["replication-state"] == "Established"
                 and peer_dev(a, b)["out-of-sync"] == 0
                 and peer_dev(a, b)["peer-disk-state"] == "UpToDate", timeout=60)
        check("leaving Ahead with a resync" in a.log_text(), "node0 left Ahead with a resync")
        h.flush()
        check(same_data(a, b, data_size(a)), "identical after Ahead/Behind and the resync")


def test_congestion_extents():
    """protocol C, on-congestion pull-ahead with congestion-fill off and congestion-extents 7,
    a 16 Mbit/s link: writes in flight on more than 7 activity-log extents at once make
    node0 Ahead (DRBD's act_log->used threshold); it resyncs afterwards, disks identical."""
    with new_cluster(size_mib=64) as c:
        a, b = pull_ahead_pair(c, ["--congestion-fill=0", "--congestion-extents=7"])
        h = a.nbd()

        def write_at_once(offsets, size, each_poll=None):
            """One write per offset, all in flight together; waits for every one."""
            import nbd
            bufs = {h.aio_pwrite(buf, off): buf for off in offsets
                    for buf in [nbd.Buffer.from_bytearray(bytearray(os.urandom(size)))]}
            while bufs:
                h.poll(-1 if each_poll is None else 0)
                if each_poll:
                    each_poll()
                for k in [k for k in bufs if h.aio_command_completed(k)]:
                    del bufs[k]

        # A fast link: four extents at a time stay below the threshold.
        for rnd in range(3):
            write_at_once([(e * 4 + rnd) * MIB for e in range(4)], 256 * 1024)
        check(peer_dev(a, b)["replication-state"] == "Established",
              "4 extents in flight stay below congestion-extents 7")
        slow_link(c)
        # Twelve extents with a write in flight at once over a slow link.
        seen = set()

        def look():
            seen.add(peer_dev(a, b)["replication-state"])
            time.sleep(0.01)

        write_at_once([e * 4 * MIB + 2 * MIB for e in range(12)], 128 * 1024, look)
        look()
        log = a.log_text()
        check("activity-log extents in use >= congestion-extents 7; going Ahead" in log,
              f"node0 went Ahead on congestion-extents (states seen {sorted(seen)})")
        wait_for("back to Established after the resync",
                 lambda: peer_dev(a, b)["replication-state"] == "Established"
                 and peer_dev(a, b)["out-of-sync"] == 0
                 and peer_dev(a, b)["peer-disk-state"] == "UpToDate", timeout=60)
        h.flush()
        check(same_data(a, b, data_size(a)), "identical after Ahead/Behind and the resync")


TESTS = [test_ipv6_pair, test_two_paths_first_cut, test_local_address_added_late, test_ko_count,
         test_data_integrity, test_ahead_behind, test_congestion_extents,
         test_simultaneous_primary]


if __name__ == "__main__":
    sys.exit(run_tests(TESTS, needs_netns=TESTS))
