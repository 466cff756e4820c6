#!/bin/bash
# member_test.sh RAFTFS SCENARIO — membership changes of a running 3-node
# filesystem cluster with mounts (raftfs local add/remove, raftfs member),
# while writers run on the mounts:
#   grow           3 -> 4 -> 5 nodes; the new mounts show the same tree;
#                  node 4 restarted takes its peers from its store (its
#                  config file never heard of node 5)
#   replace        kill -9 of node 3, remove it, add a fresh node 4
#   remove_leader  the leader is removed (it hands leadership over first)
#   rebuild        node 2's disk lost: removed, emptied, started under its
#                  id and added again (packaging/README.md section 7), with
#                  creates through its mount from the moment it mounts
# Writers append through dd (which checks close) and log what close
# acknowledged; every acknowledged line must be on every member's mount.
# Uses tests/mount/lib.sh: a reaper and a trap stop every node, detach every
# mount and remove the temp dir, also on failure.
# The whole script is one block, parsed before any of it runs (tests/FLAKY.md).
{
set -euo pipefail
SCENARIO=${2:?usage: $0 RAFTFS SCENARIO}
. "$(dirname "$0")/../mount/lib.sh"
# Snapshots every 200 entries (50 kept behind), so a node added late
# catches up from a snapshot: the log it would need is compacted.
"$R" local create 3 "$C" >/dev/null || fail "local create failed"
sed -i -e "s/^snapshot_entries = .*/snapshot_entries = 200/" -e "s/^snapshot_amortize = .*/snapshot_amortize = 0/" \
	-e "s/^\[raft\]/[raft]\nsnapshot_trailing = 50/" "$C"/node*/raftfs.ini
grep -q "^snapshot_trailing = 50" "$C/node1/raftfs.ini" || fail "config not edited"
up

# progress ID: the writer on mount ID acknowledges 10 more lines.
progress() {
	local base
	base=$(acked "$1")
	wait_for 60 "writer $1 going on ($2)" acked_at_least "$1" $((base + 10))
}
addr() { "$R" local addr "$C" "$1"; }
# members VIA: "id role" per member, as node VIA lists them.
members() { "$R" member list --via "$(addr "$1")" | awk '{ print $1, $3 }' | tr '\n' ' '; }
# Every acknowledged line of writer W is exactly once on each mount given.
check_acked() {
	local w=$1 m
	shift
	for m in "$@"; do
		sort "$m/w$w" >"$T/have"
		sort "$T/acked$w" >"$T/want"
		missing=$(comm -13 "$T/have" "$T/want" | wc -l)
		[ "$missing" = 0 ] || fail "$missing acknowledged lines of writer $w missing on $m"
		dups=$(uniq -d "$T/have" | wc -l)
		[ "$dups" = 0 ] || fail "$dups lines of writer $w twice on $m"
	done
}
# on_none ID NODE...: the orphan is gone from those nodes.
on_none() { local id=$1 n; shift; for n in "$@"; do [ ! -e "$(index_of "$n" "$id")" ] || return 1; done; }
stop_writers() {
	touch "$T/stop"
	wait
}

case $SCENARIO in
grow)
	for id in 1 2; do : >"$T/acked$id"; line_writer $id & done
	for id in 1 2; do wait_for 60 "writer $id started" acked_at_least $id 10; done
	mkdir -p "$C/n1/tree/a/b" && cp -a /etc/hostname /etc/os-release "$C/n1/tree/a/b/"
	# An orphan held by mount 1 across the growth: once mount 1 closes it,
	# it goes only if the new voters released it too (they never held it).
	echo held >"$C/n1/held"
	held=$(stat -c %i "$C/n1/held")
	exec 3<"$C/n1/held"
	rm "$C/n1/held"
	echo "== add node 4 (3 -> 4)"
	"$R" local add "$C" >"$T/add.out" 2>&1 || { cat "$T/add.out"; fail "local add (4) failed"; }
	[ "$(members 1)" = "1 voter 2 voter 3 voter 4 voter " ] || fail "members after adding 4: $(members 1)"
	progress 1 "after adding 4"
	# Enough entries that every log (the leader's is the one that counts)
	# is compacted past its start.
	first_index() { "$R" status "$(addr "$1")" | awk '{ for (i = 1; i < NF; i++) if ($i == "first") print $(i + 1); exit }'; }
	compacted() { local id; for id in 1 2 3 4; do [ "$(first_index $id)" -gt 1 ] || return 1; done; }
	wait_for 120 "every log compacted (first index > 1)" compacted
	echo "== add node 5 (4 -> 5)"
	"$R" local add "$C" >"$T/add.out" 2>&1 || { cat "$T/add.out"; fail "local add (5) failed"; }
	[ "$(members 4)" = "1 voter 2 voter 3 voter 4 voter 5 voter " ] ||
		fail "members after adding 5, as node 4 has them: $(members 4)"
	progress 2 "after adding 5"
	grep -q "state restored from the snapshot" "$C/node5/node.log" ||
		fail "node 5 did not catch up from a snapshot"
	# A new voter is waited for: node 4's mount holds a file that node 1
	# removes; the others release it, and it stays until node 4 closes it.
	echo h4 >"$C/n4/held4"
	held4=$(stat -c %i "$C/n4/held4")
	sleep 600 <"$C/n4/held4" &
	holder=$!
	# The background shell opens it: not before, or it would open nothing.
	opened() { readlink "/proc/$holder/fd/0" | grep -q held4; }
	wait_for 10 "the holder to open held4" opened
	rm "$C/n1/held4"
	others_released() { [ "$(released_on 1 "$held4")" = "1 2 3 5 " ]; }
	wait_for 30 "nodes 1, 2, 3 and 5 to release held4" others_released
	[ -e "$(index_of 1 "$held4")" ] || fail "held4 went while node 4 holds it"
	kill $holder
	wait $holder 2>/dev/null || true
	wait_for 30 "held4 to go once node 4 closed it" on_none "$held4" 1 2 3 4 5
	# Node 4's config lists nodes 1-4 only: restarted, it must take its
	# peers from its store, where the change that added 5 put node 5.
	grep -q "^5 = " "$C/node4/raftfs.ini" && fail "node 4's config names node 5 (the test needs it not to)"
	echo "== restart node 4"
	"$R" local stop "$C" 4 || fail "node 4 did not stop"
	"$R" local start "$C" 4 || fail "node 4 did not start again"
	grep -q "membership (from the store): voters 1 2 3 4 5" "$C/node4/node.log" ||
		fail "node 4 did not take the membership from its store"
	connected5() { "$R" member list --via "$(addr 4)" | grep -q "^5 .* connected$"; }
	wait_for 30 "node 4 connected to node 5 after its restart" connected5
	progress 1 "after restarting 4"
	[ -e "$(index_of 1 "$held")" ] || fail "the orphan held by mount 1 went while held"
	exec 3<&-
	wait_for 30 "the orphan to go once mount 1 closed it" on_none "$held" 1 2 3 4 5
	stop_writers
	verify 60 "five nodes"
	for w in 1 2; do check_acked $w "$C"/n1 "$C"/n2 "$C"/n3 "$C"/n4 "$C"/n5; done
	;;
