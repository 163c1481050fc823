#!/usr/bin/env bash
# bsrmeta on loop block devices (BLKGETSIZE64 sizing, O_EXCL): internal meta data on the
# data device, and flex-external meta data on a second device. Needs root and losetup;
# exits 77 (skipped) without them. Detaches exactly the devices it attached.
set -euo pipefail
BSRMETA="${BSR_BIN:?}/bsrmeta"
if [[ $(id -u) != 0 ]] || ! command -v losetup >/dev/null; then
  echo "skipped: needs root and losetup"
  exit 77
fi
work=$(mktemp -d)
export BSR_STATE_DIR="$work/state"
loops=()
cleanup() {
  for l in "${loops[@]}"; do losetup -d "$l" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
attach() {  # attach FILE -> prints the device name
  local dev
  dev=$(losetup -f --show "$1") || { echo "skipped: losetup failed" >&2; exit 77; }
  loops+=("$dev")
  LAST_LOOP=$dev
}
pass=0
fail() { echo "FAIL: $*" >&2; exit 1; }
expect_rc() {
  local want=$1 out=$2; shift 2
  set +e
  "$@" >"$out" 2>&1
  local rc=$?
  set -e
  [[ $rc == "$want" ]] || { cat "$out" >&2; fail "'$*' exited $rc, expected $want"; }
  pass=$((pass + 1))
}

truncate -s 128M "$work/data.img"
truncate -s 1M "$work/meta.img"
attach "$work/data.img"; data=$LAST_LOOP
attach "$work/meta.img"; meta=$LAST_LOOP
[[ -b $data && -b $meta ]] || fail "loop devices missing"

# Internal: meta data at the end of the block device; size from BLKGETSIZE64.
expect_rc 0 "$work/out" "$BSRMETA" 7 bsr1 "$data" internal create-md 1 --node-id=1
grep -qx "New bsr meta data block successfully created." "$work/out" || fail "create-md"
expect_rc 0 "$work/d1" "$BSRMETA" 7 bsr1 "$data" internal dump-md
# 128 MiB: 1 superblock block + 8 AL blocks + 2 bitmap blocks (32768 bits).
grep -qx "data-size $((128 * 1024 * 1024 - 11 * 4096))" "$work/d1" || fail "internal size: $(grep data-size "$work/d1")"
# The meta data is really on the device: read it back through the file behind it.
tail -c 4096 "$work/data.img" | head -c 4 | grep -q "BSRS" || fail "superblock magic not at the end"
expect_rc 0 "$work/out" "$BSRMETA" 7 bsr1 "$data" internal restore-md "$work/d1"
expect_rc 0 "$work/d2" "$BSRMETA" 7 bsr1 "$data" internal dump-md
cmp "$work/d1" "$work/d2" || fail "loop: dump -> restore -> dump differs"
pass=$((pass + 1))
expect_rc 0 "$work/out" "$BSRMETA" 7 bsr1 "$data" internal apply-al
expect_rc 0 "$work/out" "$BSRMETA" 7 bsr1 "$data" internal get-gi
grep -q "^0000000000000004:" "$work/out" || fail "get-gi on loop"

# A mounted-style claim: O_EXCL refuses a device that another holder has open exclusively.
if command -v mkfs.ext4 >/dev/null && mkdir -p "$work/mnt" && mkfs.ext4 -q -F "$meta" 2>/dev/null &&
  mount "$meta" "$work/mnt" 2>/dev/null; then
  expect_rc 20 "$work/out" "$BSRMETA" --force 8 bsr1 "$meta" flex-external create-md 1
  grep -q "in use" "$work/out" || fail "busy device not named: $(cat "$work/out")"
  umount "$work/mnt"
  expect_rc 20 "$work/out" "$BSRMETA" 8 bsr1 "$meta" flex-external create-md 1
  grep -q "ext2/ext3/ext4" "$work/out" || fail "ext4 on loop not detected"
fi

# Flex-external on the second loop device.
expect_rc 0 "$work/out" "$BSRMETA" --force 8 bsr1 "$meta" flex-external create-md 2 \
  --data-size=$((128 * 1024 * 1024))
expect_rc 0 "$work/e1" "$BSRMETA" 8 bsr1 "$meta" flex-external dump-md
grep -qx "data-size $((128 * 1024 * 1024))" "$work/e1" || fail "external size"
expect_rc 0 "$work/out" "$BSRMETA" 8 bsr1 "$meta" flex-external restore-md "$work/e1"
expect_rc 0 "$work/e2" "$BSRMETA" 8 bsr1 "$meta" flex-external dump-md
cmp "$work/e1" "$work/e2" || fail "external dump -> restore -> dump differs"
pass=$((pass + 1))
expect_rc 0 "$work/out" "$BSRMETA" 8 bsr1 "$meta" flex-external wipe-md
expect_rc 10 "$work/out" "$BSRMETA" 8 bsr1 "$meta" flex-external dump-md
expect_rc 0 "$work/out" "$BSRMETA" 7 bsr1 "$data" internal wipe-md
expect_rc 10 "$work/out" "$BSRMETA" 7 bsr1 "$data" internal dump-md

echo "$pass passed, 0 failed"
