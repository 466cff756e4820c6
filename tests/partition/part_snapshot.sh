#!/bin/bash
# part_snapshot.sh RAFTFS — a follower is cut off (its link down, the node
# running) while file operations go on through the other mounts, until the
# leader has snapshotted and compacted its log past everything the
# follower has, twice. Heal: the follower can only catch up by a snapshot
# sent over the real link (thesis §5 / Raft §7, InstallSnapshot), installs
# it, follows the log again, and every mount holds every acknowledged
# write, once.
# One block, parsed whole before it runs (tests/FLAKY.md).
{
set -euo pipefail
. "$(dirname "$0")/partlib.sh"
SNAP_ENTRIES=150

part_up snapshot_entries=$SNAP_ENTRIES snapshot_amortize=0 snapshot_trailing=20
L=$(leader_among 1 2 3) || fail "no leader"
read -r F O <<<"$(others "$L")"
echo "== leader $L; follower $F will be cut off"
mkdir "$C/n$L/ops"
for i in 1 2 3; do : >"$T/acked.$i"; writer "$i" "$i" "w$i" & done
for i in 1 2 3; do wait_for 60 "writer $i started" acked_at_least "$i" 5; done

net_isolate "$F"
# Appends already in F's socket when the link went down are still read; once
# F has heard nothing for an election timeout (it turns pre-candidate and
# forgets the leader) it has read them all, and nothing can raise its commit
# index: what it applied then is final until the heal.
cut_settled() {
	local role a c
	role=$(st "$F" role) a=$(st "$F" applied) c=$(st "$F" commit)
	[ -n "$role" ] && [ "$role" != follower ] && [ -n "$a" ] && [ "$a" = "$c" ]
}
wait_for 30 "node $F to notice it is cut off and apply what it has" cut_settled
applied_f=$(st "$F" applied)
echo "   node $F cut off at applied $applied_f"
# A file of several snapshot chunks (256 KiB each), so the image crosses the
# link in many frames under flow control.
head -c 3M /dev/urandom >"$T/big"
cp "$T/big" "$C/n$L/ops/big"
# Creates, writes, renames and removals through the leader's mount until
# the leader's log starts two snapshot intervals past what F has.
i=0
past() { local first; first=$(st "$L" first_index); [ -n "$first" ] && [ "$first" -gt $((applied_f + 2 * SNAP_ENTRIES)) ]; }
t0=$SECONDS
until past; do
	for j in $(seq 1 20); do
		i=$((i + 1))
		echo "file $i" >"$C/n$L/ops/f$i"
		[ $((i % 4)) != 0 ] || mv "$C/n$L/ops/f$((i - 1))" "$C/n$L/ops/m$i"
		[ $((i % 9)) != 0 ] || rm -f "$C/n$L/ops/f$((i - 2))"
	done
	[ $((SECONDS - t0)) -lt 90 ] || fail "the leader did not compact past $applied_f within 90 s (first index $(st "$L" first_index))"
done
echo "   $i creates through node $L; its log starts at $(st "$L" first_index), snapshot at $(st "$L" snapshot_index)"
[ "$(st "$F" applied)" = "$applied_f" ] || fail "node $F applied $(st "$F" applied) while cut off (was $applied_f)"

echo "== heal"
restored0=$(grep -c "state restored from the snapshot" "$C/node$F/node.log" || true)
net_heal
tcp_state "$L" "$F"
t2=$(ms)
# Whoever leads after the heal (an election may follow it): F knows it
# and has applied all that leader has committed.
follows() {
	local ld c
	ld=$(st "$F" leader)
	[ -n "$ld" ] && [ "$ld" != 0 ] || return 1
	c=$(st "$ld" commit)
	[ -n "$c" ] && [ "$(st "$F" applied)" -ge "$c" ]
}
wait_for 90 "node $F to catch up" follows
restored=$(grep -c "state restored from the snapshot" "$C/node$F/node.log" || true)
[ "$restored" -gt "$restored0" ] || fail "node $F caught up without installing a snapshot"
echo "   node $F caught up $(($(ms) - t2)) ms after the heal: $(grep "state restored from the snapshot" "$C/node$F/node.log" | tail -n 1 | sed 's/.*INFO: //')"
base_f=$(acked "$F")
wait_for 60 "writer $F going on after the heal" acked_at_least "$F" $((base_f + 5))
touch "$T/stop"
wait
part_verify 60 "after the snapshot catch-up"
cmp "$T/big" "$C/n$F/ops/big" || fail "the big file differs on node $F"
for i in 1 2 3; do check_log "$i" "w$i"; echo "   writer $i: $(acked "$i") acknowledged, all present once"; done
echo PASS
exit
}