replace)
	: >"$T/acked1"
	line_writer 1 &
	wait_for 60 "writer 1 started" acked_at_least 1 10
	echo "== kill -9 node 3, then remove it"
	"$R" local kill "$C" 3
	# Removed while node 3 is dead: it waits for node 3's release ...
	echo gone >"$C/n1/orphan"
	orphan=$(stat -c %i "$C/n1/orphan")
	rm "$C/n1/orphan"
	"$R" local remove "$C" 3 >"$T/rm.out" 2>&1 || { cat "$T/rm.out"; fail "local remove 3 failed"; }
	# ... until node 3 is no longer a member.
	wait_for 30 "the orphan to go once node 3 was removed" on_none "$orphan" 1 2
	[ "$(members 1)" = "1 voter 2 voter " ] || fail "members after removing 3: $(members 1)"
	progress 1 "after removing 3"
	echo "== add a fresh node 4"
	"$R" local add "$C" >"$T/add.out" 2>&1 || { cat "$T/add.out"; fail "local add failed"; }
	[ "$(members 2)" = "1 voter 2 voter 4 voter " ] || fail "members after adding 4: $(members 2)"
	progress 1 "after adding 4"
	# Node 4 now counts for the quorum: with node 2 down, 1 and 4 commit.
	"$R" local stop "$C" 2 || fail "node 2 did not stop"
	progress 1 "with node 2 down, nodes 1 and 4 a quorum"
	"$R" local start "$C" 2 || fail "node 2 did not start again"
	stop_writers
	"$R" verify --wait 60 "$C/n1" "$C/n2" "$C/n4" >"$T/v.out" || { cat "$T/v.out"; fail "mounts differ"; }
	check_acked 1 "$C/n1" "$C/n2" "$C/n4"
	;;
remove_leader)
	L=$(leader_id)
	[ -n "$L" ] || fail "no leader"
	W=$((L % 3 + 1)) # a follower's mount writes
	: >"$T/acked$W"
	line_writer $W &
	wait_for 60 "writer $W started" acked_at_least $W 10
	echo "== remove the leader, node $L"
	"$R" local remove "$C" "$L" >"$T/rm.out" 2>&1 || { cat "$T/rm.out"; fail "local remove $L failed"; }
	grep -q "handing leadership to" "$C/node$L/node.log" ||
		fail "leader $L did not hand leadership over before its removal"
	left=()
	for id in 1 2 3; do [ "$id" = "$L" ] || left+=("$id"); done
	[ "$(members "$W")" = "${left[0]} voter ${left[1]} voter " ] ||
		fail "members after removing $L: $(members "$W")"
	new_leader() { local l; l=$(leader_id); [ -n "$l" ] && [ "$l" != "$L" ]; }
	wait_for 30 "a leader among the others" new_leader
	progress $W "after removing the leader"
	stop_writers
	"$R" verify --wait 60 "$C/n${left[0]}" "$C/n${left[1]}" >"$T/v.out" ||
		{ cat "$T/v.out"; fail "mounts differ"; }
	check_acked $W "$C/n${left[0]}" "$C/n${left[1]}"
	"$R" local status "$C" | grep -q "node $L: .*removed from the cluster" ||
		fail "local status does not show node $L removed"
	;;
