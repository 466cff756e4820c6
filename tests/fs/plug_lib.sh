# plug_lib.sh — shared by the tests of the plug's batches (mount_batch.sh,
# mount_read_plug.sh): the plug's settings and the status helpers that
# find a node by its role (lib.sh's commit counts a burst's log entries).
# Source it with the raftfs binary as $1; it sources tests/mount/lib.sh.

# Directories stay held (no return when idle), and a held command waits
# up to 200 ms for company: then a loaded machine does not split a burst
# by the linger, only a flush would. (20 ms was not enough: with two busy
# loops beside ctest -j2, load ~25, a python loop's unlinks came further
# apart and mount.batch's unlink phase took 150 and 240 entries, 80 at load
# 21 without the loops; at 200 ms 25-68 at load 20-26 with them, b80f608.
# The bug these tests guard, a flush per command, takes N entries at any
# linger.)
export RAFTFS_DELEG_IDLE_MS=0
export RAFTFS_PLUG_US=200000
. "$(dirname "${BASH_SOURCE[0]}")/../mount/lib.sh"

# node_of ROLE: the id of a node in that role in $T/status (status_saved,
# lib.sh).
node_of() { awk -v r="$1" '$6 == r { sub(":", "", $2); print $2; exit }' "$T/status"; }
has_role() { status_saved && [ -n "$(node_of "$1")" ]; }
