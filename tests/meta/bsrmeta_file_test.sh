#!/usr/bin/env bash
# bsrmeta on plain files: internal, flex-external and indexed meta data; create-md output
# and refusals, dump -> restore -> dump, corruption messages, wipe-md, check-resize.
set -euo pipefail
BSRMETA="${BSR_BIN:?}/bsrmeta"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export BSR_STATE_DIR="$work/state"
pass=0
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { pass=$((pass + 1)); }
expect_rc() {  # expect_rc RC OUTFILE cmd...
  local want=$1 out=$2; shift 2
  set +e
  "$@" >"$out" 2>&1
  local rc=$?
  set -e
  [[ $rc == "$want" ]] || { cat "$out" >&2; fail "'$*' exited $rc, expected $want"; }
  ok
}

# --- internal on a plain file -------------------------------------------------------------
disk="$work/disk.img"
truncate -s 256M "$disk"
expect_rc 0 "$work/out" "$BSRMETA" 2 bsr1 "$disk" internal create-md 2 --node-id=0
diff -u - "$work/out" <<'OUT' || fail "create-md output differs from seed 002"
initializing activity log
NOT initializing bitmap
Writing meta data...
New bsr meta data block successfully created.
OUT
ok
expect_rc 20 "$work/out" "$BSRMETA" 2 bsr1 "$disk" internal create-md 2
grep -q "found existing bsr meta data" "$work/out" || fail "no reason for refusing"
grep -q -- "--force" "$work/out" || fail "refusal does not mention --force"
expect_rc 0 "$work/out" "$BSRMETA" --force 2 bsr1 "$disk" internal create-md 2 --node-id=0
expect_rc 0 "$work/dump1" "$BSRMETA" 2 bsr1 "$disk" internal dump-md
grep -qx "max-peers 2" "$work/dump1" || fail "dump lacks max-peers"
grep -qx "node-id 0" "$work/dump1" || fail "dump lacks node-id"
grep -qx "current-uuid 0x0000000000000004" "$work/dump1" || fail "dump lacks current uuid"
expect_rc 0 "$work/out" "$BSRMETA" 2 bsr1 "$disk" internal get-gi
grep -qx "0000000000000004:0000000000000000:0000000000000000:0000000000000000:0:0:0:0:1:0:0:0:0:0:0:0" \
  "$work/out" || fail "get-gi: $(cat "$work/out")"

# A dump with peers, bitmaps and UUIDs: restore, dump again, identical.
size=$(grep '^data-size' "$work/dump1" | cut -d' ' -f2)
cat >"$work/edited" <<EOF2
# edited by hand
version bsr1
placement internal
max-peers 2
node-id 0
data-size $size
al-stripes 1
al-stripe-size-kB 32
al-extents 6001
peer-max-bio-size 1048576
flags consistent,was-up-to-date,al-clean
current-uuid 0x6B4F9A2C11D0E581
history-uuid 0 0x00000000000000A1
history-uuid 1 0x00000000000000A0
peer 0 node-id 1 bitmap-uuid 0x00000000000000A1 flags connected-once
bitmap 0 set 0 10
bitmap 0 set 4096 1024
peer 1 node-id 2 bitmap-uuid 0x0000000000000000 flags outdated,connected-once
end
EOF2
expect_rc 0 "$work/out" "$BSRMETA" 2 bsr1 "$disk" internal restore-md "$work/edited"
expect_rc 0 "$work/dump2" "$BSRMETA" 2 bsr1 "$disk" internal dump-md
grep -v '^#' "$work/edited" | diff -u - <(grep -v '^#' "$work/dump2") || fail "restored dump differs"
ok
expect_rc 0 "$work/out" "$BSRMETA" 2 bsr1 "$disk" internal restore-md "$work/dump2"
expect_rc 0 "$work/dump3" "$BSRMETA" 2 bsr1 "$disk" internal dump-md
cmp "$work/dump2" "$work/dump3" || fail "dump -> restore -> dump not identical"
ok
expect_rc 0 "$work/out" "$BSRMETA" 2 bsr1 "$disk" internal get-gi --node-id=1
grep -qx "6B4F9A2C11D0E581:00000000000000A1:00000000000000A1:00000000000000A0:1:1:0:0:1:0:0:0:0:0:0:1" \
  "$work/out" || fail "get-gi --node-id=1: $(cat "$work/out")"