rebuild)
	# Ids are per node: (node id << 48) | counter (fs/README-sm.md, "Ids").
	# Node 2 hands out ids; half of its files are deleted again, so only
	# the id marks carried in snapshots remember those ids.
	: >"$T/acked1" # no writers here
	mkdir "$C/n2/old"
	(cd "$C/n2/old" && seq -f 'f%.0f' 1 300 | xargs touch)
	old_max=$(stat -c %i "$C/n2/old" "$C"/n2/old/* | sort -n | tail -n 1)
	(cd "$C/n2/old" && seq -f 'f%.0f' 2 2 300 | xargs rm)
	echo "== node 2's disk lost (ids up to $old_max used): removed, emptied, started"
	"$R" local remove "$C" 2 >"$T/rm.out" 2>&1 || { cat "$T/rm.out"; fail "local remove 2 failed"; }
	rm -rf "$C/node2/data"
	sed -i 's/^\[node\]$/[node]\njoin = true/' "$C/node2/raftfs.ini"
	"$R" local start "$C" 2 >"$T/start.out" 2>&1 || { cat "$T/start.out"; fail "start of the emptied node 2"; }
	mounted2() { [ "$(stat -f -c %t "$C/n2" 2>/dev/null)" = 65735546 ]; }
	wait_for 30 "node 2's mount" mounted2
	# Its mount in use before the add: with no leader to ask, the create
	# fails, and the lookup before it found no quorum, so the mount is
	# degraded (lookups answer without a barrier) when the add comes.
	! touch "$C/n2/new0" 2>"$T/touch.err" || fail "a create through node 2 worked before its add"
	cat "$T/touch.err"
	# Added while its mount is in use: every create through it must get an
	# id it never handed out before. Until node 2 caught up, a create
	# waits, then fails with EAGAIN (README, "Failures"); it is tried again
	# then, but only once node 1 lists node 2 as a member (before the add
	# applies no leader sends node 2 anything: it cannot pass its barrier,
	# and asking again at once would only spin). Any other failure (EINVAL:
	# the apply found the id in use) or an id at or below the old ones
	# fails the test.
	"$R" member add 2 "$(addr 2)" --via "$(addr 1)" >"$T/add.out" 2>&1 &
	adder=$!
	until=$((SECONDS + 120))
	is_member2() { "$R" member list --via "$(addr 1)" 2>/dev/null | awk '$1 == 2 { f = 1 } END { exit !f }'; }
	# Ten in the root, then (once node 2 has caught up so far that it
	# shows it) ten in old/, the directory node 2 made before (delegated
	# to it then).
	for k in $(seq 1 20); do
		f=$C/n2/new$k
		if [ "$k" -gt 10 ]; then
			f=$C/n2/old/new$k
			wait_for 60 "node 2 showing old/" test -d "$C/n2/old"
		fi
		until touch "$f" 2>"$T/touch.err"; do
			grep -q "Resource temporarily unavailable" "$T/touch.err" ||
				{ cat "$T/touch.err"; fail "create $f through the rebuilt node 2"; }
			[ $SECONDS -lt $until ] || fail "node 2 refused creates for 120 s (EAGAIN)"
			wait_for $((until - SECONDS + 1)) "node 2 listed as a member" is_member2
		done
		id=$(stat -c %i "$f")
		[ "$id" -gt "$old_max" ] ||
			fail "the rebuilt node 2 handed out id $id again (it had used ids up to $old_max)"
	done
	wait $adder || { cat "$T/add.out"; fail "member add 2"; }
	sorted_members() { "$R" member list --via "$(addr 1)" | awk '{ print $1, $3 }' | sort | tr '\n' ' '; }
	[ "$(sorted_members)" = "1 voter 2 voter 3 voter " ] || fail "members after the rebuild: $(members 1)"
	dups=$(find "$C/n1" -printf '%i\n' | sort | uniq -d | wc -l)
	[ "$dups" = 0 ] || fail "$dups ids used by two objects"
	verify 60 "after node 2's rebuild"
	;;
*)
	fail "unknown scenario $SCENARIO"
	;;
esac
echo "PASS member.$SCENARIO (acknowledged lines: $(cat "$T"/acked* | wc -l))"
exit 0
}
