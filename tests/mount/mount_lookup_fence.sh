#!/bin/bash
# mount_lookup_fence.sh RAFTFS — a change of a directory its holder answered
# behind is seen by another mount's first lookup of it (fuzz.mixed seed 62:
# n3 made b, chowned it behind, and n1's lstat of b showed the old group).
# The holder answers a setattr of a directory it holds once proposed
# (fuse_behind_ops.c, dir_view); another mount's lookup must recall the
# directory (fuse_behind_fence) so that the holder's Return, proposed
# behind the setattr, applies there first. Here the holders hold their
# proposals back for a minute (RAFTFS_PLUG_US): a setattr answered behind
# reaches the log only when something makes its node propose — the
# Return a recall asks for — so a lookup that does not recall shows the
# old owner however slow or fast the machine. Node 3 closes synchronously
# (`close = commit`, as in CI's mixed cluster), node 1 behind; node 2
# applies every entry 300 ms late, so its lookup right after a mkdir
# elsewhere misses and takes the miss path's barrier. Each case checks
# first that the change was answered behind (its holder's own tree still
# has the old group when chgrp returned), then the reader's stat:
#  1. a directory node 3 made in the root (nobody holds the root): node 1's
#     lookup of it, after node 1 applied the mkdir (a hit) — the directory
#     found must be fenced, not only its parent;
#  2. the same on node 1 as holder (close = behind);
#  3. a directory in a directory node 3 holds: the parent's holder closes
#     synchronously, and its parent must be fenced all the same;
#  4. node 2 looks up a directory node 3 made just before: the lookup
#     misses, passes the barrier, finds it — and must fence it too;
#  5. a listing (readdirplus) on node 1 of a directory node 3 holds and
#     chgrp'd behind: no attributes of it go to the kernel, so a stat
#     looks it up (node 3 must not hold the root: cases 6 and 7 make it
#     ask for every directory it changes, so this one comes first);
#  6. node 1's kernel has a directory's entry from before node 3 was
#     granted it: after an open, its stat is a getattr, not a lookup —
#     the getattr must fence it too, and the grant's apply must drop the
#     attributes node 1's kernel kept;
#  7. the same when the grant (asked for by a failed rmdir) changes
#     nothing in the directory;
#  8. the mounts and the nodes' trees agree.
# One block, parsed before any of it runs (tests/FLAKY.md).
{
set -euo pipefail
# Holders keep their directories until recalled (no return when idle: a
# Return would start the held setattr and hide the bug).
export RAFTFS_DELEG_IDLE_MS=0
. "$(dirname "$0")/lib.sh"
up
HOLD=RAFTFS_PLUG_US=60000000 # a held proposal waits up to 60 s for company
node_conf 3 close commit "$HOLD"
node_conf 1 close behind "$HOLD" RAFTFS_MOUNT_OPTS=timeout=60
node_conf 2 close behind RAFTFS_TEST_APPLY_DELAY_US=300000
: >"$M1/sync" # opened as a sync point from case 5 on

# in_tree K PATH: PATH is in node K's tree (what it applied; read there
# directly, not through a mount, which could recall).
in_tree() { [ -d "$C/node$1/data/tree/$2" ]; }
# behind_chgrp K PATH: chgrp 65534 of PATH through node K's mount, and
# the proof that it was answered behind: node K's tree (what it applied)
# still has the old group when chgrp returned. Read at once, in the same
# process: a stat through node K's mount could wait for the chgrp (under
# load the kernel's cached attributes time out and it asks).
behind_chgrp() {
	local rc=0
	try_behind_chgrp "$1" "$2" || rc=$?
	[ "$rc" = 0 ] || fail "chgrp of $2 through node $1 (status $rc)"
}
# try_behind_chgrp K PATH: the same, but status 3 when node K answered the
# chgrp synchronously: a node answers nothing behind while it has seen a
# timeout or a stall (bh_behind_on), which under load happens now and then
# (case 6, once in 40 runs at load 20-24, right after node 3's restart).
try_behind_chgrp() {
	python3 - "$C" "$1" "$2" <<'PY'
import os, sys
c, k, p = sys.argv[1:]
os.chown(f"{c}/n{k}/{p}", -1, 65534)
if os.stat(f"{c}/node{k}/data/tree/{p}").st_gid != 0:
    # Which node holds it now, for the log.
    deleg = os.getxattr(f"{c}/node{k}/data/tree/{p}", "trusted.raftfs.deleg").hex()
    print(f"   node {k} applied the chgrp of {p}: not answered behind (delegation {deleg})")
    sys.exit(3)
PY
}
# reader_sees K PATH: node K's mount shows the new group of PATH.
reader_sees() {
	local g
	g=$(stat -c %g "$C/n$1/$2")
	[ "$g" = 65534 ] || fail "node $1's stat of $2: group $g, its holder answered chgrp 65534"
}

echo "== 1. node 3 (commit) makes a, chgrp behind; node 1 looks a up (a hit)"
mkdir "$M3/a"
wait_for 30 "a in node 1's tree" in_tree 1 a
behind_chgrp 3 a
reader_sees 1 a

echo "== 2. node 1 (behind) makes b, chgrp behind; node 3 looks b up (a hit)"
mkdir "$M1/b"
wait_for 30 "b in node 3's tree" in_tree 3 b
behind_chgrp 1 b
reader_sees 3 b

echo "== 3. node 3 makes p and p/d, chgrp p/d behind; node 1 looks p/d up"
mkdir "$M3/p" "$M3/p/d"
python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.fsync(fd)  # p/d, made behind, is applied: its setattr goes behind
os.close(fd)' "$M3/p"
wait_for 30 "p/d in node 1's tree" in_tree 1 p/d
behind_chgrp 3 p/d
reader_sees 1 p/d

echo "== 4. node 3 makes e, chgrp behind; node 2 (applies late) looks e up at once"
# One process, no fork between the calls: node 2's stat comes well within
# its 300 ms apply delay of the mkdir, so its lookup misses.
python3 - "$C" <<'PY' || fail "node 2's stat of e (made and chgrp'd by node 3)"
import os, sys
c = sys.argv[1]
os.mkdir(f"{c}/n3/e")
os.chown(f"{c}/n3/e", -1, 65534)
if os.stat(f"{c}/node3/data/tree/e").st_gid != 0:
    sys.exit("node 3 applied the chgrp of e: not answered behind")
# Said, not required: were node 2 this slow, the hit of case 1 is tested.
if os.path.exists(f"{c}/node2/data/tree/e"):
    print("  node 2 had applied the mkdir already: a hit")
g = os.stat(f"{c}/n2/e").st_gid
if g != 65534:
    sys.exit(f"node 2's stat of e: group {g}, its holder answered chgrp 65534")
PY

echo "== 5. node 3 makes k, chgrp behind; node 1 opens, lists the root (ls -l), stats k"
# The listing is a readdirplus: it hands the kernel each entry with its
# attributes, which it keeps for its timeout; a directory another node
# holds must go without them, so that the stat looks it up (and fences
# it). Node 1's kernel has no entry of k before the listing.
mkdir "$M3/k"
wait_for 30 "k in node 1's tree" in_tree 1 k
behind_chgrp 3 k
: <"$M1/sync"
ls -ln "$M1" >"$T/ls.out"
reader_sees 1 k
g=$(awk '$NF == "k" { print $4 }' "$T/ls.out")
[ "$g" = 65534 ] || fail "node 1's ls -l of k: group $g, its holder answered chgrp 65534"

echo "== 6. node 1 has g's entry; node 3 is granted g, chgrps it behind; node 1 opens, stats g"
# Node 2 makes g; node 1's lookup of it recalls it (nobody holds it
# then) and node 1's kernel keeps the entry: its mount caches for 60 s
# (timeout=60, a mount option; with the default 1 s the same happens
# within that second). Node 3 now asks for g at its first change (the
# eager knob instead of 8 changes in 2 s) and chgrps g behind. After an
# open on node 1 (the sync point) its stat reaches the mount as a
# getattr, not a lookup: the getattr must fence g too.
# The case proves nothing, and is tried again with a new directory (three
# times at most), if node 3 answers the chgrp synchronously
# (try_behind_chgrp), or if 59 s or more passed from node 1's first stat
# to the last: the kernel's entry (60 s) may have expired, so that the
# last stat was a lookup, which case 1 covers, not the getattr this case
# is about. Either way a wrong group fails at once (reader_sees).
node_conf 3 close commit "$HOLD" RAFTFS_TEST_GRANT_EAGER=1
proved=
for g in g g2 g3; do
	mkdir "$M2/$g"
	t_entry=$SECONDS # before the lookup that gives node 1's kernel the entry
	[ "$(stat -c %g "$M1/$g")" = 0 ] || fail "node 1: $g's group before the chgrp"
	: >"$M3/$g/f"
	wait_for 30 "node 3 holding $g" held_by 3 3 "$g"
	python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.fsync(fd)  # what node 3 changed in g is applied: its setattr goes behind
os.close(fd)' "$M3/$g"
	rc=0
	try_behind_chgrp 3 "$g" || rc=$?
	[ "$rc" = 3 ] && continue
	[ "$rc" = 0 ] || fail "chgrp of $g through node 3 (status $rc)"
	: <"$M1/sync" # the open: node 1 applied the grant and dropped g's attributes
	reader_sees 1 "$g"
	span=$((SECONDS - t_entry))
	[ $span -lt 59 ] && { proved=$g; break; }
	echo "   $span s from node 1's lookup of $g to its stat: its entry may have expired"
done
[ -n "$proved" ] || fail "case 6 proved nothing in three tries (chgrp answered synchronously or entry expired)"

echo "== 7. the same with a grant that changes nothing in the directory"
# Node 3's rmdir of h (not empty: ENOTEMPTY) asks for h first, and
# nothing in h changes: only the grant's own apply on node 1 can drop the
# attributes node 1's kernel keeps of h.
mkdir "$M2/h"
: >"$M2/h/x"
[ "$(stat -c %g "$M1/h")" = 0 ] || fail "node 1: h's group before the chgrp"
! rmdir "$M3/h" 2>/dev/null || fail "node 3 removed h, which is not empty"
wait_for 30 "node 3 holding h" held_by 3 3 h
behind_chgrp 3 h
: <"$M1/sync"
reader_sees 1 h

echo "== 8. verify"
verify 60 "after the chgrps behind"
echo PASS
exit 0
}
