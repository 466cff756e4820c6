#!/bin/bash
# idle.sh RAFTFS [SECONDS] [KILLS] — what an idle cluster costs its machine,
# and how fast it fails over (bench/fs/README.md, "Session 14 (idle)").
# A fresh 3-node cluster (fs; RAFTFS_LOCAL_SM=kv for the test state
# machine) is left alone for SECONDS (default 10), then measured again for
# SECONDS after a burst (300 small files and 20 MiB, fsynced, through a
# follower's mount): per node, the CPU its threads spent (ms per second)
# and how often they woke (context switches per second), by thread kind
# (lib.sh's thread_snap), and how often its tick timer fired (raftfs status
# tick_fires). Then KILLS times (default 0): kill -9 of the leader, the ms
# from the kill to the log line of the first node to lead a later term,
# the old leader restarted, 2 idle seconds. The environment reaches the
# nodes: RAFTFS_QUIET_TICKS=0 measures the every-tick timer with the same
# binary. Run two builds' clusters at once (two shells) to compare them in
# the same minutes. Everything it starts is stopped on exit.
set -euo pipefail
raftfs=$(realpath "${1:?usage: $0 RAFTFS [SECONDS] [KILLS]}")
secs=${2:-10}
kills=${3:-0}
. "$(dirname "$0")/lib.sh"
bench_workdir idle

# measure LABEL: per node over $secs idle seconds.
measure() {
	local p id role t0 t1 tb0 tb1 tf0 tf1 el
	local -A f0 f1
	# Timer fires over their own interval (a status call and a
	# thread_snap take a while on a loaded machine), threads over theirs.
	for id in 1 2 3; do f0[$id]=$(tick_fires "$id"); done
	tf0=$(date +%s%N)
	tb0=$(date +%s%N)
	for p in $(node_pids "$c"); do thread_snap "$p"; done >"$work/before"
	t0=$(date +%s%N)
	sleep "$secs" # the idle interval measured
	t1=$(date +%s%N)
	for p in $(node_pids "$c"); do thread_snap "$p"; done >"$work/after"
	tb1=$(date +%s%N)
	for id in 1 2 3; do f1[$id]=$(tick_fires "$id"); done
	tf1=$(date +%s%N)
	# A thread's two readings are somewhere in the two snapshots' spans
	# (seconds each on a loaded machine): the mean of the shortest and
	# the longest interval they can span.
	el=$(echo "scale=3; ($t1 - $t0 + $tb1 - $tb0) / 2000000000" | bc)
	echo "== $1 (load $(cut -d' ' -f1-3 /proc/loadavg))"
	id=0
	for p in $(node_pids "$c"); do
		id=$((id + 1))
		role=$(cluster_status "$c" | awk -v p="$p" '$5 == p { print $6 }')
		grep "^$p " "$work/before" >"$work/b"
		grep "^$p " "$work/after" >"$work/a"
		echo "node $id ($role): tick fires $(((f1[$id] - f0[$id]) * 1000000000 / (tf1 - tf0)))/s; ms of CPU/s, wake-ups/s:"
		thread_cost "$work/b" "$work/a" "$el" | awk '$2 > 0.005 || $3 > 0.05' | sed 's/^/    /'
	done
}

# tick_fires ID: node ID's tick timer fires so far; 0 from a build before
# session 14 (no such field).
tick_fires() {
	"$raftfs" status --json "$("$raftfs" local addr "$c" "$1")" |
		grep -o '"tick_fires":[0-9]*' | cut -d: -f2 || echo 0
}

logms() { date -d "$(date +%F) $1" +%s%3N; }

"$raftfs" local up 3 "$c" >/dev/null
leader=$(leader_of "$c")
sleep 2 # the start's own traffic settles
measure "fresh, idle"
if [ "${RAFTFS_LOCAL_SM:-fs}" != kv ]; then
	f=$((leader % 3 + 1))
	for i in $(seq 300); do echo "data $i" >"$c/n$f/f$i"; done
	dd if=/dev/zero of="$c/n$f/big" bs=1M count=20 conv=fsync status=none
	sync -f "$c/n$f"
	sleep 2 # the burst's tail: held proposals, idle returns
	measure "idle after a burst"
fi
for ((k = 1; k <= kills; k++)); do
	leader=$(leader_of "$c")
	term=$(cluster_status "$c" | awk '$6 == "leader" { print $8; exit }')
	t0=$(date +%s%3N)
	"$raftfs" local kill "$c" "$leader" >/dev/null
	line=
	for _ in $(seq 500); do
		line=$(cat "$c"/node*/node.log "$c"/n*/node.log 2>/dev/null | grep "this node: leader" |
			awk -v T="$term" 'substr($3, 2) + 0 > T' | sort | head -n1) || true
		[ -z "$line" ] || break
		sleep 0.02
	done
	[ -n "$line" ] || { echo "kill $k: no new leader in 10 s"; exit 1; }
	echo "kill $k: leader $leader (term $term) killed; $(($(logms "${line%% *}") - t0)) ms to: $line"
	"$raftfs" local start "$c" "$leader" >/dev/null
	sleep 2 # idle again before the next kill
done
