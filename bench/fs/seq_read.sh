#!/usr/bin/env bash
# seq_read.sh BUILD_DIR [ROUNDS] — sequential reads through a fresh 3-node
# cluster's follower mount: a MIB (default 256) MiB file written once, then
# ROUNDS times a dd read of it with the mount's readahead at the kernel's
# default (128 KiB: eight FUSE requests per MiB) and at what the node sets
# (1024 KiB: one), alternately, each line with MiB/s, the serving node's CPU
# and context switches per MiB (bench/fs/lib.sh's thread_snap) and the load
# average (bench/fs/README.md, "Session 7 (io)"). The cluster runs in a
# fresh directory of BENCH_DIR (default /var/tmp); everything started is
# stopped and removed on exit. Needs root (mounts, sysfs).
set -euo pipefail
[ $# -ge 1 ] || { sed -n '2,11p' "$0"; exit 2; }
build=$(cd "$1" && pwd)
rounds=${2:-3}
raftfs=$build/fs/raftfs
. "$(dirname "$0")/lib.sh"
bench_workdir seqr
"$raftfs" local up 3 "$c" >/dev/null
leader=$(leader_of "$c")
f1=$((leader % 3 + 1))
mib=${MIB:-256}
dd if=/dev/urandom of="$c/n$f1/big" bs=1M count="$mib" conv=fsync status=none
pid=$(node_pids "$c" | sed -n "${f1}p")
# The FUSE connection's bdi is named after the mount's device, 0:<minor>.
bdi=/sys/class/bdi/$(stat -c '%Hd:%Ld' "$c/n$f1")
for r in $(seq "$rounds"); do
	for kb in 128 1024; do
		echo "$kb" >"$bdi/read_ahead_kb"
		thread_snap "$pid" >"$work/before"
		t0=$(date +%s.%N)
		dd if="$c/n$f1/big" of=/dev/null bs=1M status=none
		t1=$(date +%s.%N)
		thread_snap "$pid" >"$work/after"
		printf 'round %s read_ahead_kb %4s: %6.0f MiB/s, node per MiB: %s [load %s]\n' \
			"$r" "$kb" "$(echo "$mib / ($t1 - $t0)" | bc -l)" \
			"$(thread_cost "$work/before" "$work/after" "$mib" |
				awk '$1 == "total" { printf "%.3f ms CPU, %.1f context switches", $2, $3 }')" \
			"$(cut -d' ' -f1-3 /proc/loadavg)"
	done
done
