#!/bin/sh
# callgrind.sh — instructions per committed entry of raft-bench, total and
# inside the Raft core's entry points (inclusive: what the core calls,
# malloc included). Use a Release build without sanitizers:
#   cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release
#   cmake --build build/release --target raft-bench
#   bench/raft/callgrind.sh build/release/bench/raft/raft-bench [entries]
set -eu
bench=${1:?usage: callgrind.sh path/to/raft-bench [entries]}
entries=${2:-20000}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
printf '%-12s %10s %16s %16s\n' outstanding entries "Ir/entry total" "Ir/entry core"
for k in 1 256; do
	valgrind --tool=callgrind --callgrind-out-file="$out/cg.$k" \
		"$bench" --entries "$entries" --outstanding "$k" >/dev/null 2>&1
	callgrind_annotate --inclusive=yes "$out/cg.$k" 2>/dev/null | awk -v k="$k" -v n="$entries" '
		/PROGRAM TOTALS/ { gsub(",", "", $1); total = $1 }
		/:(raft_step|raft_tick|raft_ready_get|raft_advance|raft_propose|raft_has_ready|raft_report_snapshot|raft_report_unreachable) / {
			gsub(",", "", $1); core += $1 }
		END { printf "%-12s %10d %16.0f %16.0f\n", k, n, total / n, core / n }'
done
