#!/usr/bin/env bash
# mount_kill_hung.sh RAFTFS — kill -9 of a node while the kernel waits for
# it holding a directory's lock (a mkdir it never answers) and the node's
# invalidation thread waits for that lock: without its guard the killed
# process could never finish dying (that thread cannot leave the kernel, so
# /dev/fuse never closes and the kernel never aborts the connection) —
# node, mount, store lock and caller hung for good (fs/fuse_guard.h). With
# it: the node is gone within `local kill`'s 10 s, the caller gets an
# error, and the node restarts and catches up.
{
. "$(dirname "$0")/lib.sh"

# Aborts every FUSE connection of this cluster's mounts, so that a failure
# here (the hang itself) cannot hang the teardown as well.
abort_connections() {
	local m minor
	for m in "$C"/n[0-9]*; do
		minor=$(awk -v m="$m" '$5 == m && / - fuse/ { split($3, a, ":"); print a[2] }' /proc/self/mountinfo | tail -n 1)
		[ -z "$minor" ] || echo 1 >"/sys/fs/fuse/connections/$minor/abort" 2>/dev/null
	done
}
fail() {
	echo "FAIL: $*" >&2
	abort_connections
	exit 1
}

up
export RAFTFS_TEST_HANG_MKDIR=raftfs-hang
"$R" local stop "$C" 1 || fail "node 1 did not stop"
"$R" local start "$C" 1 || fail "node 1 did not start with the hang hook"
wait_for 30 "node 1's mount" test -d "$M1"
mkdir "$M1/d" && echo one >"$M1/d/f" || fail "mkdir/write on n1"
ls "$M1/d" >/dev/null

mkdir "$M1/d/raftfs-hang" 2>"$T/mkdir.err" &
mk=$!
pid=$(cat "$C/node1/pid")
inval_waits() { grep -qs fuse_reverse_inval "/proc/$pid/task/"*/stack; }
wait_for 30 "node 1 to hold the mkdir" grep -q "test: mkdir raftfs-hang is never answered" "$C/node1/node.log"
wait_for 30 "node 1's invalidation thread to wait for the directory's lock" inval_waits
"$R" local kill "$C" 1 || fail "node 1 still alive 10 s after SIGKILL (hung in the kernel)"
wait_for 30 "the mkdir to end" eval '! kill -0 $mk 2>/dev/null'
if wait $mk; then fail "the never-answered mkdir succeeded"; fi
echo "ok: node 1 died, its caller got: $(cat "$T/mkdir.err")"

unset RAFTFS_TEST_HANG_MKDIR
"$R" local start "$C" 1 || fail "node 1 did not start again"
wait_for 30 "node 1's mount again" test -f "$M1/d/f"
echo two >"$M2/d/g" || fail "write on n2"
verify 60 "after the restart"
[ "$(cat "$M1/d/g")" = two ] || fail "n1 did not catch up"
echo "ok: node 1 restarted and caught up"
exit 0
}
