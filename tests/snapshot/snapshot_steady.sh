#!/bin/bash
# snapshot_steady.sh RAFTFS [ROUNDS] — a long steady write load: while the
# tree keeps growing, the raft log stays bounded: the number of entries held
# (last - first + 1) stays under snapshot_entries + its trailing margin +
# what arrives while a snapshot is made, and the RocksDB directory stays
# under 96 MiB + 3 snapshots: the images live in the same RocksDB as the log,
# so replaced images and compacted entries linger in the WAL and memtable
# (64 MiB before a flush) and in tables until RocksDB compacts them. Then a
# snapshot is taken by the byte threshold (snapshot_bytes) alone.
# The whole script is one block, parsed before any of it runs: bash reads
# a script as it goes, so an edit to this file during a run would
# otherwise make the running test execute the edited text from a stale
# offset.
{
set -euo pipefail
. "$(dirname "$0")/../mount/lib.sh"
. "$(dirname "$0")/snaplib.sh"
ROUNDS=${2:-16}
SE=300
snap_cluster $SE
L=$(leader_id); [ -n "$L" ] || fail "no leader"
W=$C/n$L
# Since images stream while apply goes on, the log is compacted only when
# the stream ends, and a snapshot that falls due meanwhile is taken after
# it: up to one more interval (and what a loaded machine applies during a
# stream, ~200) can be in the log beside SE and the trailing SE / 2. 674
# entries were seen at load 15 against the old SE + SE / 2 + 200. Still a
# bound: the run applies well over 4,000 entries.
MAX_ENTRIES=$((2 * SE + SE / 2 + 200))

max_held=0 max_log=0
for r in $(seq 1 "$ROUNDS"); do
	file_ops "$W" 150 "r$r"
	head -c 1000000 /dev/urandom >"$W/r$r/blob"
	first=$(status_field "$L" first_index) last=$(status_field "$L" last_index)
	held=$((last - first + 1))
	snap_bytes=$(grep "snapshot at .* bytes); log compacted" "$C/node$L/node.log" | tail -n1 |
		sed -n 's/.*(\([0-9]*\) bytes).*/\1/p')
	raft=$(du -sb "$C/node$L/data/raft" | cut -f1)
	tree=$(du -sb "$C/node$L/data/tree" | cut -f1)
	log=$((raft - ${snap_bytes:-0}))
	echo "   round $r: tree $tree bytes, log entries $first..$last ($held), raft dir $raft bytes, snapshot ${snap_bytes:-0} bytes"
	[ "$held" -le "$MAX_ENTRIES" ] || fail "the log holds $held entries (bound $MAX_ENTRIES)"
	bound=$(((96 << 20) + 3 * ${snap_bytes:-0}))
	[ "$raft" -le "$bound" ] || fail "the raft dir holds $raft bytes (bound $bound)"
	[ $held -gt $max_held ] && max_held=$held
	[ $log -gt $max_log ] && max_log=$log
done
[ "$(status_field "$L" snapshot_index)" -gt $((ROUNDS * 150)) ] || fail "too few snapshots"
verify 60 "after the load"
echo "   at most $max_held entries held (bound $MAX_ENTRIES), raft dir minus snapshot at most $max_log bytes"

echo "== the byte threshold: snapshot_bytes = 3000000, snapshot_entries far away"
"$R" local down "$C" >/dev/null
sed -i -e "s/^snapshot_entries = .*/snapshot_entries = 1000000/" \
	-e "s/^\[raft\]\$/[raft]\nsnapshot_bytes = 3000000/" "$C"/node*/raftfs.ini
grep -q "^snapshot_bytes = 3000000" "$C"/node1/raftfs.ini || fail "config not edited"
restart_all
L=$(leader_id); [ -n "$L" ] || fail "no leader"
before=$(status_field "$L" snapshot_index)
for k in 1 2 3 4; do head -c 1000000 /dev/urandom >"$C/n$L/bytes$k"; done
snapshot_beyond() { [ "$(status_field "$L" snapshot_index)" -gt "$before" ]; }
wait_for 30 "a snapshot after 4 MB of entries (threshold 3 MB)" snapshot_beyond
echo "   snapshot index $before -> $(status_field "$L" snapshot_index) after 4 MB of writes"
verify 30 "after the byte-threshold snapshot"
echo "PASS"
exit
}
