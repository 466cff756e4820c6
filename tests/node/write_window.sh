#!/bin/bash
# write_window.sh RAFTFS — big pipelined writes with a full window in flight
# (fs/fuse_write.c: up to 16 MiB per file, 64 MiB per mount, each write(2)
# answered once proposed):
#  1. fsync waits for every write in flight: a writer makes 48 MiB of 1 MiB
#     writes, fsyncs, and its node is killed -9 the moment fsync returned
#     (the writer itself sends the signal); every byte must be on the
#     survivors. Once through a follower's mount, once through the leader's.
#  2. the window drains when the cluster loses its quorum mid-stream: a
#     writer that keeps writing gets an error within a bounded time instead
#     of hanging on a full window; once the others are back, fsync of that
#     file returns (nothing of the lost writes is still counted in flight)
#     and the file takes 80 MiB more (more than the mount's window).
# The whole script is one block, parsed before any of it runs (tests/FLAKY.md).
{
set -euo pipefail
. "$(dirname "$0")/../mount/lib.sh"
up
head -c $((48 << 20)) /dev/urandom >"$T/src"

# write_fsync_kill MOUNT FILE PIDFILE: writes src to MOUNT/FILE in 1 MiB
# writes, fsyncs, and at once kills -9 the process named by PIDFILE.
write_fsync_kill() {
	timeout -s KILL 120 python3 - "$T/src" "$1/$2" "$3" <<'PY'
import os, signal, sys
src, dst, pidfile = sys.argv[1:]
pid = int(open(pidfile).read())
data = open(src, "rb").read()
fd = os.open(dst, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
for off in range(0, len(data), 1 << 20):
    assert os.write(fd, data[off:off + (1 << 20)]) == 1 << 20
os.fsync(fd)
os.kill(pid, signal.SIGKILL)  # nothing this node still had in flight survives it
PY
}

same_as_src() { cmp -s "$T/src" "$1"; }

# restart ID: starts the killed node again and waits until its mount has the
# cluster's state.
restart() {
	"$R" local start "$C" "$1" >"$T/start.out" 2>&1 || { cat "$T/start.out"; fail "restart n$1"; }
}

L=$(leader_id)
[ -n "$L" ] || fail "no leader"
F=$((L % 3 + 1))
for who in follower leader; do
	if [ $who = follower ]; then id=$F; else id=$(leader_id); fi
	[ -n "$id" ] || fail "no leader"
	echo "== fsync of 48 MiB through the $who's mount n$id, then kill -9 of n$id"
	write_fsync_kill "$C/n$id" "fsynced-$who" "$C/node$id/pid" || fail "writer on n$id"
	for m in 1 2 3; do
		[ $m = "$id" ] && continue
		wait_for 60 "n$m/fsynced-$who whole" same_as_src "$C/n$m/fsynced-$who"
	done
	echo "   whole on the two survivors"
	restart "$id"
	wait_for 60 "n$id/fsynced-$who whole after its restart" same_as_src "$C/n$id/fsynced-$who"
done
verify 60 "after the fsync kills"

echo "== quorum lost while a writer has a full window in flight"
W=$(leader_id)
[ -n "$W" ] || fail "no leader"
W=$((W % 3 + 1))
# Writes until one fails; its error goes to $T/lost.err.
python3 - "$T/src" "$C/n$W/lost" >"$T/lost.out" 2>"$T/lost.err" <<'PY' &
import os, sys
data = open(sys.argv[1], "rb").read()
fd = os.open(sys.argv[2], os.O_CREAT | os.O_WRONLY, 0o644)
n = 0
try:
    while True:
        os.write(fd, data[(n % 48) << 20:((n % 48) + 1) << 20])
        n += 1
        if n == 8:
            open(sys.argv[2] + ".started", "w").close()
        os.fsync(fd) if n % 64 == 0 else None
except OSError as e:
    print("write %d failed: %s" % (n, e), file=sys.stderr)
    sys.exit(0)
PY
writer=$!
wait_for 60 "the writer on n$W under way" test -e "$C/n$W/lost.started"
others=()
for id in 1 2 3; do [ $id = "$W" ] || others+=($id); done
for id in "${others[@]}"; do "$R" local kill "$C" "$id"; done
# A proposal times out after 5 s; a write that finds the window full waits
# for those in flight to fail first. Bounded: no hang.
gone() { ! kill -0 "$writer" 2>/dev/null; }
for _ in $(seq 1200); do gone && break; sleep 0.05; done
if ! gone; then
	# Blocked in a FUSE write for good: only SIGKILL ends that wait, and the
	# cleanup must not wait for it.
	kill -9 "$writer"
	wait "$writer" 2>/dev/null || true
	fail "the writer on n$W got no error within 60 s: a full window that never drains"
fi
wait "$writer" || fail "writer: $(cat "$T/lost.err")"
grep -q "failed" "$T/lost.err" || fail "the writer ended without an error"
echo "   $(cat "$T/lost.err")"
for id in "${others[@]}"; do restart "$id"; done
# (timeout: a write still counted in flight would make fsync hang.)
timeout -s KILL 120 python3 - "$T/src" "$C/n$W/lost" <<'PY' || fail "writes to the same file after the quorum came back"
import errno, os, sys, time
data = open(sys.argv[1], "rb").read()
fd = os.open(sys.argv[2], os.O_WRONLY)
# The first fsync may report the failed writes (once); it must return.
try:
    os.fsync(fd)
except OSError as e:
    assert e.errno in (errno.EIO, errno.ETIMEDOUT), e
end = os.lseek(fd, 0, os.SEEK_END)
# 80 MiB: more than the mount's window, so leftovers counted in flight would
# block it. A write may still fail while the mount finds the new leader.
deadline = time.time() + 60
n = 0
while n < 80:
    try:
        os.pwrite(fd, data[(n % 48) << 20:((n % 48) + 1) << 20], end + (n << 20))
        n += 1
    except OSError as e:
        assert e.errno in (errno.EIO, errno.ETIMEDOUT) and time.time() < deadline, e
        time.sleep(0.1)
os.fsync(fd)
os.close(fd)
PY
verify 60 "after the quorum came back"
echo "PASS"
exit 0
}
