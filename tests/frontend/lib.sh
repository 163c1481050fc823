# Shared helpers for the frontend script tests: a temp dir, nbd_file_server start/stop.
# Source it; it sets WORK (removed on exit) and SERVER_PID.
set -euo pipefail
: "${BSR_BIN:?BSR_BIN must point at the bin directory of the build}"
WORK=$(mktemp -d /tmp/bsr-nbd-test.XXXXXX)
SERVER_PID=
cleanup() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
# python3 with the libnbd bindings (Debian's, not a pyenv one on PATH).
PY=/usr/bin/python3

fail() {
  echo "FAIL: $*" >&2
  [[ -f "$WORK/server.log" ]] && tail -20 "$WORK/server.log" >&2
  exit 1
}

# start_server FILE SOCKET [extra args...]: starts nbd_file_server, waits for the socket.
start_server() {
  local file=$1 sock=$2
  shift 2
  "$BSR_BIN/nbd_file_server" --file "$file" --socket "$sock" "$@" >"$WORK/server.out" \
    2>>"$WORK/server.log" &
  SERVER_PID=$!
  for _ in $(seq 400); do  # 20 s: CI machines can be very loaded
    [[ -S "$sock" ]] && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || fail "nbd_file_server exited early"
    sleep 0.05
  done
  fail "socket $sock did not appear"
}

# stop_server: SIGTERM, expect a clean exit 0 and the socket gone.
stop_server() {
  local sock=${1:-}
  kill -TERM "$SERVER_PID"
  local rc=0
  wait "$SERVER_PID" || rc=$?
  SERVER_PID=
  [[ $rc -eq 0 ]] || fail "nbd_file_server exited with $rc after SIGTERM"
  if [[ -n "$sock" && -e "$sock" ]]; then fail "socket $sock left behind"; fi
}
