#!/bin/bash
# dropped_delete.sh RAFTFS — a node that lost power on a nearly full disk
# deletes its dropped tree before it rebuilds (the rebuild needs about as
# much room), and tells the service manager so while it does: STATUS=
# lines counting the dropped tree's entries, with EXTEND_TIMEOUT_USEC=,
# before READY=1 (fs/svc_start.c). Node 2's data directory is a small
# tmpfs of its own; after its power cut a file fills that disk to less
# free space than its tree takes, so the start deletes the dropped tree
# itself (fs/sm_reset.c short_of_space), not in the background. A test
# gate (RAFTFS_TEST_DROPPED_GATE) holds that deletion until the progress
# line was seen: a deletion of a few hundred files is over before any
# report otherwise.
# The whole script is one block (tests/FLAKY.md).
{
set -euo pipefail
export RAFTFS_CLOSE=commit
. "$(dirname "$0")/../mount/lib.sh"
"$R" local create 3 "$C" >/dev/null || fail "local create failed"
DISK=$C/node2/data
mkdir -p "$DISK"
mount -t tmpfs -o size=96m raftfs-test-disk "$DISK" || fail "mount a tmpfs for node 2's data"
# On exit the gate goes first (a start held there would hold up the
# teardown), then this disk is detached lazily (it stays for node 2
# until lib.sh's cleanup, run next, stops the nodes; the reaper detaches
# it too if the test is killed).
trap 'rc=$?; trap - ERR; set +e; rm -f "$T/gate"; umount -l "$DISK" 2>/dev/null; (exit $rc); cleanup' EXIT
up

# Many one-byte files: the tree takes a block each (8 MiB in all), the
# log little, so that the rebuild after the deletion fits in what the
# deletion frees (with files of 20 KB the log's own flush took the
# rest, and the rebuild failed with ENOSPC).
N=2000
mkdir "$M1/d"
seq -f "$M1/d/f%.0f" 1 "$N" | xargs -n 500 sh -c 'printf x | tee "$@" >/dev/null' sh
count() { find "$1" -mindepth 1 -maxdepth 1 | wc -l; }
has_all() { [ "$(count "$M2/d")" = "$N" ]; }
wait_for 60 "node 2's mount listing all $N files" has_all

echo "== power cut of node 2; its disk filled"
"$R" local kill "$C" 2
[ -s "$DISK/sm/boot" ] || fail "node 2 has no boot id in $DISK/sm/boot"
cat /proc/sys/kernel/random/uuid >"$DISK/sm/boot"
tree_kb=$(du -sk "$DISK/tree" | awk '{ print $1 }')
avail_kb=$(df -k --output=avail "$DISK" | tail -n 1)
# Left free: 7/8 of the tree (less than the tree and than what is used).
fallocate -l $(((avail_kb - tree_kb * 7 / 8) * 1024)) "$DISK/filler" || fail "fill node 2's disk"
df -k "$DISK" | sed 's/^/   /'

sock=$T/notify.sock
python3 "$(dirname "$0")/../deploy/notify_recv.py" "$sock" "$T/notify" $$ >"$T/notify.up" &
wait_for 10 "the notify receiver bound" grep -qs ready "$T/notify.up"
touch "$T/gate"
echo "== node 2 started (tree $tree_kb KiB, free $((tree_kb * 7 / 8)) KiB)"
env NOTIFY_SOCKET="$sock" RAFTFS_TEST_START_TICK_MS=20 RAFTFS_TEST_DROPPED_GATE="$T/gate" \
	"$R" local start "$C" 2 >"$T/start.out" 2>&1 &
starter=$!
deleting() { grep -q 'STATUS=opening the data directory: [1-9][0-9]* entries of the tree dropped' "$T/notify"; }
wait_for 60 "a STATUS= line on the dropped tree's deletion" deleting
rm "$T/gate"
wait $starter || { cat "$T/start.out"; fail "start of node 2 after its power cut"; }
ready() { grep -q 'READY=1' "$T/notify"; }
wait_for 60 "READY=1 from node 2" ready
grep -m1 'STATUS=opening the data directory: [1-9]' "$T/notify" | sed 's/^/   /'
# The deletion's lines come before READY=1, each asking for more time
# while the count moved (the first one at least).
awk '/READY=1/ { r = NR } /entries of the tree dropped/ && !s { s = NR } END { exit !(s && r > s) }' \
	"$T/notify" || { cat "$T/notify"; fail "no dropped-tree STATUS= before READY=1"; }
grep -q 'entries of the tree dropped.*EXTEND_TIMEOUT_USEC=' "$T/notify" ||
	{ cat "$T/notify"; fail "no EXTEND_TIMEOUT_USEC= with the dropped tree's progress"; }
log=$C/node2/node.log
grep -q "deleting it before the rebuild" "$log" || fail "node 2 did not delete its dropped tree first"
[ ! -e "$DISK/dropped" ] || fail "node 2's dropped tree is still there"
wait_for 60 "node 2's mount" mount_answers 2
wait_for 60 "node 2 rebuilt with all $N files" has_all
rm "$DISK/filler"
echo after >"$M2/after"
verify 60 "after node 2's power cut on a full disk"
echo PASS
exit 0
}
