#!/usr/bin/python3
"""libnbd (the library behind nbdsh) against nbd_file_server: handshake facts, data
round trips, pipelined aio, two connections at once, errors that leave the
connection usable, raw protocol violations, refused opens. Run with Debian's python3."""
import errno
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

import nbd

BIN = os.environ["BSR_BIN"]
SIZE = 64 << 20
MiB = 1 << 20
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, flush=True)


def start(work, name, *extra):
    img = os.path.join(work, name + ".img")
    if not os.path.exists(img):
        with open(img, "wb") as f:
            f.truncate(SIZE)
    sock = os.path.join(work, name + ".sock")
    log = open(os.path.join(work, name + ".log"), "w")
    proc = subprocess.Popen([os.path.join(BIN, "nbd_file_server"), "--file", img,
                             "--socket", sock, "--export", "bsr", *extra],
                            stdout=subprocess.DEVNULL, stderr=log)
    for _ in range(1000):  # 20 s: CI machines can be very loaded
        if os.path.exists(sock):
            return proc, img, sock
        if proc.poll() is not None:
            raise SystemExit("nbd_file_server exited early")
        time.sleep(0.02)
    raise SystemExit("socket did not appear")


def stop(proc, sock):
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=20)
    check(rc == 0, f"server exit code {rc} after SIGTERM")
    check(not os.path.exists(sock), "socket removed on exit")


def connect(sock, name="bsr"):
    h = nbd.NBD()
    h.set_export_name(name)
    h.connect_unix(sock)
    return h


def expect_error(fn, want, what):
    try:
        fn()
    except nbd.Error as e:
        check(e.errnum == want, f"{what}: errno {e.errnum} ({e}), want {want}")
        return
    check(False, f"{what}: no error")


