#!/usr/bin/env bash
# cpu_per_file.sh BUILD_DIR foll|lead create N | tar TARBALL — CPU and
# context switches per file of the three node processes of a fresh 3-node
# cluster, by thread kind (raft-apply, raft-loop, rocksdb:*, and the
# unnamed rest: FUSE workers, invalidation and snapshot threads), while
# fs-bench makes N files (create + write 4 KiB + close) or tar x unpacks
# TARBALL into the follower's or the leader's mount.
#
# Each run gets a fresh ext4 without a journal on a loop device backed by
# IMG (default /dev/shm/raftfs-cpu.img, 3 GiB, RAM): no recently freed
# inodes for ext4 to scan (TARGETS.md) and no disk noise, so the numbers
# are what raftfs itself spends (bench/fs/README.md, "Apply and FUSE CPU
# per small file"). SNAPSHOT_ENTRIES=K sets [raft] snapshot_entries (0:
# no snapshots). Needs root (mkfs, mount); everything is undone on exit.
set -euo pipefail
[ $# -eq 4 ] || { sed -n '2,14p' "$0"; exit 2; }
build=$(cd "$1" && pwd) which=$2 what=$3 arg=$4
raftfs=$build/fs/raftfs
. "$(dirname "$0")/lib.sh"
img=${IMG:-/dev/shm/raftfs-cpu.img}
mnt=$(mktemp -d /tmp/raftfs-cpu.XXXXXX)
cleanup() {
	"$raftfs" local down "$mnt/c" >/dev/null 2>&1 || true
	# The nodes' last descriptors close a moment after they are reaped.
	for _ in $(seq 50); do
		mountpoint -q "$mnt" || break
		umount "$mnt" 2>/dev/null && break
		sleep 0.2
	done
	mountpoint -q "$mnt" || rmdir "$mnt"
	rm -f "$img"
}
trap cleanup EXIT
truncate -s 3G "$img"
mkfs.ext4 -q -O ^has_journal -F "$img"
mount -o loop "$img" "$mnt"

if [ -n "${SNAPSHOT_ENTRIES:-}" ]; then
	"$raftfs" local create 3 "$mnt/c" >/dev/null
	sed -i "s/^snapshot_entries = .*/snapshot_entries = $SNAPSHOT_ENTRIES/" "$mnt"/c/node*/raftfs.ini
fi
"$raftfs" local up 3 "$mnt/c" >/dev/null
status() { cluster_status "$mnt/c"; }
leader=$(leader_of "$mnt/c")
node=$((leader % 3 + 1))
[ "$which" = lead ] && node=$leader
pids=$(node_pids "$mnt/c")

# Every node has applied all that was committed (and nothing moves).
settled() {
	local s
	s=$(status | awk '{ print $12, $14 }')
	[ "$(echo "$s" | tr ' ' '\n' | sort -u | wc -l)" = 1 ]
}
wait_settled() {
	for _ in $(seq 300); do
		settled && return 0
		sleep 0.1
	done
	echo "cpu_per_file.sh: the nodes did not settle" >&2
	exit 1
}

# shellcheck disable=SC2086 # one word a pid
snap() { thread_snap $pids; }

mkdir "$mnt/c/n$node/d"
wait_settled
snap >"$mnt/before"
echo "[$(uptime | sed 's/.*load/load/')] n$node ($which), $what $arg"
start=$(date +%s.%N)
if [ "$what" = create ]; then
	"$build/bench/fs/fs-bench" -n "$arg" -p create -k "$mnt/c/n$node/d" | grep create
	files=$arg
else
	tar xf "$arg" -C "$mnt/c/n$node/d"
	files=$(tar tf "$arg" | wc -l)
fi
end=$(date +%s.%N)
wait_settled
snap >"$mnt/after"
echo "$files entries in $(echo "$end - $start" | bc) s"
thread_cost "$mnt/before" "$mnt/after" "$files" |
	awk '{ printf "%-8s %7.3f ms CPU/file  %5.1f context switches/file\n", $1, $2, $3 }'
