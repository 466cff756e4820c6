#!/usr/bin/env bash
# fsync_ab.sh N ROUNDS BUILD... — 4 KiB write + fsync latency, builds
# interleaved: each round, each BUILD in turn gets a fresh 3-node cluster on
# which `fs-bench -p fsync -F N` runs on a follower's mount, then on the
# leader's (after 100 untimed pairs each), one line per run with the load.
# Noise at this machine's load is larger than most changes: compare many
# rounds, same minutes (bench/fs/README.md, "Session 13 (fsync2)").
#   LOOPFS=1     each cluster on a fresh no-journal ext4 on a loop device in
#                BENCH_DIR, as compare.sh's FRESH=1 (every fsync also pays the
#                loop device's flush of its backing file)
#   RAFTFS_STAGES=1  also each mount's node's stages of its own proposals
#                (consensus/node_stages.h), from the node's log at stop
#   FS_BENCH=PATH    this fs-bench for every build (one with -F: a build
#                older than -F has none of its own)
# Needs root (mounts). Everything it mounts or starts is undone on exit.
set -euo pipefail
n=${1:?usage: fsync_ab.sh N ROUNDS BUILD...}
rounds=${2:?usage: fsync_ab.sh N ROUNDS BUILD...}
shift 2
[ $# -ge 1 ] || { echo "usage: fsync_ab.sh N ROUNDS BUILD..." >&2; exit 2; }
builds=()
for b in "$@"; do builds+=("$(cd "$b" && pwd)"); done
here=$(cd "$(dirname "$0")" && pwd)
raftfs=${builds[0]}/fs/raftfs
source "$here/lib.sh"

m=
cleanup() {
	[ -n "${c:-}" ] && { "$raftfs" local down "$c" >/dev/null 2>&1 || true; }
	if [ -n "$m" ] && mountpoint -q "$m"; then
		# The nodes' last descriptors close a moment after they are reaped.
		for _ in $(seq 50); do umount "$m" 2>/dev/null && break; sleep 0.2; done
		! mountpoint -q "$m" || umount -l "$m"
	fi
	[ -n "${work:-}" ] && rm -rf "$work"
	c= work= m=
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# run BUILD: one fresh cluster, the follower's mount then the leader's.
run() {
	local b=$1 bench=${FS_BENCH:-$1/bench/fs/fs-bench} l f id role
	raftfs=$b/fs/raftfs
	work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/raftfs-fsync-ab.XXXXXX")
	m=$work/m
	mkdir -p "$m"
	if [ "${LOOPFS:-0}" = 1 ]; then
		truncate -s 4G "$work/img"
		mkfs.ext4 -q -O ^has_journal -F "$work/img"
		mount -o loop "$work/img" "$m"
	fi
	c=$m/c
	"$raftfs" local up 3 "$c" >/dev/null
	l=$(leader_of "$c")
	f=$((l % 3 + 1))
	for id in "$f" "$l"; do
		[ "$id" = "$l" ] && role=leader || role=follower
		"$bench" -n 100 -p fsync "$c/n$id" >/dev/null
		echo "$r $b $role n$id [$(cut -d' ' -f1-3 /proc/loadavg)]" \
			"$("$bench" -n 1 -F "$n" -p fsync "$c/n$id" | grep fsync)"
	done
	"$raftfs" local down "$c" >/dev/null
	if [ -n "${RAFTFS_STAGES:-}" ]; then
		for id in "$f" "$l"; do
			grep -h "node $id stages of" "$c"/*/node.log 2>/dev/null | sed 's/.*node /  node /'
		done
	fi
	cleanup
}

for r in $(seq "$rounds"); do
	for b in "${builds[@]}"; do
		run "$b"
	done
done
