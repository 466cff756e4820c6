#!/bin/bash
# mount_write_failover.sh RAFTFS — kill -9 of the leader in the middle of big
# pipelined writes (fs/fuse_write.h: each write(2) is answered once proposed,
# close() once all of them applied): every file whose close() returned 0 (dd
# checks it) is whole on every surviving mount, and on the killed node once it
# restarted.
# The whole script is one block, parsed before any of it runs (tests/FLAKY.md).
{
set -euo pipefail
. "$(dirname "$0")/lib.sh"
up
big_src

L=$(leader_id)
[ -n "$L" ] || fail "no leader"
writers=()
for id in 1 2 3; do [ "$id" = "$L" ] || writers+=("$id"); done
# Each logs a file (in acked<ID>, lib.sh's acked) when dd's write and
# close succeeded.
for id in "${writers[@]}"; do : >"$T/acked$id"; big_writer "$id" f "acked$id" & done
for id in "${writers[@]}"; do wait_for 60 "writer $id started" acked_at_least "$id" 2; done

echo "== kill -9 leader $L while n${writers[0]} and n${writers[1]} write"
"$R" local kill "$C" "$L"
new_leader() { local l; l=$(leader_id); [ -n "$l" ] && [ "$l" != "$L" ]; }
wait_for 30 "a new leader" new_leader
for id in "${writers[@]}"; do
	base=$(acked "$id")
	wait_for 60 "writer $id going on after the election" acked_at_least "$id" $((base + 2))
done
touch "$T/stop"
wait

# check MOUNT...: every acknowledged file whole on each mount.
check() {
	local m id
	for m in "$@"; do
		for id in "${writers[@]}"; do big_check "$m" "$id" f "acked$id"; done
	done
}
check "$C/n${writers[0]}" "$C/n${writers[1]}"
echo "   $(acked "${writers[0]}") + $(acked "${writers[1]}") acknowledged 8 MiB files, whole on both survivors"

echo "== restart node $L"
start_node "$L"
verify 60 "after the restart of node $L"
check "$C/n$L"
echo "PASS"
exit
}
