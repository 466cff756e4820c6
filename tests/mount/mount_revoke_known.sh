#!/bin/bash
# mount_revoke_known.sh RAFTFS — a Revoke decided before its revoker
# applied the holder's start command, but ordered after that command,
# changes nothing: the holder is back, and the revoker recalls it instead
# (fs/sm_starts.h, checked at apply). Without that check the Revoke took
# the directory from a holder that had started again and answered a
# change there behind: the change failed at apply, reported at the
# holder's next fsync (an acknowledged unlink undone).
#  1. node 3 holds a and p/x (p is node 1's), with p/x/g in it, and is
#     killed; node 1's stat of a waits for it, revokes a, marks it silent;
#  2. node 1's stat of p/x decides at once to revoke p/x (node 3 is
#     silent), and is held right before proposing it
#     (RAFTFS_TEST_REVOKE_GATE): what it knew of node 3's starts is what
#     it had applied before node 3 came back;
#  3. node 3 comes back, its start command applies there; its mount
#     answers rm p/x/g behind, and holds the unlink's proposal
#     (RAFTFS_PLUG_US: a long linger) so that it is ordered after the
#     Revoke;
#  4. the gate opens: the Revoke, ordered after node 3's start, must
#     change nothing (node 1 says so and recalls), and node 3's fsync of
#     p/x must not fail; the mounts agree and g is gone.
# Fails without the check: node 1 does not log the recall instead, p/x is
# revoked, and node 3's fsync fails with EIO (its unlink, EREMOTE).
# Asserts on what the nodes logged and on the fsync's result, not on times.
# One block, parsed before any of it runs (tests/FLAKY.md).
{
set -euo pipefail
# The holder keeps what it made: nothing returned unasked.
export RAFTFS_DELEG_IDLE_MS=0
. "$(dirname "$0")/lib.sh"
# Every node has the hook; only node 1 ever revokes here, and the gate is
# closed only in step 2 (removed at exit by lib.sh: named *gate).
gate=$T/revoke_gate
export RAFTFS_TEST_REVOKE_GATE=$gate
up

echo "== 1. node 3 holds a and p/x, and dies; node 1 looks at a"
silence_holder3 g
# p/x's id, as node 1's log names it (read in its tree: a look through a
# mount could recall it).
x=$(getfattr --only-values -n trusted.raftfs.id "$C/node1/data/tree/p/x")

echo "== 2. node 1 decides to revoke p/x at once, and is held before proposing it"
touch "$gate"
stat "$M1/p/x" >/dev/null &
st=$!
wait_for 60 "node 1's Revoke of p/x held at the gate" test -e "$gate.reached"
grep -q "directory $x: node 3 .*revoking it at once" "$C/node1/node.log" ||
	fail "node 1 did not decide to revoke p/x at once"

echo "== 3. node 3 comes back; its mount answers rm p/x/g behind"
s0=$(started 3)
RAFTFS_PLUG_US=600000000 start_node 3
restarted() { [ "$(started 3)" -gt "$s0" ]; }
wait_for 60 "node 3's start command applied on node 3" restarted
held_by 3 3 p/x || fail "node 3 no longer holds p/x in its own tree"
rm "$M3/p/x/g"
# Answered before it applied (behind): still in node 3's own tree, its
# proposal held (node 3's own commands apply in milliseconds otherwise).
[ -e "$C/node3/data/tree/p/x/g" ] || fail "node 3's unlink of p/x/g was not answered behind"

echo "== 4. the gate opens: the Revoke must change nothing"
rm -f "$gate"
wait "$st" || fail "node 1's stat of p/x failed"
grep -q "directory $x: its holder started again before the Revoke applied" \
	"$C/node1/node.log" || fail "node 1's Revoke of p/x took: the holder's unlink fails"
python3 -c 'import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd)' "$M3/p/x" ||
	fail "node 3's fsync of p/x failed: its unlink answered behind failed at apply"
! grep "write-behind .* failed" "$C/node3/node.log" ||
	fail "a change node 3 answered behind failed at apply"
verify 60 "after the Revoke"
[ ! -e "$M1/p/x/g" ] || fail "node 3's unlink of p/x/g did not take"
echo PASS
exit 0
}
