#!/usr/bin/python3
"""Two-node protocol C bsr against nbdkit in the same run (issue 6's benchmark).

Node0 and node1 run bsrd each in its own network namespace, linked by a veth pair
(tests/cluster/harness.py). Measured, each next to its reference:
  1. initial full sync of the volume (primary --force until node1 is UpToDate) vs
     `nbdcopy` of the same data between two nbdkit servers across the same veth link;
  2. fio through node0's NBD socket (every write replicated, protocol C) vs fio through
     `nbdkit file` on a local file of the same size: seq 1 MiB write BW (QD8), 4 KiB
     random write QD1 (p50, p99) and QD32 IOPS;
  3. resync after a disconnect during which 1% of the volume (random 4 KiB blocks)
     was written: bytes node0 sent on the link during the resync vs the changed data.
Prints a table of ratios and the goals. A benchmark, never a test: nothing fails on
a missed goal. Usage (as root): bench/cluster_vs_nbdkit.sh [BUILD_DIR] [SECONDS].
BENCH_PARTS (default "sync,fio,resync") picks the parts: "sync" alone times the initial
sync against nbdcopy; "fio" alone still runs the initial sync (fio needs an UpToDate
peer) but skips nbdcopy; "resync" runs the 1% resync.
BENCH_REF (default empty) adds user-space mirrors from qemu-storage-daemon as further
columns of the fio part, each node0's local file plus an NBD client to an nbdkit in node1's
namespace across the same veth (every write completes when both copies did):
  quorum  a quorum node (vote-threshold=1, read-pattern=fifo) over the two;
  mirror  a mirror job (copy-mode=write-blocking) from the local file to the remote one;
          its initial sync (until the job is READY) is timed beside bsr's full sync;
  qemu    both. Skipped with a message when qemu-storage-daemon is not installed;
  tcp     fio in node0's namespace straight to node1's nbdkit: one NBD round trip over
          the veth per write and no local copy, the network's share of a replicated write;
  pair    one fio run with two jobs at once, each the same workload: one to the local nbdkit,
          one to an nbdkit in node1's namespace over the veth. Its writes per second are the
          jobs' sum / 2: a mirror made of two plain servers, one local and one remote write
          per "write" and no forwarding between them, but fio submits two I/Os per write, so
          it is a reference, not a bound (bsr beats it at QD32). No latency rows (two jobs
          in one fio time differently).
BENCH_QEMU_AIO (threads) picks the aio= of qemu's local file (threads, native, io_uring).
BENCH_PIN=hosts models two hosts of one CPU each on a 2-CPU machine: node0, fio, nbdcopy and
every server that stands for node0's side (the local nbdkit, qemu-storage-daemon, nbdcopy's
source) run on CPU 0, node1 and every server in node1's namespace on CPU 1 (taskset). So the
Secondary's work no longer competes with the Primary and fio, as on two machines, while the
local nbdkit reference gets one CPU like node0. Unpinned (default), all of it shares both CPUs."""

import json
import os
import random
import resource
import shutil
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else os.path.join(ROOT, "build")
SECS = int(sys.argv[2]) if len(sys.argv) > 2 else 8
os.environ["BSR_BIN"] = os.path.join(BUILD, "bin")
# Handlers (before-resync-source, ...) are not what this measures, and the default
# helper (bsradm) has no configuration here: every handler succeeds.
os.environ.setdefault("BSR_USERMODE_HELPER", "/bin/true")
sys.path.insert(0, os.path.join(ROOT, "tests", "cluster"))

from harness import MIB, Cluster, Node, TestFailure, run, same_data, wait_for  # noqa: E402

VOLUME_MIB = int(os.environ.get("BENCH_VOLUME_MIB", "1024"))
# The backing file holds the volume plus internal metadata.
DISK_MIB = VOLUME_MIB + 8
CHANGED_FRACTION = 0.01
LOG_LEVEL = os.environ.get("BENCH_LOG_LEVEL", "warn")
PARTS = set(os.environ.get("BENCH_PARTS", "sync,fio,resync").replace(" ", "").split(","))
NBD_PORT = 10809
REF_SPEC = os.environ.get("BENCH_REF", "").replace(" ", "")
QEMU_KINDS = ("quorum", "mirror")
REF_KINDS = (*QEMU_KINDS, "tcp", "pair")
REFS = [k for k in REF_KINDS if k in REF_SPEC.split(",")
        or (k in QEMU_KINDS and "qemu" in REF_SPEC.split(","))]
