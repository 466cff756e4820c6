#!/bin/bash
# mount_orphan.sh RAFTFS — a file removed on one mount while open on others:
# every handle keeps reading and writing it until it closes, on every node;
# the file goes from every node once no node holds it (fs/README-sm.md,
# "Orphans"). One block, parsed before it runs (see mount_ops.sh).
{
set -euo pipefail
. "$(dirname "$0")/lib.sh"
up

: >"$M1/.sync"
sync_to() { [ "${RAFTFS_MOUNT_OPTS:-}" = linearizable ] || : <"$1/.sync"; }

released_by() { [ "$(released_on 1 "$1")" = "$2 " ] && [ "$(released_on 2 "$1")" = "$2 " ] &&
	[ "$(released_on 3 "$1")" = "$2 " ]; }
on_every_node() { for n in 1 2 3; do [ -f "$(index_of $n "$1")" ] || return 1; done; }
on_no_node() { for n in 1 2 3; do [ ! -e "$(index_of $n "$1")" ] || return 1; done; }
# The orphan's content on every node (read from the node's own tree).
content_everywhere() { for n in 1 2 3; do [ "$(cat "$(index_of $n "$1")")" = "$2" ] || return 1; done; }

echo "== n2 holds f open for read+write, n1 (holding nothing) removes it"
echo hello >"$M1/f"
id=$(stat -c %i "$M1/f")
sync_to "$M2"
exec 3<>"$M2/f"
rm "$M1/f"
# n1 and n3 hold nothing and release it as they apply the unlink; n2 holds
# it and does not. Before holders were replicated, n1's release dropped it.
wait_for 30 "nodes 1 and 3 to release f" released_by "$id" "1 3"
on_every_node "$id" || fail "the orphan went while n2 holds it"
[ ! -e "$M2/f" ] || fail "f still has a name on n2"
# n2 writes through its handle, reads it back, stats it, truncates it.
printf 'WORLD' >&3
[ "$(cat /dev/fd/3)" = "WORLD" ] || fail "read back through the handle: $(cat /dev/fd/3)"
[ "$(stat -L -c %h /dev/fd/3)" = 0 ] || fail "nlink of the orphan: $(stat -L -c %h /dev/fd/3)"
wait_for 30 "n2's write on every node's copy" content_everywhere "$id" "WORLD"
truncate -s 3 /dev/fd/3
[ "$(stat -L -c %s /dev/fd/3)" = 3 ] || fail "size after ftruncate: $(stat -L -c %s /dev/fd/3)"
wait_for 30 "the truncate on every node's copy" content_everywhere "$id" "WOR"
exec 3>&-
wait_for 30 "f to go from every node once n2 closed it" on_no_node "$id"
verify 30 "after the orphan went"

echo "== two holders (n1, n3); n2 removes; each close leaves the other working"
echo two >"$M2/g"
id=$(stat -c %i "$M2/g")
sync_to "$M1"
sync_to "$M3"
exec 4<>"$M1/g"
exec 5<>"$M3/g"
rm "$M2/g"
wait_for 30 "node 2 to release g" released_by "$id" "2"
# raftfs verify --trees sees who released an orphan: forge node 3's record.
idx3=$(index_of 3 "$id")
saved=$(getfattr --absolute-names -e hex -n trusted.raftfs.released "$idx3" | sed -n 's/^trusted.raftfs.released=//p')
# (Nobody releases g meanwhile: n1 and n3 hold it, n2 did.)
setfattr -n trusted.raftfs.released -v 0x03000000 "$idx3"
if "$R" verify --wait 30 --trees "$C" >"$T/v.out"; then fail "verify --trees missed a forged release set"; fi
grep -q "node1 vs node3: orphan $(printf '%016x' "$id"): released by different nodes" "$T/v.out" ||
	fail "verify --trees: $(cat "$T/v.out")"
setfattr -n trusted.raftfs.released -v "$saved" "$idx3"
"$R" verify --wait 30 --trees "$C" >"$T/v.out" || fail "verify --trees after the repair: $(cat "$T/v.out")"
exec 4>&-
wait_for 30 "node 1 to release g on closing" released_by "$id" "1 2"
printf 'still' >&5
[ "$(cat /dev/fd/5)" = still ] || fail "n3's handle after n1 closed: $(cat /dev/fd/5)"
wait_for 30 "n3's write on every node's copy" content_everywhere "$id" "still"
exec 5>&-
wait_for 30 "g to go once n3 closed it too" on_no_node "$id"

echo "== a node that is down keeps the orphan until it returns"
echo down >"$M1/h"
id=$(stat -c %i "$M1/h")
sync_to "$M3"
"$R" local stop "$C" 3
rm "$M1/h"
two_released() { [ "$(released_on 1 "$id")" = "1 2 " ] && [ "$(released_on 2 "$id")" = "1 2 " ]; }
wait_for 30 "nodes 1 and 2 to release h" two_released
[ -f "$(index_of 1 "$id")" ] || fail "h went while node 3 was down"
start_node 3
# 60 s: node 3's release commits through a leader, and `local up`'s wait
# for one no longer comes first (lib.sh, start_node).
wait_for 60 "node 3 to release h at start" on_no_node "$id"
verify 60 "after node 3 came back"
echo "PASS"
exit
}
