#!/bin/bash
# verify_cap.sh RAFTFS — raftfs verify on plain directories that differ in
# more objects than it keeps lines for per pair (MAX_LINES_PER_PAIR, 2000,
# fs/cli_verify.c): it prints 2000 lines for that pair and one saying how
# many more it found, counts all of them, and prints every line of a pair
# under the cap. No cluster, no mount: verify compares any directories.
{
set -euo pipefail
. "$(dirname "$0")/../lib/wait.sh" # fail
R=${1:?usage: $0 RAFTFS_BINARY}
# In memory where there is /dev/shm: 2,100 creates on a busy disk took 20 s.
T=$(mktemp -d -p "$([ -d /dev/shm ] && echo /dev/shm || echo /tmp)" raftfs-verify-cap.XXXXXX)
trap 'rm -rf "$T"' EXIT
mkdir "$T/a" "$T/b"
# b lacks all 2100 files of a; c lacks 3 (the others are hard links of a's:
# the same inode, so the same attributes). The roots themselves differ in
# every pair too (inode numbers, times): a few lines more.
(cd "$T/a" && seq 1 2100 | xargs touch)
cp -al "$T/a" "$T/c"
rm "$T/c/1" "$T/c/2" "$T/c/3"
rc=0
"$R" verify "$T/a" "$T/b" "$T/c" >"$T/out" || rc=$?
[ $rc = 1 ] || fail "verify exited $rc, not 1"
ab=$(grep -c "^$T/a vs $T/b: " "$T/out") || true
ac=$(grep -c "^$T/a vs $T/c: " "$T/out") || true
more=$(sed -n "s|^$T/a vs $T/b: \([0-9]*\) more differences not shown\$|\1|p" "$T/out")
total=$(tail -n 1 "$T/out" | sed -n 's/^\([0-9]*\) differences$/\1/p')
echo "pair a/b: $ab lines ($more more not shown), pair a/c: $ac lines, $total in all"
[ "$ab" = 2001 ] || fail "pair a/b: $ab lines, not 2000 + the one saying how many more"
[ -n "$more" ] && [ "$more" -gt 100 ] || fail "no line saying how many more of pair a/b (over 100)"
[ "$(grep -c "^$T/a vs $T/c: [123]: only in the first tree\$" "$T/out")" = 3 ] ||
	fail "pair a/c (under the cap) is not listed whole"
! grep -q "^$T/a vs $T/c: .* more differences not shown" "$T/out" || fail "pair a/c said to have more"
[ "$total" = $((2000 + more + ac)) ] || fail "the count $total is not 2000 + $more + $ac"
echo PASS
exit
}
