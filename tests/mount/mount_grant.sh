#!/bin/bash
# mount_grant.sh RAFTFS — grant on demand (fs/fuse_grant.h): a mount that
# keeps creating files in a directory it did not make (nobody holding it)
# gets it delegated, and what it made is on every mount; two mounts working
# in one such directory at once still get exact results — of an O_EXCL
# race over 100 names exactly one wins each, the other gets EEXIST (never
# EAGAIN or EREMOTE from a grant between a recall and a command), of a race
# to unlink them exactly one gets 0, the other ENOENT — while each creates
# its own files there too; the holder then answers another mount's changes
# after a recall, and the trees converge.
# One block, parsed before any of it runs (tests/FLAKY.md).
{
set -euo pipefail
export RAFTFS_WRITE_BEHIND=true
# Holders keep what they were granted until recalled (no return when idle):
# the test reads who holds a directory after the creates.
export RAFTFS_DELEG_IDLE_MS=0
. "$(dirname "$0")/lib.sh"
up

# holder DIR_IN_NODE_TREE: the node holding a directory (0: nobody), read
# from a node's data directory (trusted.raftfs.deleg: u32 holder, u64 epoch).
holder() {
	python3 -c 'import os, sys
try:
    v = os.getxattr(sys.argv[1], "trusted.raftfs.deleg")
    print(int.from_bytes(v[:4], "little"))
except OSError:
    print(0)' "$1"
}

echo "== n1 fills a directory n2 made: granted to node 1 on demand"
# With write-behind on, a mkdir delegates the new directory to its maker;
# n1's first change there recalls it from node 2, and then nobody holds it.
mkdir "$M2/g"
for i in $(seq 1 40); do
	echo "g $i" >"$M1/g/f$i" || fail "create g/f$i through n1"
done
h=$(holder "$C/node1/data/tree/g")
[ "$h" = 1 ] || fail "g is delegated to node $h, not to node 1 after 40 creates"
for i in $(seq 1 40); do
	[ "$(cat "$M3/g/f$i")" = "g $i" ] || fail "g/f$i on n3"
done
verify 60 "after the grant on demand"

echo "== two mounts in one directory at once: exact results"
mkdir "$M3/x"
# Each mount: its own 30 files, then O_EXCL creates of s0..s99, then
# unlinks of s0..s99, the two mounts in step (each phase starts when both
# finished the one before); every errno but the expected one fails.
race() { python3 "$(dirname "$0")/name_race.py" "$1/x" "$2" "$T" ab 30 100; }
race "$M1" a &
A=$!
race "$M2" b &
B=$!
wait $A || fail "the race on n1"
wait $B || fail "the race on n2"
for k in won gone; do
	[ "$(cat "$T/$k.a" "$T/$k.b" | grep -c .)" = 100 ] ||
		fail "$k: $(cat "$T/$k.a" "$T/$k.b" | grep -c .) of 100 names, not each exactly once"
	[ "$(cat "$T/$k.a" "$T/$k.b" | grep . | sort | uniq -d | wc -l)" = 0 ] || fail "$k twice"
done
for i in $(seq 0 29); do
	[ "$(cat "$M3/x/a$i")" = "a $i" ] && [ "$(cat "$M3/x/b$i")" = "b $i" ] ||
		fail "x/a$i or x/b$i on n3"
done
[ -z "$(ls "$M3/x" | grep '^s')" ] || fail "unlinked names left: $(ls "$M3/x" | grep '^s')"
echo "   n1 won $(grep -c . "$T/won.a") creates and $(grep -c . "$T/gone.a") unlinks;" \
	"x held by node $(holder "$C/node1/data/tree/x")"
grep -h "write-behind" "$C"/node*/node.log && fail "a write-behind command failed"
verify 60 "after the two mounts' race"
echo "PASS"
exit 0
}
