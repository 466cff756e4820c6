#!/bin/bash
# mount_list_silent.sh RAFTFS — `ls -l` of a directory whose subdirectories
# a dead node holds recalls none of them ahead (fs/fuse_behind_deleg.c,
# recall_ahead: a holder known silent is skipped; fuse_listed.h): once a
# recall revoked that holder for its silence, each of its directories is
# revoked at once on its own look, and a Recall sent ahead would only wait
# in the log for a node that never applies it. Node 1 makes t and
# t/d1..dN and is killed; node 2 stats t/d1 (waits out the 3 s of
# silence, revokes t and d1: node 1 is known silent), then lists t with
# ls -l: every directory shown, node 2's counters (logged when it stops)
# say none recalled ahead. Without the skip, the ls -l recalls N - 2 or
# more ahead (checked: fails so).
# One block, parsed before any of it runs (tests/FLAKY.md).
{
set -euo pipefail
# The holder keeps its directories until recalled.
export RAFTFS_DELEG_IDLE_MS=0
export RAFTFS_STAGES=1 # the nodes log how many directories they recalled
. "$(dirname "$0")/lib.sh"
up
N=8

echo "== node 1 makes t and t/d1..d$N, then dies"
mkdir "$M1/t"
for i in $(seq 1 $N); do mkdir "$M1/t/d$i"; done
# holds H K PATH: node H holds PATH as node K's tree says (lib.sh's
# held_by without its command substitution, which prints a FAIL line for
# each look while the xattr is not there).
holds() {
	getfattr -e hex -n trusted.raftfs.deleg "$C/node$2/data/tree/$3" 2>/dev/null |
		grep -q "deleg=0x$(printf %02x "$1")000000"
}
sync "$M1/t" # applied on node 1: node 1 holds them
# ... and on node 2, whose apply may lag: what node 2's lookups will see.
for i in $(seq 1 $N); do wait_for 60 "node 1 holds t/d$i on node 2" holds 1 2 "t/d$i"; done
"$R" local kill "$C" 1 || fail "kill of node 1"

echo "== node 2: stat t/d1 revokes node 1 for its silence"
stat "$M2/t/d1" >/dev/null
! holds 1 2 "t/d1" || fail "node 1 still holds t/d1 on node 2"

echo "== node 2: ls -l t"
ls -l "$M2/t" >"$T/ls.out"
shown=$(grep -c ' d[0-9]*$' "$T/ls.out") || true
[ "$shown" = "$N" ] || { cat "$T/ls.out"; fail "ls -l on node 2 showed $shown of $N directories"; }
ahead=$(stop_counter 2 "more ahead, for a listing" "(and")
[ "${ahead:-x}" = 0 ] || fail "ls -l recalled ${ahead:-?} directories of a silent holder ahead (none)"

echo "== node 1 back"
"$R" local start "$C" 1 >/dev/null || fail "restart of node 1"
wait_for 60 "node 1's mount" mount_answers 1
verify 60 "after node 1's return"
echo PASS
exit 0
}
