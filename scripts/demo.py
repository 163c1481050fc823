#!/usr/bin/env python3
"""bsr's main job on built-in defaults: two nodes, one replicated volume.

alice and bob each run a bsrd in their own network namespace, linked by a veth
pair with private addresses. The volume is set up with bsradm from an ordinary
bsr configuration, alice is made Primary (initial full sync to bob), an ext4
filesystem is written through /dev/bsr0 on alice, then the service fails over:
alice demotes, bob promotes and mounts the same filesystem and shows the data.
Everything created here is removed at the end.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

BIN = os.environ.get("BSR_BIN", os.path.join(os.path.dirname(__file__), "..", "build", "bin"))
SIZE_MIB = 256
NODES = {"alice": ("bsrdemo-a", "10.250.0.1"), "bob": ("bsrdemo-b", "10.250.0.2")}


def sh(*cmd, ns=None, env=None, check=True, quiet=False):
    argv = (["ip", "netns", "exec", ns] if ns else []) + list(cmd)
    r = subprocess.run(argv, capture_output=True, text=True, env=env)
    if not quiet and r.stdout.strip():
        print(r.stdout.rstrip())
    if check and r.returncode != 0:
        raise SystemExit(f"demo: {' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def say(msg):
    print(f"\n=== {msg}", flush=True)


class Node:
    def __init__(self, name, work):
        self.name, (self.ns, self.ip) = name, NODES[name]
        self.dir = os.path.join(work, name)
        os.makedirs(self.dir)
        self.disk = os.path.join(self.dir, "disk.img")
        self.env = dict(os.environ, BSR_NODE=name, BSR_RUN_DIR=f"{self.dir}/run",
                        BSR_STATE_DIR=f"{self.dir}/state", BSR_DEV_DIR=f"{self.dir}/dev")
        self.proc = None
        with open(self.disk, "wb") as f:
            f.truncate(SIZE_MIB << 20)

    def adm(self, conf, *args, **kw):
        return sh(f"{BIN}/bsradm", "-c", conf, *args, ns=self.ns, env=self.env, **kw)

    def start(self):
        log = open(os.path.join(self.dir, "bsrd.log"), "w")
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.ns, f"{BIN}/bsrd"],
                                     env=self.env, stdout=log, stderr=subprocess.STDOUT)
        for _ in range(100):
            if os.path.exists(f"{self.dir}/run/bsrd.sock"):
                return
            time.sleep(0.05)
        raise SystemExit(f"demo: bsrd on {self.name} did not start")

    def status(self, conf):
        return self.adm(conf, "status", "r0", quiet=True).stdout

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                self.proc.wait(timeout=20)


def wait(what, fn, timeout=120):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if fn():
            return
        time.sleep(0.2)
    raise SystemExit(f"demo: timed out waiting for {what}")


def main():
    if os.geteuid() != 0:
        raise SystemExit("demo: run as root (network namespaces, FUSE, loop devices)")
    work = tempfile.mkdtemp(prefix="bsr-demo-")
    nodes = {n: Node(n, work) for n in NODES}
    a, b = nodes["alice"], nodes["bob"]
    conf = os.path.join(work, "r0.res")
    with open(conf, "w") as f:
        f.write("resource r0 {\n  net { protocol C; }\n")
        for i, n in enumerate((a, b)):
            f.write(f"  on {n.name} {{\n    device /dev/bsr0 minor 0; disk {n.disk};"
                    f" meta-disk internal;\n    address {n.ip}:7789; node-id {i};\n  }}\n")
        f.write("}\n")
    mnt = os.path.join(work, "mnt")
    os.makedirs(mnt)
    try:
        for n in (a, b):
            sh("ip", "netns", "add", n.ns)
        sh("ip", "link", "add", "bsrdemo0", "netns", a.ns, "type", "veth", "peer", "name",
           "bsrdemo1", "netns", b.ns)
        for n, dev in ((a, "bsrdemo0"), (b, "bsrdemo1")):
            sh("ip", "addr", "add", f"{n.ip}/24", "dev", dev, ns=n.ns)
            sh("ip", "link", "set", dev, "up", ns=n.ns)
            sh("ip", "link", "set", "lo", "up", ns=n.ns)

        say(f"configuration {conf}")
        print(open(conf).read().rstrip())
        say("bsradm create-md r0 (both nodes)")
        for n in (a, b):
            n.adm(conf, "create-md", "r0")
            n.start()
        say("bsradm up r0 (both nodes)")
        for n in (a, b):
            n.adm(conf, "up", "r0")
        wait("the nodes to connect", lambda: "bob role:Secondary" in a.status(conf))
        print(a.status(conf).rstrip())

        say("alice: bsradm primary --force r0 (initial full sync to bob)")
        a.adm(conf, "primary", "--force", "r0")
        time.sleep(0.5)
        print(a.status(conf).rstrip())
        wait("the initial sync", lambda: "peer-disk:UpToDate" in a.status(conf), timeout=300)
        print(a.status(conf).rstrip())

        say("alice: mkfs.ext4 and write a file through /dev/bsr0")
        dev_a = f"{a.dir}/dev/bsr0"
        sh("mkfs.ext4", "-q", dev_a)
        sh("mount", dev_a, mnt)
        stamp = f"written on alice at {time.strftime('%H:%M:%S')}\n"
        with open(os.path.join(mnt, "hello.txt"), "w") as f:
            f.write(stamp)
        sh("umount", mnt)
        print(f"hello.txt: {stamp.strip()}")

        say("fail over: alice secondary, bob primary")
        a.adm(conf, "secondary", "r0")
        b.adm(conf, "primary", "r0")
        print(b.status(conf).rstrip())
        dev_b = f"{b.dir}/dev/bsr0"
        sh("mount", dev_b, mnt)
        with open(os.path.join(mnt, "hello.txt")) as f:
            got = f.read()
        sh("umount", mnt)
        say("bob: /dev/bsr0 mounted, hello.txt says")
        print(got.rstrip())
        if got != stamp:
            raise SystemExit("demo: FAILED, bob does not see alice's data")
        say("demo: OK, every write acknowledged on alice is on bob")
        for n in (b, a):
            n.adm(conf, "down", "r0", check=False)
        return 0
    finally:
        if os.path.ismount(mnt):
            subprocess.run(["umount", "-l", mnt])
        for n in (a, b):
            n.stop()
        for n in (a, b):
            subprocess.run(["ip", "netns", "del", n.ns], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
