#!/bin/bash
# mount_write_elide.sh RAFTFS — a forwarder's own bytes (consensus/
# README-node.md): a big write through a follower's mount goes to the
# leader once, and the leader's appends to that follower leave its data
# out (the follower fills it in from the proposal it forwarded, checked by
# length and CRC-32C). A follower that lacks its copy (RAFTFS_TEST_ELIDE_
# LACK=1: every one, as if it had restarted) names the entry and gets it
# whole, also from a new leader after the old one was killed. Each file is
# compared on every mount, and the nodes' trees at the end.
# The whole script is one block, parsed before any of it runs (tests/FLAKY.md).
{
set -euo pipefail
. "$(dirname "$0")/lib.sh"
up
head -c $((8 << 20)) /dev/urandom >"$T/src"

# put ID NAME: src through mount ID in 1 MiB writes (dd checks close).
put() { dd if="$T/src" of="$C/n$1/$2" bs=1M conv=fsync status=none; }
# everywhere NAME: every mount reads src's bytes at NAME.
everywhere() { local m; for m in 1 2 3; do cmp -s "$T/src" "$C/n$m/$1" || return 1; done; }
# a_follower: the id of a node that is up and not the leader.
a_follower() {
	local l
	l=$(leader_id)
	{ "$R" local status "$C" 2>/dev/null || true; } |
		awk -v l="$l" '$6 == "follower" { sub(":", "", $2); if ($2 != l) { print $2; exit } }'
}
has_leader() { [ -n "$(leader_id)" ]; }

L=$(leader_id)
[ -n "$L" ] || fail "no leader"
F=$(a_follower)
[ -n "$F" ] || fail "no follower"
echo "== 1: n$F (follower of n$L) writes 8 MiB"
put "$F" a
wait_for 60 "a on every mount" everywhere a
# A node logs its counts when it stops (stop_counter restarts it).
sent=$(stop_counter "$L" 'elision:' sent)
[ "${sent:-0}" -ge 8 ] || fail "leader n$L left out the data of ${sent:-no} entries to n$F, not of its 8"
filled=$(stop_counter "$F" 'elision:' filled)
[ "${filled:-0}" -ge 8 ] || fail "n$F filled in ${filled:-no} entries from its own proposals, not 8"
echo "   leader n$L left out $sent, n$F filled in $filled"

wait_for 30 "a leader" has_leader
F=$(a_follower)
echo "== 2: n$F lacks its own copies (RAFTFS_TEST_ELIDE_LACK=1) and writes 8 MiB"
"$R" local stop "$C" "$F" >/dev/null || fail "stop of node $F"
RAFTFS_TEST_ELIDE_LACK=1 "$R" local start "$C" "$F" >/dev/null || fail "start of node $F"
wait_for 60 "node $F's mount" mount_answers "$F"
wait_for 30 "a leader" has_leader
L=$(leader_id)
[ "$L" != "$F" ] || fail "n$F leads after its restart: no follower to write through"
put "$F" b
wait_for 60 "b on every mount" everywhere b

echo "== 3: kill -9 leader n$L; n$F writes 8 MiB through the new one"
"$R" local kill "$C" "$L"
new_leader() { local l; l=$(leader_id); [ -n "$l" ] && [ "$l" != "$L" ]; }
wait_for 30 "a new leader" new_leader
[ "$(leader_id)" != "$F" ] || echo "   n$F leads now: its writes are the leader's own"
put "$F" c
"$R" local up 3 "$C" >"$T/up2.out" 2>&1 || { cat "$T/up2.out"; fail "restart of node $L"; }
wait_for 60 "node $L's mount" mount_answers "$L"
for f in a b c; do wait_for 60 "$f on every mount" everywhere "$f"; done
verify 60 "after the restart of node $L"
lacked=$(stop_counter "$F" 'elision:' lacked)
[ "${lacked:-0}" -ge 1 ] || fail "n$F lacked ${lacked:-no} entries: RAFTFS_TEST_ELIDE_LACK did not act"
echo "   n$F lacked $lacked and got them whole"
for f in a b c; do wait_for 60 "$f on every mount" everywhere "$f"; done
echo "PASS"
exit
}
