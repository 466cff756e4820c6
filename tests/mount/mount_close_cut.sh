#!/bin/bash
# mount_close_cut.sh RAFTFS — close = behind, the case that tears a file
# unless its close waits: a file whose creation and first write already
# went out (the plug's linger started them while the writer paused) gets
# its last write after its node was cut off from the others. Its close may
# not answer before that write commits (the commands since the creation
# are no longer in one entry: fs_node_flush_unit says so): it waits and
# fails after the proposal timeout. Then the node is killed: on the
# survivors the file is torn, which is allowed only because close did not
# return 0 (close_atomic.py check). Before one entry per flush, close
# returned 0 here and the survivors held a torn file that was "closed".
# The nodes run in network namespaces (tests/partition/partlib.sh).
# One block, parsed before any of it runs (tests/FLAKY.md).
{
set -euo pipefail
export RAFTFS_CLOSE=behind
export RAFTFS_DELEG_IDLE_MS=0 # the writer's pause must not end its delegation
. "$(dirname "$0")/../partition/partlib.sh"
PY=$(dirname "$0")/close_atomic.py
part_up
L=$(leader_among 1 2 3) || fail "no leader"
read -r F O <<<"$(others "$L")"
echo "== leader $L; the writer on follower $F's mount, cut off mid-file"
mkdir "$C/n$F/d" # granted to node F: its creates are answered behind
sig=$T/sig
mkdir "$sig"
log=$T/log
: >"$log"
python3 "$PY" straddle "$C/n$F/d/f" "$log" "$sig" &
w=$!
wait_for 30 "the writer's pause" test -e "$sig/paused"
# The creation and the first write reached the others: nobody flushed
# them, the plug's linger started them (1 ms), the survivors applied them.
# Looked at in their trees (their mounts would recall d from node F): the
# file itself with the first write's 3,000 bytes, not just some commit
# (a grant, an election's entry) since the writer began.
out_there() {
	local i s
	for i in "$L" "$O"; do
		s=$(stat -c %s "$C/node$i/data/tree/d/f" 2>/dev/null) || return 1
		[ "$s" = 3000 ] || return 1
	done
}
wait_for 30 "node $F's first commands applied on $L and $O" out_there
net_isolate "$F"
touch "$sig/go"
ended() { grep -q -E '^(closed|failed)' "$log"; }
wait_for 60 "the writer's close" ended
wait "$w" || fail "the writer failed"
cat "$log"
node_kill "$F"
# The survivors: a file closed is whole or absent; this one, torn, must
# not have been closed.
python3 "$PY" check "$C/n$L/d" "$log" || fail "a torn file on node $L was closed"
python3 "$PY" check "$C/n$O/d" "$log" || fail "a torn file on node $O was closed"
grep -q '^failed' "$log" || fail "the close of a file cut in two returned 0"
"$R" verify --wait 30 "$C/n$L" "$C/n$O" >"$T/verify.out" ||
	{ cat "$T/verify.out"; fail "the survivors differ"; }
echo "== heal, restart node $F"
net_heal
node_start "$F"
part_verify 60 "after node $F's restart"
echo "PASS"
exit
}
