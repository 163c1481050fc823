#!/usr/bin/env python3
"""bsrd on one node: on-io-error policies with a real failing disk (a sparse file on a
small tmpfs that fills up: ENOSPC from the kernel), the local-io-error handler, and the
admin commands outdate, suspend-io/resume-io, new-current-uuid, get-gi/show-gi,
on-no-data-accessible suspend-io. Needs root. Usage: io_test.py [TEST...]
"""
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bsrd_test import BIN, MIB, Fail, Node, check, qemu_io, read_disk, run_tests, up_primary  # noqa: E402


class IoNode(Node):
    """A Node whose config takes disk options, resource options and handlers, and whose
    bsrd may get extra arguments (--usermode-helper)."""

    def __init__(self, root):
        super().__init__(root)
        self.tmpfs = None

    def configure(self, disk_opts="", res_opts="", handlers=""):
        with open(self.conf, "w") as f:
            f.write(f"""resource r0 {{
  options {{ {res_opts} }}
  disk {{ {disk_opts} }}
  handlers {{ {handlers} }}
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

    def small_disk(self, fs_mib=16, file_mib=64):
        """Moves the backing file to a sparse file_mib file on a fs_mib tmpfs: writes
        into holes beyond the space fail with ENOSPC."""
        self.tmpfs = os.path.join(self.root, "tmpfs")
        os.makedirs(self.tmpfs)
        self.run_cmd(["mount", "-t", "tmpfs", "-o", f"size={fs_mib}m", "bsrio", self.tmpfs])
        os.unlink(self.disk)
        self.disk = os.path.join(self.tmpfs, "disk0")
        with open(self.disk, "wb") as f:
            f.truncate(file_mib * MIB)

    def fuse_disk(self, size_mib=64):
        """Moves the backing file onto FUSE: nbdkit's memory plugin behind nbdfuse. A
        SIGSTOPped nbdkit then leaves every request to the file pending: a hung disk."""
        mnt = os.path.join(self.root, "fuse")
        os.makedirs(mnt)
        sock = os.path.join(self.root, "nbdkit.sock")
        self.nbdkit = subprocess.Popen(["nbdkit", "--foreground", "-U", sock, "memory",
                                        f"size={size_mib}M"])
        for _ in range(100):
            if os.path.exists(sock):
                break
            time.sleep(0.05)
        self.fuse_mnt = mnt
        self.nbdfuse = subprocess.Popen(["nbdfuse", mnt, "--unix", sock])
        self.disk = os.path.join(mnt, "nbd")
        for _ in range(100):
            if os.path.ismount(mnt) and os.path.exists(self.disk):
                return
            time.sleep(0.05)
        raise Fail("nbdfuse did not mount")

    def cleanup(self):
        if self.tmpfs and os.path.ismount(self.tmpfs):
            subprocess.run(["umount", "-l", self.tmpfs])
        if getattr(self, "nbdkit", None):
            self.nbdkit.send_signal(signal.SIGCONT)
        if getattr(self, "fuse_mnt", None) and os.path.ismount(self.fuse_mnt):
            subprocess.run(["fusermount3", "-u", "-z", self.fuse_mnt])
        for p in (getattr(self, "nbdfuse", None), getattr(self, "nbdkit", None)):
            if p and p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


class Events:
    """A running `bsrsetup events2 r0`: change lines as they come."""

    def __init__(self, node):
        self.out = os.path.join(node.root, "events.txt")
        self.f = open(self.out, "w")
        self.p = subprocess.Popen([f"{BIN}/bsrsetup", "events2", "r0"], env=node.env,
                                  stdout=self.f, stderr=subprocess.STDOUT)
        # Subscribed once the initial state is out ("exists -"): a change made before
        # that would show only as an "exists" line, and a wait for its "change" fails.
        if not self.wait_for(r"^exists -$"):
            self.stop()
            raise Fail(f"events2 printed no initial state:\n{self.text()}")

    def text(self):
        with open(self.out) as f:
            return f.read()

    def wait_for(self, pattern, timeout=10):
        for _ in range(int(timeout * 10)):
            if re.search(pattern, self.text(), re.M):
                return True
            time.sleep(0.1)
        return False

    def stop(self):
        self.p.terminate()
        self.p.wait()
        self.f.close()


def write_until_error(node):
    """4 MiB writes over the whole export; the tmpfs runs full at about 16 MiB."""
    cmds = [f"write -P 0xaa {i * 4}M 4M" for i in range(14)]
    r = qemu_io(node, *cmds, ok=False)
    out = r.stdout + r.stderr
    check("failed" in out.lower() or "error" in out.lower(), f"no write failed:\n{out}")
    return out


def wait_status(node, pattern, timeout=10):
    st = ""
    for _ in range(int(timeout * 10)):
        st = node.status()
        if re.search(pattern, st, re.M):
            return st
        time.sleep(0.1)
    raise Fail(f"status never matched {pattern!r}:\n{st}")


# ---------------------------------------------------------------- disk-timeout


def test_disk_timeout(node):
    """disk-timeout 1 s on a disk that stops answering (a SIGSTOPped nbdkit behind nbdfuse):
    the disk goes Failed within about the timeout while bsrd keeps answering; the stuck write
    finishes once the disk is back, and the disk ends Diskless."""
    node.fuse_disk()
    node.configure(disk_opts="disk-timeout 10;")
    up_primary(node)
    qemu_io(node, "write -P 0x11 0 64k", "flush")
    ev = Events(node)
    writer = None
    node.nbdkit.send_signal(signal.SIGSTOP)
    try:
        writer = subprocess.Popen(["qemu-io", "-f", "raw", "-c", "write -P 0x22 1M 4k",
                                   "-c", "flush", node.nbd_uri], env=node.env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        t0 = time.monotonic()
        st = wait_status(node, r"^  disk:Failed", timeout=15)
        took = time.monotonic() - t0
        print(f"disk Failed {took:.2f} s after the disk stopped answering", flush=True)
        check(0.8 <= took <= 6, f"Failed after about disk-timeout (1 s): {took:.2f} s")
        check(st.startswith("r0 role:Primary\n  disk:Failed"), st)
        check(re.search(r"disk-timeout: a request to \S+ has been pending for \d+ ms > "
                        r"disk-timeout 1000 ms; detaching", node.logtext()),
              "the log names the disk-timeout")
        check(ev.wait_for(r"^change device name:r0 volume:0 minor:10 disk:Failed"), ev.text())
        check(writer.poll() is None, "the stuck write is still pending (not aborted)")
    finally:
        node.nbdkit.send_signal(signal.SIGCONT)
    try:
        out, _ = writer.communicate(timeout=30)
        st = wait_status(node, r"^  disk:Diskless", timeout=15)
        check(ev.wait_for(r"^change device name:r0 volume:0 minor:10 disk:Diskless"), ev.text())
        print(f"after the disk came back: {out.strip()!r}", flush=True)
    finally:
        ev.stop()


# ---------------------------------------------------------------- on-io-error


def test_io_error_detach(node):
    node.small_disk()
    node.configure(disk_opts="on-io-error detach;")
    up_primary(node)
    ev = Events(node)
    try:
        out = write_until_error(node)
        check("Input/output error" in out, f"the client did not get EIO:\n{out}")
        st = wait_status(node, r"^  disk:Diskless")
        check(st.startswith("r0 role:Primary\n  disk:Diskless"), st)
        check(ev.wait_for(r"^change device name:r0 volume:0 minor:10 disk:Failed"), ev.text())
        check(ev.wait_for(r"^change device name:r0 volume:0 minor:10 disk:Diskless"), ev.text())
    finally:
        ev.stop()
    # Later I/O without a local disk fails (no UpToDate peer to forward it to).
    r = qemu_io(node, "read 0 4k", ok=False)
    check("Input/output error" in r.stdout + r.stderr, f"read without a disk: {r.stdout}")
    node.adm("secondary", "r0")
    node.adm("down", "r0")
    # The metadata recorded the failure: the disk comes back Outdated, not UpToDate.
    node.adm("up", "r0")
    st = node.status()
    check(st.startswith("r0 role:Secondary\n  disk:Outdated"), f"after re-attach:\n{st}")
    gi = node.setup("get-gi", "r0", "1", "0").stdout.strip().split(":")
    check(gi[4:6] == ["1", "0"], f"consistent / was-up-to-date flags: {gi}")
    node.adm("down", "r0")


def test_io_error_call_handler(node):
    node.small_disk()
    node.configure(disk_opts="on-io-error call-local-io-error;")
    record = os.path.join(node.root, "handler.out")
    script = os.path.join(node.root, "helper.sh")
    with open(script, "w") as f:
        f.write(f"#!/bin/sh\necho \"$1 $2 $BSR_RESOURCE $BSR_MINOR $BSR_VOLUME\" >> {record}\n")
    os.chmod(script, 0o755)
    node.stop()
    node.bsrd_args = ["--usermode-helper", script]
    node.start()
    up_primary(node)
    out = write_until_error(node)
    check("Input/output error" in out, out)
    wait_status(node, r"^  disk:Diskless")
    for _ in range(50):
        if os.path.exists(record):
            break
        time.sleep(0.1)
    check(os.path.exists(record), "the local-io-error handler did not run")
    with open(record) as f:
        lines = f.read().splitlines()
    check(lines == ["local-io-error r0 r0 10 0"], f"handler calls: {lines}")
    node.adm("secondary", "r0")
    node.adm("down", "r0")


def test_io_error_handler_via_bsradm(node):
    """The default usermode helper: the bsradm beside bsrd runs the handlers section's
    local-io-error command (config found through $BSR_CONFIG)."""
    node.small_disk()
    record = os.path.join(node.root, "handler.out")
    node.configure(disk_opts="on-io-error call-local-io-error;",
                   handlers=f'local-io-error "echo $BSR_RESOURCE $BSR_MINOR $BSR_VOLUME >> {record}";')
    node.stop()
    node.env["BSR_CONFIG"] = node.conf
    node.start()
    up_primary(node)
    write_until_error(node)
    wait_status(node, r"^  disk:Diskless")
    for _ in range(100):
        if os.path.exists(record):
            break
        time.sleep(0.1)
    check(os.path.exists(record), "bsradm did not run the local-io-error handler:\n" +
          node.logtext()[-2000:])
    with open(record) as f:
        lines = f.read().splitlines()
    check(lines == ["r0 10 0"], f"handler output: {lines}")
    node.adm("secondary", "r0")
    node.adm("down", "r0")


def test_io_error_passthrough(node):
    node.small_disk()
    node.configure()  # on-io-error passthrough is the default
    up_primary(node)
    out = write_until_error(node)
    check("Input/output error" in out or "No space" in out, f"no error reached the client:\n{out}")
    st = node.status()
    check(st.startswith("r0 role:Primary\n  disk:UpToDate"), f"passthrough changed the disk:\n{st}")
    # Allocated blocks still take writes; the failed range is out of sync for the peer.
    qemu_io(node, "write -P 0x33 0 64k", "read -P 0x33 0 64k")
    st = node.setup("status", "r0", "--statistics").stdout
    m = re.search(r"out-of-sync:(\d+)", st)
    check(m and int(m.group(1)) > 0, f"failed range not marked out of sync:\n{st}")
    node.adm("down", "r0")


# ---------------------------------------------------------------- admin commands


def test_outdate(node):
    node.configure()
    node.adm("create-md", "r0")
    node.adm("up", "r0")
    r = node.setup("outdate", "10", ok=False)
    check(r.returncode == 11 and "lower than outdated" in r.stderr, f"outdate Inconsistent: {r.stderr}")
    node.adm("primary", "--force", "r0")
    st = node.status()
    r = node.setup("outdate", "10", ok=False)
    check(r.returncode == 11 and "Primary" in r.stderr, f"outdate on a Primary: {r.stderr}")
    check(node.status() == st, "refused outdate changed the state")
    node.adm("secondary", "r0")
    ev = Events(node)
    try:
        node.adm("outdate", "r0")
        check(ev.wait_for(r"^change device name:r0 volume:0 minor:10 disk:Outdated"), ev.text())
    finally:
        ev.stop()
    check(node.status().startswith("r0 role:Secondary\n  disk:Outdated"), node.status())
    node.setup("outdate", "10")  # already Outdated: nothing to do
    r = node.adm("primary", "r0", ok=False)
    check(r.returncode != 0 and "UpToDate" in r.stderr, f"primary on Outdated: {r.stderr}")
    r = node.setup("outdate", "99", ok=False)
    check(r.returncode != 0 and "99" in r.stderr, r.stderr)
    node.adm("down", "r0")
    node.adm("up", "r0")
    check(node.status().startswith("r0 role:Secondary\n  disk:Outdated"),
          f"Outdated not kept in the metadata:\n{node.status()}")
    node.adm("down", "r0")


def test_suspend_resume_io(node):
    node.configure()
    up_primary(node)
    r = node.setup("suspend-io", "77", ok=False)
    check(r.returncode != 0 and "77" in r.stderr, f"suspend-io on an unknown minor: {r.stderr}")
    node.setup("suspend-io", "10")
    st = node.status()
    check(st.startswith("r0 role:Primary suspended:user\n"), f"status while suspended:\n{st}")
    ev = node.setup("events2", "--now", "r0").stdout
    check("exists resource name:r0 role:Primary suspended:user" in ev, ev)
    p = subprocess.Popen(["qemu-io", "-f", "raw", "-c", "write -P 0x5a 1M 64k", node.nbd_uri],
                         env=node.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(1.5)
    check(p.poll() is None, "the write completed while I/O was suspended")
    check(read_disk(node, MIB, 65536) != b"\x5a" * 65536, "data reached the disk while suspended")
    node.setup("resume-io", "10")
    out, _ = p.communicate(timeout=30)
    check(p.returncode == 0 and "error" not in out.lower(), f"held write after resume: {out}")
    check(read_disk(node, MIB, 65536) == b"\x5a" * 65536, "held write not on the disk")
    check(node.status().startswith("r0 role:Primary\n"), node.status())
    node.adm("down", "r0")


def test_new_current_uuid(node):
    node.configure()
    node.adm("create-md", "r0")
    node.adm("up", "r0")
    gi = node.setup("get-gi", "r0", "1", "0").stdout.strip().split(":")
    check(gi[0] == "0000000000000004", f"fresh metadata: {gi}")
    r = node.setup("new-current-uuid", "10", "--clear-bitmap", "--bogus", ok=False)
    check(r.returncode != 0 and "bogus" in r.stderr, r.stderr)
    node.setup("new-current-uuid", "10", "--clear-bitmap")
    check(node.status().startswith("r0 role:Secondary\n  disk:UpToDate"),
          f"skip-initial-sync:\n{node.status()}")
    gi2 = node.setup("get-gi", "r0", "1", "0").stdout.strip().split(":")
    check(gi2[0] not in ("0000000000000004", "0000000000000000") and gi2[1] == "0000000000000000"
          and gi2[4:6] == ["1", "1"], f"after --clear-bitmap: {gi2}")
    node.adm("primary", "r0")  # no --force needed
    # Without --clear-bitmap: a new generation; the disconnected peer's slot keeps the
    # old one as its bitmap UUID.
    node.setup("new-current-uuid", "10")
    gi3 = node.setup("get-gi", "r0", "1", "0").stdout.strip().split(":")
    check(gi3[0] != gi2[0] and gi3[1] == gi2[0], f"new-current-uuid: {gi2} -> {gi3}")
    node.adm("secondary", "r0")
    node.adm("down", "r0")


def test_get_gi_show_gi(node):
    node.configure()
    up_primary(node)
    plan = node.adm("-d", "get-gi", "r0").stdout
    check("bsrsetup get-gi r0 1 0" in plan, plan)
    out = node.adm("get-gi", "r0").stdout.strip()
    check(re.fullmatch(r"[0-9A-F]{16}(:[0-9A-F]{16}){3}(:[01]){12}", out), out)
    check(out.split(":")[4:7] == ["1", "1", "1"], f"consistent/up-to-date/primary flags: {out}")
    show = node.adm("show-gi", "r0").stdout
    check(out in show and "Data consistency flag" in show and "out-of-sync blocks" in show, show)
    r = node.setup("get-gi", "r0", "5", "0", ok=False)
    check(r.returncode != 0 and "node-id 5" in r.stderr, r.stderr)
    r = node.setup("get-gi", "r0", "1", ok=False)
    check(r.returncode != 0 and "usage" in r.stderr, r.stderr)
    node.adm("secondary", "r0")
    node.adm("down", "r0")


def test_no_data_accessible_suspend(node):
    node.small_disk()
    node.configure(disk_opts="on-io-error detach;", res_opts="on-no-data-accessible suspend-io;")
    up_primary(node)
    # The write that fails detaches the disk; with no data anywhere the writes after
    # it are held, not failed.
    cmds = [f"write -P 0xaa {i * 4}M 4M" for i in range(14)]
    argv = ["qemu-io", "-f", "raw"] + [a for c in cmds for a in ("-c", c)] + [node.nbd_uri]
    p = subprocess.Popen(argv, env=node.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
    st = wait_status(node, r"suspended:no-data", timeout=30)
    check("disk:Diskless" in st, st)
    time.sleep(1)
    check(p.poll() is None, "the writes completed while suspended")
    # A forced resume without data behaves like on-no-data-accessible io-error.
    node.setup("resume-io", "10")
    out, _ = p.communicate(timeout=30)
    check("Input/output error" in out, f"writes after a forced resume: {out}")
    check("suspended" not in node.status(), node.status())
    r = qemu_io(node, "read 0 4k", ok=False)
    check("Input/output error" in r.stdout + r.stderr, f"read after resume: {r.stdout}")
    node.adm("secondary", "r0")
    node.adm("down", "r0")


TESTS = [v for k, v in sorted(globals().items()) if k.startswith("test_")]


def main():
    return run_tests(TESTS, IoNode, "bsrio-test-", "io_test", "tmpfs, FUSE, loop devices")

if __name__ == "__main__":
    sys.exit(main())
