#!/usr/bin/env bash
# compare.sh BUILD_DIR [N] [JOBS] — runs fs-bench, in one sitting, on a plain
# directory, on libfuse's passthrough_ll example (the cost of FUSE alone;
# compiled from the Debian package's examples, not shipped here) and on a
# fresh 3-node raftfs cluster: a follower's mount (its proposals are
# forwarded) and the leader's mount. JOBS > 1 adds fs-bench -j JOBS (several
# processes at once, reported apart from the one-process numbers).
# RAFTFS_ONLY=1 skips the plain directory and passthrough_ll (before/after
# runs of raftfs alone); FS_BENCH=PATH uses another fs-bench binary.
# Needs root (mounts). Everything it mounts or starts is undone on exit.
set -euo pipefail
build=$(cd "${1:?usage: compare.sh BUILD_DIR [N] [JOBS]}" && pwd)
n=${2:-500}
jobs=${3:-1}
raftfs=$build/fs/raftfs
bench=${FS_BENCH:-$build/bench/fs/fs-bench}
examples=/usr/share/doc/libfuse3-dev/examples

# BENCH_DIR: where everything runs (default /var/tmp). This machine's ext4
# (no journal) does not reuse an inode freed in the last ~60 s, and creates
# while many such inodes exist are many times slower (TARGETS.md): each
# target deletes what it made, so the next one waits SETTLE seconds
# (default 65) for the disk to settle first, and every target gets a
# cluster of its own. FRESH=1 instead gives every target a fresh ext4
# without a journal on a loop device backed by a sparse file in BENCH_DIR:
# no freed inodes at all, but every fsync pays the loop device's extra
# flush of its backing file (4 KiB O_DSYNC writes ~1.5x slower here).
work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/raftfs-compare.XXXXXX")
fresh=${FRESH:-0}
mounted=()
cleanup() {
	local m
	for m in "$work"/cluster*; do
		[ -d "$m/c" ] && { "$raftfs" local down "$m/c" >/dev/null 2>&1 || true; }
	done
	mountpoint -q "$work/pt" && fusermount3 -u "$work/pt"
	for m in "${mounted[@]}"; do
		# The nodes' last descriptors close a moment after they are reaped.
		for _ in $(seq 50); do
			mountpoint -q "$m" || break
			umount "$m" 2>/dev/null && break
			sleep 0.2
		done
		! mountpoint -q "$m" || umount -l "$m"
	done
	rm -rf "$work"
}
trap cleanup EXIT

# where NAME: dir= a directory for the next target, on a fresh filesystem
# (not run in $(...): the mount must be remembered for the clean-up).
where() {
	dir=$work/$1
	mkdir -p "$dir"
	if [ "$fresh" = 1 ]; then
		truncate -s 16G "$work/$1.img"
		mkfs.ext4 -q -O ^has_journal -F "$work/$1.img"
		mount -o loop "$work/$1.img" "$dir"
		mounted+=("$dir")
	fi
}
settle=${SETTLE:-65}
settle() { [ "$fresh" = 1 ] || { sync; sleep "$settle"; }; }
load() { uptime | sed 's/.*load/load/'; }

tar cf "$work/include.tar" -C /usr/include .
args=(-n "$n" -j "$jobs" -t "$work/include.tar")

if [ -z "${RAFTFS_ONLY:-}" ]; then
	where plain
	echo "### plain directory (ext4)   [$(load)]"
	"$bench" "${args[@]}" "$dir"
	settle

	gcc -O2 -o "$work/passthrough_ll" "$examples/passthrough_ll.c" $(pkg-config --cflags --libs fuse3)
	where pt-src
	mkdir -p "$work/pt"
	"$work/passthrough_ll" -o source="$dir" "$work/pt"
	echo "### passthrough_ll (FUSE alone)   [$(load)]"
	"$bench" "${args[@]}" "$work/pt"
	fusermount3 -u "$work/pt"
	settle
fi

# cluster NAME: a fresh 3-node cluster in NAME/c; leader= its leader's id.
cluster() {
	local c
	where "$1"
	c=$dir/c
	leader=
	"$raftfs" local up 3 "$c" >/dev/null
	for _ in $(seq 100); do
		leader=$({ "$raftfs" local status "$c" 2>/dev/null || true; } |
			awk '$6 == "leader" { sub(":", "", $2); print $2; exit }')
		[ -n "$leader" ] && break
		sleep 0.1
	done
	[ -n "$leader" ] || { echo "compare.sh: no leader in $c" >&2; exit 1; }
}
# verify C: the mounts and the nodes' trees are identical. The other mounts
# apply the benchmark's last write-behind commands a moment after it
# returned: --wait gives them the time.
verify() {
	"$raftfs" verify --wait 10 "$1"
	"$raftfs" verify --wait 10 --trees "$1"
}

cluster cluster-f
follower=$((leader % 3 + 1))
echo "### raftfs, 3 nodes on loopback, follower mount n$follower   [$(load)]"
"$bench" "${args[@]}" "$work/cluster-f/c/n$follower"
verify "$work/cluster-f/c"
"$raftfs" local down "$work/cluster-f/c" >/dev/null
settle
cluster cluster-l
echo "### raftfs, the leader's mount n$leader   [$(load)]"
"$bench" "${args[@]}" "$work/cluster-l/c/n$leader"
verify "$work/cluster-l/c"
