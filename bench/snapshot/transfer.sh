#!/bin/bash
# transfer.sh RAFTFS [MIB] [FILES] — catch-up of a follower by snapshot: a
# 3-node cluster, follower stopped, MIB MiB in 4 large files and FILES
# small files written, the leader's log compacted past the follower; then
# the follower starts and the script measures: start → image received
# (its log: installing), the install, start → applied as much as the
# leader (the whole catch-up), and every node's term before and after (an
# election meanwhile shows as a changed term and as "leader is" lines in
# the logs). Needs root and /dev/fuse. A program, not a test. KEEP=1
# keeps the work dir (node logs) for reading afterwards.
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
	[ "${KEEP:-0}" = 1 ] || rm -rf "$T"
}
trap cleanup EXIT
field() { # ID FIELD: a number from node ID's status
	"$R" status --json "$("$R" local addr "$C" "$1")" 2>/dev/null |
		sed -n "s/.*\"$2\":\([0-9]*\).*/\1/p"
}
leader() { # the leader's id, once there is one (elections may be under way)
	local l i
	for i in $(seq 1 300); do
		l=$("$R" local status "$C" | awk '$6 == "leader" { sub(":", "", $2); print $2; exit }')
		[ -n "$l" ] && { echo "$l"; return; }
		sleep 0.1
	done
	echo "no leader for 30 s" >&2
	exit 1
}
terms() { local i; for i in 1 2 3; do printf "n%s:%s " "$i" "$(field "$i" term)"; done; }
elections() { # "leader is" lines in the logs of the nodes that stayed up
	local i; for i in 1 2 3; do [ "$i" = "$F" ] || cat "$C/node$i/node.log"; done | grep -c "leader is" || true
}
export RAFTFS_LOCAL_SM=fs
"$R" local create 3 "$C" >/dev/null
# One snapshot per 256 MiB of data written (snapshot_bytes), and the one
# asked for below, which compacts the whole log behind it. (With
# snapshot_entries = 1000, as before, the fill itself rewrote the growing
# image into RocksDB every 1/8 of its size on every node: 8 times the data
# written, which saturated this disk, and fsyncs of 50-110 ms on the loop
# threads made elections during the fill at load 10.)
sed -i -e "s/^snapshot_entries = .*/snapshot_entries = 1000000/" \
	-e "s/^snapshot_amortize = .*/snapshot_amortize = 8\nsnapshot_trailing = 0/" "$C"/node*/raftfs.ini
grep -q "^snapshot_trailing = 0" "$C"/node1/raftfs.ini || { echo "config not edited" >&2; exit 1; }
"$R" local up 3 "$C" >/dev/null
L=$(leader)
F=$((L % 3 + 1))
"$R" local stop "$C" "$F"
W=$C/n$L
echo "filling: $MIB MiB in 4 files, $FILES small files" >&2
for k in 1 2 3 4; do
	head -c $((MIB * 262144)) /dev/urandom | dd of="$W/big$k" bs=1M iflag=fullblock status=none
done
mkdir "$W/small"
for i in $(seq 1 "$FILES"); do echo "small $i" >"$W/small/f$i"; done
echo "snapshot on node $L" >&2
"$R" snapshot --timeout 600000 "$("$R" local addr "$C" "$L")" >/dev/null # the snapshot holds everything
L=$(leader)
until [ "$(field "$L" applied)" = "$(field "$L" commit)" ]; do sleep 0.1; done
want=$(field "$L" applied)
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg); terms before: $(terms); leader $L, follower $F"
e0=$(elections)
t0=${EPOCHREALTIME/./}
"$R" local start "$C" "$F" >/dev/null
until grep -q "installing" "$C/node$F/node.log"; do sleep 0.02; done
t1=${EPOCHREALTIME/./}
until grep -q "installed in" "$C/node$F/node.log"; do sleep 0.02; done
t2=${EPOCHREALTIME/./}
until [ "$(field "$F" applied)" -ge "$want" ] 2>/dev/null; do sleep 0.05; done
t3=${EPOCHREALTIME/./}
e1=$(elections)
bytes=$(grep "installed in" "$C/node$F/node.log" | tail -n1 | sed -n 's/.*(\([0-9]*\) bytes).*/\1/p')
s=$(echo "($t1 - $t0) / 1000000" | bc -l)
printf "image %s bytes (%d MiB of large files, %d small files)\n" "$bytes" "$MIB" "$FILES"
printf "start of node %s to image received: %.2f s (%.1f MiB/s, includes the node's start and mount)\n" \
	"$F" "$s" "$(echo "$bytes / 1048576 / $s" | bc -l)"
printf "install: %.2f s; start to applied index %s (whole catch-up): %.2f s\n" \
	"$(echo "($t2 - $t1) / 1000000" | bc -l)" "$want" "$(echo "($t3 - $t0) / 1000000" | bc -l)"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg); terms after: $(terms); 'leader is' lines in the other nodes' logs during the catch-up: $((e1 - e0))"
grep -h "resuming\|installed in" "$C"/node*/node.log | sed 's/^/  /' | tail -n 3
