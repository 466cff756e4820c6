#!/usr/bin/env bash
# cpu_per_file.sh BUILD_DIR foll|lead create N | tar TARBALL | meta N — CPU
# and context switches per file of the three node processes of a fresh
# 3-node cluster, by thread kind (raft-apply, raft-loop, raft-persist, the
# mount's fs-plug flusher, rocksdb:*, and the unnamed rest: FUSE workers,
# invalidation and snapshot threads; bench/fs/lib.sh), while
# fs-bench makes N files (create + write 4 KiB + close) or tar x unpacks
# TARBALL into the follower's or the leader's mount. `meta N` runs
# fs-bench's create, mkdir, rename and unlink phases (N each) and gives
# each phase's cost per operation, and its log entries per operation:
# between phases every node has applied everything (fs-bench -S), so a
# phase pays for its own apply on all three nodes and nothing else.
#
# Each run gets a fresh ext4 without a journal on a loop device backed by
# IMG (default a fresh /dev/shm/raftfs-cpu.*, 3 GiB, RAM): no recently freed
# inodes for ext4 to scan (TARGETS.md) and no disk noise, so the numbers
# are what raftfs itself spends (bench/fs/README.md, "Apply and FUSE CPU
# per small file"). SNAPSHOT_ENTRIES=K sets [raft] snapshot_entries (0:
# no snapshots). Needs root (mkfs, mount); everything is undone on exit.
set -euo pipefail
[ $# -eq 4 ] || { sed -n '2,19p' "$0"; exit 2; }
build=$(cd "$1" && pwd) which=$2 what=$3 arg=$4
raftfs=$build/fs/raftfs
. "$(dirname "$0")/lib.sh"
status() { cluster_status "$mnt/c"; }
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
# meta: fs-bench's -S hook (this script again, what = hook, arg = the
# phase), after each phase: waits until every node has applied
# everything, then snapshots the threads and the commit index.
if [ "$what" = hook ]; then
	mnt=$CPF_HOOK_MNT
	pids=$(node_pids "$mnt/c")
	wait_settled
	snap >"$mnt/snap.$arg"
	status | awk '{ print $12; exit }' >"$mnt/commit.$arg"
	exit 0
fi

img=${IMG:-$(mktemp /dev/shm/raftfs-cpu.XXXXXX)}
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
# meta: the settle between phases is a pause no program makes; held
# directories would be returned idle in it (fuse_grant_idle) and the next
# phase run synchronously. Idle returns off unless set.
[ "$what" = meta ] && export RAFTFS_DELEG_IDLE_MS=${RAFTFS_DELEG_IDLE_MS:-0}
"$raftfs" local up 3 "$mnt/c" >/dev/null
leader=$(leader_of "$mnt/c")
node=$((leader % 3 + 1))
[ "$which" = lead ] && node=$leader
pids=$(node_pids "$mnt/c")

mkdir "$mnt/c/n$node/d"
wait_settled
snap >"$mnt/before"
echo "[$(uptime | sed 's/.*load/load/')] n$node ($which), $what $arg"
start=$(date +%s.%N)
if [ "$what" = meta ]; then
	CPF_HOOK_MNT=$mnt "$build/bench/fs/fs-bench" -v -n "$arg" -p create,mkdir,rename,unlink \
		-k -S "'$0' '$build' $which hook \$FS_BENCH_PHASE" "$mnt/c/n$node/d"
	prev=start
	for ph in create mkdir rename unlink; do
		echo "$ph: $(echo "($(cat "$mnt/commit.$ph") - $(cat "$mnt/commit.$prev")) / $arg" |
			bc -l | xargs printf '%.2f') entries/op"
		thread_cost "$mnt/snap.$prev" "$mnt/snap.$ph" "$arg" |
			awk -v p="$ph" '{ printf "  %-8s %-8s %7.3f ms CPU/op  %5.1f context switches/op\n", p, $1, $2, $3 }'
		prev=$ph
	done
	exit 0
fi
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
