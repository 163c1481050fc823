#!/usr/bin/python3
"""Acknowledged-write checker: a workload writes self-describing 4 KiB blocks through NBD
and journals (fsync'd, in the test directory) which writes were issued and which were
acknowledged; after a crash and failover the verifier reads every block back and proves
that no acknowledged write was lost and no block is torn or corrupt.

Block layout (4096 bytes, big-endian):
  0  magic  b"BSRACK01"
  8  u64    byte offset of this block on the volume
  16 u64    sequence number of the write (global, increasing; 0 = never written)
  24 u32    index of this block inside its write
  28 u32    number of blocks of the write
  32 ...    random filler
  4092 u32  crc32 of bytes 0..4091
A block of zeroes is the volume's initial content (sequence 0).

Journal (text, one record a line, appended and fdatasync'd after each batch):
  I <seq> <first block> <nblocks>   issued (written before the request is sent)
  A <seq>                           acknowledged by the server
  F <seq> <reason>                  failed (error reply or connection lost)

Writes in flight never overlap, so for each block the writes are ordered by sequence
number. After a crash block b may hold: the last acknowledged write of b, or a later
issued (unacknowledged) write of b; when no write of b was acknowledged in this cycle,
also the value it had before the cycle (the baseline). Anything else is a loss (an older
value) or corruption (bad magic, offset, crc).

Used as a library by fault_test.py (run_writer, verify_volume) and as a program:
  ack_checker.py write SOCKET JOURNAL --blocks N --first-seq S [--qd Q] [--seconds T]
                [--seed X]
"""

import argparse
import os
import random
import struct
import sys
import time
import zlib

BLOCK = 4096
MAGIC = b"BSRACK01"
HEADER = struct.Struct(">8sQQII")
FILLER = BLOCK - HEADER.size - 4


def make_block(offset, seq, index, count):
    body = HEADER.pack(MAGIC, offset, seq, index, count) + os.urandom(FILLER)
    return body + struct.pack(">I", zlib.crc32(body))


def parse_block(data, offset):
    """(seq, problem): seq 0 for a zero block; problem is None or what is wrong."""
    if data == bytes(BLOCK):
        return 0, None
    magic, off, seq, index, count = HEADER.unpack_from(data)
    if magic != MAGIC:
        return None, "no magic (foreign or torn data)"
    (crc,) = struct.unpack_from(">I", data, BLOCK - 4)
    if crc != zlib.crc32(data[:BLOCK - 4]):
        return None, f"crc mismatch (torn block; header says seq {seq})"
    if off != offset:
        return None, f"block carries offset {off} (misdirected write of seq {seq})"
    if index >= count or seq == 0:
        return None, f"bad header: seq {seq} index {index}/{count}"
    return seq, None


class Journal:
    def __init__(self, path):
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.pending = []

    def add(self, line):
        self.pending.append(line + "\n")

    def write_now(self, line):
        """Into the file (page cache) at once: a reader sees it even if we are killed."""
        self.sync(durable=False)
        os.write(self.fd, (line + "\n").encode())

    def sync(self, durable=True):
        if self.pending:
            os.write(self.fd, "".join(self.pending).encode())
            self.pending = []
        if durable:
            os.fdatasync(self.fd)

    def close(self):
        self.sync()
        os.close(self.fd)


