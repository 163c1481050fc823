"""A node's backing file served through nbdkit (with filters) and mounted with nbdfuse,
so a test can give bsrd a slow disk (delay filter) or a disk with a volatile write cache
that a "power loss" empties (cache filter, cache=writeback: writes reach the file only at
a flush). Used by fault_test.py and power_loss_test.py; needs nbdkit and nbdfuse."""

import os
import signal
import subprocess

from harness import wait_for


class KitDisk:
    """nbdkit file=`raw` with `kit_args` (e.g. ["--filter=delay"] + ["wdelay=20ms"]) on a
    Unix socket, nbdfuse on `work`/fuse; `path` is the file bsrd attaches."""

    def __init__(self, work, raw, filters, params):
        self.raw = raw
        self.filters = list(filters)
        self.params = list(params)
        self.mnt = os.path.join(work, "fuse")
        self.sock = os.path.join(work, "nbdkit.sock")
        self.path = os.path.join(self.mnt, "nbd")
        self.kit = None
        self.fuse = None
        os.makedirs(self.mnt, exist_ok=True)

    def start(self):
        if os.path.exists(self.sock):
            os.unlink(self.sock)
        self.kit = subprocess.Popen(["nbdkit", "--foreground", "-U", self.sock,
                                     *[f"--filter={f}" for f in self.filters], "file",
                                     f"file={self.raw}", *self.params])
        wait_for("nbdkit socket", lambda: os.path.exists(self.sock), timeout=10)
        self.fuse = subprocess.Popen(["nbdfuse", self.mnt, "--unix", self.sock])
        wait_for("nbdfuse mount", lambda: os.path.ismount(self.mnt)
                 and os.path.exists(self.path), timeout=10)

    def power_loss(self):
        """kill -9 of nbdkit: what its cache filter held and nobody flushed is gone, as a
        disk's volatile cache at a power cut. Then the mount goes too."""
        if self.kit is not None and self.kit.poll() is None:
            self.kit.send_signal(signal.SIGKILL)
            self.kit.wait()
        self.stop()

    def stop(self):
        if os.path.ismount(self.mnt):
            subprocess.run(["fusermount3", "-u", "-z", self.mnt])
        for p in (self.fuse, self.kit):
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.fuse = self.kit = None
