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

# BENCH_DIR: where everything runs (default /var/tmp); a freshly made
# filesystem gives repeatable create numbers (see settle below).
work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/raftfs-compare.XXXXXX")
cleanup() {
	"$raftfs" local down "$work/cluster" >/dev/null 2>&1 || true
	mountpoint -q "$work/pt" && fusermount3 -u "$work/pt"
	rm -rf "$work"
}
trap cleanup EXIT

# This machine's ext4 (no journal) does not reuse an inode freed in the last
# ~60 s, and creating files while many such inodes exist is many times
# slower (TARGETS.md): each run deletes what it made, so the next one waits
# for the disk to settle first. SETTLE=0 skips the wait.
settle=${SETTLE:-65}
settle() { sync; sleep "$settle"; }

tar cf "$work/include.tar" -C /usr/include .
args=(-n "$n" -j "$jobs" -t "$work/include.tar")

if [ -z "${RAFTFS_ONLY:-}" ]; then
	echo "### plain directory (ext4)   [$(uptime | sed 's/.*load/load/')]"
	mkdir -p "$work/plain"
	"$bench" "${args[@]}" "$work/plain"
	settle

	echo "### passthrough_ll (FUSE alone)   [$(uptime | sed 's/.*load/load/')]"
	gcc -O2 -o "$work/passthrough_ll" "$examples/passthrough_ll.c" $(pkg-config --cflags --libs fuse3)
	mkdir -p "$work/pt" "$work/pt-src"
	"$work/passthrough_ll" -o source="$work/pt-src" "$work/pt"
	"$bench" "${args[@]}" "$work/pt"
	fusermount3 -u "$work/pt"
	settle
fi

"$raftfs" local up 3 "$work/cluster" >/dev/null
leader=
for _ in $(seq 100); do
	leader=$({ "$raftfs" local status "$work/cluster" 2>/dev/null || true; } |
		awk '$6 == "leader" { sub(":", "", $2); print $2; exit }')
	[ -n "$leader" ] && break
	sleep 0.1
done
[ -n "$leader" ] || { echo "compare.sh: no leader in $work/cluster" >&2; exit 1; }
follower=$((leader % 3 + 1))
echo "### raftfs, 3 nodes on loopback, follower mount n$follower   [$(uptime | sed 's/.*load/load/')]"
"$bench" "${args[@]}" "$work/cluster/n$follower"
settle
echo "### raftfs, the leader's mount n$leader   [$(uptime | sed 's/.*load/load/')]"
"$bench" "${args[@]}" "$work/cluster/n$leader"
# The other mounts apply the benchmark's last write-behind commands a moment
# after it returned: wait for them, then compare the mounts and the trees.
"$raftfs" verify --wait 10 "$work/cluster"
"$raftfs" verify --wait 10 --trees "$work/cluster"
