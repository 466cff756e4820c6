# snaplib.sh — shared by the snapshot cluster tests, on top of
# tests/mount/lib.sh (which cleans up every mount and process on exit).

# snap_cluster SNAPSHOT_ENTRIES: a 3-node cluster with mounts that snapshots
# every SNAPSHOT_ENTRIES applied entries.
snap_cluster() {
	"$R" local create 3 "$C" >/dev/null
	sed -i -e "s/^snapshot_entries = .*/snapshot_entries = $1/" -e "s/^snapshot_amortize = .*/snapshot_amortize = 0/" "$C"/node*/raftfs.ini
	grep -q "^snapshot_entries = $1\$" "$C"/node1/raftfs.ini || fail "config not edited"
	grep -q "^snapshot_amortize = 0$" "$C"/node1/raftfs.ini || fail "config not edited (snapshot_amortize)"
	up
}

# file_ops DIR N TAG: N small-file operations (create, write, rename,
# delete) under DIR.
file_ops() {
	local dir=$1/$3 i
	mkdir -p "$dir"
	for i in $(seq 1 "$2"); do
		echo "$3 $i" >"$dir/f$i"
		if [ $((i % 4)) = 0 ]; then mv "$dir/f$((i - 1))" "$dir/m$i"; fi
		if [ $((i % 9)) = 0 ]; then rm -f "$dir/f$((i - 2))"; fi
	done
}

# log_has ID TEXT: node ID's log holds TEXT.
log_has() { grep -q -- "$2" "$C/node$1/node.log"; }

# log_count ID TEXT: how many lines of node ID's log hold TEXT.
log_count() { grep -c -- "$2" "$C/node$1/node.log" || true; }

# behind_compaction ID: the leader ID's log starts after every entry the
# stopped follower has (so it needs a snapshot): first index > applied of F.
compacted_past() { [ "$(status_field "$1" first_index)" -gt "$2" ]; }

# restart_all: the whole cluster, stopped by local down, starts again:
# local up, which waits for every mount and a leader.
restart_all() {
	"$R" local up 3 "$C" >"$T/up.out" 2>&1 || { cat "$T/up.out"; fail "restart"; }
}

# restart_node K [WHAT]: node K (stopped or killed) starts again, its mount
# answering (lib.sh's start_node, not local up and its fixed 30 s wait for
# a leader), and some node leads: the callers' next steps look for the
# leader (leader_id) and make the stream a snapshot needs.
restart_node() {
	start_node "$@"
	wait_for 60 "a leader" has_leader
}
