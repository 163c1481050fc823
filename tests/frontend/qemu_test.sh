#!/usr/bin/env bash
# qemu-io and qemu-img through the Unix socket (and TCP): what is written is what is
# read back and what lands in the backing file.
source "$(dirname "$0")/lib.sh"
img=$WORK/disk.img
sock=$WORK/nbd.sock
truncate -s 64M "$img"
start_server "$img" "$sock" --export disk
uri="nbd+unix:///disk?socket=$sock"

qemu-img info --output=json "$uri" | grep -q '"virtual-size": 67108864' || fail "qemu-img info size"

out=$(qemu-io -f raw "$uri" \
  -c "write -P 0xa5 0 1M" -c "write -f -P 0x5a 4M 64k" -c "write -P 0x33 1000 3333" \
  -c "flush" -c "write -z 8M 1M" -c "discard 12M 1M" \
  -c "read -P 0xa5 0 1000" -c "read -P 0x33 1000 3333" -c "read -P 0xa5 4333 4096" \
  -c "read -P 0x5a 4M 64k" -c "read -P 0 8M 1M" -c "read -P 0 12M 1M" 2>&1)
echo "$out"
grep -qi "fail\|error\|mismatch" <<<"$out" && fail "qemu-io reported a problem"
# The backing file holds the same bytes.
cmp <(head -c 1000 /dev/zero | tr '\0' '\245') <(head -c 1000 "$img") || fail "backing bytes 0..1000"
cmp <(head -c 3333 /dev/zero | tr '\0' '\063') <(tail -c +1001 "$img" | head -c 3333) || fail "backing bytes at 1000"

# qemu-io's own error path: a read past the end fails and the export keeps working.
out=$(qemu-io -f raw "$uri" -c "read 64M 4k" 2>&1 || true)
grep -qi "error\|invalid\|fail" <<<"$out" || fail "read past the end did not fail: $out"

# qemu-img convert a random image in, compare it, and convert it back out.
head -c 48M /dev/urandom >"$WORK/src.raw"
truncate -s 64M "$WORK/src.raw"
qemu-img convert -n -f raw -O raw -W -m 8 "$WORK/src.raw" "$uri" || fail "qemu-img convert in"
qemu-img compare -f raw -F raw "$WORK/src.raw" "$uri" || fail "qemu-img compare"
cmp "$WORK/src.raw" "$img" || fail "backing file differs from the converted image"
qemu-img convert -f raw -O raw "$uri" "$WORK/out.raw" || fail "qemu-img convert out"
cmp "$WORK/src.raw" "$WORK/out.raw" || fail "converted-out image differs"
stop_server "$sock"

# TCP on a port the kernel picks.
"$BSR_BIN/nbd_file_server" --file "$img" --socket "$sock" --port 0 --export disk \
  >"$WORK/server.out" 2>>"$WORK/server.log" &
SERVER_PID=$!
for _ in $(seq 400); do grep -q '^port' "$WORK/server.out" 2>/dev/null && break; sleep 0.05; done
port=$(awk '/^port/ {print $2}' "$WORK/server.out")
[[ -n "$port" ]] || fail "no TCP port printed"
qemu-io -f raw "nbd://127.0.0.1:$port/disk" -c "write -P 0x77 20M 128k" -c "read -P 0x77 20M 128k" \
  | grep -q "read 131072/131072" || fail "qemu-io over TCP"
qemu-img compare -f raw -F raw "$img" "nbd://127.0.0.1:$port/disk" || fail "compare over TCP"
stop_server "$sock"
echo "qemu tests passed"
