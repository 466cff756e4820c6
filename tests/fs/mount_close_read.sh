#!/bin/bash
# mount_close_read.sh RAFTFS — the close of a handle that wrote nothing
# (a read's) waits for nothing (fs/fuse_close.h): node 1 applies every
# entry 300 ms late (RAFTFS_TEST_APPLY_DELAY_US), its mount makes 16
# directories behind (answered at once, applied there a second or more
# later), then reads and closes a file it opened before them. So
#  1. that close returns in well under the backlog's apply (250 ms; it
#     waited for every write-behind command the mount had proposed, over
#     600 ms here, and a cat during a tar x took 3-6 ms instead of 0.7);
#  2. a file written through a handle is still whole on the other mounts
#     once its close returned, and fsyncdir reports no failure;
#  3. the mounts and trees agree.
# Either close mode (RAFTFS_CLOSE from ctest).
# One block, parsed before any of it runs (tests/FLAKY.md).
{
set -euo pipefail
export RAFTFS_DELEG_IDLE_MS=0 # the directory stays held
. "$(dirname "$0")/../mount/lib.sh"
up
node_conf 1 proposal_timeout_ms 60000 RAFTFS_TEST_APPLY_DELAY_US=300000

echo "== 1. node 1 (apply 300 ms late): 16 mkdirs behind, then a read's close"
echo "read me" >"$M1/r"
mkdir "$M1/d" # made here: held by node 1
python3 - "$M1" <<'PY' || fail "the read's close through node 1"
import os, sys, time
m = sys.argv[1]
fd = os.open(f"{m}/r", os.O_RDONLY)  # before the mkdirs: its open waits for nothing of them
for i in range(16):
    os.mkdir(f"{m}/d/x{i}")
t = time.monotonic()
if os.read(fd, 100) != b"read me\n":
    sys.exit("read of r")
os.close(fd)
dt = time.monotonic() - t
print(f"  read + close: {1e3 * dt:.1f} ms")
if dt > 0.25:
    sys.exit(f"a read's close took {1e3 * dt:.0f} ms behind 16 pending mkdirs")
# A handle that wrote still waits (commit) or goes out whole (behind).
fd = os.open(f"{m}/d/w", os.O_CREAT | os.O_WRONLY, 0o644)
os.write(fd, b"written\n")
os.close(fd)
dfd = os.open(f"{m}/d", os.O_RDONLY)
os.fsync(dfd)  # every failure of the commands above, reported here
os.close(dfd)
PY
for m in "$M2" "$M3"; do
	[ "$(cat "$m/d/w")" = written ] || fail "$m/d/w after node 1's close and fsyncdir"
	[ -d "$m/d/x15" ] || fail "$m/d/x15 after node 1's fsyncdir"
done
# Node 1 again at full speed: verify compares the trees at one applied
# index, which node 1 reaches 300 ms per entry late (over a minute).
"$R" local stop "$C" 1 >/dev/null
"$R" local start "$C" 1 >/dev/null || fail "restart of node 1"
verify 60 "after node 1's mkdirs"
echo PASS
exit 0
}