expect_rc 0 "$work/out" "$BSRMETA" 2 bsr1 "$disk" internal show-gi --node-id=2
grep -q "Current data generation UUID" "$work/out" || fail "show-gi lacks the legend"
grep -q "peer node-id 2 (slot 1): 0 out-of-sync" "$work/out" || fail "show-gi lacks peer line"
expect_rc 10 "$work/out" "$BSRMETA" 2 bsr1 "$disk" internal get-gi --node-id=5

# Bad dumps change nothing.
head -n 12 "$work/dump2" >"$work/truncated"
expect_rc 1 "$work/out" "$BSRMETA" 2 bsr1 "$disk" internal restore-md "$work/truncated"
grep -q "truncated" "$work/out" || fail "truncated dump not named: $(cat "$work/out")"
sed 's/^data-size .*/data-size 4096/' "$work/dump2" >"$work/wrongsize"
expect_rc 1 "$work/out" "$BSRMETA" 2 bsr1 "$disk" internal restore-md "$work/wrongsize"
sed 's/^bitmap 0 set 4096 1024/bitmap 0 set 4096 99999999/' "$work/dump2" >"$work/badrun"
expect_rc 1 "$work/out" "$BSRMETA" 2 bsr1 "$disk" internal restore-md "$work/badrun"
grep -q "line" "$work/out" || fail "bad run line not named"
expect_rc 0 "$work/dump4" "$BSRMETA" 2 bsr1 "$disk" internal dump-md
cmp "$work/dump2" "$work/dump4" || fail "a refused restore changed the meta data"
ok

# Flipped bits: the error names the block.
devsize=$(stat -c %s "$disk")
flip() {  # flip OFFSET
  local b
  b=$(od -An -tu1 -j "$1" -N1 "$disk" | tr -d ' ')
  printf "$(printf '\\%03o' $((b ^ 16)))" | dd of="$disk" bs=1 seek="$1" conv=notrunc status=none
}
al_block3=$((devsize - 4096 - 32768 + 3 * 4096 + 100))
flip $al_block3
expect_rc 10 "$work/out" "$BSRMETA" 2 bsr1 "$disk" internal dump-md
grep -q "activity log block 3 .*crc32c mismatch" "$work/out" || fail "AL flip: $(cat "$work/out")"
expect_rc 10 "$work/out" "$BSRMETA" 2 bsr1 "$disk" internal apply-al
grep -q "apply-al --force salvages" "$work/out" || fail "no salvage hint: $(cat "$work/out")"
expect_rc 0 "$work/out" "$BSRMETA" 2 bsr1 "$disk" internal apply-al --force
grep -q "whole device marked out of sync" "$work/out" || fail "salvage: $(cat "$work/out")"
expect_rc 0 "$work/out" "$BSRMETA" 2 bsr1 "$disk" internal dump-md
grep -qx "bitmap 0 set 0 $((size / 4096))" "$work/out" || fail "salvage did not mark all"
grep -qx "bitmap 1 set 0 $((size / 4096))" "$work/out" || fail "salvage did not mark slot 1"
expect_rc 0 "$work/out" "$BSRMETA" 2 bsr1 "$disk" internal restore-md "$work/dump2"
bm0=$((devsize - 4096 - 32768 - 2 * 3 * 4096 + 500))  # slot 0, block 0 (3 blocks per peer)
flip $bm0
expect_rc 10 "$work/out" "$BSRMETA" 2 bsr1 "$disk" internal dump-md
grep -q "bitmap block 0 of peer slot 0: crc32c mismatch" "$work/out" || fail "bitmap flip: $(cat "$work/out")"
flip $bm0
sb1=$((devsize - 4096 + 2048 + 64))
flip $sb1
expect_rc 0 "$work/out" "$BSRMETA" 2 bsr1 "$disk" internal dump-md
grep -q "warning: superblock copy 1 ignored: superblock: crc32c mismatch" "$work/out" ||
  fail "one bad superblock copy not reported: $(cat "$work/out")"
flip $((devsize - 4096 + 64))
expect_rc 10 "$work/out" "$BSRMETA" 2 bsr1 "$disk" internal dump-md
grep -q "both superblock copies invalid" "$work/out" || fail "sb flip: $(cat "$work/out")"
expect_rc 0 "$work/out" "$BSRMETA" 2 bsr1 "$disk" internal restore-md "$work/dump2"
expect_rc 0 "$work/dump5" "$BSRMETA" 2 bsr1 "$disk" internal dump-md
cmp "$work/dump2" "$work/dump5" || fail "restore after corruption differs"
ok

