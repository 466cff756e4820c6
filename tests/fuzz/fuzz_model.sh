#!/bin/bash
# fuzz_model.sh RAFTFS FSOP_FUZZ MODE — seeded random operations (fsop_fuzz)
# on a 3-node cluster, every result, every read and (every 250 ops) the whole
# tree compared with the same operations on a local directory. MODE one: all
# through n1. MODE mounts (and sync, for a cluster without write-behind):
# through n1, n2, n3 in turn, each switch passing the close-to-open sync
# point (README "Consistency"). MODE lin: linearizable mounts in turn with
# no sync point but fsync of the written handles. Then the three mounts
# and the nodes' trees must be identical (raftfs verify: also inode numbers
# and times, which the model cannot give). MODE close: the mounts in turn
# with close = behind's sync point (fsync of the written handles and an
# open on the next mount, no fsyncdir: README "Close behind"); run it with
# RAFTFS_CLOSE=behind. FUZZ_CLOSE="behind commit commit" sets each node's
# [fs] close in its config instead (a mixed cluster).
# The whole script is one block, parsed before any of it runs (tests/FLAKY.md).
{
set -euo pipefail
. "$(dirname "$0")/../mount/lib.sh"
F=${2:?usage: $0 RAFTFS FSOP_FUZZ one|mounts|sync|lin|close}
MODE=${3:?usage: $0 RAFTFS FSOP_FUZZ one|mounts|sync|lin|close}
if [ -n "${FUZZ_CLOSE:-}" ]; then
	"$R" local create 3 "$C" >/dev/null || fail "local create"
	i=0
	for c in $FUZZ_CLOSE; do
		i=$((i + 1))
		set_conf "$i" close "$c"
	done
	echo "   close per node: $FUZZ_CLOSE"
fi
up

# Fixed seeds, so a failure replays (with timing as the only difference);
# FUZZ_SEEDS / FUZZ_OPS override them for longer runs by hand.
case $MODE in
one) seeds=${FUZZ_SEEDS:-"11 12 13 14"} ops=${FUZZ_OPS:-2500} mounts="$M1" flags= ;;
mounts) seeds=${FUZZ_SEEDS:-"21 22 23"} ops=${FUZZ_OPS:-2000} mounts="$M1 $M2 $M3" flags= ;;
sync) # RAFTFS_WRITE_BEHIND=false in the environment
	seeds=${FUZZ_SEEDS:-"31 32"} ops=${FUZZ_OPS:-2500} mounts="$M1 $M2 $M3" flags= ;;
lin) # RAFTFS_MOUNT_OPTS=linearizable: no sync point between mounts but
	# the fsync of what was written (writes are pipelined in every mode)
	seeds=${FUZZ_SEEDS:-"41 42"} ops=${FUZZ_OPS:-2000} mounts="$M1 $M2 $M3" flags=-l ;;
close) # close = behind's sync point: no fsyncdir before switching mounts
	seeds=${FUZZ_SEEDS:-"51 52 53"} ops=${FUZZ_OPS:-2000} mounts="$M1 $M2 $M3" flags=${FUZZ_FLAGS:--c} ;;
*) fail "unknown mode $MODE" ;;
esac

for s in $seeds; do
	mkdir "$T/model$s" "$M1/w$s"
	work=
	for m in $mounts; do work="$work $m/w$s"; done
	# shellcheck disable=SC2086
	"$F" $flags -s "$s" -n "$ops" -k 250 -t 120 "$T/model$s" $work >"$T/fuzz$s.out" 2>&1 ||
		{ tail -n 60 "$T/fuzz$s.out"; fail "fsop_fuzz seed $s ($MODE) found a difference"; }
	grep -E "seed|known" "$T/fuzz$s.out" | sed 's/^/   /'
done
verify 60 "after fsop_fuzz ($MODE)"
echo "PASS"
exit
}
