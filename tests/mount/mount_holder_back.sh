#!/bin/bash
# mount_holder_back.sh RAFTFS — a holder that restarted is recalled, not
# revoked at once, although it proposed nothing since (fs/fuse_grant.h,
# fuse_holder_*; fs/fuse_run.c, propose_hello). A mount that revoked a
# dead holder's directory for silence revokes that holder's other
# directories at once (no 3 s wait each), until a command of the holder
# applies there again. A holder that came back but stayed idle kept that
# mark: a look at one of its directories revoked it at once, and a change
# it had answered behind there just before would fail at apply (revoked
# under it, reported at its next close) where a recall returns it behind
# that change. Now every node proposes a command at its start, and the
# recaller catches up with the log (a barrier) before it revokes at once.
#  1. node 3 makes a and p/x (p is node 1's), and is killed; node 1's stat
#     of a waits for it, revokes a and marks node 3 silent;
#  2. node 3 comes back (proposes nothing itself: no mkdir, no write);
#     once its start's command applied on node 1, node 1's stat of p/x
#     must recall x (node 3 returns it), not revoke it at once. Fails
#     without the start's command: node 3 never logs it, the wait for it
#     ends the test (and with the waits cut, node 1 logs "revoking it at
#     once" for x).
# Asserts on what node 1 logged, not on times.
# One block, parsed before any of it runs (tests/FLAKY.md).
{
set -euo pipefail
# The holder keeps what it made: nothing returned unasked.
export RAFTFS_DELEG_IDLE_MS=0
. "$(dirname "$0")/lib.sh"
up

echo "== 1. node 3 holds a and p/x and dies; node 1 looks at a"
silence_holder3

echo "== 2. node 3 comes back; node 1 looks at p/x"
# started K: how many times node K logged that its start command applied.
s0=$(started 3)
"$R" local start "$C" 3 >/dev/null || fail "restart of node 3"
wait_for 60 "node 3's mount" mount_answers 3
# Node 3 is back once the others know it: its start command, applied on
# node 3 (so committed, at or below node 3's applied index then), applied
# on node 1 too. Without that command the first wait fails: the
# restarted node says nothing.
restarted() { [ "$(started 3)" -gt "$s0" ]; }
wait_for 60 "node 3's start command applied on node 3" restarted
a3=$(status_field 3 applied)
[ -n "$a3" ] || fail "no applied index from node 3's status"
caught_up() { local a; a=$(status_field 1 applied); [ -n "$a" ] && [ "$a" -ge "$a3" ]; }
wait_for 60 "node 1 applied node 3's start command (index $a3)" caught_up
stat "$M1/p/x" >/dev/null
echo "   node 1: $(waited) waits for node 3, $(at_once) revokes at once"
[ "$(at_once)" = 0 ] || fail "node 1 revoked p/x at once: node 3 is back, it gets a recall"
! held_by 3 1 p/x || fail "node 3 still holds p/x in node 1's tree after node 1's stat"
verify 60 "after node 3 came back"
echo PASS
exit 0
}
