#!/usr/bin/env python3
"""bsrd on one node, end to end: bsradm/bsrsetup lifecycle, real NBD clients
(qemu-io, nbdsh, nbdcopy, fio), ext4 on /dev/bsrN, refused commands, kill -9 and
activity-log replay. Needs root (FUSE, loop devices). Usage: bsrd_test.py [TEST...]
"""
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

# nbdsh needs Debian's python3 (python3-libnbd), whatever python3 is first on PATH.
NBDSH = ["/usr/bin/python3", "-m", "nbd"]
BIN = os.environ.get("BSR_BIN", os.path.join(os.path.dirname(__file__), "../../build/bin"))
MIB = 1 << 20


class Fail(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Fail(what)


class Node:
    """One bsrd with its own run/state/dev dirs, driven by bsradm with a config."""

    def __init__(self, root, name="alice", size_mib=256):
        self.root = root
        self.name = name
        self.run = os.path.join(root, "run")
        self.state = os.path.join(root, "state")
        self.dev = os.path.join(root, "dev")
        self.disk = os.path.join(root, "disk0")
        self.conf = os.path.join(root, "r0.res")
        self.log = os.path.join(root, "bsrd.log")
        self.proc = None
        self.bsrd_args = []  # extra bsrd arguments (--usermode-helper ...)
        with open(self.disk, "wb") as f:
            f.truncate(size_mib * MIB)
        with open(self.conf, "w") as f:
            f.write(f"""resource r0 {{
  net {{ protocol C; }}
  on alice {{
    device /dev/bsr10 minor 10; disk {self.disk}; meta-disk internal;
    address 127.0.0.1:17789; node-id 0;
  }}
  on bob {{
    device minor 10; disk /nonexistent/disk1; meta-disk internal;
    address 127.0.0.1:17790; node-id 1;
  }}
}}
""")
        self.env = dict(os.environ, BSR_RUN_DIR=self.run, BSR_STATE_DIR=self.state,
                        BSR_DEV_DIR=self.dev, BSR_NODE=name)

    @property
    def nbd_sock(self):
        return os.path.join(self.run, "r0", "0.sock")

    @property
    def nbd_uri(self):
        return f"nbd+unix:///r0/0?socket={self.nbd_sock}"

    @property
    def devlink(self):
        return os.path.join(self.dev, "bsr10")

    def cleanup(self):
        """Extra teardown after stop (subclasses with mounts of their own)."""

    def start(self):
        logf = open(self.log, "a")
        self.proc = subprocess.Popen([f"{BIN}/bsrd", "--log-level", "debug"] + self.bsrd_args,
                                     env=self.env,
                                     stdout=logf, stderr=subprocess.STDOUT)
        # A killed bsrd leaves its socket file behind: wait until one answers.
        for _ in range(200):
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect(os.path.join(self.run, "bsrd.sock"))
                return
            except OSError:
                time.sleep(0.05)
            finally:
                s.close()
        raise Fail("bsrd does not answer on its control socket")

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def run_cmd(self, argv, ok=True, inp=None):
        r = subprocess.run(argv, env=self.env, capture_output=True, text=True, input=inp,
                           timeout=120)
        if ok and r.returncode != 0:
            raise Fail(f"{' '.join(argv)} -> {r.returncode}\n{r.stdout}{r.stderr}")
        return r

    def adm(self, *args, ok=True):
        return self.run_cmd([f"{BIN}/bsradm", "-c", self.conf] + list(args), ok=ok)

    def setup(self, *args, ok=True):
        return self.run_cmd([f"{BIN}/bsrsetup"] + list(args), ok=ok)

    def status(self):
        return self.adm("status", "r0").stdout

    def logtext(self):
        with open(self.log) as f:
            return f.read()


def qemu_io(node, *cmds, ok=True):
    argv = ["qemu-io", "-f", "raw"]
    for c in cmds:
        argv += ["-c", c]
    argv.append(node.nbd_uri)
    r = node.run_cmd(argv, ok=False)
    if ok and (r.returncode != 0 or "error" in (r.stdout + r.stderr).lower()):
        raise Fail(f"qemu-io {cmds}: {r.stdout}{r.stderr}")
    return r


def read_disk(node, off, n):
    with open(node.disk, "rb") as f:
        f.seek(off)
        return f.read(n)


def up_primary(node):
    node.adm("create-md", "r0")
    node.adm("up", "r0")
    node.adm("primary", "--force", "r0")


# ---------------------------------------------------------------- tests


def test_lifecycle_and_status(node):
    out = node.adm("create-md", "r0").stdout
    check("New bsr meta data block successfully created." in out, f"create-md said: {out}")
    node.adm("up", "r0")
    st = node.status()
    check(st.startswith("r0 role:Secondary\n  disk:Inconsistent\n  bob connection:"),
          f"status after up:\n{st}")
    # Refusals give their reason and change nothing.
    r = node.adm("primary", "r0", ok=False)
    check(r.returncode != 0 and "Need access to UpToDate data" in r.stderr,
          f"primary on Inconsistent: {r.returncode} {r.stderr}")
    check(node.status() == st, "refused primary changed the state")
    r = node.setup("primary", "nosuch", ok=False)
    check(r.returncode != 0 and "unknown resource 'nosuch'" in r.stderr, r.stderr)
    r = node.setup("disk-options", "10", "--al-extentz=100", ok=False)
    check(r.returncode != 0 and "did you mean --al-extents" in r.stderr, r.stderr)
    r = node.setup("disk-options", "10", "--al-extents=3", ok=False)
    check(r.returncode != 0 and "al-extents" in r.stderr, r.stderr)
    node.adm("primary", "--force", "r0")
    st = node.status()
    check(st.startswith("r0 role:Primary\n  disk:UpToDate\n"), f"after primary --force:\n{st}")
    r = node.adm("detach", "r0", ok=False)
    check(r.returncode != 0 and "not allowed on a Primary" in r.stderr, r.stderr)
    check(node.status() == st, "refused detach changed the state")
    ev = node.setup("events2", "--now", "r0").stdout.splitlines()
    check(ev[0] == "exists resource name:r0 role:Primary suspended:no", ev)
    check(ev[-1] == "exists -", ev)
    check(any(l.startswith("exists device name:r0 volume:0 minor:10 disk:UpToDate") for l in ev),
          ev)
    js = node.setup("status", "r0", "--json").stdout
    check('"disk-state": "UpToDate"' in js, js)
    node.adm("secondary", "r0")
    node.adm("down", "r0")
    r = node.setup("status", "r0", ok=False)
    check(r.returncode != 0, "resource still there after down")


def test_qemu_io_and_ranges(node):
    up_primary(node)
    qemu_io(node, "write -P 0xab 0 1M", "read -P 0xab 0 1M", "write -P 0x5c 100M 64k",
            "flush", "write -z 2M 1M", "read -P 0 2M 1M")
    check(read_disk(node, 0, MIB) == b"\xab" * MIB, "qemu-io data not on the backing disk")
    check(read_disk(node, 100 * MIB, 65536) == b"\x5c" * 65536, "second write missing")
    # qemu-img sees the size the metadata leaves for data.
    info = node.run_cmd(["qemu-img", "info", "--output=json", node.nbd_uri]).stdout
    size = int(re.search(r'"virtual-size": (\d+)', info).group(1))
    check(200 * MIB < size < 256 * MIB, f"export size {size}")
    st = node.setup("status", "r0", "--statistics").stdout
    m = re.search(r"written:(\d+)", st)
    check(m and int(m.group(1)) >= 1024 + 64, f"written counter: {st}")


def test_nbdsh_errors_keep_connection(node):
    up_primary(node)
    script = r"""
h.pwrite(b"\x11" * 4096, 8192)
assert h.pread(4096, 8192) == b"\x11" * 4096
size = h.get_size()
errors = 0
for f in (lambda: h.pread(4096, size), lambda: h.pwrite(b"x" * 8192, size - 4096),
          lambda: h.pread(64 << 20, 0)):
    try:
        f()
    except nbd.Error:
        errors += 1
assert errors == 3, errors
assert h.pread(4096, 8192) == b"\x11" * 4096   # the connection survived
h.flush()
print("nbdsh-ok", size)
"""
    r = node.run_cmd(NBDSH + ["-u", node.nbd_uri, "-c", script])
    check("nbdsh-ok" in r.stdout, r.stdout + r.stderr)


def test_nbdcopy_roundtrip(node):
    up_primary(node)
    src = os.path.join(node.root, "src.img")
    back = os.path.join(node.root, "back.img")
    with open(src, "wb") as f:
        f.write(random.randbytes(32 * MIB))
    # nbdcopy writes the whole export; give it an image of the export's size.
    size = int(node.run_cmd(["nbdinfo", "--size", node.nbd_uri]).stdout)
    with open(src, "r+b") as f:
        f.truncate(size)
    node.run_cmd(["nbdcopy", "--connections=4", src, node.nbd_uri])
    node.run_cmd(["nbdcopy", node.nbd_uri, back])
    node.run_cmd(["cmp", src, back])
    with open(src, "rb") as f:
        check(read_disk(node, 0, 32 * MIB) == f.read(32 * MIB), "nbdcopy data not on disk")


def test_fio_verify(node):
    up_primary(node)
    r = node.run_cmd(["fio", "--name=v", "--ioengine=nbd", f"--uri={node.nbd_uri}",
                      "--rw=randwrite", "--bs=4k", "--size=32M", "--iodepth=16",
                      "--verify=crc32c", "--do_verify=1", "--verify_state_save=0", "--output-format=terse"], ok=False)
    check(r.returncode == 0, f"fio verify failed: {r.stdout[-2000:]}{r.stderr[-2000:]}")


def test_secondary_refuses_and_auto_promote(node):
    node.adm("create-md", "r0")
    node.adm("up", "r0")
    node.adm("primary", "--force", "r0")
    node.adm("secondary", "r0")
    node.setup("resource-options", "r0", "--auto-promote=no")
    r = qemu_io(node, "read 0 4k", ok=False)
    check(r.returncode != 0 and "Secondary" in (r.stdout + r.stderr),
          f"open on Secondary: {r.stdout}{r.stderr}")
    node.setup("resource-options", "r0", "--auto-promote=yes")
    # While a client holds the volume the resource is Primary; after close, Secondary.
    p = subprocess.Popen(NBDSH + ["-u", node.nbd_uri, "-c",
                          "import sys\nh.pwrite(b'a'*512, 0)\nprint('open', flush=True)\n"
                          "sys.stdin.readline()"],
                         env=node.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    check(p.stdout.readline().strip() == "open", "nbdsh did not open")
    st = node.status()
    check(st.startswith("r0 role:Primary"), f"not auto-promoted:\n{st}")
    r = node.adm("secondary", "r0", ok=False)
    check(r.returncode != 0 and "held open" in r.stderr, f"demote while open: {r.stderr}")
    p.communicate("\n", timeout=30)
    for _ in range(50):
        if node.status().startswith("r0 role:Secondary"):
            break
        time.sleep(0.1)
    check(node.status().startswith("r0 role:Secondary"), "not demoted after last close")


def test_ext4_on_dev_bsr(node):
    up_primary(node)
    mnt = os.path.join(node.root, "mnt")
    os.makedirs(mnt)
    check(os.path.islink(node.devlink), "no /dev/bsr10 link")
    check(os.path.islink(os.path.join(node.dev, "bsr", "by-res", "r0", "0")), "no by-res link")
    node.run_cmd(["mkfs.ext4", "-q", node.devlink])
    node.run_cmd(["mount", node.devlink, mnt])
    try:
        payload = random.randbytes(3 * MIB)
        with open(os.path.join(mnt, "data.bin"), "wb") as f:
            f.write(payload)
        os.makedirs(os.path.join(mnt, "dir"))
        with open(os.path.join(mnt, "dir", "note.txt"), "w") as f:
            f.write("hello bsr\n")
        node.run_cmd(["sync"])
        r = node.adm("secondary", "r0", ok=False)
        check(r.returncode != 0 and "held open" in r.stderr, f"demote while mounted: {r.stderr}")
        check(node.status().startswith("r0 role:Primary"), "refused demote changed the role")
    finally:
        node.run_cmd(["umount", mnt], ok=False)
    node.adm("down", "r0")
    check(not os.path.exists(node.devlink), "/dev/bsr10 link left after down")
    node.adm("up", "r0")
    node.adm("primary", "r0")
    node.run_cmd(["e2fsck", "-fn", node.devlink])
    node.run_cmd(["mount", node.devlink, mnt])
    try:
        with open(os.path.join(mnt, "data.bin"), "rb") as f:
            check(f.read() == payload, "file content changed across down/up")
        with open(os.path.join(mnt, "dir", "note.txt")) as f:
            check(f.read() == "hello bsr\n", "note changed")
    finally:
        node.run_cmd(["umount", mnt], ok=False)
    node.adm("down", "r0")


def test_kill9_replays_activity_log(node):
    up_primary(node)
    fio = subprocess.Popen(["fio", "--name=w", "--ioengine=nbd", f"--uri={node.nbd_uri}",
                            "--rw=randwrite", "--bs=4k", "--size=200M", "--iodepth=32",
                            "--time_based", "--runtime=30"], env=node.env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(2)
    node.stop(signal.SIGKILL)
    fio.wait(timeout=60)
    node.start()
    # up runs `bsrmeta ... apply-al` before attach (as drbdadm does): the activity
    # log of the crashed Primary marks its hot extents out of sync for the peer.
    out = node.adm("up", "r0").stdout
    st = node.setup("status", "r0", "--statistics").stdout
    m = re.search(r"out-of-sync:(\d+)", st)
    check(m and int(m.group(1)) >= 4096,
          f"no AL extents marked out of sync after kill -9:\n{out}\n{st}\n" + node.logtext()[-2000:])
    st = node.status()
    check(st.startswith("r0 role:Secondary\n  disk:UpToDate"), f"status after restart:\n{st}")
    node.adm("primary", "r0")
    qemu_io(node, "write -P 0x77 0 4k", "read -P 0x77 0 4k")
    node.adm("down", "r0")


TESTS = [v for k, v in sorted(globals().items()) if k.startswith("test_")]


def run_tests(tests, make_node, prefix, name, needs):
    """Runs each test on a fresh node in its own directory; every failure is reported
    and the rest still run. Shared by the daemon test files."""
    if os.geteuid() != 0:
        print(f"{name}: needs root ({needs})")
        return 77
    chosen = [t for t in tests if len(sys.argv) < 2 or t.__name__ in sys.argv[1:]]
    failed = 0
    for t in chosen:
        root = tempfile.mkdtemp(prefix=prefix)
        node = make_node(root)
        t0 = time.monotonic()
        try:
            node.start()
            t(node)
            print(f"PASS {t.__name__} ({time.monotonic() - t0:.1f}s)", flush=True)
        except Exception as e:  # noqa: BLE001 - report every failure, keep going
            failed += 1
            print(f"FAIL {t.__name__}: {e}", flush=True)
            traceback.print_exc()
            try:
                print("---- bsrd log tail ----\n" + node.logtext()[-4000:])
            except OSError:
                pass
        finally:
            mnt = os.path.join(root, "mnt")
            if os.path.ismount(mnt):
                subprocess.run(["umount", "-l", mnt])
            node.stop()
            state = getattr(node, "state", None)
            if state and os.path.isdir(os.path.join(state, "kdev")):
                # A test that failed after kill -9 leaves a FUSE mount and a loop device
                # behind; a bsrd removes such leftovers when it starts.
                try:
                    node.start()
                except Fail:
                    pass
                node.stop()
            if hasattr(node, "cleanup"):
                node.cleanup()
            if not os.environ.get("BSR_KEEP"):
                shutil.rmtree(root, ignore_errors=True)
    print(f"{len(chosen) - failed} passed, {failed} failed")
    return 1 if failed else 0


def main():
    return run_tests(TESTS, Node, "bsrd-test-", "bsrd_test", "FUSE, loop devices")

if __name__ == "__main__":
    sys.exit(main())
