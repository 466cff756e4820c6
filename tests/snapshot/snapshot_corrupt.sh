#!/bin/bash
# snapshot_corrupt.sh RAFTFS — the first snapshot chunk the leader sends is
# corrupted in flight (test hook RAFTFS_TEST_SNAP_CORRUPT=1): the follower
# rejects it by its checksum and tells the leader, which ends that stream
# and sends the snapshot again, and the follower converges.
# The whole script is one block, parsed before any of it runs: bash reads
# a script as it goes, so an edit to this file during a run would
# otherwise make the running test execute the edited text from a stale
# offset.
{
set -euo pipefail
. "$(dirname "$0")/../mount/lib.sh"
. "$(dirname "$0")/snaplib.sh"
export RAFTFS_TEST_SNAP_CORRUPT=1
snap_cluster 200

L=$(leader_id)
[ -n "$L" ] || fail "no leader"
F=$((L % 3 + 1))
echo "== stop follower $F; operations through node $L until its log is compacted"
"$R" local stop "$C" "$F"
file_ops "$C/n$L" 400 a
# 600 KiB of data: a snapshot of several chunks.
head -c 600000 /dev/urandom >"$C/n$L/big"
wait_for 30 "the leader's log compacted past node $F" compacted_past "$L" 300

echo "== restart follower $F"
restart_node "$F"
verify 60 "after catch-up"
# Whichever node led when the follower came back sent (and corrupted) the
# chunk: leadership may have moved away from $L meanwhile.
grep -q "test: corrupted the snapshot chunk" "$C"/node*/node.log || fail "no chunk was corrupted"
log_has "$F" "checksum mismatch: rejected" || fail "node $F did not reject the corrupt chunk"
log_has "$F" "installed in" || fail "node $F did not install a snapshot"
# The follower told the sender, which ended that stream at once (it keeps
# streams open until the follower acknowledged all of it).
grep -q "the follower dropped the stream" "$C"/node*/node.log ||
	fail "no sender heard that the follower dropped the corrupt stream"
echo "   $(grep -c "checksum mismatch" "$C/node$F/node.log") chunk(s) rejected, then installed"
echo "PASS"
exit
}
