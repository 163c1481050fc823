"""Cluster test harness: bsrd nodes in their own network namespaces, linked by a veth
pair with private addresses, driven with bsrsetup; I/O through NBD (python3-libnbd).

Everything it creates (namespaces, veth, processes, files) is removed in close(),
which callers run in a finally block. Processes are stopped by their own PID."""

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

BIN = os.environ.get("BSR_BIN", os.path.join(os.getcwd(), "build", "bin"))
MIB = 1 << 20


class TestFailure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise TestFailure(what)
    print(f"ok: {what}", flush=True)


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


class Node:
    def __init__(self, cluster, index, ns, addr, work):
        self.cluster = cluster
        self.index = index
        self.node_id = index
        self.ns = ns
        self.addr = addr
        self.dir = os.path.join(work, f"node{index}")
        self.run_dir = os.path.join(self.dir, "run")
        self.sock = os.path.join(self.run_dir, "bsrd.sock")
        self.disk = os.path.join(self.dir, "disk.img")
        self.log = os.path.join(self.dir, "bsrd.log")
        self.proc = None
        os.makedirs(self.run_dir, exist_ok=True)

    def create_disk(self, size_mib, max_peers=1):
        with open(self.disk, "wb") as f:
            f.truncate(size_mib * MIB)
        p = run([os.path.join(BIN, "bsrmeta"), "--force", "0", "bsr1", self.disk, "internal",
                 "create-md", str(max_peers), f"--node-id={self.node_id}"])
        if p.returncode != 0:
            raise TestFailure(f"bsrmeta create-md on node{self.index}: {p.stderr}")

    def start(self, env=None):
        """Starts this node's bsrd; `env` adds variables to its environment."""
        logf = open(self.log, "ab")
        # BSR_GDB=1: run bsrd under gdb and print a backtrace into the log on a crash.
        wrap = (["gdb", "-q", "-batch", "-ex", "run", "-ex", "bt", "--args"]
                if os.environ.get("BSR_GDB") else [])
        netns = ["ip", "netns", "exec", self.ns] if self.ns else []
        self.proc = subprocess.Popen(
            [*netns, *wrap, os.path.join(BIN, "bsrd"), "--run-dir",
             self.run_dir, "--socket", self.sock, "--no-kernel-device", "--state-dir",
             os.path.join(self.dir, "state"), "--log-level", "debug"],
            stdout=logf, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        logf.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if os.path.exists(self.sock) and self.setup("status", check_rc=False).returncode == 0:
                return
            if self.proc.poll() is not None:
                raise TestFailure(f"bsrd on node{self.index} exited: {self.log_text()[-2000:]}")
            time.sleep(0.05)
        raise TestFailure(f"bsrd on node{self.index} did not come up")

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self):
        """kill -9 this node's bsrd (its own PID) and reap it."""
        self.stop(signal.SIGKILL)

    def link_bytes(self):
        """(tx, rx) byte counters of this node's network link (veth end)."""
        st = self.link_counters()
        return st["tx_bytes"], st["rx_bytes"]

    def link_counters(self):
        """{"tx_bytes", "tx_packets", "rx_bytes", "rx_packets"} of this node's veth end."""
        self.cluster.need_netns("link counters")
        ns, dev = self.cluster.links[self.index]
        p = run(["ip", "-n", ns, "-j", "-s", "link", "show", "dev", dev])
        if p.returncode != 0:
            raise TestFailure(f"ip -s link on node{self.index}: {p.stderr.strip()}")
        st = json.loads(p.stdout)[0]["stats64"]
        return {f"{d}_{k}": st[d][k] for d in ("tx", "rx") for k in ("bytes", "packets")}

    def setup(self, *args, check_rc=True):
        p = run([os.path.join(BIN, "bsrsetup"), "--socket", self.sock, *args])
        if check_rc and p.returncode != 0:
            raise TestFailure(f"node{self.index}: bsrsetup {' '.join(args)} failed "
                              f"({p.returncode}): {p.stdout}{p.stderr}")
        return p

    def up(self, peer, net_opts=()):
        self.up_many([peer], net_opts)

    def up_many(self, peers, net_opts=()):
        """Resource r0 with volume 0 on the disk and one connection per peer, all using
        this node's address and port 7789 (one shared listener)."""
        self.setup("new-resource", "r0", str(self.node_id))
        self.setup("new-minor", "r0", "0", "0")
        self.setup("attach", "0", self.disk, self.disk, "internal")
        for peer in peers:
            self.setup("new-peer", "r0", str(peer.node_id), f"--_name=node{peer.index}",
                       "--connect-int=1", "--ping-int=1", *net_opts)
            self.setup("new-path", "r0", str(peer.node_id), f"ipv4:{self.addr}:7789",
                       f"ipv4:{peer.addr}:7789")

    def status(self):
        p = self.setup("status", "r0", "--json")
        return json.loads(p.stdout)[0]

    def conn(self, peer_id=None):
        st = self.status()
        for c in st["connections"]:
            if peer_id is None or c["peer-node-id"] == peer_id:
                return c
        return None

    def disk_state(self):
        return self.status()["devices"][0]["disk-state"]

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def nbd_path(self):
        return os.path.join(self.run_dir, "r0", "0.sock")

    def nbd(self):
        """An NBD handle on this node's r0/0; the cluster shuts it down in close()."""
        import nbd
        h = nbd.NBD()
        h.set_export_name("r0/0")
        h.connect_unix(self.nbd_path())
        self.cluster.handles.append(h)
        return h


