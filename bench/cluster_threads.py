#!/usr/bin/python3
"""Where a replicated fio run spends CPU, per thread (a probe, not a benchmark: no ratios).

Sets up the two protocol C nodes as bench/cluster_vs_nbdkit.py does (random data on node0,
initial sync), syncs and drops the files' cache, runs fio 4 KiB random writes through
node0's NBD socket and, over the middle of the run, reads each thread's CPU time and context
switches of both bsrd and of fio (/proc/PID/task/*/stat, status) and each CPU's time split
(/proc/stat). Prints CPU microseconds per write per thread: which thread is busy, which
waits. Usage (root): bench/cluster_threads.py [BUILD_DIR] [SECONDS]. Environment: QD (32),
BS (4k) and RW (randwrite; "write" with BS=1M QD=8 is the bench's seq job),
BENCH_VOLUME_MIB (256 here), BENCH_PIN=hosts (as the bench), BSR_NETNS_PREFIX (bsrqp),
BSR_NET (10.93)."""

import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
os.environ.setdefault("BENCH_VOLUME_MIB", "256")
SECS = int(sys.argv[2]) if len(sys.argv) > 2 else 8
sys.argv = [sys.argv[0], sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "build"),
            str(SECS)]
sys.path.insert(0, HERE)
import cluster_vs_nbdkit as bench  # noqa: E402  (sets BSR_BIN from argv[1])
from harness import Cluster, Node, wait_for  # noqa: E402

HZ = os.sysconf("SC_CLK_TCK")


def status_field(text, name):
    for line in text.splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0


def threads(pid):
    """{tid: (name, cpu ticks, voluntary switches, involuntary switches, last cpu)}"""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                status = f.read()
        except OSError:  # the thread ended meanwhile
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out[tid] = (name, int(fields[11]) + int(fields[12]),
                    status_field(status, "voluntary_ctxt_switches"),
                    status_field(status, "nonvoluntary_ctxt_switches"), int(fields[36]))
    return out


def cpu_times():
    with open("/proc/stat") as f:
        return [list(map(int, ln.split()[1:9])) for ln in f
                if ln.startswith("cpu") and not ln.startswith("cpu ")]


def main():
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2

    def create_disk(node, size_mib, max_peers=1):
        bench.preallocate(node.disk, size_mib * bench.MIB)
        if node.index == 0:
            bench.fill_random(node.disk, size_mib * bench.MIB)
        p = bench.run([os.path.join(os.environ["BSR_BIN"], "bsrmeta"), "--force", "0", "bsr1",
                       node.disk, "internal", "create-md", str(max_peers),
                       f"--node-id={node.node_id}"])
        if p.returncode != 0:
            raise RuntimeError(f"bsrmeta create-md on node{node.index}: {p.stderr}")

    Node.create_disk = create_disk
    qd = os.environ.get("QD", "32")
    bs = os.environ.get("BS", "4k")
    rw = os.environ.get("RW", "randwrite")
    c = Cluster(2, size_mib=bench.DISK_MIB, prefix=os.environ.get("BSR_NETNS_PREFIX", "bsrqp"),
                net=os.environ.get("BSR_NET", "10.93"))
    try:
        a, b = c.nodes
        for n in (a, b):
            bench.quiet_start(n)
        a.up(b, ["--protocol=C"])
        b.up(a, ["--protocol=C"])
        a.setup("connect", "r0", "1")
        b.setup("connect", "r0", "0")
        wait_for("both Connected", lambda: bench.connected(a, b), timeout=20)
        a.setup("primary", "r0", "--force")
        wait_for("initial sync", lambda: bench.in_sync(a, b), timeout=300, interval=0.1)
        bench.cold([a.disk, b.disk])  # no writeback of the fill during the run
        fio = subprocess.Popen(bench.on_host(0, [
            "fio", "--ioengine=nbd", f"--size={bench.VOLUME_MIB}M", "--time_based",
            f"--runtime={SECS}", "--name=probe", f"--uri=nbd+unix:///r0/0?socket={a.nbd_path()}",
            f"--rw={rw}", f"--bs={bs}", f"--iodepth={qd}", "--randrepeat=0", "--norandommap",
            "--output-format=json"]), stdout=subprocess.PIPE, text=True)
        time.sleep(1.5)
        with open(f"/proc/{fio.pid}/task/{fio.pid}/children") as f:
            jobs = [int(x) for x in f.read().split()]  # fio runs each job in a child process
        pids = {"node0": a.proc.pid, "node1": b.proc.pid, "fio": fio.pid,
                **{f"fio-job{i}": pid for i, pid in enumerate(jobs)}}
        cpu0, t0 = cpu_times(), time.monotonic()
        before = {k: threads(pid) for k, pid in pids.items()}
        time.sleep(max(1, SECS - 3))
        after = {k: threads(pid) for k, pid in pids.items()}
        cpu1, window = cpu_times(), time.monotonic() - t0
        out, _ = fio.communicate()
        w = json.loads(out[out.index("{"):])["jobs"][0]["write"]
        iops = w["iops"]
        print(f"{rw} {bs} QD{qd}: {iops:.0f} IOPS ({w['bw'] / 1024:.0f} MiB/s), clat p50 "
              f"{w['clat_ns']['percentile']['50.000000'] / 1000:.0f} us; window {window:.1f} s; "
              f"load {os.getloadavg()[0]:.2f}")
        for i, (x, y) in enumerate(zip(cpu0, cpu1)):
            d = [q - p for p, q in zip(x, y)]
            tot = sum(d) or 1
            names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
            print(f"cpu{i}: " + " ".join(f"{n} {v * 100 / tot:.0f}%" for n, v in zip(names, d)))
        writes = iops * window
        for side, pid in pids.items():
            for tid, (name, ticks, vol, invol, last) in sorted(after[side].items()):
                if tid not in before[side]:
                    continue
                _, ticks0, vol0, invol0, _ = before[side][tid]
                share = (ticks - ticks0) / HZ / window
                if share < 0.005 and vol == vol0:
                    continue
                print(f"  {side:9} {tid:>7} {name:16} cpu {share * 100:5.1f}%  "
                      f"{share / iops * 1e6:5.1f} us/write  voluntary cs/write "
                      f"{(vol - vol0) / writes:5.2f}  involuntary {(invol - invol0) / writes:5.2f}  "
                      f"last on cpu{last}")
    finally:
        c.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
