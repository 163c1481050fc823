#!/usr/bin/env python3
"""bsradm adjust against a real bsrd: the plan is the difference between what bsrd
runs (`bsrsetup show --json`) and the configuration; adjust applies it, and a second
adjust has nothing left to do. Also: nothing running -> up, no bsrd -> the config-only
plan, and the handler commands bsrd's usermode helper calls run. Usage:
adjust_test.py [TEST...]
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bsrd_test import BIN, MIB, Fail, check, run_tests  # noqa: E402

PORT = 17891  # bsrd_test.py uses 17789/17790; nothing listens on bob's or carol's


def config_text(root, vol1=False, disk="al-extents 1000;", extra_net="", options="", handlers="",
                carol=False, bob=True):
    v1 = (f"    volume 1 {{ device minor 21; disk {root}/disk1; meta-disk internal; }}\n"
          if vol1 else "")
    hosts = ["alice"] + (["bob"] if bob else []) + (["carol"] if carol else [])
    text = f"""resource r0 {{
  options {{ auto-promote no; {options} }}
  disk {{ {disk} }}
  net {{ protocol C; {extra_net} }}
  handlers {{ {handlers} }}
  on alice {{
    volume 0 {{ device minor 20; disk {root}/disk0; meta-disk internal; }}
{v1}    address 127.0.0.1:{PORT}; node-id 0;
  }}
"""
    if bob:
        text += f"""  on bob {{
    volume 0 {{ device minor 20; disk /nonexistent/d0; meta-disk internal; }}
    address 127.0.0.1:{PORT + 1}; node-id 1;
  }}
"""
    if carol:
        text += f"""  on carol {{
    volume 0 {{ device minor 20; disk /nonexistent/d0; meta-disk internal; }}
    address 127.0.0.1:{PORT + 2}; node-id 2;
  }}
"""
    if len(hosts) > 2:
        text += f"  connection-mesh {{ hosts {' '.join(hosts)}; }}\n"
    return text + "}\n"


class Node:
    """One bsrd with its own run/state/dev dirs; bsradm reads $BSR_CONFIG (no -c)."""

    def __init__(self, root, name="alice", conf=None):
        self.root = root
        self.run = os.path.join(root, name, "run")
        self.conf = conf or os.path.join(root, "r0.res")
        self.log = os.path.join(root, f"bsrd-{name}.log")
        self.proc = None
        for d in ("disk0", "disk1"):
            with open(os.path.join(root, d), "wb") as f:
                f.truncate(64 * MIB)
        self.env = dict(os.environ, BSR_RUN_DIR=self.run,
                        BSR_STATE_DIR=os.path.join(root, name, "state"),
                        BSR_DEV_DIR=os.path.join(root, name, "dev"), BSR_NODE=name,
                        BSR_CONFIG=self.conf)
        if not conf:
            self.write()

    def write(self, **kw):
        with open(self.conf, "w") as f:
            f.write(config_text(self.root, **kw))

    def start(self):
        logf = open(self.log, "a")
        self.proc = subprocess.Popen([f"{BIN}/bsrd", "--log-level", "debug"], env=self.env,
                                     stdout=logf, stderr=subprocess.STDOUT)
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

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def cmd(self, argv, ok=True, env=None):
        r = subprocess.run(argv, env=env or self.env, capture_output=True, text=True, timeout=60)
        if ok and r.returncode != 0:
            raise Fail(f"{' '.join(argv)} -> {r.returncode}\n{r.stdout}{r.stderr}")
        return r

    def adm(self, *args, ok=True):
        return self.cmd([f"{BIN}/bsradm"] + list(args), ok=ok)

    def plan(self, target="r0"):
        return self.adm("-d", "adjust", target).stdout.splitlines()

    def setup(self, *args, ok=True):
        return self.cmd([f"{BIN}/bsrsetup"] + list(args), ok=ok)

    def show(self):
        js = json.loads(self.setup("show", "--json").stdout)
        return {r["name"]: r for r in js}

    def cstate(self, peer):
        for c in self.show()["r0"]["connections"]:
            if c["peer_node_id"] == peer:
                return c["cstate"]
        return None

    def logtext(self):
        with open(self.log) as f:
            return f.read()


def adjust_and_settle(node, expect_plan, what):
    plan = node.plan()
    check(plan == expect_plan, f"{what}: adjust -d planned\n  {plan}\nexpected\n  {expect_plan}")
    node.adm("adjust", "r0")
    again = node.plan()
    check(again == [], f"{what}: a second adjust still plans {again}")


# ---------------------------------------------------------------- tests


def test_options_paths_and_connect(node):
    node.adm("create-md", "r0")
    node.adm("up", "r0")
    check(node.plan() == [], f"adjust right after up plans {node.plan()}")
    r = node.adm("-d", "adjust", "all")
    check(r.stdout == "", f"adjust all right after up: {r.stdout!r}")

    # One option each in the disk, net, peer-device and resource sections.
    node.write(disk="al-extents 2000; resync-rate 20M;", extra_net="ping-timeout 20;",
               options="on-no-data-accessible suspend-io;")
    adjust_and_settle(node, [
        "bsrsetup resource-options r0 --on-no-data-accessible=suspend-io",
        "bsrsetup net-options r0 1 --ping-timeout=20",
        "bsrsetup peer-device-options r0 1 0 --resync-rate=20M",
        "bsrsetup disk-options 20 --al-extents=2000",
    ], "changed options")
    r0 = node.show()["r0"]
    check(r0["volumes"][0]["disk_options"].get("al-extents") == "2000", r0)
    check(r0["connections"][0]["net"].get("ping-timeout") == "20", r0)
    check(r0["connections"][0]["peer_devices"][0]["options"].get("resync-rate") == "20M", r0)
    check(r0["options"].get("on-no-data-accessible") == "suspend-io", r0)
    text = node.setup("show", "r0").stdout
    check("al-extents" in text and "2000" in text, f"bsrsetup show:\n{text}")

    # An option taken out of the configuration goes back to its default.
    node.write(disk="al-extents 2000; resync-rate 20M;",
               options="on-no-data-accessible suspend-io;")
    adjust_and_settle(node, ["bsrsetup net-options r0 1 --ping-timeout=5"], "removed option")

    # A StandAlone peer is connected again.
    node.adm("disconnect", "r0")
    check(node.cstate(1) == "StandAlone", f"after disconnect: {node.cstate(1)}")
    adjust_and_settle(node, ["bsrsetup connect r0 1"], "StandAlone peer")
    check(node.cstate(1) in ("Connecting", "Unconnected"), f"after adjust: {node.cstate(1)}")

    # bob moves to another port: the old path goes, the new one comes.
    node.write(disk="al-extents 2000; resync-rate 20M;",
               options="on-no-data-accessible suspend-io;")
    with open(node.conf) as f:
        text = f.read().replace(f"127.0.0.1:{PORT + 1}", f"127.0.0.1:{PORT + 5}")
    with open(node.conf, "w") as f:
        f.write(text)
    adjust_and_settle(node, [
        f"bsrsetup del-path r0 1 ipv4:127.0.0.1:{PORT} ipv4:127.0.0.1:{PORT + 1}",
        f"bsrsetup new-path r0 1 ipv4:127.0.0.1:{PORT} ipv4:127.0.0.1:{PORT + 5}",
    ], "moved path")
    paths = node.show()["r0"]["connections"][0]["paths"]
    check(paths == [{"local": f"ipv4:127.0.0.1:{PORT}", "remote": f"ipv4:127.0.0.1:{PORT + 5}"}],
          paths)


def test_volumes_and_peers(node):
    # Bitmap slots for three peers, so that peers can join later.
    create = node.adm("-d", "create-md", "r0").stdout.split()
    check(create[0] == "bsrmeta" and create[-2] == "create-md", create)
    node.cmd([f"{BIN}/bsrmeta"] + create[1:-1] + ["3"])
    node.adm("up", "r0")
    # A second volume: new-minor, attach (its metadata made first).
    node.write(vol1=True)
    node.adm("create-md", "r0/1")
    disk1 = os.path.join(node.root, "disk1")
    adjust_and_settle(node, [
        "bsrsetup new-minor r0 21 1",
        f"bsrmeta 21 bsr1 {disk1} internal apply-al",
        f"bsrsetup attach 21 {disk1} {disk1} internal --al-extents=1000",
    ], "new volume")
    st = node.adm("status", "r0").stdout
    check("volume:1 disk:Inconsistent" in st, f"status after adding volume 1:\n{st}")
    # And away again.
    node.write()
    adjust_and_settle(node, ["bsrsetup detach 21", "bsrsetup del-minor 21"], "removed volume")
    check([v["volume"] for v in node.show()["r0"]["volumes"]] == [0], node.show())

    # A third node joins (mesh), then bob leaves.
    node.write(carol=True)
    adjust_and_settle(node, [
        "bsrsetup new-peer r0 2 --_name=carol --protocol=C",
        f"bsrsetup new-path r0 2 ipv4:127.0.0.1:{PORT} ipv4:127.0.0.1:{PORT + 2}",
        "bsrsetup connect r0 2",
    ], "new peer")
    check(node.cstate(2) in ("Connecting", "Unconnected"), node.show())
    node.write(carol=True, bob=False)
    adjust_and_settle(node, ["bsrsetup del-peer r0 1"], "removed peer")
    check([c["peer_node_id"] for c in node.show()["r0"]["connections"]] == [2], node.show())
    st = node.adm("status", "r0").stdout
    check("carol connection:" in st and "bob" not in st, st)


def test_not_running_and_no_daemon(node):
    node.adm("create-md", "r0")
    up = node.adm("-d", "up", "r0").stdout.splitlines()
    # bsrd runs, r0 does not: adjust is up.
    check(node.plan() == up, f"adjust with nothing running: {node.plan()}\nup: {up}")
    node.adm("adjust", "r0")
    st = node.adm("status", "r0").stdout
    check(st.startswith("r0 role:Secondary\n  disk:Inconsistent\n"), st)
    check(node.plan() == [], f"after adjust: {node.plan()}")
    # A node-id change cannot be adjusted: clear refusal, nothing run.
    with open(node.conf) as f:
        text = f.read()
    with open(node.conf, "w") as f:
        f.write(text.replace("node-id 0;", "node-id 3;"))
    before = node.show()
    r = node.adm("adjust", "r0", ok=False)
    check(r.returncode != 0 and "node-id" in r.stderr, f"{r.returncode} {r.stderr}")
    check(node.show() == before, "refused adjust changed the running state")
    node.write()
    node.adm("down", "r0")
    # No bsrd at all: the config-only plan (as before this change).
    node.stop()
    r = node.adm("-d", "adjust", "r0")
    check(r.stdout.splitlines()[0] == "bsrsetup new-resource r0 0 --auto-promote=no", r.stdout)
    check(r.stderr == "", r.stderr)


def test_handlers(node):
    out = os.path.join(node.root, "handler.out")
    node.write(handlers=f'split-brain "echo $BSR_RESOURCE $BSR_PEER_NODE_ID $0 > {out}; exit 3";'
                        f' fence-peer "exit 0";')
    env = dict(node.env, BSR_RESOURCE="r0", BSR_PEER_NODE_ID="1")
    # bsrd calls `bsradm HANDLER RES` without -c: $BSR_CONFIG names the file.
    r = node.cmd([f"{BIN}/bsradm", "split-brain", "r0"], ok=False, env=env)
    check(r.returncode == 3, f"split-brain handler exit {r.returncode}: {r.stderr}")
    with open(out) as f:
        check(f.read().split() == ["r0", "1", "sh"], "handler environment not passed through")
    r = node.cmd([f"{BIN}/bsradm", "-d", "split-brain", "r0"], env=env)
    check(r.stdout == f"echo $BSR_RESOURCE $BSR_PEER_NODE_ID $0 > {out}; exit 3\n", r.stdout)
    r = node.cmd([f"{BIN}/bsradm", "local-io-error", "r0"], env=env)
    check(r.stdout == "" and r.stderr == "", "an unconfigured handler is not silent")
    r = node.cmd([f"{BIN}/bsradm", "fence-peer", "nosuch"], ok=False, env=env)
    check(r.returncode == 10 and "not defined" in r.stderr, r.stderr)


def test_handler_called_by_bsrd(node):
    """bsrd runs its usermode helper (the bsradm beside it) as `bsradm out-of-sync r0`
    when online verify finds differing blocks; that bsradm finds the configuration
    through $BSR_CONFIG (no -c), adds what the configuration knows (BSR_PEERS) and runs
    the command."""
    root = node.root
    out = os.path.join(root, "handlers.log")
    disks = {n: os.path.join(root, f"{n}.img") for n in ("alice", "bob")}
    for d in disks.values():
        with open(d, "wb") as f:
            f.truncate(16 * MIB)
    conf = os.path.join(root, "two.res")
    line = (f"echo out-of-sync $BSR_RESOURCE $BSR_MY_NODE_ID $BSR_PEER_NODE_ID $BSR_MINOR "
            f"$BSR_PEERS >> {out}")
    with open(conf, "w") as f:
        f.write(f"""resource r0 {{
  options {{ auto-promote no; }}
  disk {{ resync-rate 100M; c-plan-ahead 0; }}
  net {{ verify-alg crc32c; }}
  handlers {{ out-of-sync "{line}"; }}
  on alice {{ volume 0 {{ device minor 30; disk {disks['alice']}; meta-disk internal; }}
             address 127.0.0.1:{PORT + 10}; node-id 0; }}
  on bob {{ volume 0 {{ device minor 30; disk {disks['bob']}; meta-disk internal; }}
           address 127.0.0.1:{PORT + 11}; node-id 1; }}
}}
""")
    node.stop()  # this test runs its own two nodes
    a, b = Node(root, "alice", conf), Node(root, "bob", conf)
    try:
        for n in (a, b):
            n.start()
            n.adm("create-md", "r0")
            n.adm("up", "r0")
        a.adm("primary", "--force", "r0")
        st = ""
        for _ in range(300):
            st = b.adm("status", "r0").stdout
            if "disk:UpToDate" in st.splitlines()[1]:
                break
            time.sleep(0.1)
        check("disk:UpToDate" in st.splitlines()[1], f"initial sync did not finish:\n{st}")
        # Change one 4 KiB block behind bsrd's back on the Secondary.
        with open(disks["bob"], "r+b") as f:
            f.seek(1 * MIB)
            f.write(b"\xee" * 4096)
        a.adm("verify", "r0")
        want = "out-of-sync r0 0 1 30 bob"
        got = []
        for _ in range(300):
            got = open(out).read().splitlines() if os.path.exists(out) else []
            if want in got:
                break
            time.sleep(0.1)
        check(want in got, f"out-of-sync handler calls: {got}\nalice status:\n"
              f"{a.adm('status', '--verbose', 'r0', ok=False).stdout}")
    finally:
        for n in (a, b):
            n.stop()


TESTS = [test_options_paths_and_connect, test_volumes_and_peers, test_not_running_and_no_daemon,
         test_handlers, test_handler_called_by_bsrd]


def main():
    return run_tests(TESTS, Node, "bsr-adjust-test-", "adjust_test", "bsrd's run dirs")


if __name__ == "__main__":
    sys.exit(main())
