#!/usr/bin/env bash
# nbdcopy (multi-conn) and fio's nbd engine through the Unix socket, verified against
# the source data and the backing file.
source "$(dirname "$0")/lib.sh"
img=$WORK/disk.img
sock=$WORK/nbd.sock
truncate -s 128M "$img"
start_server "$img" "$sock"
uri="nbd+unix:///bsr?socket=$sock"

head -c 96M /dev/urandom >"$WORK/src.raw"
truncate -s 128M "$WORK/src.raw"
nbdcopy --connections=4 --requests=16 "$WORK/src.raw" "$uri" || fail "nbdcopy in"
cmp "$WORK/src.raw" "$img" || fail "backing file differs after nbdcopy"
nbdcopy "$uri" "$WORK/out.raw" || fail "nbdcopy out"
cmp "$WORK/src.raw" "$WORK/out.raw" || fail "nbdcopy round trip differs"

# fio: random writes at depth 16 with crc32c verification read back through NBD.
fio --verify_state_save=0 --name=verify --ioengine=nbd --uri="$uri" --rw=randwrite --bs=4k --size=32M \
  --iodepth=16 --verify=crc32c --do_verify=1 --verify_fatal=1 --output="$WORK/fio.txt" ||
  { cat "$WORK/fio.txt"; fail "fio randwrite+verify"; }
grep -q "err= 0" "$WORK/fio.txt" || { cat "$WORK/fio.txt"; fail "fio reported errors"; }
# Mixed sequential 1 MiB writes with FUA-less flushes every 16 writes, verified.
fio --verify_state_save=0 --name=seq --ioengine=nbd --uri="$uri" --rw=write --bs=1M --size=64M --offset=64M \
  --iodepth=4 --fsync=16 --verify=md5 --do_verify=1 --verify_fatal=1 \
  --output="$WORK/fio2.txt" || { cat "$WORK/fio2.txt"; fail "fio seq write+verify"; }
# fio's data is in the backing file: a read through NBD equals the file.
qemu-img compare -f raw -F raw "$img" "$uri" || fail "NBD view differs from the backing file"
stop_server "$sock"
echo "nbdcopy and fio tests passed"
