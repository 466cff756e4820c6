#!/bin/bash
# mount_grant_listed.sh RAFTFS — a grant that applies while a listing
# (readdirplus) waits at its final fence (fs/fuse_ops.c, readdir_common):
# node 1's `ls -l p` reads p, which hands the attributes of p/s (nobody
# holds s then); before the listing's reply, node 3 is granted s and
# answers a chgrp of it behind. The fence can wait seconds (a holder's round
# trip, 3 s for a silent one). When the listing counted its lookups at the
# read, s was known to node 1 during the fence: the grant's invalidation of
# s was queued, the kernel (without the inode yet) answered it ENOENT, and
# the retry (fs/fuse_inval.c, settle) held the invalidation queue — every
# open behind it — for 1 s and then gave up; the reply then handed node 1's
# kernel s's old group, which it keeps for its timeout (60 s here, a mount
# option) past an open's barrier. Node 1's listings wait at a gate before
# their final fence (RAFTFS_TEST_LIST_GATE); node 3 holds its proposals back
# (RAFTFS_PLUG_US), so the chgrp reaches the log only when a recall makes
# it propose. Then:
#  1. an open on node 1 while the listing waits returns (before: once the
#     retry gave up);
#  2. the gate gone, the listing returns; after an open on node 1 (the sync
#     point) a stat of p/s shows the new group;
#  3. the mounts and the trees agree.
# Fails without the fix at 2: the stat shows group 0.
# One block, parsed before any of it runs (tests/FLAKY.md).
{
set -euo pipefail
export RAFTFS_DELEG_IDLE_MS=0
. "$(dirname "$0")/lib.sh"
up
grant_gate_nodes "$T/list_gate" LIST_GATE

echo "== 1. node 1's listing of p waits at the gate; node 3 is granted p/s, chgrps it behind"
mkdir -p "$M2/p/s"
wait_for 30 "p/s in node 1's tree" test -d "$C/node1/data/tree/p/s"
# Node 2, which made s, holds it: a listing hands no attributes of a held
# directory. Node 3's lookup of s recalls it (a lookup changes nothing, so
# node 3 is not granted it); node 1's kernel still has no inode of s.
stat "$M3/p/s" >/dev/null
returned() { ! held_by 2 1 p/s; }
wait_for 30 "node 1 applied node 2's return of p/s" returned
: >"$GATE"
ls -l "$M1/p" >"$T/ls.out" &
LS=$!
wait_for 60 "node 1's listing of p at the gate" test -e "$GATE.reached"
: >"$M3/p/s/f" # the eager grant of s to node 3 applies before this create
wait_for 30 "node 1 applied node 3's grant of p/s" held_by 3 1 p/s
chgrp_behind3 p/s
wait_for 30 "node 1 applied node 3's create in p/s" test -e "$C/node1/data/tree/p/s/f"
# An open waits for node 1's invalidations queued before it, the grant's
# of s among them: before the fix, until the retry gave up (1 s), which is
# what makes the old listing's reply stale; now s is not counted yet.
: <"$M1/sync"

echo "== 2. the gate goes: the listing returns; node 1 opens a file (the sync point), stats p/s"
rm "$GATE"
wait $LS || fail "node 1's gated listing of p"
: <"$M1/sync"
g=$(stat -c %g "$M1/p/s")
[ "$g" = 65534 ] || fail "node 1's stat of p/s after the sync point: group $g, node 3 answered 65534 (the listing handed the kernel s's attributes from before the grant)"

echo "== 3. the mounts and the trees agree"
verify 60 "at the end"
echo PASS
exit 0
}
