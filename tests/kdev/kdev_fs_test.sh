#!/usr/bin/env bash
# /dev/bsrN through FUSE + loop with a real filesystem: kdev_file_server serves a backing
# file; mkfs.ext4, mount, write, sync, umount on <dev-dir>/bsr5; the backing file is then
# checked with e2fsck and debugfs; a restart finds the files; teardown while mounted is
# refused; after kill -9 the cleanup leaves no loop device, FUSE mount or link behind.
# Needs root, /dev/fuse, loop devices and e2fsprogs; exits 77 (skipped) without them.
set -euo pipefail
SERVER="${BSR_BIN:?}/kdev_file_server"
if [[ $(id -u) != 0 || ! -c /dev/fuse || ! -c /dev/loop-control ]] ||
  ! command -v mkfs.ext4 >/dev/null || ! command -v debugfs >/dev/null; then
  echo "skipped: needs root, /dev/fuse, /dev/loop-control and e2fsprogs"
  exit 77
fi
work=$(mktemp -d /tmp/bsr-kdev.XXXXXX)
state=$work/state dev=$work/dev mnt=$work/mnt
mkdir -p "$state" "$dev" "$mnt"
pid=""
pass=0
fail() {
  echo "FAIL: $*" >&2
  for f in "$work"/err.*; do [[ -f $f ]] && { echo "--- $f" >&2; tail -20 "$f" >&2; }; done
  exit 1
}
ok() { pass=$((pass + 1)); echo "ok: $*"; }
cleanup() {
  mountpoint -q "$mnt" && umount "$mnt" 2>/dev/null
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  # Whatever is still bound to or mounted under this test's state dir goes too.
  "$SERVER" --cleanup --state-dir "$state" --dev-dir "$dev" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

run=0
start_server() {
  run=$((run + 1))
  "$SERVER" --file "$work/disk.img" --minor 5 --resource r0 --volume 0 \
    --state-dir "$state" --dev-dir "$dev" >"$work/out.$run" 2>"$work/err.$run" &
  pid=$!
  for _ in $(seq 100); do
    grep -q '^ready ' "$work/out.$run" && break
    kill -0 "$pid" 2>/dev/null || fail "server exited: $(cat "$work/err.$run")"
    sleep 0.1
  done
  grep -q '^ready ' "$work/out.$run" || fail "server not ready after 10 s"
  loop=$(readlink "$dev/bsr5")
  [[ -b $loop ]] || fail "$dev/bsr5 -> '$loop' is not a block device"
}
stop_server() {
  kill -TERM "$pid"
  local rc=0
  wait "$pid" || rc=$?
  pid=""
  [[ $rc == 0 ]] || fail "server exited $rc on SIGTERM"
  grep -qx stopped "$work/out.$run" || fail "server did not report a clean stop"
}
# No loop device bound to, and no mount below, this test's directory.
assert_nothing_left() {
  for f in /sys/block/loop*/loop/backing_file; do
    [[ -f $f ]] || continue
    if grep -q "^$work/" "$f" 2>/dev/null; then fail "$1: $(dirname "$(dirname "$f")") still bound: $(cat "$f")"; fi
  done
  if grep -q " $work/" /proc/self/mountinfo; then fail "$1: mount left: $(grep " $work/" /proc/self/mountinfo)"; fi
  [[ ! -e $dev/bsr5 && ! -L $dev/bsr5 && ! -e $dev/bsr ]] || fail "$1: links left: $(ls -R "$dev")"
}

truncate -s 256M "$work/disk.img"
head -c $((6 * 1024 * 1024 + 123)) /dev/urandom >"$work/a.src"

# 1. The device and its links.
start_server
[[ $(readlink "$dev/bsr/by-res/r0/0") == "$loop" ]] || fail "by-res link"
idx=${loop#/dev/loop}
[[ $(cat "/sys/block/loop$idx/loop/dio") == 1 ]] || fail "loop$idx without direct I/O"
[[ $(cat "/sys/block/loop$idx/loop/backing_file") == "$state/kdev/bsr5/disk" ]] || fail "backing file"
[[ $(blockdev --getsize64 "$dev/bsr5") == $((256 * 1024 * 1024)) ]] || fail "device size"
ok "bsr5 -> $loop, direct I/O on, 256 MiB"

# 2. A filesystem on it.
mkfs.ext4 -q -F "$dev/bsr5" || fail "mkfs.ext4"
mount "$dev/bsr5" "$mnt" || fail "mount"
cp "$work/a.src" "$mnt/a"
mkdir "$mnt/d"
echo "bsr kernel device" >"$mnt/d/b"
sync -f "$mnt/a"
ok "mkfs, mount, write, sync"

# 3. Teardown while mounted is refused, and nothing changes.
kill -TERM "$pid"
for _ in $(seq 50); do grep -q '^refused: ' "$work/out.$run" && break; sleep 0.1; done
grep -q '^refused: .*in use' "$work/out.$run" || fail "teardown while mounted was not refused"
kill -0 "$pid" || fail "server exited after a refused teardown"
[[ $(readlink "$dev/bsr5") == "$loop" ]] || fail "link changed by a refused teardown"
cmp "$work/a.src" "$mnt/a" || fail "file differs after a refused teardown"
echo more >"$mnt/d/c"
sync
ok "teardown refused while mounted: $(grep '^refused' "$work/out.$run")"

# 4. Unmount and stop; the data is in the backing file.
umount "$mnt"
stop_server
assert_nothing_left "after stop"
grep -Eq 'fsyncs=[1-9]' "$work/err.$run" || fail "no fsync reached the export: $(grep fsyncs "$work/err.$run")"
e2fsck -fn "$work/disk.img" >"$work/fsck" 2>&1 || { cat "$work/fsck" >&2; fail "e2fsck"; }
debugfs -R "dump /a $work/a.out" "$work/disk.img" 2>/dev/null
cmp "$work/a.src" "$work/a.out" || fail "debugfs: /a differs from what was written"
[[ $(debugfs -R "cat /d/b" "$work/disk.img" 2>/dev/null) == "bsr kernel device" ]] || fail "debugfs /d/b"
[[ $(debugfs -R "cat /d/c" "$work/disk.img" 2>/dev/null) == "more" ]] || fail "debugfs /d/c"
ok "stopped clean; e2fsck clean; debugfs finds the files ($(grep -o 'reads=.*' "$work/err.$run"))"

# 5. Restart: the files are intact.
start_server
mount "$dev/bsr5" "$mnt" || fail "mount after restart"
cmp "$work/a.src" "$mnt/a" || fail "/a differs after restart"
[[ $(cat "$mnt/d/b") == "bsr kernel device" ]] || fail "/d/b after restart"
rm "$mnt/a"
fstrim "$mnt" >/dev/null 2>&1 || true
umount "$mnt"
stop_server
assert_nothing_left "after second stop"
e2fsck -fn "$work/disk.img" >"$work/fsck" 2>&1 || { cat "$work/fsck" >&2; fail "e2fsck after restart"; }
ok "restart, mount, files intact, e2fsck clean"

# 6. kill -9 leaves the loop device, the FUSE mount and the links; the cleanup removes them.
start_server
dd if=/dev/urandom of="$dev/bsr5" bs=64k count=16 seek=100 oflag=direct status=none
kill -KILL "$pid"
wait "$pid" 2>/dev/null || true
pid=""
grep -q "$state/kdev/bsr5" /proc/self/mountinfo || fail "expected a stale FUSE mount after kill -9"
[[ -n $(grep -l "^$state/" /sys/block/loop*/loop/backing_file 2>/dev/null) ]] || fail "expected a stale loop device"
"$SERVER" --cleanup --state-dir "$state" --dev-dir "$dev" >"$work/cleanup" 2>&1 || { cat "$work/cleanup" >&2; fail "cleanup"; }
grep -q "detached $loop" "$work/cleanup" || fail "cleanup did not detach $loop: $(cat "$work/cleanup")"
assert_nothing_left "after cleanup"
ok "kill -9 then cleanup: $(grep -c cleaned "$work/cleanup") things removed"

# 7. kill -9 while mounted: the loop device is set to detach on its last close.
start_server
mount "$dev/bsr5" "$mnt" || fail "mount for kill -9"
kill -KILL "$pid"
wait "$pid" 2>/dev/null || true
pid=""
rc=0
"$SERVER" --cleanup --state-dir "$state" --dev-dir "$dev" >"$work/cleanup" 2>&1 || rc=$?
[[ $rc == 1 ]] && grep -q "problem: .*detaches on its last close" "$work/cleanup" ||
  fail "cleanup while mounted: rc $rc: $(cat "$work/cleanup")"
umount "$mnt"
for _ in $(seq 50); do [[ -f /sys/block/${loop#/dev/}/loop/backing_file ]] || break; sleep 0.1; done
[[ ! -f /sys/block/${loop#/dev/}/loop/backing_file ]] || fail "$loop still bound after umount"
assert_nothing_left "after umount of a killed server's device"
ok "kill -9 while mounted: cleanup reports it, the device goes with the umount"

echo "$pass passed, 0 failed"
