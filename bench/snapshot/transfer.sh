#!/bin/bash
# transfer.sh RAFTFS [MIB] [FILES] — catch-up of a follower by snapshot: a
# 3-node cluster, follower 3 stopped, MIB MiB in 4 large files and FILES
# small files written, the leader's log compacted past the follower; then
# the follower starts and the time until it has received (log: installing)
# and installed the snapshot is measured. Needs root and /dev/fuse. A
# program, not a test.
set -euo pipefail
R=${1:?usage: transfer.sh RAFTFS [MIB] [FILES]}
MIB=${2:-256}
FILES=${3:-2000}
T=$(mktemp -d /tmp/raftfs-xfer.XXXXXX)
echo "working in $T" >&2
C=$T/c
cleanup() {
	set +e
	"$R" local down "$C" >/dev/null 2>&1
	for m in "$C"/n[0-9]*; do mountpoint -q "$m" 2>/dev/null && umount -l "$m"; done
	rm -rf "$T"
}
trap cleanup EXIT
export RAFTFS_LOCAL_SM=fs
"$R" local create 3 "$C" >/dev/null
sed -i "s/^snapshot_entries = .*/snapshot_entries = 1000/" "$C"/node*/raftfs.ini
"$R" local up 3 "$C" >/dev/null
L=$("$R" local status "$C" | awk '$6 == "leader" { sub(":", "", $2); print $2; exit }')
F=$((L % 3 + 1))
"$R" local stop "$C" "$F"
W=$C/n$L
for k in 1 2 3 4; do head -c $((MIB * 262144)) /dev/urandom >"$W/big$k"; done
mkdir "$W/small"
for i in $(seq 1 "$FILES"); do echo "small $i" >"$W/small/f$i"; done
"$R" snapshot "$("$R" local addr "$C" "$L")" >/dev/null # the snapshot holds everything
t0=${EPOCHREALTIME/./}
"$R" local start "$C" "$F" >/dev/null
until grep -q "installing" "$C/node$F/node.log"; do sleep 0.02; done
t1=${EPOCHREALTIME/./}
until grep -q "installed in" "$C/node$F/node.log"; do sleep 0.02; done
t2=${EPOCHREALTIME/./}
bytes=$(grep "installing" "$C/node$F/node.log" | tail -n1 | sed -n 's/.*(\([0-9]*\) bytes).*/\1/p')
printf "image %s bytes (%d MiB of large files, %d small files)\n" "$bytes" "$MIB" "$FILES"
printf "start of node %s to image received: %.2f s (%.1f MiB/s, includes the node's start)\n" \
	"$F" "$(echo "($t1 - $t0) / 1000000" | bc -l)" "$(echo "$bytes / 1048576 / (($t1 - $t0) / 1000000)" | bc -l)"
printf "install: %.2f s\n" "$(echo "($t2 - $t1) / 1000000" | bc -l)"
grep "installed in\|apply paused" "$C"/node*/node.log | sed 's/^/  /' | tail -n 3
