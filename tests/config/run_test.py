#!/usr/bin/env python3
"""bsradm without -d: runs the planned bsrsetup/bsrmeta calls in order, finds them next
to its own binary, stops at the first failure with that call's exit status, and refuses
to start (running nothing) when a tool is missing.

bsradm is copied into a temporary directory together with stand-in bsrsetup/bsrmeta
scripts that append their argv to a log and fail when asked to.
Prints 'N passed, N failed'.
"""
import glob
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.abspath(os.environ.get("BSR_BIN", os.path.join(HERE, "..", "..", "build", "bin")))
CONF = os.path.join(HERE, "corpus", "03_basic_two_node.res")

TOOL = """#!/bin/sh
echo "${{0##*/}} $*" >> "{log}"
case "$*" in *{fail}*) echo "${{0##*/}}: refused $*" >&2; exit 17;; esac
exit 0
"""


def main():
    passed = failed = 0

    def check(name, cond, detail=""):
        nonlocal passed, failed
        if cond:
            passed += 1
            print(f"ok   {name}")
        else:
            failed += 1
            print(f"FAIL {name} {detail}")

    with tempfile.TemporaryDirectory() as d:
        adm = os.path.join(d, "bsradm")
        shutil.copy(os.path.join(BIN, "bsradm"), adm)
        log = os.path.join(d, "log")
        env = {"PATH": "/nonexistent", "HOME": d}

        # 1. No bsrsetup anywhere: clear message, nothing run.
        p = subprocess.run([adm, "-c", CONF, "--node", "alice", "up", "r0"], capture_output=True, text=True, env=env)
        check("missing bsrsetup refused", p.returncode == 20 and "bsrsetup not found" in p.stderr,
              f"rc={p.returncode} err={p.stderr!r}")

        # 2. Tools next to bsradm: every planned call runs, in the printed order.
        for tool in ("bsrsetup", "bsrmeta"):
            with open(os.path.join(d, tool), "w") as f:
                f.write(TOOL.format(log=log, fail="attach"))
            os.chmod(os.path.join(d, tool), 0o755)
        dry = subprocess.run([adm, "-c", CONF, "--node", "alice", "-d", "connect", "r0"], capture_output=True,
                             text=True, env=env).stdout.splitlines()
        p = subprocess.run([adm, "-c", CONF, "--node", "alice", "connect", "r0"], capture_output=True, text=True,
                           env=env)
        ran = open(log).read().splitlines() if os.path.exists(log) else []
        check("connect runs the plan", p.returncode == 0 and ran == dry, f"rc={p.returncode} ran={ran} dry={dry}")

        # 3. up stops at the failing attach with its exit status; connect never runs.
        os.unlink(log)
        dry = subprocess.run([adm, "-c", CONF, "--node", "alice", "-d", "up", "r0"], capture_output=True,
                             text=True, env=env).stdout.splitlines()
        p = subprocess.run([adm, "-c", CONF, "--node", "alice", "up", "r0"], capture_output=True, text=True, env=env)
        ran = open(log).read().splitlines()
        upto = next(i for i, l in enumerate(dry) if " attach " in l)
        check("up stops at first failure", p.returncode == 17 and ran == dry[: upto + 1],
              f"rc={p.returncode} ran={ran}")
        check("failure names the call", "bsrsetup attach 2" in p.stderr and "exit code 17" in p.stderr, p.stderr)

        # 4. Fallback pairs: bsrmeta runs only when bsrsetup failed.
        os.unlink(log)
        with open(os.path.join(d, "bsrsetup"), "w") as f:
            f.write(TOOL.format(log=log, fail="show-gi"))
        p = subprocess.run([adm, "-c", CONF, "--node", "alice", "show-gi", "r0"], capture_output=True, text=True,
                           env=env)
        ran = open(log).read().splitlines()
        check("show-gi falls back to bsrmeta", p.returncode == 0 and len(ran) == 2 and ran[1].startswith("bsrmeta"),
              f"rc={p.returncode} ran={ran}")
        os.unlink(log)
        with open(os.path.join(d, "bsrsetup"), "w") as f:
            f.write(TOOL.format(log=log, fail="no-such-word"))
        p = subprocess.run([adm, "-c", CONF, "--node", "alice", "show-gi", "r0"], capture_output=True, text=True,
                           env=env)
        ran = open(log).read().splitlines()
        check("no fallback after success", p.returncode == 0 and len(ran) == 1, f"ran={ran}")

        # 5. IP verification when the node comes from uname -n: a config naming this
        # host with an address it does not have is refused.
        node = os.uname().nodename
        conf = os.path.join(d, "ipv.res")
        with open(conf, "w") as f:
            f.write(f"resource r {{ device minor 1; disk /dev/x; meta-disk internal;\n"
                    f"  on {node} {{ node-id 0; address 192.0.2.77:7000; }}\n"
                    f"  on other {{ node-id 1; address 192.0.2.78:7000; }} }}\n")
        p = subprocess.run([adm, "-c", conf, "-d", "up", "r"], capture_output=True, text=True, env=env)
        check("ip verification", p.returncode == 10 and "IP 192.0.2.77 not found on this host" in p.stderr
              and p.stderr.startswith(conf + ":2:3:"), p.stderr)
        with open(conf, "w") as f:
            f.write(f"global {{ disable-ip-verification; }}\n"
                    f"resource r {{ device minor 1; disk /dev/x; meta-disk internal;\n"
                    f"  on {node} {{ node-id 0; address 192.0.2.77:7000; }}\n"
                    f"  on other {{ node-id 1; address 192.0.2.78:7000; }} }}\n")
        p = subprocess.run([adm, "-c", conf, "-d", "up", "r"], capture_output=True, text=True, env=env)
        check("disable-ip-verification", p.returncode == 0 and "new-resource r 0" in p.stdout, p.stderr)

        # 6. floating sections: the one whose address is on this host is local.
        with open(conf, "w") as f:
            f.write("resource fl { device minor 3; disk /dev/x; meta-disk internal;\n"
                    "  floating 127.0.0.1:7000 { node-id 4; }\n"
                    "  floating 192.0.2.9:7000 { node-id 5; } }\n")
        p = subprocess.run([adm, "-c", conf, "-d", "up", "fl"], capture_output=True, text=True, env=env)
        check("floating local by address", p.returncode == 0 and "new-resource fl 4" in p.stdout
              and "new-path fl 5 ipv4:127.0.0.1:7000 ipv4:192.0.2.9:7000" in p.stdout, p.stdout + p.stderr)

        # 7. Handlers (bsrd's usermode helper calls): $BSR_CONFIG instead of -c, the
        # resource's command over common's, run by /bin/sh -c with the caller's
        # environment, exit status passed back; none configured -> exit 0, silent.
        out = os.path.join(d, "handler.out")
        hconf = os.path.join(d, "h.res")
        with open(hconf, "w") as f:
            f.write("common { handlers { before-resync-target \"exit 9\"; fence-peer \"exit 4\"; } }\n"
                    "resource r { device minor 1; disk /dev/x; meta-disk internal;\n"
                    f"  handlers {{ before-resync-target \"echo $BSR_RESOURCE $BSR_PEER_NODE_ID > {out}; exit 5\"; }}\n"
                    "  on alice { node-id 0; address 192.0.2.1:7000; }\n"
                    "  on bob { node-id 1; address 192.0.2.2:7000; } }\n")
        henv = dict(env, PATH="/usr/bin:/bin", BSR_CONFIG=hconf, BSR_RESOURCE="r", BSR_PEER_NODE_ID="1")
        p = subprocess.run([adm, "before-resync-target", "r"], capture_output=True, text=True, env=henv)
        got = open(out).read().split() if os.path.exists(out) else []
        check("handler runs with the caller's environment", p.returncode == 5 and got == ["r", "1"],
              f"rc={p.returncode} got={got} err={p.stderr!r}")
        p = subprocess.run([adm, "fence-peer", "r/0"], capture_output=True, text=True, env=henv)
        check("handler inherited from common", p.returncode == 4, f"rc={p.returncode} {p.stderr!r}")
        p = subprocess.run([adm, "split-brain", "r"], capture_output=True, text=True, env=henv)
        check("no handler configured: exit 0, silent", p.returncode == 0 and p.stdout == p.stderr == "",
              f"rc={p.returncode} {p.stdout!r} {p.stderr!r}")
        if not os.path.exists("/etc/bsr.conf") and not glob.glob("/etc/bsr.d/*.res"):
            nenv = {k: v for k, v in henv.items() if k != "BSR_CONFIG"}
            p = subprocess.run([adm, "before-resync-source", "r"], capture_output=True, text=True, env=nenv)
            check("no configuration at all: handler not run, exit 0", p.returncode == 0
                  and "no configuration, handler before-resync-source not run" in p.stderr,
                  f"rc={p.returncode} {p.stderr!r}")
            p = subprocess.run([adm, "before-resync-source", "r"], capture_output=True, text=True,
                               env=dict(nenv, BSR_CONFIG=os.path.join(d, "missing.conf")))
            check("a missing $BSR_CONFIG is an error", p.returncode == 10, f"rc={p.returncode} {p.stderr!r}")
        p = subprocess.run([adm, "-d", "fence-peer", "r"], capture_output=True, text=True, env=henv)
        check("-d prints the handler command", p.returncode == 0 and p.stdout == "exit 4\n", p.stdout)
        with open(hconf) as f:
            text = f.read()
        with open(hconf, "w") as f:
            f.write(text.replace("handlers {", "handlers { after-resync-target \"echo $BSR_CONF $BSR_MINOR_0 "
                                 f"$BSR_BACKING_DEV_0 $BSR_PEERS $BSR_PEER_ADDRESS $BSR_MY_ADDRESS > {out}\";", 1))
        p = subprocess.run([adm, "after-resync-target", "r"], capture_output=True, text=True,
                           env=dict(henv, BSR_NODE="alice"))
        got = open(out).read().split()
        check("handler environment from the config", p.returncode == 0 and
              got == [hconf, "1", "/dev/x", "bob", "192.0.2.2", "192.0.2.1"], f"rc={p.returncode} got={got}")
        bad = os.path.join(d, "bad.res")
        with open(bad, "w") as f:
            f.write("resource r { handlers { fence-peer; } }\n")
        p = subprocess.run([adm, "fence-peer", "r"], capture_output=True, text=True, env=dict(henv, BSR_CONFIG=bad))
        check("bad $BSR_CONFIG: exit 10 naming the file", p.returncode == 10 and p.stderr.startswith(bad + ":"),
              f"rc={p.returncode} {p.stderr!r}")

        # 8. adjust asks the daemon (`bsrsetup show --json`) and runs only the difference.
        show = os.path.join(d, "show.json")
        with open(os.path.join(d, "bsrsetup"), "w") as f:
            f.write(f"""#!/bin/sh
if [ "$1 $2" = "show --json" ]; then /bin/cat "{show}"; exit 0; fi
echo "${{0##*/}} $*" >> "{log}"
exit 0
""")
        with open(show, "w") as f:
            f.write("""[{"name": "r0", "node_id": 0, "options": {},
  "volumes": [{"volume": 0, "minor": 2, "attached": true, "disk": "/dev/sdb1",
               "meta_disk": "/dev/sdb1", "meta_index": "internal", "disk_options": {"al-extents": "3389"}}],
  "connections": [{"peer_node_id": 1, "name": "bob", "cstate": "StandAlone",
                   "net": {"protocol": "C", "ping-timeout": "10"},
                   "paths": [{"local": "ipv4:10.1.1.31:7789", "remote": "ipv4:10.1.1.32:7789"}],
                   "peer_devices": [{"volume": 0, "options": {"resync-rate": "20M", "c-plan-ahead": "0"}}]}]}]
""")
        os.unlink(log)
        p = subprocess.run([adm, "-c", CONF, "--node", "alice", "-d", "adjust", "r0"], capture_output=True,
                           text=True, env=env)
        want = ["bsrsetup peer-device-options r0 1 0 --resync-rate=10M", "bsrsetup connect r0 1"]
        check("adjust -d plans the difference", p.returncode == 0 and p.stdout.splitlines() == want,
              f"rc={p.returncode} {p.stdout!r} {p.stderr!r}")
        p = subprocess.run([adm, "-c", CONF, "--node", "alice", "adjust", "r0"], capture_output=True, text=True,
                           env=env)
        ran = open(log).read().splitlines() if os.path.exists(log) else []
        check("adjust runs the difference", p.returncode == 0 and ran == want, f"rc={p.returncode} ran={ran}")
        with open(show, "w") as f:
            f.write("[{")
        p = subprocess.run([adm, "-c", CONF, "--node", "alice", "-d", "adjust", "r0"], capture_output=True,
                           text=True, env=env)
        check("adjust: a broken show reply is an error", p.returncode == 20 and "not JSON" in p.stderr,
              f"rc={p.returncode} {p.stderr!r}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
