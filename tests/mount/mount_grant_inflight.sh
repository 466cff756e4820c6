#!/bin/bash
# mount_grant_inflight.sh RAFTFS — a grant that applies while a lookup's
# reply is on its way (fs/fuse_inval.c, settle): node 1 looks up s, which
# nobody holds then; after the lookup's last look at the grants
# (fs/fuse_ops.c, reply_entry) and before its reply, node 3 is granted s
# and answers a chgrp of it behind. Node 1 counts the lookup of s already,
# so the grant's apply there queues the invalidation of s's attributes, but
# the kernel, not having made the inode from the reply yet, answers it
# ENOENT; without a retry the reply hands node 1's kernel the old group,
# which it keeps for its timeout (60 s here, a mount option) — past an
# open's barrier. Node 1's replies wait at a gate after that last look
# (RAFTFS_TEST_REPLY_GATE), and so does its grant's invalidation; the gate
# gone, the reply waits until the invalidation went out, so it reaches the
# kernel before the reply (the kernel's own gap, between the reply and the
# inode, is microseconds and cannot be held open from here). Node 3 holds its
# proposals back (RAFTFS_PLUG_US), so the chgrp reaches the log only when a
# recall makes it propose. Then:
#  1. the gated stat returns (the group it shows may be either: the chgrp
#     is concurrent with it);
#  2. after an open on node 1 (the sync point) a stat shows the new group;
#  3. the mounts and the trees agree.
# Fails without the retry: the stat after the sync point shows group 0.
# One block, parsed before any of it runs (tests/FLAKY.md).
{
set -euo pipefail
export RAFTFS_DELEG_IDLE_MS=0
. "$(dirname "$0")/lib.sh"
up
grant_gate_nodes "$T/gate" REPLY_GATE


echo "== 1. node 1's reply to its lookup of s waits at the gate; node 3 is granted s, chgrps it behind"
# Node 2 makes s; node 2 holds it until node 1's lookup recalls it.
mkdir "$M2/s"
wait_for 30 "s in node 1's tree" test -d "$C/node1/data/tree/s"
# The mkdir's entry invalidation of the root on node 1 goes out before the
# gated lookup of s starts (an open waits for the invalidations queued
# before it): in the kernel it waits for the root's lock, which that lookup
# holds until its reply.
: <"$M1/sync"
: >"$GATE"
stat -c %g "$M1/s" >"$T/gated.out" &
STAT=$!
wait_for 60 "node 1's reply to the lookup of s at the gate" test -e "$GATE.reached"
: >"$M3/s/f" # the eager grant of s to node 3 applies before this create
wait_for 30 "node 1 applied node 3's grant of s" held_by 3 1 s
chgrp_behind3 s
# The grant's invalidation is queued when node 1 applies it, before node 3's
# create in s (later in the log, one apply thread), and waits at the gate.
wait_for 30 "node 1 applied node 3's create in s" test -e "$C/node1/data/tree/s/f"
rm "$GATE"
wait $STAT || fail "node 1's gated stat of s"
echo "the gated stat showed group $(cat "$T/gated.out")"

echo "== 2. node 1 opens a file (the sync point), stats s"
: <"$M1/sync"
g=$(stat -c %g "$M1/s")
[ "$g" = 65534 ] || fail "node 1's stat of s after the sync point: group $g, node 3 answered 65534 (the grant's invalidation during the reply was lost)"

echo "== 3. the mounts and the trees agree"
verify 60 "at the end"
echo PASS
exit 0
}
