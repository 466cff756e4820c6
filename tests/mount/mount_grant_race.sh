#!/bin/bash
# mount_grant_race.sh RAFTFS — three mounts fight over one directory as hard
# as grant on demand lets them (RAFTFS_TEST_GRANT_EAGER: each asks for the
# directory at its first synchronous change and never backs off), so a
# synchronous command is refused again and again by a grant that applied
# between its mount's recall and the command. Each refused command is
# retried under its own mount's delegation (fuse_behind_claim), so
#  1. every create (O_EXCL over 60 shared names, plus own files), unlink
#     and rename gets only its own result (0, EEXIST, ENOENT) — never
#     EAGAIN (the retries ran out) or EREMOTE;
#  2. each shared name was created exactly once and unlinked exactly once;
#  3. the mounts and the trees agree.
# Before the claim, EAGAIN came after 8 lost races (RETRY_MAX); here, with
# one retry allowed, after 2.
# One block, parsed before any of it runs (tests/FLAKY.md).
{
set -euo pipefail
# A refused command is retried once (RAFTFS_TEST_RETRY_MAX=1, 8 normally):
# the retry must get through at once.
export RAFTFS_WRITE_BEHIND=true RAFTFS_TEST_GRANT_EAGER=1 RAFTFS_TEST_RETRY_MAX=1
. "$(dirname "$0")/lib.sh"
up

mkdir "$M3/x"
# race MOUNT TAG: own files, O_EXCL creates of s0..s59, renames of own
# files, unlinks of s0..s59, each phase started when all three reached it.
race() { python3 "$(dirname "$0")/name_race.py" "$1/x" "$2" "$T" abc 20 60 rename; }
race "$M1" a &
A=$!
race "$M2" b &
B=$!
race "$M3" c &
C3=$!
wait $A || fail "the race on n1"
wait $B || fail "the race on n2"
wait $C3 || fail "the race on n3"
for k in won gone; do
	n=$(cat "$T/$k.a" "$T/$k.b" "$T/$k.c" | grep -c .)
	[ "$n" = 60 ] || fail "$k: $n of 60 names, not each exactly once"
	[ "$(cat "$T/$k.a" "$T/$k.b" "$T/$k.c" | grep . | sort | uniq -d | wc -l)" = 0 ] ||
		fail "$k twice"
done
for tag in a b c; do
	for i in $(seq 0 19); do
		f=$M1/x/$tag$i
		[ $((i % 2)) = 1 ] || f=$f.r
		[ "$(cat "$f")" = "$tag $i" ] || fail "$f"
	done
done
[ -z "$(ls "$M2/x" | grep '^s')" ] || fail "unlinked names left: $(ls "$M2/x" | grep '^s')"
echo "   creates won: n1 $(grep -c . "$T/won.a"), n2 $(grep -c . "$T/won.b"), n3 $(grep -c . "$T/won.c")"
verify 60 "after the three mounts' race"
echo "PASS"
exit 0
}
