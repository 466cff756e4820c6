#!/bin/bash
# mount_holder_early.sh RAFTFS — a holder that restarted answers nothing
# behind before its start command applied there (fs_node_back), and is
# recalled, not revoked at once, also before that command committed
# (fs/fuse_grant.h, fuse_holder_look's link). A mount that revoked a dead
# holder's directory for silence revokes that holder's other directories
# at once, until the holder is seen alive again. mount.holder_back covers
# the holder's start command; this covers the moment before it commits: a
# restarted node mounts before its start command is through, and a change
# its mount answered behind in a directory it still held then failed at
# apply if another mount revoked that directory meanwhile.
#  1. node 3 makes a and p/x (p is node 1's), and is killed; node 1's stat
#     of a waits for it, revokes a and marks node 3 silent;
#  2. node 3 comes back with no command of it let out
#     (RAFTFS_TEST_HELLO_GATE: its start command held back, its other
#     proposals wait — it would otherwise return a, whose Recalls it
#     catches up with, and that command too says it is back). Its mount
#     removes p/x/g (p/x it still holds; an unlink needs no new id, which
#     a restarted node learns only once caught up); once that unlink waits
#     for the gate and node 1 is connected to node 3, node 1's stat of p/x
#     must recall x, not revoke it at once, and revokes it once the wait
#     ran out (node 3 can return nothing). Then the gate opens: the unlink
#     must not fail. Fails without fs_node_back (the unlink answered
#     behind is proposed after the Revoke and fails at apply, logged),
#     and without the link rule (node 1 logs "revoking it at once" for x);
#  3. the start command applies, the mounts agree.
# Asserts on what node 1 logged, not on times.
# One block, parsed before any of it runs (tests/FLAKY.md).
{
set -euo pipefail
# The holder keeps what it made: nothing returned unasked.
export RAFTFS_DELEG_IDLE_MS=0
. "$(dirname "$0")/lib.sh"
up

# started K: how many times node K logged that its start command applied.
# connected K J: node K's status shows a connection to node J.
connected() {
	"$R" status --json "$("$R" local addr "$C" "$1")" 2>/dev/null |
		grep -q "\"id\":$2,[^}]*\"connected\":true"
}

echo "== 1. node 3 holds a, p/x and p/x/g and dies; node 1 looks at a"
silence_holder3 g

echo "== 2. node 3 comes back, none of its commands let out; node 1 looks at p/x"
s0=$(started 3)
gate=$T/hello_gate
# gfail MSG: fail, the gate opened first (node 3's proposing threads wait
# while it exists, and its stop would wait for them).
gfail() { rm -f "$gate"; fail "$1"; }
touch "$gate"
RAFTFS_TEST_HELLO_GATE=$gate "$R" local start "$C" 3 >/dev/null || gfail "restart of node 3"
wait_for 60 "node 3's mount" mount_answers 3
wait_for 60 "node 3 holding its start command back" test -e "$gate.reached"
wait_for 60 "node 1 connected to node 3" connected 1 3
# Node 3's unlink in p/x: the lookup before it is answered from node 3's
# tree; the unlink itself waits for the gate, as its FUSE connection's
# one waiting request (fusectl). Behind or not is decided before that.
x=$(printf %016x "$(stat -c %i "$M3/p/x")")
minor=$(awk -v m="$M3" '$5 == m && / - fuse/ { split($3, a, ":"); print a[2] }' \
	/proc/self/mountinfo | tail -n 1)
[ -n "$minor" ] || gfail "no FUSE connection of node 3's mount in mountinfo"
removing() { [ "$(cat "/sys/fs/fuse/connections/$minor/waiting")" -ge 1 ]; }
rm "$M3/p/x/g" &
tp=$!
wait_for 60 "node 3's unlink of p/x/g waiting for the gate" removing
# Node 1's decision about p/x, from its own log lines naming p/x: a
# Revoke at once, or the wait's Revoke once node 3 did not return it (it
# can propose nothing). Nothing else of node 1 counts (no applied index).
about_x() { grep -c "directory $x: node 3 " "$C/node1/node.log" || true; }
at_once_x() { grep -c "directory $x: node 3 .*revoking it at once" "$C/node1/node.log" || true; }
stat "$M1/p/x" >/dev/null &
st=$!
decided() { [ "$(about_x)" -ge 1 ]; }
wait_for 60 "node 1's Revoke of p/x" decided
[ "$(started 3)" = "$s0" ] || gfail "node 3's start command applied before the look: no window"
[ "$(at_once_x)" = 0 ] || gfail "node 1 revoked p/x at once: node 3 is back, it gets a recall"
revoked_x() { ! held_by 3 1 p/x; }
wait_for 60 "node 1 applied its Revoke of p/x" revoked_x
rm -f "$gate"
wait "$st" || fail "node 1's stat of p/x failed"
wait "$tp" || fail "node 3's unlink of p/x/g failed"
echo "   node 1: $(waited) waits for node 3, $(at_once) revokes at once"
[ "$(at_once)" = 0 ] || fail "node 1 revoked p/x at once after node 3's gate opened"

echo "== 3. node 3's start command goes in"
restarted() { [ "$(started 3)" -gt "$s0" ]; }
wait_for 60 "node 3's start command applied on node 3" restarted
verify 60 "after node 3 came back"
# A change answered behind that fails at apply is logged (and reported at
# the next close or fsync, which rm does not make).
! grep "write-behind .* failed" "$C/node3/node.log" ||
	fail "node 3 answered a change behind before its start command applied, and it failed"
[ ! -e "$M1/p/x/g" ] || fail "node 3's unlink of p/x/g did not take"
echo PASS
exit 0
}
