#!/bin/bash
# mount_close_lease.sh RAFTFS — close = behind's lease counts commits, not
# applies (fs_node_progressing): node 1 applies every entry 300 ms late
# (RAFTFS_TEST_APPLY_DELAY_US), so its apply lags its commit and no
# completion comes for longer than the 100 ms lease, while its proposals
# commit at the healthy nodes' pace. Its mount writes 8 small files into a
# directory it holds, one every 150 ms (the pause is the scenario: time
# for the lease to run out, not a wait for anything). So
#  1. node 1 answers at least 7 of the 8 closes early — counting applies,
#     only the first and those within 100 ms of a completion were early,
#     and each of the others waited for the whole backlog to apply;
#  2. every file is whole on the other mounts, and node 1's fsyncdir
#     (which waits for its apply) reports no failure;
#  3. the mounts and trees agree.
# And the lease's other half (fs_node.c, APPLY_LAG_MAX_MS): an apply that
# lags the commit by more than two seconds answers no close early, however
# well its proposals commit — a holder that stalls at apply must not
# acknowledge past a Recall it has not applied (the recaller revokes after
# 3 s). So
#  4. after 16 mkdirs 20 ms apart (16 entries: 4.8 s of node 1's apply)
#     and 2.6 s (the lag passing the bound: the scenario, not a wait for
#     anything), node 1's next close is synchronous: it takes over 300 ms
#     (an early one takes under 1 ms), and at most 8 of the 9 closes in
#     all were early.
# One block, parsed before any of it runs (tests/FLAKY.md).
{
set -euo pipefail
export RAFTFS_CLOSE=behind
export RAFTFS_STAGES=1 # node 1 logs how many closes it answered early
export RAFTFS_DELEG_IDLE_MS=0 # the directory stays held
. "$(dirname "$0")/../mount/lib.sh"
up
node_conf 1 proposal_timeout_ms 60000 RAFTFS_TEST_APPLY_DELAY_US=300000

echo "== 1. node 1 (apply 300 ms late) writes 8 files, one every 150 ms"
python3 - "$M1/l" <<'PY' || fail "writing through node 1"
import os, sys, time
d = sys.argv[1]
os.mkdir(d)  # made here: held by node 1
for i in range(8):
    fd = os.open(f"{d}/f{i}", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    os.write(fd, b"file %d\n" % i)
    t = time.monotonic()
    os.close(fd)
    print(f"  close {i}: {1e3 * (time.monotonic() - t):.1f} ms")
    time.sleep(0.15)
fd = os.open(d, os.O_RDONLY)
os.fsync(fd)  # every failure of the commands above, reported here
os.close(fd)
print("== 4. 16 mkdirs behind, 2.6 s, then a close")
for i in range(16):
    os.mkdir(f"{d}/m{i}")
    time.sleep(0.02)  # past the plug's linger: one entry each
time.sleep(2.6)
fd = os.open(f"{d}/lag", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
os.write(fd, b"lag\n")
t = time.monotonic()
os.close(fd)
ms = 1e3 * (time.monotonic() - t)
print(f"  close under apply lag: {ms:.1f} ms")
if ms < 300:
    sys.exit(f"close under over 2 s of apply lag took {ms:.1f} ms: answered early")
fd = os.open(d, os.O_RDONLY)
os.fsync(fd)
os.close(fd)
PY
for m in "$M2" "$M3"; do
	for i in $(seq 0 7); do
		[ "$(cat "$m/l/f$i")" = "file $i" ] || fail "$m/l/f$i after node 1's fsyncdir"
	done
	[ "$(cat "$m/l/lag")" = "lag" ] || fail "$m/l/lag after node 1's fsyncdir"
	[ -d "$m/l/m15" ] || fail "$m/l/m15 after node 1's fsyncdir"
done
early=$(stop_counter 1 "flushes of files created behind" answered)
[ "${early:-0}" -ge 7 ] || fail "node 1 answered ${early:-no} closes of 9 early (at least 7)"
[ "$early" -le 8 ] || fail "node 1 answered $early closes of 9 early (the one under apply lag too)"
verify 60 "after node 1's files"
echo PASS
exit 0
}