def _exit_on_term(signum, frame):
    # SystemExit unwinds through the callers' finally blocks, so a test stopped with
    # SIGTERM (or SIGHUP) still removes its namespaces, processes and files.
    raise SystemExit(128 + signum)


class Cluster:
    """n bsrd nodes, each in its own namespace. prefix names the namespaces and links
    (<prefix><pid>-n0 ...; at most 6 characters so link names stay under 15), net is
    the first two octets of the private /16 the addresses come from ("10.96"); both
    default to $BSR_NETNS_PREFIX / $BSR_NET or "bsrc" / "10.99" so parallel test runs
    with different prefixes and ranges never clash.

    Without root (or with BSR_CLUSTER_NETNS=0) there are no namespaces: every bsrd runs
    in the host's network namespace on its own loopback address 127.<net's second
    octet>.<subnet>.<node+1> (all of 127/8 is local), the same port each. Link cuts and
    link counters need namespaces; they raise TestFailure there (`cluster.netns` says
    which mode is in use)."""

    def __init__(self, n=2, size_mib=64, prefix=None, net=None):
        prefix = prefix or os.environ.get("BSR_NETNS_PREFIX", "bsrc")
        net = net or os.environ.get("BSR_NET", "10.99")
        if len(prefix) > 6 or not re.fullmatch(r"[a-z]+", prefix):
            raise TestFailure(f"netns prefix {prefix!r}: use 1-6 lowercase letters")
        if not re.fullmatch(r"\d+\.\d+", net):
            raise TestFailure(f"net {net!r}: give the first two octets, e.g. 10.96")
        for sig in (signal.SIGTERM, signal.SIGHUP):
            try:
                if signal.getsignal(sig) in (signal.SIG_DFL, None):
                    signal.signal(sig, _exit_on_term)
            except ValueError:  # not the main thread: leave signals alone
                pass
        self.tag = f"{prefix}{os.getpid() % 100000}"
        self.work = tempfile.mkdtemp(prefix="bsr-cluster-")
        self.namespaces = []
        self.nodes = []
        self.links = []  # (namespace, device) of each node's end, by node index
        self.cuts = set()
        self.handles = []  # NBD handles from Node.nbd(), shut down in close()
        self.size_mib = size_mib
        subnet = 10 + os.getpid() % 200
        self.netns = os.geteuid() == 0 and os.environ.get("BSR_CLUSTER_NETNS", "1") != "0"
        if not self.netns:
            try:
                addrs = [f"127.{net.split('.')[1]}.{subnet}.{i + 1}" for i in range(n)]
                for i in range(n):
                    node = Node(self, i, None, addrs[i], self.work)
                    node.create_disk(size_mib, max_peers=n - 1)
                    self.nodes.append(node)
            except Exception:
                self.close()
                raise
            return
        try:
            for i in range(n):
                ns = f"{self.tag}-n{i}"
                self._ip("netns", "add", ns)
                self.namespaces.append(ns)
                self._ip("-n", ns, "link", "set", "lo", "up")
            # Two nodes: one veth pair. More: each node's veth ends on a bridge in a
            # "switch" namespace.
            addrs = [f"{net}.{subnet}.{i + 1}" for i in range(n)]
            if n == 2:
                a, b = self.namespaces[0], self.namespaces[1]
                self._ip("link", "add", f"{self.tag}a", "netns", a, "type", "veth", "peer",
                         "name", f"{self.tag}b", "netns", b)
                links = [(a, f"{self.tag}a"), (b, f"{self.tag}b")]
            else:
                sw = f"{self.tag}-sw"
                self._ip("netns", "add", sw)
                self.namespaces.append(sw)
                self._ip("-n", sw, "link", "add", "br0", "type", "bridge")
                self._ip("-n", sw, "link", "set", "br0", "up")
                links = []
                for i in range(n):
                    ns = self.namespaces[i]
                    self._ip("link", "add", f"{self.tag}n{i}", "netns", ns, "type", "veth",
                             "peer", "name", f"{self.tag}s{i}", "netns", sw)
                    self._ip("-n", sw, "link", "set", f"{self.tag}s{i}", "master", "br0")
                    self._ip("-n", sw, "link", "set", f"{self.tag}s{i}", "up")
                    links.append((ns, f"{self.tag}n{i}"))
            self.links = links
            for (ns, dev), addr in zip(links, addrs):
                self._ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
                self._ip("-n", ns, "link", "set", dev, "up")
            for i in range(n):
                node = Node(self, i, self.namespaces[i], addrs[i], self.work)
                node.create_disk(size_mib, max_peers=n - 1)
                self.nodes.append(node)
        except Exception:
            self.close()
            raise

    def start_mesh(self, net_opts=(), peer_device_opts=(), connect=True, timeout=30, env=None):
        """Starts every node's bsrd (`env` added to each one's environment) and sets up r0
        with a connection to every other node (`net_opts` on each, `peer_device_opts` as
        its peer-device-options); unless connect=False, connects them all and waits until
        the full mesh is Connected. Returns the nodes."""
        nodes = self.nodes
        for n in nodes:
            n.start(env=env)
        for n in nodes:
            peers = [p for p in nodes if p is not n]
            n.up_many(peers, list(net_opts))
            if peer_device_opts:
                for p in peers:
                    n.setup("peer-device-options", "r0", str(p.node_id), "0",
                            *peer_device_opts)
        if connect:
            for n in nodes:
                for p in nodes:
                    if p is not n:
                        n.setup("connect", "r0", str(p.node_id))
            wait_for("full mesh Connected", lambda: all(
                connected(n, p) for n in nodes for p in nodes if p is not n), timeout=timeout)
        return nodes

    def need_netns(self, what):
        if not self.netns:
            raise TestFailure(f"{what} need network namespaces (root); this cluster runs "
                              f"on loopback addresses")

    def cut(self, a, b, port=7789):
        """Cut the replication link between nodes a and b: in both namespaces an nftables
        table drops every TCP segment to or from the other node's port (no RST, so the
        peers notice through missing PingAcks, as on a real cut cable)."""
        self.need_netns("link cuts")
        for x, y in ((a, b), (b, a)):
            t = f"bsrcut{y.index}"
            rules = (f"table inet {t} {{\n"
                     f" chain in {{ type filter hook input priority 0; policy accept;\n"
                     f"  ip saddr {y.addr} tcp sport {port} drop\n"
                     f"  ip saddr {y.addr} tcp dport {port} drop\n }}\n"
                     f" chain out {{ type filter hook output priority 0; policy accept;\n"
                     f"  ip daddr {y.addr} tcp dport {port} drop\n"
                     f"  ip daddr {y.addr} tcp sport {port} drop\n }}\n}}\n")
            p = run(["ip", "netns", "exec", x.ns, "nft", "-f", "-"], input=rules)
            if p.returncode != 0:
                raise TestFailure(f"nft cut on node{x.index}: {p.stderr.strip()}")
            self.cuts.add((x.index, t))

    def heal(self, a, b):
        """Remove the tables cut() added between a and b."""
        for x, y in ((a, b), (b, a)):
            t = f"bsrcut{y.index}"
            if (x.index, t) in self.cuts:
                p = run(["ip", "netns", "exec", x.ns, "nft", "delete", "table", "inet", t])
                if p.returncode != 0:
                    raise TestFailure(f"nft heal on node{x.index}: {p.stderr.strip()}")
                self.cuts.discard((x.index, t))

    def slow(self, a, b, rate):
        """Limit what node a sends to node b to `rate` (tc syntax, e.g. "40mbit"): an htb
        class on a's veth end, chosen by b's address; everything else leaves a at once.
        The link stays up; its queue delays a's packets to b (netem is not in this kernel)."""
        self.need_netns("slow links")
        ns, dev = self.links[a.index]
        for cmd in (["qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "1"],
                    ["class", "add", "dev", dev, "parent", "1:", "classid", "1:1", "htb",
                     "rate", "100gbit"],
                    ["class", "add", "dev", dev, "parent", "1:", "classid", "1:2", "htb",
                     "rate", rate],
                    ["filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "prio", "1",
                     "u32", "match", "ip", "dst", f"{b.addr}/32", "flowid", "1:2"]):
            p = run(["ip", "netns", "exec", ns, "tc", *cmd])
            if p.returncode != 0:
                raise TestFailure(f"tc {' '.join(cmd)} on node{a.index}: {p.stderr.strip()}")

    def unslow(self, a):
        """Remove the limits slow() put on node a's link."""
        ns, dev = self.links[a.index]
        p = run(["ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", dev, "root"])
        if p.returncode != 0:
            raise TestFailure(f"tc qdisc del on node{a.index}: {p.stderr.strip()}")

    @staticmethod
    def _ip(*args):
        p = run(["ip", *args])
        if p.returncode != 0:
            raise TestFailure(f"ip {' '.join(args)}: {p.stderr.strip()}")

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        # A failing test keeps its logs; close() still removes namespaces and processes.
        self.close(keep_logs_on_failure=exc_type is not None)
        return False

    def print_diagnostics(self, log_lines=60):
        """After a failure: each node's verbose status and the end of its log (info and
        above), so that a CI run, whose logs are gone afterwards, shows what went wrong."""
        for node in self.nodes:
            p = node.setup("status", "--verbose", "--statistics", check_rc=False)
            print(f"--- node{node.index} status (rc {p.returncode}):\n{p.stdout}{p.stderr}")
            lines = [ln for ln in node.log_text().splitlines() if "] debug: " not in ln]
            print(f"--- node{node.index} log, last {log_lines} lines without debug:")
            print("\n".join(lines[-log_lines:]), flush=True)

    def close(self, keep_logs_on_failure=False):
        for h in self.handles:
            try:
                h.shutdown()
            except Exception:  # already shut down, or its bsrd is gone
                pass
        self.handles = []
        if keep_logs_on_failure:
            self.print_diagnostics()
        reports = []
        for node in self.nodes:
            try:
                node.stop()
            except Exception as e:  # keep cleaning up
                print(f"stopping node{node.index}: {e}")
            text = node.log_text()
            for marker in ("ERROR: AddressSanitizer", "runtime error:", "Segmentation fault"):
                if marker in text:
                    i = text.index(marker)
                    reports.append(f"node{node.index}: {text[max(0, i - 200):i + 3000]}")
        # nftables tables live in their namespace and go with it.
        self.cuts.clear()
        for ns in self.namespaces:
            run(["ip", "netns", "del", ns])
        self.namespaces = []
        if keep_logs_on_failure or reports:
            print(f"logs kept in {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)
        if reports:
            raise TestFailure("sanitizer report or crash in bsrd:\n" + "\n".join(reports))


def wait_for(what, fn, timeout=30.0, interval=0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise TestFailure(f"timed out waiting for {what} (last: {last})")


def data_size(node):
    return node.status()["devices"][0]["size"] * 1024


def same_data(a, b, size):
    """True when the first `size` bytes (the data area) of both backing files match."""
    with open(a.disk, "rb") as fa, open(b.disk, "rb") as fb:
        pos = 0
        while pos < size:
            n = min(4 * MIB, size - pos)
            if fa.read(n) != fb.read(n):
                return False
            pos += n
    return True


def peer_dev(node, peer):
    """node's view of peer's volume 0 (status --json's peer_devices[0])."""
    return node.conn(peer.node_id)["peer_devices"][0]


def conn_state(node, peer):
    c = node.conn(peer.node_id)
    return c["connection-state"] if c else None


def connected(a, b):
    return conn_state(a, b) == "Connected" and conn_state(b, a) == "Connected"


def synced(a, b):
    """Both Connected, both disks UpToDate, both sides Established (no resync running)."""
    return (connected(a, b) and a.disk_state() == "UpToDate" and b.disk_state() == "UpToDate"
            and peer_dev(a, b)["replication-state"] == "Established"
            and peer_dev(b, a)["replication-state"] == "Established")


def connect(a, b, wait=True, a_flags=(), b_flags=()):
    """`connect` on both sides; waits until both are Connected unless wait=False."""
    a.setup("connect", "r0", str(b.node_id), *a_flags)
    b.setup("connect", "r0", str(a.node_id), *b_flags)
    if wait:
        wait_for("both Connected", lambda: connected(a, b), timeout=20)


def run_tests(tests, by_name_only=(), needs_netns=(), argv=None):
    """The main() of a cluster test file: runs `tests` in order (or only those named on the
    command line, which may also name `by_name_only` ones), stops at the first failure and
    returns the exit code. Without root (no namespaces: nodes on loopback) the tests in
    `needs_netns` are skipped; without python3-libnbd everything is skipped."""
    import importlib.util
    import sys

    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    only = (sys.argv[1:] if argv is None else argv)
    netns = os.geteuid() == 0 and os.environ.get("BSR_CLUSTER_NETNS", "1") != "0"
    if importlib.util.find_spec("nbd") is None:
        print("SKIP: python3-libnbd missing", flush=True)
        return 0
    known = {t.__name__ for t in list(tests) + list(by_name_only)}
    unknown = [n for n in only if n not in known]
    if unknown:
        print(f"unknown test(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}",
              flush=True)
        return 2
    for t in list(tests) + list(by_name_only):
        if (only and t.__name__ not in only) or (not only and t in by_name_only):
            continue
        if not netns and t in needs_netns:
            print(f"== {t.__name__}: SKIP (needs root for network namespaces)", flush=True)
            continue
        print(f"== {t.__name__}", flush=True)
        start = time.monotonic()
        try:
            t()
        except TestFailure as e:
            print(f"FAIL: {t.__name__}: {e}", flush=True)
            return 1
        print(f"   {t.__name__}: {time.monotonic() - start:.1f} s", flush=True)
    print("PASS", flush=True)
    return 0
