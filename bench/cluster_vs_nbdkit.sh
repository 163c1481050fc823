#!/usr/bin/env bash
# Two-node protocol C bsr (bsrd per network namespace, veth link) vs nbdkit in the same
# run: fio (seq 1 MiB BW, 4 KiB QD1 p50/p99, QD32 IOPS), initial full sync vs nbdcopy
# between two nbdkit servers across the same link, resync bytes vs changed data.
# Usage (root): bench/cluster_vs_nbdkit.sh [BUILD_DIR] [SECONDS_PER_FIO_JOB]
# Environment: BENCH_VOLUME_MIB (1024), BSR_NETNS_PREFIX (bsrpf), BSR_NET (10.97),
# BENCH_PARTS (sync,fio,resync: any subset; "fio" alone skips nbdcopy, not the sync). The sync
# part also times a second full sync (invalidate-remote) against a second nbdcopy (rewrites).
# BENCH_REF=qemu (or quorum, mirror) adds qemu-storage-daemon mirrors over the same link as
# further columns of the fio part (and the mirror job's initial sync); BENCH_QEMU_AIO=threads;
# BENCH_REF=tcp adds fio straight to an nbdkit in node1 (the network round trip alone);
# BENCH_REF=pair adds fio to the local nbdkit and to one in node1 at once (two plain servers).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
for p in bsrd bsrsetup bsrmeta; do
  [[ -x $build/bin/$p ]] || { echo "build $p first ($build/bin/$p)" >&2; exit 1; }
done
exec /usr/bin/python3 "$root/bench/cluster_vs_nbdkit.py" "$build" "${2:-8}"