QEMU_AIO = os.environ.get("BENCH_QEMU_AIO", "threads")
PIN = os.environ.get("BENCH_PIN", "")
if PIN not in ("", "hosts"):
    sys.exit(f"BENCH_PIN={PIN}: only 'hosts' (or empty) is known")
if PIN and not {0, 1} <= os.sched_getaffinity(0):
    sys.exit("BENCH_PIN=hosts needs CPUs 0 and 1")


def on_host(host, cmd):
    """cmd pinned to host `host`'s CPU under BENCH_PIN=hosts (taskset execs: same pid)."""
    return ["taskset", "-c", str(host), *cmd] if PIN else list(cmd)


def fill_random(path, size):
    """Writes `size` bytes of random data (so neither side can skip zeroes)."""
    chunk = os.urandom(16 * MIB)
    with open(path, "r+b") as f:
        pos = 0
        while pos < size:
            n = min(len(chunk), size - pos)
            # A different rotation per chunk: no two chunks alike.
            k = (pos // len(chunk)) * 4099 % len(chunk)
            f.write((chunk[k:] + chunk[:k])[:n])
            pos += n


def preallocate(path, size):
    with open(path, "wb") as f:
        f.truncate(size)
    p = run(["fallocate", "-l", str(size), path])
    if p.returncode != 0:
        raise TestFailure(f"fallocate {path}: {p.stderr}")


def quiet_start(node):
    """Node.start with a lower log level: debug logging is not what we measure."""
    logf = open(node.log, "ab")
    node.proc = subprocess.Popen(
        on_host(node.index,
                ["ip", "netns", "exec", node.ns, os.path.join(os.environ["BSR_BIN"], "bsrd"),
                 "--run-dir", node.run_dir, "--socket", node.sock, "--no-kernel-device",
                 "--state-dir", os.path.join(node.dir, "state"), "--log-level", LOG_LEVEL]),
        stdout=logf, stderr=subprocess.STDOUT)
    logf.close()
    wait_for(f"bsrd on node{node.index}",
             lambda: os.path.exists(node.sock)
             and node.setup("status", check_rc=False).returncode == 0, timeout=10)


def peer_dev(node, peer):
    return node.conn(peer.node_id)["peer_devices"][0]


def connected(a, b):
    ca, cb = a.conn(b.node_id), b.conn(a.node_id)
    return bool(ca and cb and ca["connection-state"] == "Connected"
                and cb["connection-state"] == "Connected")


def in_sync(a, b):
    """One status call per node (polling must not load the machine it measures)."""
    sa, sb = a.status(), b.status()
    ca = next((c for c in sa["connections"] if c["peer-node-id"] == b.node_id), None)
    cb = next((c for c in sb["connections"] if c["peer-node-id"] == a.node_id), None)
    if not ca or not cb or ca["connection-state"] != "Connected" or \
            cb["connection-state"] != "Connected":
        return False
    pd = ca["peer_devices"][0]
    return (sb["devices"][0]["disk-state"] == "UpToDate"
            and pd["replication-state"] == "Established"
            and pd["peer-disk-state"] == "UpToDate")


def cpu_secs(pid):
    """User + system CPU of a process, all its threads (io-wq workers included)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_bg(cmd, log):
    with open(log, "ab") as f:
        return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)


def stop_all(procs):
    """Stops the helpers last started first: an nbdkit does not exit on SIGTERM while a
    qemu-storage-daemon started after it still holds a connection to it."""
    for pr in reversed(procs):
        pr.terminate()
        try:
            pr.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pr.kill()
            pr.wait()
    procs.clear()


def wait_path(path, what):
    wait_for(what, lambda: os.path.exists(path), timeout=10, interval=0.05)


def fio(work, name, uri, *args, netns=None):
    """One fio run; `uri` a tuple runs one job per URI at the same time ("pair")."""
    out = os.path.join(work, name + ".json")
    where = ["ip", "netns", "exec", netns] if netns else []
    uris = uri if isinstance(uri, tuple) else (uri,)
    jobs = []
    for i, u in enumerate(uris):
        jobs += [f"--name={name}-{i}", f"--uri={u}", *args]
    p = run(on_host(0, [*where, "fio", "--ioengine=nbd", f"--size={VOLUME_MIB}M", "--time_based",
             f"--runtime={SECS}", "--ramp_time=1", "--randrepeat=0", "--norandommap",
             "--output-format=json", f"--output={out}", *jobs]))
    if p.returncode != 0:
        raise TestFailure(f"fio {name}: {p.stdout}{p.stderr}")
    with open(out) as f:
        done = [j["write"] for j in json.load(f)["jobs"]]
    if len(done) == 1:
        return done[0]
    # Mirrored writes: half the jobs' sum. No latency: two jobs in one fio split submission
    # and completion time differently from one job, so their clat is not comparable.
    return {"bw": sum(w["bw"] for w in done) / len(done),
            "iops": sum(w["iops"] for w in done) / len(done),
            "total_ios": sum(w["total_ios"] for w in done) / len(done),
            "runtime": max(w["runtime"] for w in done)}


def cold(paths):
    """Dirty pages written back and these files' page cache dropped (only theirs), so no
    run inherits another's cache state."""
    os.sync()
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def fio_pair(work, job, uris, order, files, *args, pids=None, netns=None):
    """Two runs per side, A B B A (order 1: B A A B; more sides: A B C C B A), each from a
    cold cache; each side's two runs are averaged, so drift in the machine's load hits all
    sides alike. With pids ({side: server pids}), each run's "cpu" is those servers' CPU
    seconds over fio's measured runtime (the ramp's share taken out pro rata). netns: {side:
    the namespace fio runs in} for the sides whose URI is only reachable there."""
    sides = list(uris)  # "bsr", "nbdkit", then the BENCH_REF columns
    if order:
        sides.reverse()
    tags = sides + sides[::-1]
    runs = {t: [] for t in uris}
    for t in tags:
        cold(files)
        ps = (pids or {}).get(t, [])
        cpu0, t0 = [cpu_secs(pid) for pid in ps], time.monotonic()
        r = fio(work, f"{t}-{job}-{len(runs[t]) + 1}", uris[t], *args,
                netns=(netns or {}).get(t))
        if ps:
            share = r["runtime"] / 1000 / (time.monotonic() - t0)
            r["cpu_each"] = [(cpu_secs(pid) - c0) * share for pid, c0 in zip(ps, cpu0)]
            r["cpu"] = sum(r["cpu_each"])
        runs[t].append(r)
    return runs


class Qmp:
    """The smallest QMP client: one command at a time, events kept for wait_event."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.f = self.sock.makefile("rw")
        self.events = []
        self._read()  # greeting
        self.cmd("qmp_capabilities")

    def _read(self):
        line = self.f.readline()
        if not line:
            raise TestFailure("qemu-storage-daemon closed its QMP socket")
        return json.loads(line)

    def cmd(self, name, **args):
        self.f.write(json.dumps({"execute": name, "arguments": args}) + "\n")
        self.f.flush()
        while True:
            m = self._read()
            if "error" in m:
                raise TestFailure(f"QMP {name}: {m['error']}")
            if "return" in m:
                return m["return"]
            self.events.append(m)

    def wait_event(self, name, timeout):
        self.sock.settimeout(timeout)
        try:
            while True:
                m = self.events.pop(0) if self.events else self._read()
                if m.get("event") == name:
                    return m
                if m.get("event") == "BLOCK_JOB_COMPLETED":
                    raise TestFailure(f"mirror job ended before {name}: {m}")
        finally:
            self.sock.settimeout(None)

    def close(self):
        self.f.close()
        self.sock.close()


def written_file(path, size):
    """A preallocated file written once (zeroes), so nothing allocates during fio."""
    preallocate(path, size)
    with open(path, "r+b") as f:
        zero = bytes(16 * MIB)
        for _ in range(size // len(zero)):
            f.write(zero)


def qemu_start(c, a, b, kind, port, size, procs, results):
    """A qemu-storage-daemon in node0's namespace exporting `kind` (quorum or mirror) of
    node0's local file and an NBD client to an nbdkit in node1's namespace on `port`.
    Returns (NBD URI, the files) once it serves; for the mirror, after the initial sync
    (results["sync_mirror"], its CPU and link bytes)."""
    local = os.path.join(c.work, f"{kind}0.img")
    remote = os.path.join(c.work, f"{kind}1.img")
    if kind == "mirror":  # the initial sync copies node0's random data to a fresh file
        preallocate(local, size)
        fill_random(local, size)
        preallocate(remote, size)
    else:
        written_file(local, size)
        written_file(remote, size)
    kit = remote_nbdkit(c, a, b, kind, port, remote, procs)
    sock = os.path.join(c.work, f"{kind}.sock")
    qmp_path = os.path.join(c.work, f"{kind}.qmp")
    cmd = ["ip", "netns", "exec", a.ns, "qemu-storage-daemon",
           "--blockdev", f"driver=file,node-name=f0,filename={local},aio={QEMU_AIO}",
           "--blockdev", "driver=raw,node-name=r0,file=f0",
           "--blockdev", f"driver=nbd,node-name=n1,server.type=inet,server.host={b.addr},"
           f"server.port={port}",
           "--blockdev", "driver=raw,node-name=r1,file=n1"]
    if kind == "quorum":
        cmd += ["--blockdev", "driver=quorum,node-name=q,children.0=r0,children.1=r1,"
                "vote-threshold=1,read-pattern=fifo"]
    # The mirror's export sits on r0 before the job starts: the job's filter node then
    # goes above it, so every write through the export is mirrored synchronously.
    export = "q" if kind == "quorum" else "r0"
    cmd += ["--nbd-server", f"addr.type=unix,addr.path={sock}",
            "--export", f"type=nbd,id=e0,node-name={export},name=r0,writable=on",
            "--chardev", f"socket,id=qmp,path={qmp_path},server=on,wait=off",
            "--monitor", "chardev=qmp"]
    qsd = start_bg(on_host(0, cmd), os.path.join(c.work, f"qsd-{kind}.log"))
    procs.append(qsd)
    wait_path(sock, f"qemu-storage-daemon ({kind}) socket")
    wait_path(qmp_path, f"qemu-storage-daemon ({kind}) QMP socket")
    if kind == "mirror":
        os.sync()
        qmp = Qmp(qmp_path)
        pids = [kit.pid, qsd.pid]  # `ip netns exec` execs: same pids
        cpu0 = sum(cpu_secs(pid) for pid in pids)
        tx0, _ = a.link_bytes()
        t0 = time.monotonic()
        qmp.cmd("blockdev-mirror", **{"job-id": "m0", "device": "r0", "target": "r1",
                                      "sync": "full", "copy-mode": "write-blocking"})
        qmp.wait_event("BLOCK_JOB_READY", timeout=600)
        results["sync_mirror"] = time.monotonic() - t0
        results["sync_mirror_cpu"] = sum(cpu_secs(pid) for pid in pids) - cpu0
        results["sync_mirror_tx"] = a.link_bytes()[0] - tx0
        qmp.close()
        print(f"qemu mirror initial sync of {size / MIB:.1f} MiB: "
              f"{results['sync_mirror']:.2f} s", flush=True)
        if not same_files(local, remote, size):
            raise TestFailure("after the qemu mirror's initial sync the files differ")
    return f"nbd+unix:///r0?socket={sock}", [local, remote]


def remote_nbdkit(c, a, b, kind, port, path, procs):
    kit = start_bg(on_host(1, ["ip", "netns", "exec", b.ns, "nbdkit", "--foreground",
                               "--exit-with-parent", "-i", b.addr, "-p", str(port), "file",
                               f"file={path}"]),
                   os.path.join(c.work, f"nbdkit-{kind}.log"))
    procs.append(kit)
    wait_for(f"nbdkit for the {kind} listening in node1's namespace",
             lambda: run(["ip", "netns", "exec", a.ns, "nbdinfo", "--size",
                          f"nbd://{b.addr}:{port}/"]).returncode == 0, timeout=10)
    return kit


def tcp_start(c, a, b, port, size, procs):
    """An nbdkit in node1's namespace on a written file, for fio in node0's namespace."""
    remote = os.path.join(c.work, "tcp1.img")
    written_file(remote, size)
    remote_nbdkit(c, a, b, "tcp", port, remote, procs)
    return f"nbd://{b.addr}:{port}/", [remote]


def pair_start(c, a, b, port, size, kit_uri, procs):
    """The "pair" column: the local nbdkit and one more in node1's namespace, written to by
    two fio jobs at once from node0's namespace (the local one over its Unix socket)."""
    remote = os.path.join(c.work, "pair1.img")
    written_file(remote, size)
    remote_nbdkit(c, a, b, "pair", port, remote, procs)
    return (kit_uri, f"nbd://{b.addr}:{port}/"), [remote]


def same_files(p, q, size):
    with open(p, "rb") as fp, open(q, "rb") as fq:
        for pos in range(0, size, 16 * MIB):
            n = min(16 * MIB, size - pos)
            if fp.read(n) != fq.read(n):
                return False
    return True


def main():
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    if not PARTS or not PARTS <= {"sync", "fio", "resync"}:
        print(f"BENCH_PARTS: a comma-separated subset of sync,fio,resync, not {PARTS}",
              file=sys.stderr)
        return 2
    for tool in ("fio", "nbdkit", "nbdcopy", "fallocate"):
        if run(["sh", "-c", f"command -v {tool}"]).returncode != 0:
            print(f"needs {tool}", file=sys.stderr)
            return 2
    if REF_SPEC and not set(REF_SPEC.split(",")) <= {"qemu", *REF_KINDS}:
        print(f"BENCH_REF: a comma-separated subset of qemu,quorum,mirror,tcp,pair, not {REF_SPEC}",
              file=sys.stderr)
        return 2
    if REFS and "fio" not in PARTS:
        print(f"BENCH_REF={REF_SPEC}: these columns belong to the fio part, which "
              f"BENCH_PARTS={','.join(sorted(PARTS))} skips", flush=True)
        REFS.clear()
    if set(REFS) & set(QEMU_KINDS) and not shutil.which("qemu-storage-daemon"):
        print(f"BENCH_REF={REF_SPEC}: qemu-storage-daemon is not installed (Debian package "
              "qemu-system-common); skipping the qemu columns", flush=True)
        REFS[:] = [k for k in REFS if k not in QEMU_KINDS]
    # Every disk fully allocated before bsrmeta writes its metadata; node0's random.
    def create_disk(node, size_mib, max_peers=1):
        preallocate(node.disk, size_mib * MIB)
        if node.index == 0:
            fill_random(node.disk, size_mib * MIB)
        p = run([os.path.join(os.environ["BSR_BIN"], "bsrmeta"), "--force", "0", "bsr1",
                 node.disk, "internal", "create-md", str(max_peers), f"--node-id={node.node_id}"])
        if p.returncode != 0:
            raise TestFailure(f"bsrmeta create-md on node{node.index}: {p.stderr}")

    Node.create_disk = create_disk
    load_before = os.getloadavg()
    c = Cluster(2, size_mib=DISK_MIB, prefix=os.environ.get("BSR_NETNS_PREFIX", "bsrpf"),
                net=os.environ.get("BSR_NET", "10.97"))
    procs = []
    results = {}
    ok = False
    try:
        a, b = c.nodes
        for n in (a, b):
            quiet_start(n)
        net = ["--protocol=C"]
        a.up(b, net)
        b.up(a, net)
        a.setup("connect", "r0", "1")
        b.setup("connect", "r0", "0")
        wait_for("both Connected", lambda: connected(a, b), timeout=20)
        size = a.status()["devices"][0]["size"] * 1024

        # 1a. Initial full sync. Node0's random fill is written back first, as before
        # nbdcopy below, so neither side pays for it.
        os.sync()
        timed_sync(a, b, size, results, "sync_bsr", "initial sync", ("primary", "r0", "--force"))
        if "sync" in PARTS:
            sync_reference(c, a, b, size, procs, results)
            rewrite_sync(a, b, size, results)
        if "fio" in PARTS:
            fio_part(c, a, b, size, procs, results)
        if "resync" in PARTS:
            resync_part(a, b, size, results)
        ok = True
    finally:
        stop_all(procs)
        c.close(keep_logs_on_failure=not ok)
    load_after = os.getloadavg()
    report(results, size, load_before, load_after)
    return 0


def sync_reference(c, a, b, size, procs, results):
    # 1b. nbdcopy of the same bytes from an nbdkit in node0's namespace to one in
    # node1's, over the same veth link.
    dst = os.path.join(c.work, "nbdcopy-dst.img")
    preallocate(dst, size)
    src_sock = os.path.join(c.work, "src.sock")
    procs.append(start_bg(on_host(0, ["ip", "netns", "exec", a.ns, "nbdkit", "--foreground",
                                      "--exit-with-parent", "-r", "-U", src_sock,
                                      "--filter=truncate", "file", f"file={a.disk}",
                                      f"truncate={size}"]),
                          os.path.join(c.work, "nbdkit-src.log")))
    procs.append(start_bg(on_host(1, ["ip", "netns", "exec", b.ns, "nbdkit", "--foreground",
                                      "--exit-with-parent", "-i", b.addr, "-p", str(NBD_PORT),
                                      "file", f"file={dst}"]),
                          os.path.join(c.work, "nbdkit-dst.log")))
    wait_path(src_sock, "nbdkit source socket")
    wait_for("nbdkit listening in node1's namespace",
             lambda: run(["ip", "netns", "exec", a.ns, "nbdinfo", "--size",
                          f"nbd://{b.addr}:{NBD_PORT}/"]).returncode == 0, timeout=10)
    os.sync()
    kits = [pr.pid for pr in procs]  # `ip netns exec` execs nbdkit: same pid
    # Twice: into the fresh (fallocated, unwritten) file like bsr's initial sync, then
    # over the written one like the full resync below.
    for key in ("sync_nbdcopy", "rewrite_nbdcopy"):
        cpu0 = sum(cpu_secs(pid) for pid in kits)
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        p = run(on_host(0, ["ip", "netns", "exec", a.ns, "nbdcopy",
                            f"nbd+unix:///?socket={src_sock}", f"nbd://{b.addr}:{NBD_PORT}/"]))
        results[key] = time.monotonic() - t0
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        results[key + "_cpu"] = (sum(cpu_secs(pid) for pid in kits) - cpu0 + ru1.ru_utime -
                                 ru0.ru_utime + ru1.ru_stime - ru0.ru_stime)
        if p.returncode != 0:
            raise TestFailure(f"nbdcopy: {p.stdout}{p.stderr}")
        print(f"nbdcopy of {size / MIB:.1f} MiB: {results[key]:.2f} s", flush=True)
    with open(a.disk, "rb") as fa, open(dst, "rb") as fd:
        for pos in range(0, size, 16 * MIB):
            n = min(16 * MIB, size - pos)
            if fa.read(n) != fd.read(n):
                raise TestFailure("nbdcopy's destination differs from its source")
    stop_all(procs)
    os.unlink(dst)


def timed_sync(a, b, size, results, key, what, command):
    """Runs `command` on node0 and waits until node1 is UpToDate again: results[key] is the
    wall clock, results[key + "_cpu"] both bsrd's CPU meanwhile; then compares the data."""
    cpu0 = cpu_secs(a.proc.pid) + cpu_secs(b.proc.pid)
    t0 = time.monotonic()
    a.setup(*command)
    wait_for(f"{what} started", lambda: not in_sync(a, b), timeout=10, interval=0.01)
    wait_for(f"{what} done", lambda: in_sync(a, b), timeout=600, interval=0.05)
    results[key] = time.monotonic() - t0
    results[key + "_cpu"] = cpu_secs(a.proc.pid) + cpu_secs(b.proc.pid) - cpu0
    print(f"{what} of {size / MIB:.1f} MiB: {results[key]:.2f} s", flush=True)
    if not same_data(a, b, size):
        raise TestFailure(f"after the {what} the data areas differ")


def rewrite_sync(a, b, size, results):
    """1c. A second full sync (invalidate-remote) over node1's now written blocks: without
    the file system's unwritten-extent conversion that the initial sync pays on node1."""
    timed_sync(a, b, size, results, "rewrite_bsr", "full resync",
               ("invalidate-remote", "r0", "1", "0"))


def fio_part(c, a, b, size, procs, results):
    # 2. fio: replicated volume vs nbdkit on a local file of the same size.
    kit_img = os.path.join(c.work, "nbdkit.img")
    preallocate(kit_img, size)
    with open(kit_img, "r+b") as f:  # written once, so no allocation during fio
        zero = bytes(16 * MIB)
        for _ in range(size // len(zero)):
            f.write(zero)
    kit_sock = os.path.join(c.work, "kit.sock")
    procs.append(start_bg(on_host(0, ["nbdkit", "--foreground", "--exit-with-parent", "-U",
                                      kit_sock, "file", f"file={kit_img}"]),
                          os.path.join(c.work, "nbdkit.log")))
    wait_path(kit_sock, "nbdkit socket")
    uris = {"bsr": f"nbd+unix:///r0/0?socket={a.nbd_path()}",
            "nbdkit": f"nbd+unix:///?socket={kit_sock}"}
    files = [a.disk, b.disk, kit_img]
    # Server CPU per write is counted only with the qemu columns (default output unchanged).
    pids = {"bsr": [a.proc.pid, b.proc.pid], "nbdkit": [procs[-1].pid]} if REFS else {}
    netns = {}
    for i, kind in enumerate(REFS):
        if kind == "tcp":
            uris[kind], more = tcp_start(c, a, b, NBD_PORT + 1 + i, size, procs)
            netns[kind] = a.ns
            pids[kind] = [procs[-1].pid]
        elif kind == "pair":
            uris[kind], more = pair_start(c, a, b, NBD_PORT + 1 + i, size, uris["nbdkit"], procs)
            netns[kind] = a.ns
            pids[kind] = [pids["nbdkit"][0], procs[-1].pid]  # local nbdkit, remote nbdkit
        else:
            uris[kind], more = qemu_start(c, a, b, kind, NBD_PORT + 1 + i, size, procs, results)
            pids[kind] = [procs[-1].pid, procs[-2].pid]  # qemu-storage-daemon, its nbdkit
        files += more
    results["seq"] = fio_pair(c.work, "seq", uris, 0, files, "--rw=write", "--bs=1M",
                              "--iodepth=8", pids=pids, netns=netns)
    results["qd1"] = fio_pair(c.work, "qd1", uris, 1, files, "--rw=randwrite", "--bs=4k",
                              "--iodepth=1", pids=pids, netns=netns)
    results["qd32"] = fio_pair(c.work, "qd32", uris, 0, files, "--rw=randwrite", "--bs=4k",
                               "--iodepth=32", pids=pids, netns=netns)
    wait_for("replicated writes acknowledged", lambda: in_sync(a, b), timeout=60)
    stop_all(procs)


def resync_part(a, b, size, results):
    # 3. Disconnect, change 1% of the volume in random 4 KiB blocks, reconnect.
    # A flush first: the writes of the fio part stay in node0's transfer log until node1
    # flushed them (BarrierAck; node1 writes GiBs of the fio part back first), and a
    # disconnect before that marks them too. This part counts what the disconnected
    # period costs, not that.
    h = a.nbd()
    try:
        h.flush()
    finally:
        h.shutdown()
    a.setup("disconnect", "r0", "1")
    wait_for("node0 StandAlone", lambda: a.conn(1)["connection-state"] == "StandAlone")
    wait_for("node1 lost node0", lambda: b.conn(0)["connection-state"] != "Connected",
             timeout=15)
    nblocks = size // 4096
    blocks = random.sample(range(nblocks), int(nblocks * CHANGED_FRACTION))
    h = a.nbd()
    try:
        for blk in blocks:
            h.pwrite(os.urandom(4096), blk * 4096)
        h.flush()
    finally:
        h.shutdown()
    changed = len(blocks) * 4096
    tx0, rx0 = a.link_bytes()
    t0 = time.monotonic()
    a.setup("connect", "r0", "1")
    wait_for("resync done", lambda: in_sync(a, b), timeout=120, interval=0.05)
    results["resync_secs"] = time.monotonic() - t0
    tx1, rx1 = a.link_bytes()
    results["resync_tx"] = tx1 - tx0
    results["resync_rx"] = rx1 - rx0
    if not same_data(a, b, size):
        raise TestFailure("after the resync the data areas differ")
    results["changed"] = changed
    results["resync_blocks"] = len(blocks)


def report(results, size, load_before, load_after):

    def avg(runs, fn):
        return sum(fn(r) for r in runs) / len(runs)

    def bw(r):
        return r["bw"] / 1024

    def iops(r):
        return r["iops"]

    def p50(r):  # 0 (shown as "-") for the pair column, which has none
        return r["clat_ns"]["percentile"]["50.000000"] / 1000 if "clat_ns" in r else 0

    def p99(r):
        return r["clat_ns"]["percentile"]["99.000000"] / 1000 if "clat_ns" in r else 0

    rows = []
    refs = [k for k in REF_KINDS if k in results.get("seq", {})]
    if "seq" in results:
        seq, qd1, qd32 = results["seq"], results["qd1"], results["qd32"]

        def row(name, runs, fn, goal):
            return (name, avg(runs["bsr"], fn), avg(runs["nbdkit"], fn), "bsr/nbdkit", goal,
                    [avg(runs[k], fn) for k in refs])

        rows += [
            row("seq 1M write MiB/s (QD8)", seq, bw, ">= 0.70"),
            row("4k randwrite QD32 IOPS", qd32, iops, ">= 0.70"),
            row("4k randwrite QD1 IOPS", qd1, iops, ""),
            row("4k randwrite QD1 p50 us", qd1, p50, "<= 1.60"),
            row("4k randwrite QD1 p99 us", qd1, p99, ""),
        ]
        if refs:  # work, not wall clock: server CPU (both bsrd; qsd + its nbdkit) per write

            def cpu_us(r):
                return r["cpu"] * 1e6 / r["total_ios"]

            rows += [
                row("CPU us per 1M write (QD8)", seq, cpu_us, ""),
                row("CPU us per 4k write QD32", qd32, cpu_us, ""),
                row("CPU us per 4k write QD1", qd1, cpu_us, ""),
            ]
    # The mirror's initial sync sits in the sync rows' mirror column; quorum has none.
    sync_refs = [results.get("sync_mirror") if k == "mirror" else None for k in refs]
    sync_cpu_refs = [results.get("sync_mirror_cpu") if k == "mirror" else None for k in refs]
    if "sync_nbdcopy" in results:
        rows.append(("full sync seconds", results["sync_bsr"], results["sync_nbdcopy"],
                     "bsr/nbdcopy", "<= 0.80", sync_refs))
        # Work, not wall clock: both bsrd vs nbdcopy and both nbdkit servers.
        rows.append(("full sync CPU seconds", results["sync_bsr_cpu"], results["sync_nbdcopy_cpu"],
                     "bsr/nbdcopy", "", sync_cpu_refs))
        rows.append(("rewrite sync seconds", results["rewrite_bsr"], results["rewrite_nbdcopy"],
                     "bsr/nbdcopy", "", [None] * len(refs)))
        rows.append(("rewrite sync CPU seconds", results["rewrite_bsr_cpu"],
                     results["rewrite_nbdcopy_cpu"], "bsr/nbdcopy", "", [None] * len(refs)))
    elif "sync_mirror" in results:  # BENCH_PARTS without sync: bsr's initial sync alone
        rows.append(("full sync seconds", results["sync_bsr"], 0, "", "", sync_refs))
        rows.append(("full sync CPU seconds", results["sync_bsr_cpu"], 0, "", "", sync_cpu_refs))
    print(f"\nbsr protocol C, 2 nodes over veth (volume {size / MIB:.1f} MiB, {SECS} s per fio "
          f"job); load before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    if PIN:
        print("(BENCH_PIN=hosts: node0, fio, nbdcopy and the local nbdkit on CPU 0; node1 and "
              "the servers in its namespace on CPU 1)")
    extra_head = "".join(f" {('qemu ' if k in QEMU_KINDS else '') + k:>12} {'bsr/' + k[0]:>8}"
                         for k in refs)
    print(f"{'metric':28} {'bsr':>10} {'reference':>10} {'ratio':>8}{extra_head}  {'':12} goal")
    for name, bv, rv, how, goal, extra in rows:
        ratio = bv / rv if rv else 0
        cells = "".join(f" {v:12.1f} {bv / v:7.2f}x" if v else f" {'-':>12} {'-':>8}"
                        for v in extra)
        ref = f"{rv:10.1f} {ratio:7.2f}x" if rv else f"{'-':>10} {'-':>8}"
        print(f"{name:28} {bv:10.1f} {ref}{cells}  {how:12} {goal}")
    if set(refs) & set(QEMU_KINDS):
        print(f"(qemu columns: qemu-storage-daemon in node0's namespace, aio={QEMU_AIO}, over "
              f"node0's file and an nbdkit in node1's; bsr/q = bsr/quorum, bsr/m = bsr/mirror)")
    if "pair" in refs:
        print("(pair: two fio jobs at once, to the local nbdkit and to one in node1's namespace; "
              "writes/s = sum / 2, no latency; bsr/p = bsr/pair)")
    if "tcp" in refs:
        print("(tcp: fio in node0's namespace to an nbdkit in node1's over the veth, no local "
              "copy; bsr/t = bsr/tcp)")
    if refs:
        # The remote nbdkit receives each write over TCP, writes it into page cache and
        # replies: about the least a Secondary can do per write (its pid is listed last).
        for side, what in (("bsr", "node1's bsrd (Secondary)"),
                           *((k, f"the {k} column's remote nbdkit") for k in refs)):
            per = [avg(results[j][side], lambda r: r["cpu_each"][-1] * 1e6 / r["total_ios"])
                   for j in ("seq", "qd32", "qd1")]
            print(f"({what}, CPU us per write: 1M seq {per[0]:.1f}, 4k QD32 {per[1]:.1f}, "
                  f"4k QD1 {per[2]:.1f})")
    if "sync_mirror_tx" in results:
        print(f"(qemu mirror initial sync sent {results['sync_mirror_tx'] / MIB:.1f} MiB on "
              f"node0's link for {size / MIB:.1f} MiB of data)")
    if "changed" not in results:
        return
    ratio = results["resync_tx"] / results["changed"]
    print(f"{'resync bytes sent (KiB)':28} {results['resync_tx'] / 1024:10.1f} "
          f"{results['changed'] / 1024:10.1f} {ratio:7.2f}x  {'sent/changed':12} <= 1.05")
    print(f"(resync of {results['resync_blocks']} blocks took {results['resync_secs']:.2f} s; node0 received "
          f"{results['resync_rx'] / 1024:.1f} KiB of requests and acks meanwhile; latency rows: "
          f"lower is better)")


if __name__ == "__main__":
    sys.exit(main())
