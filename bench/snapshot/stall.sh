#!/bin/bash
# stall.sh RAFTFS [FILES] — the longest write stall a writer sees while a
# snapshot is taken: a 3-node cluster with FILES small files (default
# 10000), a writer on mount 2 doing create+write+close of small files in a
# loop and timing each; `raftfs snapshot` on node 2 (the writer's own node,
# whose apply pauses) and then on the leader (if another node). Prints the
# median and the longest latency outside and during each snapshot, and the
# image size and make time from the node logs. BIG_MIB=M in the environment
# adds M MiB in 16 large files. Needs root and /dev/fuse.
# A program, not a test (not run by ctest).
set -euo pipefail
R=${1:?usage: stall.sh RAFTFS [FILES]}
FILES=${2:-10000}
T=$(mktemp -d /tmp/raftfs-stall.XXXXXX)
C=$T/c
cleanup() {
	set +e
	[ -z "$(jobs -p)" ] || kill $(jobs -p) 2>/dev/null
	wait 2>/dev/null
	"$R" local down "$C" >/dev/null 2>&1
	for m in "$C"/n[0-9]*; do mountpoint -q "$m" 2>/dev/null && umount -l "$m"; done
	rm -rf "$T"
}
trap cleanup EXIT
export RAFTFS_LOCAL_SM=fs
"$R" local create 3 "$C" >/dev/null
# Only on-demand snapshots during the measurement.
sed -i -e "s/^snapshot_entries = .*/snapshot_entries = 100000000/" \
	-e "s/^\[raft\]\$/[raft]\nsnapshot_bytes = 0/" "$C"/node*/raftfs.ini
grep -q "^snapshot_bytes = 0" "$C"/node1/raftfs.ini || { echo "config not edited" >&2; exit 1; }
"$R" local up 3 "$C" >/dev/null
echo "populating $FILES files through mount 1..."
for d in $(seq 0 99); do
	mkdir "$C/n1/d$d"
	for f in $(seq 1 $((FILES / 100))); do echo "file $d $f" >"$C/n1/d$d/f$f"; done
done
if [ "${BIG_MIB:-0}" -gt 0 ]; then
	echo "writing $BIG_MIB MiB in 16 large files through mount 1..."
	mkdir "$C/n1/big"
	for b in $(seq 1 16); do
		head -c $((BIG_MIB * 1048576 / 16)) /dev/urandom >"$C/n1/big/b$b"
	done
fi
L=$("$R" local status "$C" | awk '$6 == "leader" { sub(":", "", $2); print $2; exit }')

writer() { # appends "t_start_us latency_us" per write to $T/lat
	local i=0 t0 t1
	mkdir -p "$C/n2/w"
	while [ ! -e "$T/stop" ]; do
		t0=${EPOCHREALTIME/./}
		echo "w $i" >"$C/n2/w/f$i"
		t1=${EPOCHREALTIME/./}
		echo "$t0 $((t1 - t0))" >>"$T/lat"
		i=$((i + 1))
	done
}
: >"$T/lat"
writer &
sleep 2
mark() { echo "${EPOCHREALTIME/./}" >>"$T/marks"; }
for id in 2 $L; do
	mark
	"$R" snapshot --timeout 600000 "$("$R" local addr "$C" "$id")" | sed "s/^/node $id: /"
	mark
	sleep 1
	[ "$id" != "$L" ] || break
done
touch "$T/stop"
wait
stats() { # label < "t lat" lines
	sort -n -k2 | awk -v l="$1" '{ v[NR] = $2 } END {
		if (NR) printf "%-34s %6d writes  median %7.2f ms  max %8.2f ms\n", l, NR, v[int((NR + 1) / 2)] / 1000, v[NR] / 1000 }'
}
mapfile -t M <"$T/marks"
awk -v a="${M[0]}" '$1 < a' "$T/lat" | stats "before any snapshot"
awk -v a="${M[0]}" -v b="${M[1]}" '$1 + $2 >= a && $1 <= b' "$T/lat" | stats "during the snapshot of node 2"
if [ ${#M[@]} -ge 4 ]; then
	awk -v a="${M[2]}" -v b="${M[3]}" '$1 + $2 >= a && $1 <= b' "$T/lat" | stats "during the snapshot of leader $L"
fi
grep -h "apply paused\|streamed in\|kept as they were" "$C"/node*/node.log | sed "s/^/  /"
