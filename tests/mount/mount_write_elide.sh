#!/bin/bash
# mount_write_elide.sh RAFTFS — a forwarder's own bytes (consensus/
# README-node.md): a big write through a follower's mount goes to the
# leader once, and the leader's appends to that follower leave its data
# out (the follower fills it in from the proposal it forwarded, checked by
# length and CRC-32C). A follower that lacks its copy (RAFTFS_TEST_ELIDE_
# LACK=1: every one, as if it had restarted) names the entry and gets it
# whole, also from a new leader after the old one was killed. A follower
# that does not offer the feature in its hello (RAFTFS_ELIDE=0, as a node
# of an older build) gets its writes whole. Each file is compared on every
# mount, and the nodes' trees at the end.
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
# restart K [NAME=VALUE...]: node K stopped and started again in the
# environment given (a knob for that node alone).
restart() {
	local k=$1
	shift
	"$R" local stop "$C" "$k" >/dev/null || fail "stop of node $k"
	env "$@" "$R" local start "$C" "$k" >/dev/null || fail "start of node $k"
	wait_for 60 "node $k's mount" mount_answers "$k"
}
# phase_line K [NAME=VALUE...]: node K's 'elision:' line of its run that
# ends now (logged at stop only when a count is not 0; empty if this stop
# wrote none): K is restarted in the environment given, and its new run
# logs no such line before its own stop.
phase_line() {
	local k=$1 before line=
	before=$(grep -c 'elision:' "$C/node$k/node.log" || true)
	restart "$@"
	[ "$(grep -c 'elision:' "$C/node$k/node.log" || true)" -gt "$before" ] &&
		line=$(grep -h 'elision:' "$C/node$k/node.log" | tail -1)
	echo "   n$k: ${line:-no elision line}" >&2
	echo "$line"
}
# count LINE WORD: the number after WORD in an elision line (0: none).
count() { echo "$1" | awk -v w="$2" '{for (i = 1; i < NF; i++) if ($i == w) n = $(i + 1)} END {print n + 0}'; }
# follower_writer ENV...: the id of a follower, restarted in ENV until it
# is one after its restart (a restart may make it leader, whose writes
# are its own: no elision to speak of). At most three tries.
follower_writer() {
	local f try
	for try in 1 2 3; do
		wait_for 30 "a leader" has_leader
		f=$(a_follower)
		[ -n "$f" ] || fail "no follower"
		restart "$f" "$@"
		wait_for 30 "a leader" has_leader
		[ "$(leader_id)" != "$f" ] && { echo "$f"; return; }
		echo "   n$f leads after its restart: another try" >&2
	done
	fail "three restarted followers all became leader"
}

# Step 1 counts what one leader left out for one follower, so the put
# must run under one leadership: a follower that wins an election during
# it (seen at load 16, 1.3 s after up) writes the rest as leader. The
# leader's term before and after tells; another try on a change.
for try in 1 2 3; do
	wait_for 30 "a leader" has_leader
	L=$(leader_id)
	F=$(a_follower)
	[ -n "$F" ] || fail "no follower"
	term=$(status_field "$L" term)
	echo "== 1: n$F (follower of n$L, term $term) writes 8 MiB"
	put "$F" a
	[ "$(leader_id)" = "$L" ] && [ "$(status_field "$L" term)" = "$term" ] && break
	echo "   the leadership moved during the put: another try" >&2
	[ "$try" -lt 3 ] || fail "the leadership moved during each of three puts"
done
wait_for 60 "a on every mount" everywhere a
# A node logs its counts when it stops (stop_counter restarts it).
sent=$(stop_counter "$L" 'elision:' sent)
[ "${sent:-0}" -ge 8 ] || fail "leader n$L left out the data of ${sent:-no} entries to n$F, not of its 8"
filled=$(stop_counter "$F" 'elision:' filled)
[ "${filled:-0}" -ge 8 ] || fail "n$F filled in ${filled:-no} entries from its own proposals, not 8"
echo "   leader n$L left out $sent, n$F filled in $filled"

echo "== 2: a follower lacks its own copies (RAFTFS_TEST_ELIDE_LACK=1) and writes 8 MiB"
F=$(follower_writer RAFTFS_TEST_ELIDE_LACK=1)
L=$(leader_id)
echo "   n$F, follower of n$L"
put "$F" b
wait_for 60 "b on every mount" everywhere b
lacked=$(count "$(phase_line "$F" RAFTFS_TEST_ELIDE_LACK=1)" lacked)
[ "$lacked" -ge 1 ] || fail "n$F lacked $lacked entries of b: RAFTFS_TEST_ELIDE_LACK did not act"
echo "   n$F lacked $lacked and got them whole"

echo "== 3: kill -9 the leader; n$F (lacking its copies) writes 8 MiB through the new one"
for try in 1 2 3; do
	wait_for 30 "a leader" has_leader
	L=$(leader_id)
	[ "$L" != "$F" ] || { F=$(follower_writer RAFTFS_TEST_ELIDE_LACK=1); continue; }
	"$R" local kill "$C" "$L"
	new_leader() { local l; l=$(leader_id); [ -n "$l" ] && [ "$l" != "$L" ]; }
	wait_for 30 "a new leader" new_leader
	[ "$(leader_id)" = "$F" ] || break
	# Its writes would be the leader's own: bring n$L back and make n$F
	# a follower again (a restart of it, with n$L and the third up).
	echo "   n$F leads after the kill of n$L: another try" >&2
	start_node "$L"
	F=$(follower_writer RAFTFS_TEST_ELIDE_LACK=1)
done
[ "$(leader_id)" != "$F" ] || fail "n$F led after three kills of the leader: no follower to write through"
echo "   n$F, follower of the new leader n$(leader_id) (n$L killed)"
put "$F" c
start_node "$L"
for f in a b c; do wait_for 60 "$f on every mount" everywhere "$f"; done
verify 60 "after the restart of node $L"
lacked=$(count "$(phase_line "$F")" lacked)
[ "$lacked" -ge 1 ] || fail "n$F lacked $lacked entries of c from the new leader"
echo "   n$F lacked $lacked of c and got them whole"

echo "== 4: a follower that does not offer the feature (RAFTFS_ELIDE=0) writes 8 MiB"
F=$(follower_writer RAFTFS_ELIDE=0)
echo "   n$F, follower of n$(leader_id)"
put "$F" d
wait_for 60 "d on every mount" everywhere d
line=$(phase_line "$F")
filled=$(count "$line" filled) lacked=$(count "$line" lacked)
[ "$filled" -eq 0 ] && [ "$lacked" -eq 0 ] ||
	fail "n$F did not offer elision, yet got entries without their data (filled $filled, lacked $lacked)"
for f in a b c d; do wait_for 60 "$f on every mount" everywhere "$f"; done
verify 60 "at the end"
echo "PASS"
exit
}
