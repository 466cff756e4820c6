#!/bin/bash
# mount_grant_slip.sh RAFTFS — a grant that slips between a lookup's fences
# and its reply (fs/fuse_ops.c, reply_entry): node 1 looks up s, which
# nobody holds then; before the reply, node 3 is granted s and answers a
# chgrp of it behind. The grant's apply on node 1 drops no attributes (its
# kernel does not know s yet), so without the check after the lookup count
# the reply hands node 1's kernel the old group, which it keeps for its
# timeout (60 s here, a mount option) — past an open's barrier. Node 1's
# lookups wait at a gate after reading the attributes
# (RAFTFS_TEST_LOOKUP_GATE) while the test has the grant and the chgrp
# made; node 3 holds its proposals back (RAFTFS_PLUG_US), so the chgrp
# reaches the log only when a recall makes it propose. Then:
#  1. the gated stat shows the new group (the reply fenced s again);
#  2. after an open on node 1 (the sync point) a stat shows it too;
#  3. the mounts and the trees agree.
# Fails without the check: both stats show group 0.
# One block, parsed before any of it runs (tests/FLAKY.md).
{
set -euo pipefail
export RAFTFS_DELEG_IDLE_MS=0
. "$(dirname "$0")/lib.sh"
up
grant_gate_nodes "$T/gate" LOOKUP_GATE


echo "== 1. node 1's lookup of s waits at the gate; node 3 is granted s, chgrps it behind"
# Node 2 makes s; node 2 holds it until node 1's lookup recalls it.
mkdir "$M2/s"
wait_for 30 "s in node 1's tree" test -d "$C/node1/data/tree/s"
: >"$GATE"
stat -c %g "$M1/s" >"$T/gated.out" &
STAT=$!
wait_for 60 "node 1's lookup of s at the gate" test -e "$GATE.reached"
: >"$M3/s/f" # the eager grant of s to node 3 applies before this create
wait_for 30 "node 1 applied node 3's grant of s" held_by 3 1 s
chgrp_behind3 s
rm "$GATE"
wait $STAT || fail "node 1's gated stat of s"
g=$(cat "$T/gated.out")
[ "$g" = 65534 ] || fail "node 1's lookup of s answered group $g: the grant in between went unseen"

echo "== 2. node 1 opens a file (the sync point), stats s"
: <"$M1/sync"
g=$(stat -c %g "$M1/s")
[ "$g" = 65534 ] || fail "node 1's stat of s after the sync point: group $g, node 3 answered 65534"

echo "== 3. the mounts and the trees agree"
verify 60 "at the end"
echo PASS
exit 0
}
