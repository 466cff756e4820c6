#!/usr/bin/env bash
# close_behind.sh BUILD_DIR [ROUNDS] [N] — [fs] close = commit against
# close = behind (fs/fuse_close.h), interleaved in one sitting: each round
# starts a fresh 3-node cluster per mode (commit first, then behind) and
# runs fs-bench's create+write 4 KiB+close phase (N files, default 1000)
# and tar x of /usr/include on a follower's mount and on the leader's,
# each with the load average. After tar x, the time until the other
# mounts hold the whole tree (a listing through each, which recalls the
# directories under close = behind) is shown as "+ visible". Needs root.
# Everything it starts or mounts is undone on exit.
set -euo pipefail
build=$(cd "${1:?usage: close_behind.sh BUILD_DIR [ROUNDS] [N]}" && pwd)
rounds=${2:-2}
n=${3:-1000}
raftfs=$build/fs/raftfs
bench=$build/bench/fs/fs-bench
work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/raftfs-close.XXXXXX")
cluster=
cleanup() {
	[ -z "$cluster" ] || "$raftfs" local down "$cluster" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT
# This ext4 crawls creating files while inodes freed in the last minute
# exist (compare.sh): wait after each run's deletions.
settle=${SETTLE:-65}
load() { uptime | sed 's/.*load average: //'; }
tar cf "$work/include.tar" -C /usr/include .
files=$(tar tf "$work/include.tar" | grep -vc '/$') # what tar makes, but directories

# run MODE MOUNT OTHER1 OTHER2: one create phase and one tar x.
run() {
	local mode=$1 m=$2 o1=$3 o2=$4 t0 t1 t2
	echo "--- close=$mode on $(basename "$m") [load $(load)]"
	"$bench" -n "$n" -p create "$m" | grep -E "create"
	sync
	sleep "$settle"
	echo "    [load $(load)]"
	mkdir "$m/tar"
	t0=$(date +%s.%N)
	tar xf "$work/include.tar" -C "$m/tar"
	t1=$(date +%s.%N)
	# Everything on both other mounts (a walk through each), or give up.
	local deadline=$((SECONDS + 120))
	until [ "$(find "$o1/tar" "$o2/tar" ! -type d | wc -l)" = $((2 * files)) ]; do
		[ $SECONDS -lt $deadline ] || { echo "    not all visible after 120 s"; break; }
		sleep 0.05
	done
	t2=$(date +%s.%N)
	printf '    tar x %.2f s, + visible on the others %.2f s\n' \
		"$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t1" | bc)"
	rm -rf "$m/tar"
	sync
	sleep "$settle"
}

for r in $(seq 1 "$rounds"); do
	for mode in commit behind; do
		cluster=$work/c$r$mode
		RAFTFS_CLOSE=$mode "$raftfs" local up 3 "$cluster" >/dev/null
		leader=
		for _ in $(seq 100); do
			leader=$({ "$raftfs" local status "$cluster" 2>/dev/null || true; } |
				awk '$6 == "leader" { sub(":", "", $2); print $2; exit }')
			[ -n "$leader" ] && break
			sleep 0.1
		done
		[ -n "$leader" ] || { echo "close_behind.sh: no leader" >&2; exit 1; }
		f=$((leader % 3 + 1))
		o=$((f % 3 + 1))
		[ "$o" != "$leader" ] || o=$((o % 3 + 1))
		echo "### round $r, close=$mode (leader n$leader)"
		run "$mode" "$cluster/n$f" "$cluster/n$leader" "$cluster/n$o"
		run "$mode" "$cluster/n$leader" "$cluster/n$f" "$cluster/n$o"
		"$raftfs" verify --wait 30 "$cluster" >/dev/null || echo "    VERIFY FAILED"
		"$raftfs" local down "$cluster" >/dev/null
		cluster=
	done
done
