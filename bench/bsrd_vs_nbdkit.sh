#!/usr/bin/env bash
# fio through NBD against bsrd (one node, standalone: internal metadata, activity log)
# and against `nbdkit file` on the same backing file, in the same run; prints each
# metric and the ratio bsrd/nbdkit. bsrd's backing I/O mode is its default (page cache
# for a file); BSR_BACKING_CACHE=direct (or buffered) in the environment overrides it,
# BSR_BACKING_INLINE=BYTES the cap for page-cache I/O done inline (0: all through io_uring).
# Usage: bench/bsrd_vs_nbdkit.sh [BUILD_DIR] [SECONDS_PER_JOB]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
secs=${2:-8}
bin=$build/bin
for p in bsrd bsrsetup bsrmeta; do
  [[ -x $bin/$p ]] || { echo "build $p first ($bin/$p)" >&2; exit 1; }
done
work=$(mktemp -d /tmp/bsrd-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
img=$work/disk.img
# Fully written, so neither server pays for block allocation.
dd if=/dev/zero of="$img" bs=1M count=1100 status=none conv=fsync
"$bin/bsrmeta" --force 0 bsr1 "$img" internal create-md 1 --node-id=0 >/dev/null

export BSR_RUN_DIR=$work/run
"$bin/bsrd" --no-kernel-device --log-level warn &
pids+=($!)
for _ in $(seq 200); do [[ -S $BSR_RUN_DIR/bsrd.sock ]] && break; sleep 0.05; done
S=$bin/bsrsetup
$S new-resource r0 0
$S new-minor r0 0 0
$S attach 0 "$img" "$img" internal
$S primary r0 --force
nbdkit --foreground --exit-with-parent -U "$work/kit.sock" file file="$img" &
pids+=($!)
for _ in $(seq 200); do [[ -S $work/kit.sock ]] && break; sleep 0.05; done

declare -A uri=([bsrd]="nbd+unix:///r0/0?socket=$BSR_RUN_DIR/r0/0.sock"
                [nbdkit]="nbd+unix:///?socket=$work/kit.sock")
run_fio() {  # NAME URI ARGS...
  local name=$1 u=$2
  shift 2
  fio --name="$name" --ioengine=nbd --uri="$u" --size=1G --time_based --runtime="$secs" \
    --ramp_time=1 --randrepeat=0 --norandommap --output-format=json "$@" \
    --output="$work/$name.json" >/dev/null
}
# Cold start for every run: dirty pages written back and the image's page cache
# dropped (only this file's), so neither server inherits the other's cache state
# (large folios left by a sequential job make 4 KiB writes into them costly in ext4).
cold() {
  sync
  /usr/bin/python3 -c 'import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)' "$img"
}
# Each job runs four times, A B B A, so drift in the machine's load hits both sides;
# the report averages each side's two runs.
pair() {  # JOB ORDER FIO_ARGS...
  local job=$1 order=$2
  shift 2
  local tags=(bsrd nbdkit nbdkit bsrd)
  [[ $order == 1 ]] && tags=(nbdkit bsrd bsrd nbdkit)
  local seen=()
  for t in "${tags[@]}"; do
    local i=1
    [[ " ${seen[*]} " == *" $t "* ]] && i=2
    seen+=("$t")
    cold
    run_fio "$t-$job-$i" "${uri[$t]}" "$@"
  done
}
pair seq 0 --rw=write --bs=1M --iodepth=8
pair qd1 1 --rw=randwrite --bs=4k --iodepth=1
pair qd32 0 --rw=randwrite --bs=4k --iodepth=32

echo "load $(cut -d' ' -f1-3 /proc/loadavg); bsrd backing I/O: ${BSR_BACKING_CACHE:-auto}, inline up to ${BSR_BACKING_INLINE:-65536 (default)} bytes"
/usr/bin/python3 - "$work" <<'PY'
import json, os, sys
work = sys.argv[1]
def job(name):
    with open(os.path.join(work, name + ".json")) as f:
        return json.load(f)["jobs"][0]["write"]
def metrics(tag, i):
    seq, qd1, qd32 = job(f"{tag}-seq-{i}"), job(f"{tag}-qd1-{i}"), job(f"{tag}-qd32-{i}")
    pct = qd1["clat_ns"]["percentile"]
    return {"seq 1M write MiB/s": seq["bw"] / 1024,
            "4k randwrite QD1 IOPS": qd1["iops"],
            "4k randwrite QD1 p50 us": pct["50.000000"] / 1000,
            "4k randwrite QD1 p99 us": pct["99.000000"] / 1000,
            "4k randwrite QD32 IOPS": qd32["iops"]}
rows = []
for tag in ("bsrd", "nbdkit"):
    a, b = metrics(tag, 1), metrics(tag, 2)
    rows.append({k: (a[k] + b[k]) / 2 for k in a})
print(f"{'metric':28} {'bsrd':>12} {'nbdkit':>12} {'bsrd/nbdkit':>12}")
for k in rows[0]:
    b, n = rows[0][k], rows[1][k]
    ratio = (n / b if b else 0) if k.endswith(" us") else (b / n if n else 0)
    print(f"{k:28} {b:12.1f} {n:12.1f} {ratio:11.2f}x")
print("(latency rows: nbdkit/bsrd, so > 1.0x means bsrd is faster)")
PY
