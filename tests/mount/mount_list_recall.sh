#!/bin/bash
# mount_list_recall.sh RAFTFS — `ls -l` on one mount of a directory whose
# subdirectories another node holds recalls them together, and still sees
# what their holder answered behind (fs/fuse_listed.h). Node 1 makes t and
# N directories in it, then chgrps each behind, holding the proposals back
# for a minute (RAFTFS_PLUG_US: only the Returns that the recalls ask for
# bring the chgrps to the log). Node 2's `ls -ln t`:
#  - shows the new group on every one of them (the contract: no attribute
#    of a held directory reaches the kernel before its holder's backlog
#    applied — a lookup that did not wait for its own directory's Return
#    fails this);
#  - recalls them ahead: node 2's counters (logged when it stops) say all
#    but the first looked at (one look is no scan) and the one whose look
#    started the scan were recalled ahead;
#  - takes fewer than 2N log entries: the Recalls sent ahead and the
#    holder's Returns go in batches (8-14 entries for 24 on a quiet
#    machine, 27 once at load 15: how the holder's Returns split is the
#    machine's speed, so the bound is the one-by-one cost). Recalled one
#    lookup at a time, as before session 11, each directory cost a Recall
#    and a Return of its own: 2N entries and more (fails so).
# Before that, one look is no scan: node 2's plain `ls t` then `stat t/d1`
# (as a cd into d1 after tab completion) recalls d1 alone, none of the
# others ahead (node 2's counters, logged when it stops; recalling ahead on
# any look after any listing, as at first, recalled all N and fails so).
# One block, parsed before any of it runs (tests/FLAKY.md).
{
set -euo pipefail
# The holder keeps its directories until recalled.
export RAFTFS_DELEG_IDLE_MS=0
export RAFTFS_STAGES=1 # the nodes log how many directories they recalled
. "$(dirname "$0")/lib.sh"
up
# Fewer than the plug's 32 held commands (fs_plug.c, HOLD_MAX): every
# chgrp stays held until a Return starts it.
N=24
node_conf 1 close behind RAFTFS_PLUG_US=60000000

echo "== node 1 makes t and t/d1..d$N, then chgrps each behind"
mkdir "$M1/t"
for i in $(seq 1 $N); do mkdir "$M1/t/d$i"; done
sync "$M1/t" # applied: node 1 holds them, as every node's tree says
python3 - "$C" "$N" <<'PY' || fail "chgrp on node 1"
import os, sys
c, n = sys.argv[1], int(sys.argv[2])
for i in range(1, n + 1):
    os.chown(f"{c}/n1/t/d{i}", -1, 65534)
# Answered behind: node 1 applied none of them when the last returned.
applied = [i for i in range(1, n + 1) if os.stat(f"{c}/node1/data/tree/t/d{i}").st_gid != 0]
if applied:
    sys.exit(f"node 1 applied the chgrp of d{applied[0]} (and {len(applied) - 1} more): not answered behind")
PY

echo "== node 2: ls t, then stat t/d1: one look, no scan"
ls "$M2/t" >/dev/null
stat "$M2/t/d1" >/dev/null
# The counters as node 2 stops (it starts again at once).
ahead=$(stop_counter 2 "more ahead, for a listing" "(and")
[ "$ahead" = 0 ] || fail "one look after a listing recalled ${ahead:-?} directories ahead (none: no scan)"

echo "== node 2: ls -ln t"
c0=$(commit)
ls -ln "$M2/t" >"$T/ls.out"
c1=$(commit)
echo "   $((c1 - c0)) log entries for $N held directories"
shown=$(grep -c ' d[0-9]*$' "$T/ls.out") || true
[ "$shown" = "$N" ] || { cat "$T/ls.out"; fail "ls -l on node 2 showed $shown of $N directories"; }
old=$(awk '$NF ~ /^d[0-9]+$/ && $4 != 65534' "$T/ls.out")
[ -z "$old" ] || fail "node 2's ls -l shows the old group of: $old"
[ $((c1 - c0)) -lt $((2 * N)) ] ||
	fail "ls -l took $((c1 - c0)) log entries for $N held directories (one by one: $((2 * N)))"
# d1 was returned above: N - 1 held; all but two recalled ahead.
ahead=$(stop_counter 2 "more ahead, for a listing" "(and")
[ "${ahead:-0}" -ge $((N - 3)) ] || fail "ls -l recalled ${ahead:-?} directories ahead (want $((N - 3)))"
verify 60 "after the listing"
echo PASS
exit 0
}