def read_journal(path):
    """{seq: (first block, nblocks)}, set of acked seqs, {seq: failure reason}."""
    issued, acked, failed = {}, set(), {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if not parts or not line.endswith("\n"):
                continue  # a torn last line can only be an unsynced record
            if parts[0] == "I":
                issued[int(parts[1])] = (int(parts[2]), int(parts[3]))
            elif parts[0] == "A":
                acked.add(int(parts[1]))
            elif parts[0] == "F":
                failed[int(parts[1])] = " ".join(parts[2:])
    return issued, acked, failed


def run_writer(sock, journal_path, blocks, first_seq, qd=16, seconds=30.0, hot=256,
               export="r0/0", seed=None):
    """Write tagged blocks with up to qd requests in flight until the connection dies
    or `seconds` pass. Returns (issued, acked, failed) counts."""
    import nbd

    rng = random.Random(seed)
    h = nbd.NBD()
    h.set_export_name(export)
    h.connect_unix(sock)
    j = Journal(journal_path)
    busy = set()
    inflight = {}  # cookie -> (seq, first, n, buffer)
    seq = first_seq
    n_issued = n_acked = n_failed = 0
    deadline = time.monotonic() + seconds
    alive = True
    try:
        while alive and (inflight or time.monotonic() < deadline):
            while alive and len(inflight) < qd and time.monotonic() < deadline:
                n = rng.choice((1, 1, 1, 1, 2, 4, 16))
                area = hot if rng.random() < 0.5 else blocks
                first = rng.randrange(0, min(area, blocks) - n + 1)
                rng_blocks = range(first, first + n)
                if any(b in busy for b in rng_blocks):
                    continue
                data = b"".join(make_block(b * BLOCK, seq, i, n) for i, b in enumerate(rng_blocks))
                j.write_now(f"I {seq} {first} {n}")  # in the file before the request leaves
                buf = nbd.Buffer.from_bytearray(data)
                # One write in ten with FUA: it must be stable on every peer too.
                flags = nbd.CMD_FLAG_FUA if rng.random() < 0.1 else 0
                try:
                    cookie = h.aio_pwrite(buf, first * BLOCK, flags=flags)
                except nbd.Error as e:
                    j.add(f"F {seq} submit: {e}")
                    n_failed += 1
                    alive = False
                    break
                busy.update(rng_blocks)
                inflight[cookie] = (seq, first, n, buf)
                seq += 1
                n_issued += 1
            if not inflight:
                break
            try:
                h.poll(1000)
            except nbd.Error:
                alive = False
            for cookie in list(inflight):
                s, first, n, _ = inflight[cookie]
                try:
                    done = h.aio_command_completed(cookie)
                except nbd.Error as e:
                    j.add(f"F {s} {str(e).split(chr(10))[0]}")
                    n_failed += 1
                    done = True
                else:
                    if done:
                        j.add(f"A {s}")
                        n_acked += 1
                if done:
                    del inflight[cookie]
                    busy.difference_update(range(first, first + n))
            j.sync()
            if not alive:
                for s, *_ in inflight.values():
                    j.add(f"F {s} connection lost")
                    n_failed += 1
                break
    finally:
        j.close()
        try:
            h.shutdown()
        except Exception:
            pass
    return n_issued, n_acked, n_failed


def verify_volume(read, size, baseline, journal_paths):
    """Check every block of a volume of `size` bytes. read(offset, length) returns the
    bytes; baseline maps block -> seq it held before these journals (absent: 0).
    Returns (stats, problems, new_baseline)."""
    issued, acked = {}, set()
    for p in journal_paths:
        i, a, _ = read_journal(p)
        issued.update(i)
        acked |= a
    per_block = {}  # block -> sorted [(seq, acked)]
    for s, (first, n) in issued.items():
        for b in range(first, first + n):
            per_block.setdefault(b, []).append((s, s in acked))
    stats = {"issued": len(issued), "acked": len(acked), "blocks": size // BLOCK,
             "verified": 0, "lost": 0, "corrupt": 0, "unacked_new": 0, "unacked_old": 0}
    problems = []
    new_baseline = dict(baseline)
    chunk = 1 << 20
    for pos in range(0, size, chunk):
        data = read(pos, min(chunk, size - pos))
        for k in range(0, len(data), BLOCK):
            b = (pos + k) // BLOCK
            seq, problem = parse_block(data[k:k + BLOCK], pos + k)
            writes = sorted(per_block.get(b, []))
            base = baseline.get(b, 0)
            if problem:
                stats["corrupt"] += 1
                problems.append(f"block {b}: {problem}")
                continue
            acked_seqs = [s for s, a in writes if a]
            floor = acked_seqs[-1] if acked_seqs else base
            allowed = {s for s, _ in writes if s >= floor} | {floor}
            if seq not in allowed:
                if seq < floor:
                    stats["lost"] += 1
                    problems.append(f"block {b}: acknowledged write seq {floor} lost, "
                                    f"reads seq {seq}")
                else:
                    stats["corrupt"] += 1
                    problems.append(f"block {b}: reads seq {seq}, never issued for it")
                continue
            if acked_seqs:
                stats["verified"] += 1
            if seq > floor:
                stats["unacked_new"] += 1
            elif any(s > floor for s, _ in writes):
                stats["unacked_old"] += 1
            new_baseline[b] = seq
    return stats, problems, new_baseline


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write", help="run the tagged-block workload until the server dies")
    w.add_argument("socket")
    w.add_argument("journal")
    w.add_argument("--blocks", type=int, required=True)
    w.add_argument("--first-seq", type=int, required=True)
    w.add_argument("--qd", type=int, default=16)
    w.add_argument("--seconds", type=float, default=30.0)
    w.add_argument("--export", default="r0/0")
    w.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    if args.cmd == "write":
        i, a, f = run_writer(args.socket, args.journal, args.blocks, args.first_seq,
                             qd=args.qd, seconds=args.seconds, export=args.export,
                             seed=args.seed)
        print(f"issued {i} acked {a} failed {f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