def raw_handshake(sock):
    """Fixed-newstyle handshake by hand, NBD_OPT_GO on 'bsr'; returns the socket."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(sock)
    greet = recv_exact(s, 18)
    assert greet[:8] == b"NBDMAGIC" and greet[8:16] == b"IHAVEOPT"
    s.sendall(struct.pack(">I", 3))
    data = struct.pack(">I", 3) + b"bsr" + struct.pack(">H", 0)
    s.sendall(b"IHAVEOPT" + struct.pack(">II", 7, len(data)) + data)
    while True:
        hdr = recv_exact(s, 20)
        _, _, rtype, length = struct.unpack(">QIII", hdr)
        recv_exact(s, length)
        if rtype != 3:
            assert rtype == 1, f"GO reply {rtype:#x}"
            return s


def recv_exact(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            return out
        out += chunk
    return out


def main():
    work = tempfile.mkdtemp(prefix="bsr-nbdsh-")
    proc, img, sock = start(work, "main", "--description", "bsr test disk")
    try:
        h = connect(sock)
        check(h.get_size() == SIZE, "size")
        check(h.can_multi_conn(), "CAN_MULTI_CONN")
        check(h.can_fua() and h.can_flush() and h.can_trim() and h.can_zero(), "flags")
        check(not h.is_read_only(), "not read-only")
        check(h.get_block_size(nbd.SIZE_MAXIMUM) == 32 * MiB, "max block size")
        check(h.get_block_size(nbd.SIZE_MINIMUM) == 1, "min block size")

        # Round trips, aligned and not, with FUA.
        data = random.randbytes(3 * MiB + 123)
        h.pwrite(data, 4096 + 7, nbd.CMD_FLAG_FUA)
        check(h.pread(len(data), 4096 + 7) == data, "pread after pwrite")
        h.flush()
        with open(img, "rb") as f:
            f.seek(4096 + 7)
            check(f.read(len(data)) == data, "backing file holds the written bytes")

        # Trim and write-zeroes read back as zeroes; NO_HOLE keeps them allocated.
        h.trim(MiB, 8 * MiB)
        check(h.pread(MiB, 8 * MiB) == bytes(MiB), "trim reads zeroes")
        h.pwrite(b"\xff" * MiB, 10 * MiB)
        h.zero(MiB, 10 * MiB, nbd.CMD_FLAG_NO_HOLE)
        check(h.pread(MiB, 10 * MiB) == bytes(MiB), "zero NO_HOLE reads zeroes")
        h.pwrite(b"\xff" * MiB, 12 * MiB)
        h.zero(MiB, 12 * MiB, nbd.CMD_FLAG_FUA)
        check(h.pread(MiB, 12 * MiB) == bytes(MiB), "zero reads zeroes")

        # Pipelined aio: 64 writes in flight, then 64 reads, all complete correctly.
        blocks = {i: random.randbytes(65536) for i in range(64)}
        cookies = [h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(b)), 20 * MiB + i * 65536)
                   for i, b in blocks.items()]
        check(h.aio_in_flight() > 1, "requests pipelined")
        while h.aio_in_flight() > 0:
            h.poll(-1)
        for c in cookies:
            check(h.aio_command_completed(c), "aio write completed")
        bufs = {i: nbd.Buffer(65536) for i in blocks}
        cookies = [h.aio_pread(bufs[i], 20 * MiB + i * 65536) for i in blocks]
        while h.aio_in_flight() > 0:
            h.poll(-1)
        for c in cookies:
            h.aio_command_completed(c)
        check(all(bufs[i].to_bytearray() == blocks[i] for i in blocks), "aio reads match")

        # Two connections at once: FUA write on one is visible on the other.
        h2 = connect(sock, "")  # the default export
        h.pwrite(b"multi-conn", 30 * MiB, nbd.CMD_FLAG_FUA)
        check(h2.pread(10, 30 * MiB) == b"multi-conn", "second connection sees the write")
        h2.pwrite(b"back", 30 * MiB + 100)
        h2.flush()
        check(h.pread(4, 30 * MiB + 100) == b"back", "first connection sees the write")

        # Bad requests get errors; the connection survives.
        h.set_strict_mode(0)
        expect_error(lambda: h.pread(4096, SIZE - 512), errno.EINVAL, "read past the end")
        expect_error(lambda: h.pwrite(b"x" * 4096, SIZE - 512), errno.ENOSPC, "write past the end")
        expect_error(lambda: h.zero(4096, SIZE), errno.ENOSPC, "zero past the end")
        expect_error(lambda: h.trim(4096, SIZE + 4096), errno.EINVAL, "trim past the end")
        expect_error(lambda: h.pread(40 * MiB, 0), errno.EOVERFLOW, "oversized read")
        expect_error(lambda: h.pwrite(bytes(40 * MiB), 0), errno.EOVERFLOW, "oversized write")
        check(h.pread(10, 30 * MiB) == b"multi-conn", "connection works after errors")
        with open(img, "rb") as f:
            check(f.read(4096 + 7)[:4096] == bytes(4096), "oversized write changed nothing")

        # Option haggling: LIST, INFO, then GO.
        o = nbd.NBD()
        o.set_opt_mode(True)
        o.connect_unix(sock)
        names = []
        o.opt_list(lambda name, desc: names.append((name, desc)))
        check(names == [("bsr", "bsr test disk")], f"NBD_OPT_LIST {names}")
        o.set_export_name("bsr")
        o.opt_info()
        check(o.get_size() == SIZE, "NBD_OPT_INFO size")
        o.set_export_name("missing")
        try:
            o.opt_info()
            check(False, "INFO on a missing export succeeded")
        except nbd.Error:
            pass
        o.set_export_name("bsr")
        o.opt_go()
        check(o.pread(4, 30 * MiB + 100) == b"back", "GO after INFO works")
        o.shutdown()

        # Raw protocol violation: bad magic closes that connection only.
        s = raw_handshake(sock)
        s.sendall(b"\xde\xad\xbe\xef" * 7)
        check(recv_exact(s, 1) == b"", "bad magic closes the connection")
        s.close()
        # A write whose payload exceeds what the server will drain also closes it.
        s = raw_handshake(sock)
        s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 1, 1, 0, 0xFFFFFFF0))
        check(recv_exact(s, 1) == b"", "huge write payload closes the connection")
        s.close()
        # Unknown command: EINVAL reply, then the connection still serves.
        s = raw_handshake(sock)
        s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 42, 0xabc, 0, 512))
        magic, err, cookie = struct.unpack(">IIQ", recv_exact(s, 16))
        check((magic, err, cookie) == (0x67446698, 22, 0xabc), "unknown command gets EINVAL")
        s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 0, 0xdef, 30 * MiB, 10))
        magic, err, cookie = struct.unpack(">IIQ", recv_exact(s, 16))
        check(err == 0 and cookie == 0xdef and recv_exact(s, 10) == b"multi-conn",
              "raw read after an error")
        s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 2, 0, 0, 0))  # NBD_CMD_DISC
        check(recv_exact(s, 1) == b"", "DISC closes")
        s.close()
        check(h.pread(10, 30 * MiB) == b"multi-conn", "other connection unaffected")
        h.shutdown()
        h2.shutdown()
    finally:
        stop(proc, sock)

    # An export that refuses every open (a Secondary) answers GO with its message.
    proc, img, sock = start(work, "refuse", "--refuse", "r0 is Secondary")
    try:
        try:
            connect(sock)
            check(False, "refused export connected")
        except nbd.Error as e:
            print("refused as expected:", e)
            check("policy" in str(e), f"refusal reported as policy: {e}")
    finally:
        stop(proc, sock)

    # Read-only and a minimum block size: writes get EPERM, unaligned requests EINVAL.
    proc, img, sock = start(work, "ro", "--read-only", "--min-block", "4096")
    try:
        h = connect(sock)
        check(h.is_read_only(), "READ_ONLY flag")
        check(h.get_block_size(nbd.SIZE_MINIMUM) == 4096, "min block 4096")
        h.set_strict_mode(0)
        expect_error(lambda: h.pwrite(bytes(4096), 0), errno.EPERM, "write on read-only")
        expect_error(lambda: h.pread(100, 4096), errno.EINVAL, "unaligned read")
        check(h.pread(4096, 0) == bytes(4096), "aligned read on read-only")
        h.shutdown()
    finally:
        stop(proc, sock)

    print(f"{'FAILED' if failures else 'passed'}: {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