# apply-al on clean meta data, check-resize before and after growing the file.
expect_rc 0 "$work/out" "$BSRMETA" 2 bsr1 "$disk" internal apply-al
grep -q "meta data was clean" "$work/out" || fail "apply-al: $(cat "$work/out")"
expect_rc 0 "$work/out" "$BSRMETA" 2 bsr1 "$disk" internal check-resize
grep -q "nothing to do" "$work/out" || fail "check-resize: $(cat "$work/out")"
truncate -s 512M "$disk"
expect_rc 10 "$work/out" "$BSRMETA" 2 bsr1 "$disk" internal dump-md
grep -q "check-resize" "$work/out" || fail "no check-resize hint: $(cat "$work/out")"
expect_rc 0 "$work/out" "$BSRMETA" 2 bsr1 "$disk" internal check-resize
grep -q "moved meta data" "$work/out" || fail "check-resize did not move: $(cat "$work/out")"
expect_rc 0 "$work/dump6" "$BSRMETA" 2 bsr1 "$disk" internal dump-md
grep -qx "current-uuid 0x6B4F9A2C11D0E581" "$work/dump6" || fail "UUID lost by the move"
newsize=$(grep '^data-size' "$work/dump6" | cut -d' ' -f2)
((newsize > size)) || fail "data size did not grow ($size -> $newsize)"
grep -qx "bitmap 0 set 4096 1024" "$work/dump6" || fail "bitmap lost by the move"
grep -qx "bitmap 0 set $((size / 4096)) $(((newsize - size) / 4096))" "$work/dump6" ||
  fail "new area not out of sync: $(grep '^bitmap 0' "$work/dump6")"
ok

# wipe-md
expect_rc 0 "$work/out" "$BSRMETA" 2 bsr1 "$disk" internal wipe-md
expect_rc 10 "$work/out" "$BSRMETA" 2 bsr1 "$disk" internal dump-md
grep -q "no bsr meta data found" "$work/out" || fail "after wipe: $(cat "$work/out")"
expect_rc 0 "$work/out" "$BSRMETA" 2 bsr1 "$disk" internal wipe-md
grep -q "no bsr meta data to wipe" "$work/out" || fail "second wipe: $(cat "$work/out")"

# --- file system signatures ---------------------------------------------------------------
fs="$work/fs.img"
truncate -s 64M "$fs"
if command -v mkfs.ext4 >/dev/null; then
  mkfs.ext4 -q -F "$fs"
  expect_rc 20 "$work/out" "$BSRMETA" 3 bsr1 "$fs" internal create-md
  grep -q "ext2/ext3/ext4 file system at offset 1080" "$work/out" || fail "ext4 not detected"
  expect_rc 0 "$work/out" "$BSRMETA" 3 bsr1 "$fs" internal create-md --force
fi
truncate -s 0 "$fs" && truncate -s 64M "$fs"
if command -v mkswap >/dev/null; then
  mkswap -q "$fs" >/dev/null 2>&1 || mkswap "$fs" >/dev/null
  expect_rc 20 "$work/out" "$BSRMETA" 3 bsr1 "$fs" internal create-md
  grep -q "swap space" "$work/out" || fail "swap not detected"
fi
if command -v mkfs.xfs >/dev/null; then
  truncate -s 0 "$fs" && truncate -s 320M "$fs"
  mkfs.xfs -q -f "$fs"
  expect_rc 20 "$work/out" "$BSRMETA" 3 bsr1 "$fs" internal create-md
  grep -q "xfs file system" "$work/out" || fail "xfs not detected"
fi

# --- external: flex and indexed -----------------------------------------------------------
meta="$work/meta.img"
# Seed 001: 36 KiB + size/32K x peers; 2 peers, 1 GiB of data -> 100 KiB (+ 4 KiB rounding).
truncate -s $((36 * 1024 + 2 * 8 * 4096)) "$meta"
expect_rc 0 "$work/out" "$BSRMETA" 4 bsr1 "$meta" flex-external create-md 2 --data-size=$((1 << 30))
expect_rc 0 "$work/out" "$BSRMETA" 4 bsr1 "$meta" flexible dump-md
grep -qx "placement flex-external" "$work/out" || fail "flex dump"
capacity=$((8 * 32512 * 4096))
grep -qx "data-size $capacity" "$work/out" || fail "flex data size bound: $(grep data-size "$work/out")"
expect_rc 1 "$work/out" "$BSRMETA" 4 bsr1 "$meta" internal dump-md
grep -q "created as flex-external, not internal" "$work/out" || fail "placement mismatch not named"
indexed="$work/indexed.img"
truncate -s 384M "$indexed"
expect_rc 0 "$work/out" "$BSRMETA" 5 bsr1 "$indexed" 0 create-md 1 --data-size=$((1 << 30))
expect_rc 0 "$work/out" "$BSRMETA" 6 bsr1 "$indexed" 2 create-md 1 --node-id=3 --al-extents=1237 \
  --al-stripes=2 --al-stripe-size-kB=64
