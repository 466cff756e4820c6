#!/bin/bash
# mount_down_drain.sh RAFTFS — `raftfs local down` loses nothing a mount
# acknowledged. Node 1 answers a mkdir behind (it holds the parent) and
# holds the proposal back for company (RAFTFS_PLUG_US: a minute here, 1 ms
# by default); then the whole cluster is stopped at once. A node commits
# its own backlog when stopped (fuse_mount_stop), but only while a quorum
# of the others still runs: stopped together, the others left first and
# node 1 failed the mkdir with EIO after its 1 s grace — acknowledged,
# then lost. `down` now has every mount commit what it acknowledged
# (fsync of its root) before any node stops. Nodes 2 and 3 hold their
# persist threads for 3 s after their next save (RAFTFS_TEST_STALL's
# stall-any: a slow disk), so without the drain that commit cannot come
# within node 1's grace however fast the machine: the scenario, not a
# bound on speed. Checks: node 1 logged no failed write-behind command,
# and after a restart of all three the directory is on every mount.
# Fails without the drain: node 1 logs "write-behind mkdir ... failed:
# Input/output error". `down` runs with SIGCHLD ignored (fails so if it
# cannot see its drains end).
# Then a drain that cannot end: node 1 is stopped (SIGSTOP: its mount
# answers nothing, the drain's fsync waits past down's 10 s), and `down`
# still stops every node but exits 1, naming node 1's mount (it exited 0
# however its drains went, before: fails so).
# One block, parsed before any of it runs (tests/FLAKY.md).
{
set -euo pipefail
# The holder keeps d until recalled: no Return to start the held mkdir.
export RAFTFS_DELEG_IDLE_MS=0
. "$(dirname "$0")/lib.sh"
up
node_conf 1 close behind RAFTFS_PLUG_US=60000000
node_conf 2 close behind RAFTFS_TEST_STALL=1
node_conf 3 close behind RAFTFS_TEST_STALL=1

echo "== node 1 answers mkdir d/sub behind and holds it back"
mkdir "$M1/d"
wait_for 30 "node 1 applied its grant of d" held_by 1 1 d
mkdir "$M1/d/sub"
[ ! -e "$C/node1/data/tree/d/sub" ] || fail "mkdir d/sub was not answered behind (node 1 applied it)"

echo "== the others' disks turn slow; the whole cluster stops at once"
for k in 2 3; do
	echo 3000 >"$C/node$k/data/stall-any.tmp"
	mv "$C/node$k/data/stall-any.tmp" "$C/node$k/data/stall-any"
done
# Run with SIGCHLD ignored, as some callers leave it: down must still see
# its drains end (the kernel reaped them itself, and down waited 10 s and
# exited 1 on a healthy cluster).
bash -c 'trap "" CHLD; exec "$0" local down "$1"' "$R" "$C" 2>"$T/down.err" ||
	{ cat "$T/down.err"; fail "local down"; }
cat "$T/down.err" >&2
! grep "write-behind .* failed" "$C/node1/node.log" ||
	fail "node 1 failed a command it had acknowledged at the stop"

echo "== restarted, d/sub is on every mount"
for k in 1 2 3; do "$R" local start "$C" "$k" >/dev/null || fail "restart of node $k"; done
for k in 1 2 3; do wait_for 60 "node $k's mount" mount_answers "$k"; done
for k in 1 2 3; do [ -d "$C/n$k/d/sub" ] || fail "d/sub is not on node $k's mount"; done
verify 60 "after the restart"

echo "== node 1 answers nothing (SIGSTOP): down stops all, exits 1"
pid1=$(cat "$C/node1/pid")
kill -STOP "$pid1"
rc=0
"$R" local down "$C" 2>"$T/down2.err" || rc=$?
cat "$T/down2.err" >&2
[ "$rc" = 1 ] || fail "local down exited $rc with node 1's drain timed out (want 1)"
grep -q "node 1's mount did not commit" "$T/down2.err" || fail "local down did not name node 1's mount"
# Stopped all the same (node 1 by SIGKILL, which ends a stopped process).
for k in 1 2 3; do
	p=$(cat "$C/node$k/pid")
	! kill -0 "$p" 2>/dev/null || grep -q '^State:.*Z' "/proc/$p/status" 2>/dev/null ||
		fail "node $k (pid $p) still runs after local down"
done
echo PASS
exit 0
}
