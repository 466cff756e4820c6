# lib.sh — shared by the bench/fs scripts: the leader of a local cluster and
# the CPU its node processes spend, by thread kind; a work directory
# cleaned up on exit. Source it with $raftfs set to the raftfs binary.

# bench_workdir TAG: $work, a fresh directory of BENCH_DIR (default
# /var/tmp), and $c, the cluster's directory in it; on any exit (a signal
# too: bash runs no EXIT trap on a signal it dies of) the cluster is
# stopped and $work removed.
bench_workdir() {
	work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/raftfs-$1.XXXXXX")
	c=$work/c
	trap bench_cleanup EXIT
	trap 'exit 1' INT TERM
}
bench_cleanup() {
	"$raftfs" local down "$c" >/dev/null 2>&1 || true
	rm -rf "$work"
}

# cluster_status C: `raftfs local status` of cluster directory C (nothing
# when it does not answer).
cluster_status() { "$raftfs" local status "$1" 2>/dev/null || true; }

# leader_of C: the id of cluster C's leader, waiting for one up to 10 s;
# fails (status 1, a line on stderr) when none shows.
leader_of() {
	local l
	for _ in $(seq 100); do
		l=$(cluster_status "$1" | awk '$6 == "leader" { sub(":", "", $2); print $2; exit }')
		[ -n "$l" ] && { echo "$l"; return 0; }
		sleep 0.1
	done
	echo "${0##*/}: no leader in $1" >&2
	return 1
}

# node_pids C: the process ids of cluster C's nodes, one a line.
node_pids() { cluster_status "$1" | awk '{ print $5 }'; }

# thread_snap PID...: one line per thread of the processes, "pid tid kind
# cpu_ns voluntary nonvoluntary" (CPU from /proc schedstat, context
# switches from status). Kinds by thread name: apply (raft-apply), loop
# (raft-loop), persist (raft-persist: the log's writes and syncs), plug
# (fs-plug: the mount's write-behind flusher), vlog (the value-log
# syncer), rocksdb (rocksdb:*), other (FUSE workers, invalidation and
# snapshot threads...; before session 12 persist and plug counted here).
thread_snap() {
	local p t comm kind
	for p in "$@"; do
		for t in /proc/"$p"/task/*; do
			comm=$(cat "$t/comm" 2>/dev/null) || continue
			case $comm in
			raft-apply*) kind=apply ;;
			raft-loop*) kind=loop ;;
			raft-persist*) kind=persist ;;
			fs-plug*) kind=plug ;;
			*vlog*) kind=vlog ;;
			rocksdb*) kind=rocksdb ;;
			*) kind=other ;;
			esac
			echo "$p ${t##*/} $kind $(cut -d' ' -f1 "$t/schedstat" 2>/dev/null)" \
				"$(awk '/^voluntary_ctxt/ { v = $2 } /^nonvoluntary_ctxt/ { n = $2 } END { print v, n }' "$t/status" 2>/dev/null)"
		done
	done
}

# thread_cost BEFORE AFTER N: what the threads spent between two
# thread_snap files per unit of work (N files, N MiB...): lines "kind
# cpu_ms context_switches", kinds sorted, then "total ...". A thread that
# started in between counts from zero; one that ended is not counted.
thread_cost() {
	awk -v n="$3" '
		FNR == NR { cpu[$2] = $4; sw[$2] = $5 + $6; next }
		NF >= 4 { c[$3] += $4 - cpu[$2]; s[$3] += $5 + $6 - sw[$2] }
		END {
			for (k in c) {
				printf "%s %.3f %.1f\n", k, c[k] / 1e6 / n, s[k] / n
				tc += c[k]; ts += s[k]
			}
			printf "~total %.3f %.1f\n", tc / 1e6 / n, ts / n
		}' "$1" "$2" | sort | sed 's/^~//'
}
