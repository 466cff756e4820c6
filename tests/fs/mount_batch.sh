#!/bin/bash
# mount_batch.sh RAFTFS — a burst of metadata changes answered behind goes
# out in batches (fs/fs_plug.h: up to 8 commands an entry): 200 mkdirs, 200
# renames into them and 200 unlinks there, through the leader's mount and
# then a follower's, take well under one log entry each. What it guards:
# nothing but a command's own caller may start the plug's held commands
# one by one — the lookups and getattrs of every path walk once did
# (fuse_write_wait flushed the plug for inodes with no write in flight),
# and so did the orphan Releases of the unlinks applied so far (eager
# proposals start everything held). Then the mounts and trees agree.
# One block, parsed before any of it runs (tests/FLAKY.md).
{
set -euo pipefail
. "$(dirname "$0")/plug_lib.sh" # RAFTFS_PLUG_US, commit, node_of, has_role
up

N=200
# Most entries a phase of N changes may take: N / 8 batches, plus room for
# the Releases of the unlinked files (every node proposes its own), the
# limit's and linger's cuts. One entry per change (the bug) is N.
MAX=$((N / 2))

# phase NAME SCRIPT: runs the python SCRIPT (d = the test directory, n = N)
# and fsyncs d (returns once what the mount answered early has applied),
# then checks the entries it took.
phase() {
	local c0 c1
	c0=$(commit)
	python3 -c "import os, sys
d, n = sys.argv[1], int(sys.argv[2])
$2
fd = os.open(d, os.O_RDONLY)
os.fsync(fd)
os.close(fd)" "$D" "$N" || fail "$1 through $M"
	c1=$(commit)
	echo "  $1: $((c1 - c0)) entries for $N"
	[ $((c1 - c0)) -le $MAX ] || fail "$1 of $N through $M took $((c1 - c0)) entries (at most $MAX)"
}

for role in leader follower; do
	wait_for 60 "a $role in local status" has_role $role
	k=$(node_of $role)
	[ -n "$k" ] || fail "no $role in local status"
	M=$C/n$k D=$C/n$k/b$k
	echo "== node $k ($role)"
	# Made here, so granted to node k: its entries change behind.
	mkdir "$D"
	for i in $(seq $N); do echo "$i" >"$D/f$i"; done
	phase mkdir 'for i in range(1, n + 1): os.mkdir(f"{d}/d{i}")'
	phase rename 'for i in range(1, n + 1): os.rename(f"{d}/f{i}", f"{d}/d{i}/r{i}")'
	phase unlink 'for i in range(1, n + 1): os.unlink(f"{d}/d{i}/r{i}")'
	for i in 1 $N; do
		[ -d "$D/d$i" ] && [ ! -e "$D/d$i/r$i" ] && [ ! -e "$D/f$i" ] ||
			fail "$D/d$i after the phases"
	done
done
verify 60 "after the bursts"
echo PASS
exit 0
}
