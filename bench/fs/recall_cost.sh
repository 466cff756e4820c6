#!/bin/bash
# recall_cost.sh RAFTFS [ROUNDS] — what a holder's delegations cost the
# other mounts under close = behind (fs/fuse_close.h): tar x of a tree
# (TARBALL, default /tmp/inc.tar: /usr/include) through n1 of a fresh
# 3-node cluster, then, right after tar returned, `ls -lR` of the tree on
# n2 and `find` on n3 — each first look into a directory n1 still holds
# recalls it. Per round, two fresh clusters one after the other: holders
# keep their directories until recalled (RAFTFS_DELEG_IDLE_MS=0, as before
# session 6), and holders return directories idle for 500 ms (the
# default). Prints the times, the load average and each node's count of
# recalls made and of directories returned unasked. Clusters live in a fresh
# directory of /var/tmp and are removed only at the end (this ext4 creates
# files slowly where many were freed in the last minute). Everything it
# starts or mounts is undone on exit.
# LIST=N: instead, per round one cluster whose n1 makes N directories in
# t (held until recalled) and then `ls -l t` on n2, twice: the first
# recalls them all (held subdirectories, session 11: together), the
# second finds none held. Prints both times and the recall counts.
set -euo pipefail
R=$(realpath "${1:?usage: $0 RAFTFS [ROUNDS]}")
rounds=${2:-1}
tarball=${TARBALL:-/tmp/inc.tar}
[ -f "$tarball" ] || tar cf "$tarball" -C /usr include
export RAFTFS_CLOSE=behind RAFTFS_LOCAL_SM=fs RAFTFS_STAGES=1
work=$(mktemp -d /var/tmp/recall_cost.XXXXXX)
n=0

cleanup() {
	local c
	for c in "$work"/c*; do
		[ -f "$c/cluster" ] && "$R" local down "$c" >/dev/null 2>&1
	done
	rm -rf "$work"
}
trap cleanup EXIT

now() { date +%s.%N; }

# run LABEL IDLE_MS
run() {
	local c=$work/c$n t0 t1 t2 t3 files
	n=$((n + 1))
	RAFTFS_DELEG_IDLE_MS=$2 "$R" local up 3 "$c" >/dev/null
	mkdir "$c/n1/t"
	t0=$(now)
	tar xf "$tarball" -C "$c/n1/t"
	t1=$(now)
	ls -lR "$c/n2/t" >/dev/null
	t2=$(now)
	files=$(find "$c/n3/t" | wc -l)
	t3=$(now)
	printf '%-26s tar x on n1 %6.2f s; then ls -lR on n2 %6.2f s, find on n3 %6.2f s (%s entries); load %s\n' \
		"$1" "$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t1" | bc)" "$(echo "$t3 - $t2" | bc)" \
		"$files" "$(cut -d' ' -f1-3 /proc/loadavg)"
	"$R" verify --wait 60 "$c" >/dev/null || echo "    (verify: mounts differ)"
	"$R" local down "$c" >/dev/null
	# What the nodes logged at their stop: recalls made, idle returns.
	grep -h "directories from other nodes" "$c"/node*/node.log | sed 's/^/    /'
}

# run_list LABEL: LIST=N's round.
run_list() {
	local c=$work/c$n t0 t1 t2 shown
	n=$((n + 1))
	RAFTFS_DELEG_IDLE_MS=0 "$R" local up 3 "$c" >/dev/null
	mkdir "$c/n1/t"
	for i in $(seq 1 "$LIST"); do mkdir "$c/n1/t/d$i"; done
	sync "$c/n1/t" # applied (committed) before the listing
	t0=$(now)
	shown=$(ls -l "$c/n2/t" | grep -c ' d[0-9]*$')
	t1=$(now)
	ls -l "$c/n2/t" >/dev/null
	t2=$(now)
	printf '%-16s ls -l of %s held directories on n2: first %6.3f s, second %6.3f s; load %s\n' \
		"$1" "$shown" "$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t1" | bc)" \
		"$(cut -d' ' -f1-3 /proc/loadavg)"
	"$R" local down "$c" >/dev/null
	grep -h "directories from other nodes" "$c/node2/node.log" | sed 's/^/    /'
}

for r in $(seq 1 "$rounds"); do
	if [ -n "${LIST:-}" ]; then
		run_list "round $r:"
		continue
	fi
	run "round $r: kept until recalled" 0
	run "round $r: returned idle" 500
done
