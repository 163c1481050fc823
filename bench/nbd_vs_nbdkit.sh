#!/usr/bin/env bash
# fio through NBD against bsr's nbd_file_server and against `nbdkit file` on the same
# backing file in the same run; prints each metric and the ratio bsr/nbdkit.
# Usage: bench/nbd_vs_nbdkit.sh [BUILD_DIR] [SECONDS_PER_JOB]
# Modes: "buffered" (bsr --cache buffered, the default for files, vs nbdkit's default
# page-cache I/O: like for like) and "direct" (bsr --cache direct vs the same nbdkit).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
secs=${2:-8}
server=$build/bin/nbd_file_server
[[ -x $server ]] || { echo "build nbd_file_server first ($server)" >&2; exit 1; }
command -v nbdkit >/dev/null && command -v fio >/dev/null || { echo "needs nbdkit and fio" >&2; exit 1; }
work=$(mktemp -d /tmp/bsr-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
img=$work/disk.img
size=1G
# A fully written file, so neither server pays for block allocation.
dd if=/dev/zero of="$img" bs=1M count=1024 status=none conv=fsync

wait_sock() { for _ in $(seq 200); do [[ -S $1 ]] && return 0; sleep 0.05; done; echo "no $1" >&2; exit 1; }

# run_fio NAME URI ARGS... -> json file
run_fio() {
  local name=$1 uri=$2
  shift 2
  fio --name="$name" --ioengine=nbd --uri="$uri" --size=$size --time_based --runtime="$secs" \
    --ramp_time=1 --randrepeat=0 --norandommap --output-format=json "$@" \
    --output="$work/$name.json" >/dev/null
}

# Each job runs on both servers back to back, after writing back dirty pages, and the
# order alternates, so neither server inherits the other's writeback.
bench_pair() {  # JOB ORDER FIO_ARGS...
  local job=$1 order=$2
  shift 2
  local tags=(bsr nbdkit)
  [[ $order == 1 ]] && tags=(nbdkit bsr)
  for tag in "${tags[@]}"; do
    sync
    run_fio "$tag-$job" "${uri[$tag]}" "$@"
  done
}

report() {  # MODE
  /usr/bin/python3 - "$work" "$1" <<'PY'
import json, sys, os
work, mode = sys.argv[1], sys.argv[2]
def job(name):
    with open(os.path.join(work, name + ".json")) as f:
        return json.load(f)["jobs"][0]["write"]
rows = []
for tag in ("bsr", "nbdkit"):
    seq, qd1, qd32 = job(f"{tag}-seq"), job(f"{tag}-qd1"), job(f"{tag}-qd32")
    pct = qd1["clat_ns"]["percentile"]
    rows.append({
        "seq 1M write MiB/s": seq["bw"] / 1024,
        "4k randwrite QD1 IOPS": qd1["iops"],
        "4k randwrite QD1 p50 us": pct["50.000000"] / 1000,
        "4k randwrite QD1 p99 us": pct["99.000000"] / 1000,
        "4k randwrite QD32 IOPS": qd32["iops"],
    })
print(f"\n== mode {mode} ==")
print(f"{'metric':28} {'bsr':>12} {'nbdkit':>12} {'bsr/nbdkit':>11}")
for k in rows[0]:
    b, n = rows[0][k], rows[1][k]
    # For latencies lower is better: the ratio is nbdkit/bsr so >1 still means bsr wins.
    ratio = (n / b if b else 0) if k.endswith(" us") else (b / n if n else 0)
    print(f"{k:28} {b:12.1f} {n:12.1f} {ratio:10.2f}x")
PY
}

for mode in buffered direct; do
  extra=(--cache "$mode")
  "$server" --file "$img" --socket "$work/bsr.sock" --log-level warn "${extra[@]}" &
  pids+=($!)
  nbdkit --foreground --exit-with-parent -U "$work/kit.sock" file file="$img" &
  pids+=($!)
  wait_sock "$work/bsr.sock"
  wait_sock "$work/kit.sock"
  declare -A uri=([bsr]="nbd+unix:///bsr?socket=$work/bsr.sock"
                   [nbdkit]="nbd+unix:///?socket=$work/kit.sock")
  bench_pair seq 0 --rw=write --bs=1M --iodepth=8
  bench_pair qd1 1 --rw=randwrite --bs=4k --iodepth=1
  bench_pair qd32 0 --rw=randwrite --bs=4k --iodepth=32
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  pids=()
  rm -f "$work/bsr.sock" "$work/kit.sock"
  report "$mode"
done
echo "(latency rows: ratio is nbdkit/bsr, so > 1.0x means bsr is faster there too)"
