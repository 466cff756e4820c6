#!/bin/bash
# snapshot_catchup.sh RAFTFS [OPS] — a follower is stopped while OPS file
# operations (creates, writes, renames, deletes, links, symlinks, xattrs, a
# big sparse file) go through another mount and the leader snapshots and
# compacts its log at least twice; the follower restarts, catches up by
# installing a snapshot, and the three mounts are identical. Then it goes
# on from the log, and a restart starts from the installed snapshot.
# The whole script is one block, parsed before any of it runs: bash reads
# a script as it goes, so an edit to this file during a run would
# otherwise make the running test execute the edited text from a stale
# offset.
{
set -euo pipefail
. "$(dirname "$0")/../mount/lib.sh"
. "$(dirname "$0")/snaplib.sh"
OPS=${2:-3000}
SNAP_ENTRIES=400
snap_cluster $SNAP_ENTRIES

L=$(leader_id)
[ -n "$L" ] || fail "no leader"
F=$((L % 3 + 1))
W=$C/n$L
echo "== stop follower $F; $OPS operations through node $L"
"$R" local stop "$C" "$F"

# The operations run in WORKERS loops at once, each in a directory of its
# own, so their round trips through the log overlap (one loop waited for
# every close in turn: 88 s of the test's time in CI).
WORKERS=4
ops_worker() { # K N: N operations under $W/wK; the count done into $T/ops.K
	local base=$W/w$1 n=$2 ops=0 i=0 d
	mkdir -p "$base/d0" "$base/d1" "$base/keep"
	while [ $ops -lt "$n" ]; do
		d=$base/d$((i % 2))
		echo "file $1.$i" >"$d/f$i"                        # create + write
		ops=$((ops + 1))
		if [ $((i % 5)) = 1 ]; then mv "$base/d$(((i - 1) % 2))/f$((i - 1))" "$base/keep/r$i"; ops=$((ops + 1)); fi
		if [ $((i % 7)) = 3 ]; then rm -f "$base"/d*/f$((i - 2)); ops=$((ops + 1)); fi
		if [ $((i % 50)) = 7 ]; then
			ln "$d/f$i" "$base/keep/hard$i"
			ln -s "../d$((i % 2))/f$i" "$base/keep/sym$i"
			setfattr -n user.k -v "v$i" "$d/f$i"
			mkdir -p "$base/deep/$i/a/b"
			ops=$((ops + 4))
		fi
		i=$((i + 1))
	done
	echo $ops >"$T/ops.$1"
}
t_ops=$(date +%s.%N)
pids=()
for k in $(seq 1 $WORKERS); do
	ops_worker "$k" $(((OPS + WORKERS - 1) / WORKERS)) &
	pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "an operations loop failed"; done
ops=$(cat "$T"/ops.* | paste -sd+ | bc)
[ "$ops" -ge "$OPS" ] || fail "only $ops operations"
# A file with holes, and data through a handle kept open while it is unlinked.
truncate -s 5M "$W/sparse"
dd if=/dev/urandom of="$W/sparse" bs=64k count=4 seek=20 conv=notrunc status=none
exec 7<>"$W/w1/keep/orphan"
echo "orphan data" >&7
rm "$W/w1/keep/orphan"

snap=$(status_field "$L" snapshot_index)
first=$(status_field "$L" first_index)
echo "   $ops operations in $(echo "$(date +%s.%N) - $t_ops" | bc) s"
echo "   leader $L: snapshot index $snap, first log index $first"
[ "$snap" -ge $((2 * SNAP_ENTRIES)) ] || fail "fewer than two snapshots on the leader ($snap)"
[ "$first" -gt "$SNAP_ENTRIES" ] || fail "leader log not compacted (first index $first)"

echo "== restart follower $F: catch-up by snapshot"
t0=$(date +%s.%N)
start_node "$F" # lib.sh: its mount answering, no wait for a leader
t1=$(date +%s.%N)
target=$(status_field "$L" applied)
applied_target() { [ "$(status_field "$F" applied)" -ge "$target" ]; }
wait_for 60 "node $F applying up to $target" applied_target
t2=$(date +%s.%N)
verify 60 "after catch-up"
t3=$(date +%s.%N)
echo "   caught up in $(echo "$t2 - $t0" | bc) s (start of node $F to applied = the leader's:" \
	"$(echo "$t1 - $t0" | bc) s to start and mount); identical mounts verified after" \
	"$(echo "$t3 - $t0" | bc) s"
grep -q "installed in" "$C/node$F/node.log" || fail "node $F caught up without a snapshot"
grep "fs: snapshot image" "$C"/node*/node.log | sed 's/^/   /' | tail -n 4
grep "sm snapshot: installed the image" "$C/node$F/node.log" | sed 's/^/   /' | tail -n 1
exec 7>&-

echo "== more operations after the snapshot"
for j in $(seq 1 50); do echo "after $j" >"$C/n$F/after$j"; done
mv "$C/n$F/after1" "$C/n$F/w1/d0/moved"
# A directory filled through the leader's mount, renamed through the mount
# of the node that installed the snapshot.
mv "$C/n$F/w1/keep" "$C/n$F/w1/kept"
verify 30 "after more operations"

echo "== on demand: raftfs snapshot on node $F"
before=$(status_field "$F" snapshot_index)
out=$("$R" snapshot "$("$R" local addr "$C" "$F")") || fail "raftfs snapshot failed"
echo "   $out"
[ "$(status_field "$F" snapshot_index)" -gt "$before" ] || fail "no new snapshot on node $F"
"$R" status "$("$R" local addr "$C" "$F")" | grep -q "snapshot [0-9]* ([1-9][0-9]* bytes)" ||
	fail "status does not show the snapshot's size"

echo "== restart follower $F from its snapshot"
"$R" local stop "$C" "$F"
start_node "$F" "second restart"
# 60 s: node $F learns what is committed from a leader, and start_node
# does not wait for one as `local up` did.
verify 60 "after restarting $F"
echo "PASS"
exit
}