expect_rc 0 "$work/out" "$BSRMETA" 6 bsr1 "$indexed" 2 dump-md
grep -qx "al-extents 1237" "$work/out" && grep -qx "al-stripes 2" "$work/out" &&
  grep -qx "al-stripe-size-kB 64" "$work/out" || fail "AL options not stored"
expect_rc 10 "$work/out" "$BSRMETA" 6 bsr1 "$indexed" 1 dump-md
expect_rc 1 "$work/out" "$BSRMETA" 6 bsr1 "$indexed" 3 create-md
grep -q "index 3 needs" "$work/out" || fail "index beyond device not named"
expect_rc 0 "$work/out" "$BSRMETA" 5 bsr1 "$indexed" 0 dump-md
grep -qx "data-size $((1 << 30))" "$work/out" || fail "indexed data size"

# --- command-line errors ------------------------------------------------------------------
expect_rc 1 "$work/out" "$BSRMETA" 2 v09 "$disk" internal create-md
grep -q "unsupported meta data format 'v09'" "$work/out" || fail "format not named"
expect_rc 1 "$work/out" "$BSRMETA" 2 bsr1 "$disk" inside dump-md
grep -q "bad meta-data index 'inside'" "$work/out" || fail "index not named"
expect_rc 1 "$work/out" "$BSRMETA" 2 bsr1 "$disk" internal frobnicate
grep -q "unknown command 'frobnicate'" "$work/out" || fail "command not named"
expect_rc 1 "$work/out" "$BSRMETA" 2 bsr1 "$disk"
grep -q "usage" "$work/out" || fail "no usage"
expect_rc 1 "$work/out" "$BSRMETA" 2 bsr1 "$disk" internal create-md 40
expect_rc 1 "$work/out" "$BSRMETA" 2 bsr1 "$disk" internal create-md --al-extents=5
expect_rc 1 "$work/out" "$BSRMETA" 2 bsr1 "$disk" internal create-md --al-extents=9000
grep -q "919" "$work/out" || fail "al-extents limit not explained: $(cat "$work/out")"
expect_rc 10 "$work/out" "$BSRMETA" 2 bsr1 "$work/missing" internal dump-md

# --- outdate / invalidate on a detached disk (bsradm's fallback without bsrd) -----------
od="$work/od.img"
truncate -s 64M "$od"
expect_rc 0 "$work/out" "$BSRMETA" 3 bsr1 "$od" internal create-md 2 --node-id=0
expect_rc 20 "$work/out" "$BSRMETA" 3 bsr1 "$od" internal outdate
grep -q "outdate refused: the disk is Inconsistent" "$work/out" || fail "outdate reason: $(cat "$work/out")"
expect_rc 0 "$work/odd" "$BSRMETA" 3 bsr1 "$od" internal dump-md
sed -i 's/^flags .*/flags consistent,was-up-to-date,al-clean/' "$work/odd"
expect_rc 0 "$work/out" "$BSRMETA" --force 3 bsr1 "$od" internal restore-md "$work/odd"
expect_rc 0 "$work/out" "$BSRMETA" 3 bsr1 "$od" internal outdate
expect_rc 0 "$work/out" "$BSRMETA" 3 bsr1 "$od" internal dump-md
grep -qx "flags consistent,al-clean" "$work/out" || fail "outdate left flags: $(grep flags "$work/out")"
expect_rc 0 "$work/out" "$BSRMETA" 3 bsr1 "$od" internal invalidate
expect_rc 0 "$work/out" "$BSRMETA" 3 bsr1 "$od" internal dump-md
grep -qx "flags al-clean" "$work/out" || fail "invalidate left flags: $(grep flags "$work/out")"
expect_rc 20 "$work/out" "$BSRMETA" 3 bsr1 "$od" internal outdate

echo "$pass passed, 0 failed"
