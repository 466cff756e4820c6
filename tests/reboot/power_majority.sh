#!/bin/bash
# power_majority.sh RAFTFS — the whole cluster loses power at once (the
# common case for a few machines in one room): all three nodes are killed
# while a writer on each mount closes files under close = commit, then each
# data directory is given another boot's id, as a reboot does, and its
# tree damaged as a lost page cache may leave it (a file gone, a file with
# other bytes, the journal cut). Every node must drop its untrusted tree
# and rebuild it by itself from its own stored snapshot and Raft log (node
# 1 has a snapshot, the others replay their logs from index 1): started
# again, all are healthy, every file acknowledged before the cut is there
# with its bytes, and the mounts and the nodes' trees are identical.
# The whole script is one block (tests/FLAKY.md).
{
set -euo pipefail
# Acknowledged = committed on a majority, hence in its durable logs.
export RAFTFS_CLOSE=commit
. "$(dirname "$0")/../mount/lib.sh"
up

# Before the snapshot: a bit of every kind of change.
mkdir "$M1/pre" "$M1/pre/sub"
for k in $(seq 1 10); do echo "pre $k" >"$M1/pre/f$k"; done
head -c 1048576 /dev/urandom >"$T/big"
cp "$T/big" "$M1/pre/sub/big"
mv "$M1/pre/f1" "$M1/pre/sub/moved"
rm "$M1/pre/f2"
ln "$M1/pre/f3" "$M1/pre/f3.link"
ln -s f4 "$M1/pre/f4.sym"
truncate -s 3 "$M1/pre/f5"
chmod 600 "$M1/pre/f6"

# Node 1 stores a snapshot and compacts its log: it rebuilds from that
# image and the log after it; nodes 2 and 3 (no snapshot yet at the
# default interval) from their whole logs.
"$R" snapshot "$("$R" local addr "$C" 1)" >"$T/snap.out" || fail "raftfs snapshot of node 1"
mkdir "$M3/post"
for k in $(seq 1 10); do echo "post $k" >"$M3/post/g$k"; done
rm "$M3/pre/f7"
for id in 1 2 3; do wait_for 30 "post/g10 on node $id's mount" test -f "$C/n$id/post/g10"; done

# writer ID: creates files w<ID>.<K> through mount ID, each closed by dd
# (which checks close: under commit, close returns once the file's
# commands are committed); logs each one acknowledged.
writer() {
	local id=$1 k=0
	while [ ! -e "$T/stop" ]; do
		k=$((k + 1))
		printf 'writer %s file %s\n' "$id" "$k" |
			dd of="$C/n$id/post/w$id.$k" conv=fsync status=none 2>/dev/null || break
		echo "$k" >>"$T/acked$id"
	done
}
for id in 1 2 3; do : >"$T/acked$id"; writer "$id" & done
for id in 1 2 3; do wait_for 60 "writer $id started" acked_at_least "$id" 15; done

echo "== power cut: all three nodes killed at once, writers running"
for id in 1 2 3; do "$R" local kill "$C" "$id"; done
touch "$T/stop"
wait
for id in 1 2 3; do echo "   writer $id: $(acked "$id") files acknowledged before the cut"; done

# The reboot: another boot id in every data directory, and the damage a
# lost page cache may leave, different on each node. A node that trusted
# its tree would differ from the others.
for id in 1 2 3; do
	d=$C/node$id/data
	[ -s "$d/sm/boot" ] || fail "node $id has no boot id in $d/sm/boot"
	cat /proc/sys/kernel/random/uuid >"$d/sm/boot"
done
rm "$C/node1/data/tree/pre/f8"
echo "not what was written" >"$C/node2/data/tree/pre/f9"
j=$C/node3/data/sm/journal
truncate -s $(( $(stat -c %s "$j") / 2 )) "$j"

echo "== restart of every node"
# A whole-cluster start after the power cut, as local up is (not start_node).
"$R" local up 3 "$C" >"$T/up2.out" 2>&1 || { cat "$T/up2.out"; fail "restart after the power cut"; }
healthy() { "$R" local status "$C" >"$T/st.out" 2>&1; }
wait_for 60 "every node healthy after the power cut" healthy
for id in 1 2 3; do
	grep -q "dropped the untrusted tree" "$C/node$id/node.log" ||
		fail "node $id's log does not say it dropped its untrusted tree"
done
grep -q "state restored from the stored snapshot" "$C/node1/node.log" ||
	fail "node 1 did not restore its stored snapshot"
# Nodes 2 and 3 cover the other path: no snapshot, the whole log from 1.
for id in 2 3; do
	! grep -q "state restored from the stored snapshot" "$C/node$id/node.log" ||
		fail "node $id had a snapshot: the replay of a whole log went untested"
done

# Every node rebuilt everything acknowledged before the cut.
last_file() { [ -f "$1" ]; }
for id in 1 2 3; do
	n=$(acked "$id")
	for m in 1 2 3; do
		wait_for 60 "node $m's copy of writer $id's file $n" last_file "$C/n$m/post/w$id.$n"
	done
done
verify 60 "after the power cut"
for m in "$M1" "$M2" "$M3"; do
	for id in 1 2 3; do
		while read -r k; do
			[ "$(cat "$m/post/w$id.$k")" = "writer $id file $k" ] ||
				fail "$m/post/w$id.$k, acknowledged before the cut, is wrong or missing"
		done <"$T/acked$id"
	done
	cmp "$T/big" "$m/pre/sub/big" || fail "$m/pre/sub/big differs"
	[ "$(cat "$m/pre/f8")" = "pre 8" ] || fail "$m/pre/f8 wrong"
	[ "$(cat "$m/pre/f9")" = "pre 9" ] || fail "$m/pre/f9 wrong"
	[ "$(cat "$m/pre/sub/moved")" = "pre 1" ] || fail "$m/pre/sub/moved wrong"
	[ ! -e "$m/pre/f2" ] && [ ! -e "$m/pre/f7" ] || fail "$m: a removed file is back"
	[ "$(stat -c %h "$m/pre/f3")" = 2 ] || fail "$m/pre/f3 lost its hard link"
	[ "$(readlink "$m/pre/f4.sym")" = f4 ] || fail "$m/pre/f4.sym wrong"
	[ "$(stat -c %s "$m/pre/f5")" = 3 ] || fail "$m/pre/f5 not truncated"
	[ "$(stat -c %a "$m/pre/f6")" = 600 ] || fail "$m/pre/f6 mode wrong"
	[ "$(cat "$m/post/g10")" = "post 10" ] || fail "$m/post/g10 wrong"
done

# And it goes on: new files (new ids) from every node, the same everywhere.
for id in 1 2 3; do echo "after $id" >"$C/n$id/post/after$id"; done
verify 60 "after new writes"
# The dropped trees are deleted in the background.
no_dropped() { ! ls -d "$C"/node*/data/dropped >/dev/null 2>&1; }
wait_for 30 "the dropped trees deleted" no_dropped
echo PASS
exit 0
}
