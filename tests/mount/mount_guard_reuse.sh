#!/bin/bash
# mount_guard_reuse.sh RAFTFS — a node's guard (fs/fuse_guard.h), run late
# after its node was killed, does not abort the mount that got its
# connection's number meanwhile. A FUSE connection's number is its device's
# minor, which the kernel hands out again (the lowest free) once the mount
# is gone; the restart of a killed node detaches its dead mount and mounts
# again, at once taking the old number back. The guard looked the number up
# when its node died: one that ran later than that restart (a loaded
# machine) aborted the new mount, whose node then stopped ("n2 was
# unmounted: stopping"; seen once in session 12). The guard now writes to
# the abort file it opened at the start, bound to its own connection.
#  1. node 2's guard is held (RAFTFS_TEST_GUARD_GATE) once node 2 is killed
#     (killed again until it is: a guard may leave at once, see below);
#  2. node 2 starts again; its mount has the old number, or the test is
#     skipped (exit 77: the old guard could not reach the new mount);
#  3. the gate opens and the old guard ends: node 2 still runs, its mount
#     answers and takes a write, its log says nothing of an unmount.
# Fails without the fix at 3 (node 2 stops).
# One block, parsed before any of it runs (tests/FLAKY.md).
{
set -euo pipefail
. "$(dirname "$0")/lib.sh"
# Every node's guard waits at the gate once its node died; a node stopped
# cleanly disarms its guard, which then never reaches it.
gate=$T/guard_gate
export RAFTFS_TEST_GUARD_GATE=$gate
up
touch "$gate"

# conn_of K: the FUSE connection number of node K's mount (mountinfo).
conn_of() {
	awk -v m="$C/n$1" '$5 == m && / - fuse/ { split($3, a, ":"); print a[2] }' \
		/proc/self/mountinfo | tail -n 1
}
# guard_of PID: the guard process that node process PID forked (its child
# named raftfs-guard).
guard_of() { ps -o pid=,comm= --ppid "$1" | awk '$2 == "raftfs-guard" { print $1; f = 1 } END { exit !f }'; }
# running PID: PID is a process that has not ended (a zombie has: the
# guard, orphaned by its node's death, is reaped by whoever adopted it).
running() { local s; s=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) && [ -n "$s" ] && [ "$s" != Z ]; }

echo "== 1. node 2 killed, its guard held at the gate"
# A guard that finds every thread of its node gone before the death signal
# (the last thread closes the disarm pipe before the signal is sent) leaves
# without aborting: the kernel aborted the connection itself. No late abort
# then: node 2 starts and is killed again, until its guard is at the gate.
held=
for try in 1 2 3 4 5 6 7 8 9 10; do
	conn0=$(conn_of 2)
	[ -n "$conn0" ] || fail "no FUSE connection of node 2's mount in mountinfo"
	g=$(guard_of "$(cat "$C/node2/pid")") || fail "node 2 has no guard process"
	"$R" local kill "$C" 2
	at_gate_or_gone() { [ -e "$gate.reached" ] || ! running "$g"; }
	wait_for 60 "node 2's guard $g at its gate or gone" at_gate_or_gone
	[ ! -e "$gate.reached" ] || { held=1; break; }
	echo "   kill $try: the guard left at once (node 2's threads were gone first)"
	start_node 2
done
[ -n "$held" ] || fail "node 2's guard reached its gate in none of 10 kills"

echo "== 2. node 2 starts again"
start_node 2
conn1=$(conn_of 2)
echo "   connection $conn0 before the kill, $conn1 now"
# The case needs the kernel to give node 2's new mount the old one's
# connection number; otherwise the old guard cannot reach it whatever it
# does, and nothing here could fail: skipped.
if [ "$conn0" != "$conn1" ]; then
	echo "SKIP: node 2's new mount got another connection number ($conn1, was $conn0)"
	exit 77
fi
running "$g" || fail "node 2's old guard $g ended before its gate opened"
pid2=$(cat "$C/node2/pid")

echo "== 3. the gate opens: the old guard aborts what it guarded, if anything"
rm "$gate"
gone() { ! running "$g"; }
wait_for 60 "node 2's old guard $g to end" gone
running "$pid2" || fail "node 2 stopped once its old guard ran: $(grep -h 'was unmounted' "$C/node2/node.log" | tail -n 1)"
mount_answers 2 || fail "node 2's mount does not answer after its old guard ran"
echo after >"$M2/after" || fail "a write through node 2's mount after its old guard ran"
! grep -q "was unmounted" "$C/node2/node.log" || fail "node 2's log says its mount went"
verify 60 "after node 2's restart"
echo PASS
exit 0
}
