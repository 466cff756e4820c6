#!/bin/bash
# mount_holder_early.sh RAFTFS — a holder that restarted is recalled, not
# revoked at once, also before its start's command committed
# (fs/fuse_grant.h, fuse_holder_look's link). A mount that revoked a dead
# holder's directory for silence revokes that holder's other directories
# at once, until the holder is seen alive again. mount.holder_back covers
# the holder's start command; this covers the moment before it commits: a
# restarted node mounts (and may answer behind in a directory it still
# holds) before its start command is through, and a look from another
# mount then took it for dead and revoked at once, so what it answered
# behind there would fail at apply. Now a connection to the holder newer
# than the one its silence began on says it is back.
#  1. node 3 makes a and p/x (p is node 1's), and is killed; node 1's stat
#     of a waits for it, revokes a and marks node 3 silent;
#  2. node 3 comes back with no command of it let out
#     (RAFTFS_TEST_HELLO_GATE: its start command held back, its other
#     proposals wait — it would otherwise return a, whose Recalls it
#     catches up with, and that command too says it is back); once it is
#     mounted and node 1 is connected to it, node 1's stat of p/x must
#     recall x, not revoke it at once; the gate opens and node 3 returns x.
#     Fails without the link rule: node 1 logs "revoking it at once" for x.
#  3. the gate opens: the start command applies, the mounts agree.
# Asserts on what node 1 logged, not on times.
# One block, parsed before any of it runs (tests/FLAKY.md).
{
set -euo pipefail
# The holder keeps what it made: nothing returned unasked.
export RAFTFS_DELEG_IDLE_MS=0
. "$(dirname "$0")/lib.sh"
up

# started K: how many times node K logged that its start command applied.
started() { grep -c "start command applied" "$C/node$1/node.log" || true; }
# connected K J: node K's status shows a connection to node J.
connected() {
	"$R" status --json "$("$R" local addr "$C" "$1")" 2>/dev/null |
		grep -q "\"id\":$2,[^}]*\"connected\":true"
}

echo "== 1. node 3 holds a and p/x and dies; node 1 looks at a"
mkdir "$M1/p"
mkdir "$M3/a" "$M3/p/x"
wait_for 30 "node 1 applied node 3's grant of a" held_by 3 1 a
wait_for 30 "node 1 applied node 3's grant of p/x" held_by 3 1 p/x
"$R" local kill "$C" 3
stat "$M1/a" >/dev/null
[ "$(waited)" = 1 ] || fail "node 1 waited $(waited) times for dead node 3, not once"
! held_by 3 1 a || fail "node 3 still holds a in node 1's tree"
held_by 3 1 p/x || fail "node 3 no longer holds p/x in node 1's tree before node 1 looked at it"

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
# Nothing of node 3 can reach node 1 before node 1 decides about p/x. That
# decision is one command of node 1 (a Recall, or the Revoke at once,
# logged before it is proposed), the only one proposed then: once node 1
# applied past a0 it is made.
a0=$(status_field 1 applied)
stat "$M1/p/x" >/dev/null &
st=$!
decided() { [ "$(at_once)" != 0 ] || [ "$(status_field 1 applied)" -gt "$a0" ]; }
wait_for 60 "node 1's Recall or Revoke of p/x" decided
[ "$(started 3)" = "$s0" ] || gfail "node 3's start command applied before the look: no window"
[ "$(at_once)" = 0 ] || gfail "node 1 revoked p/x at once: node 3 is back, it gets a recall"
rm -f "$gate"
wait "$st" || fail "node 1's stat of p/x failed"
echo "   node 1: $(waited) waits for node 3, $(at_once) revokes at once"
[ "$(at_once)" = 0 ] || fail "node 1 revoked p/x at once after node 3's gate opened"
! held_by 3 1 p/x || fail "node 3 still holds p/x in node 1's tree after node 1's stat"

echo "== 3. node 3's start command goes in"
restarted() { [ "$(started 3)" -gt "$s0" ]; }
wait_for 60 "node 3's start command applied on node 3" restarted
verify 60 "after node 3 came back"
echo PASS
exit 0
}
