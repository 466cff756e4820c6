#!/bin/bash
# snapshot_crash.sh RAFTFS — kill -9 at the points of a snapshot's life, and
# after each restart every mount converges (raftfs verify):
#   1. the leader while it makes a snapshot (creation stretched to 1 s by
#      the test hook RAFTFS_TEST_SNAP_DELAY_MS);
#   2. a follower while it receives one (once it staged a chunk: RAFTFS_DEBUG=NET
#      logs each; chunks read slowly by the test hook
#      RAFTFS_TEST_SNAP_READ_DELAY_MS), which after its restart resumes the
#      transfer at what it staged (both sides log "resuming at");
#   3. the leader while it sends one (the same way);
#   4. a follower while it installs one (right after "installing" is logged).
# The whole script is one block, parsed before any of it runs: bash reads
# a script as it goes, so an edit to this file during a run would
# otherwise make the running test execute the edited text from a stale
# offset.
{
set -euo pipefail
. "$(dirname "$0")/../mount/lib.sh"
. "$(dirname "$0")/snaplib.sh"
export RAFTFS_TEST_SNAP_DELAY_MS=1000 RAFTFS_DEBUG=NET
snap_cluster 200

other_than() { local i; for i in 1 2 3; do [ "$i" = "$1" ] || [ "$i" = "$2" ] || { echo "$i"; return; }; done; }
streams() { log_count "$1" ") to $2: streaming"; } # LEADER PEER
streaming() { [ "$(streams "$1" "$2")" -gt "$3" ]; }
new_leader() { local l; l=$(leader_id); [ -n "$l" ] && [ "$l" != "$1" ]; }
# A follower far enough behind to need a snapshot: stopped while the live
# nodes compact past it. Both of them: under load an election may come
# before the follower is back, and a new leader whose log still holds
# what the follower lacks sends entries, not a snapshot (seen: phase 3
# waited 60 s for a stream that had no reason to start). Big data makes
# the snapshot take a while to move. A deadline of its own (90 s), so that
# a cluster that stopped compacting fails here and says so, not at the
# ctest TIMEOUT with no word.
make_lag() { # LEADER FOLLOWER TAG
	local had o k=0 deadline=$((SECONDS + 90))
	had=$(status_field "$2" applied)
	o=$(other_than "$1" "$2")
	"$R" local stop "$C" "$2"
	head -c 8000000 /dev/urandom >"$C/n$1/big$3"
	until compacted_past "$1" "$had" && compacted_past "$o" "$had"; do
		[ $SECONDS -lt $deadline ] ||
			fail "nodes $1 and $o did not compact past node $2's applied index $had in 90 s" \
				"(first indexes: $(status_field "$1" first_index), $(status_field "$o" first_index))"
		file_ops "$C/n$1" 100 "$3$k"
		k=$((k + 1))
	done
}

L=$(leader_id); [ -n "$L" ] || fail "no leader"
echo "== 1. kill -9 leader $L while it makes a snapshot"
n0=$(log_count "$L" "snapshot image at .*: making")
(file_ops "$C/n$L" 300 one 2>/dev/null) &
making() { [ "$(log_count "$L" "snapshot image at .*: making")" -gt "$n0" ]; }
wait_for 60 "a snapshot being made" making
"$R" local kill "$C" "$L"
wait || true # the writer may have failed with the leader gone
last=$(grep "snapshot image at" "$C/node$L/node.log" | tail -n1)
case $last in *making*) echo "   killed while making: $last" ;;
*) fail "the kill missed the creation: $last" ;; esac
# The other phases run without the creation delay: restart every node.
unset RAFTFS_TEST_SNAP_DELAY_MS
"$R" local down "$C" >/dev/null
restart_all
verify 60 "after killing the leader during creation"

# The senders read each 1 MiB chunk 150 ms slower (test hook), so a kill
# lands mid-transfer; the nodes restart with it.
export RAFTFS_TEST_SNAP_READ_DELAY_MS=150
"$R" local down "$C" >/dev/null
restart_all
L=$(leader_id); F=$(other_than "$L" 0)
echo "== 2. kill -9 follower $F while it receives a snapshot from $L; it resumes at what it staged"
make_lag "$L" "$F" two
term0=$(status_field "$L" term)
g0=$(log_count "$F" ": staged ") i0=$(log_count "$F" installing)
"$R" local start "$C" "$F"
staging() { [ "$(log_count "$F" ": staged ")" -gt "$g0" ]; }
wait_for 60 "node $F staging a snapshot's chunks" staging
"$R" local kill "$C" "$F"
[ "$(log_count "$F" installing)" = "$i0" ] || fail "the transfer had ended before the kill"
had=$(grep ": staged " "$C/node$F/node.log" | tail -n1)
echo "   killed after: ${had#*INFO: }"
restart_node "$F" "the receiver"
verify 90 "after killing the receiver"
log_has "$F" "installed in" || fail "node $F did not install a snapshot"
# Resumed where the staging ended (the follower and the leader say so),
# unless a new leader or term sends its own image (which starts over).
if grep -q "resuming at [1-9]" "$C/node$F/node.log"; then
	echo "   $(grep -h "resuming at [1-9]" "$C/node$F/node.log" "$C/node$L/node.log" | sed 's/.*INFO: //' | paste -sd';')"
	grep -q "to $F: resuming at [1-9]" "$C"/node*/node.log || fail "no sender said it resumed"
elif [ "$(leader_id)" = "$L" ] && [ "$(status_field "$L" term)" = "$term0" ]; then
	fail "node $F did not resume its transfer from $L (same leader, same term $term0)"
else
	echo "   (the leader or term changed: the transfer started over, as it must)"
fi
unset RAFTFS_TEST_SNAP_READ_DELAY_MS

L=$(leader_id); F=$(other_than "$L" 0)
echo "== 3. kill -9 the leader while it sends a snapshot to $F"
make_lag "$L" "$F" three
# Whoever leads by then sends it (under load an election may come
# between the writes and the start).
declare -A s0
for i in 1 2 3; do s0[$i]=$(streams "$i" "$F"); done
sender() { local i; for i in 1 2 3; do [ "$i" = "$F" ] || [ "$(streams "$i" "$F")" -le "${s0[$i]}" ] || { echo "$i"; return 0; }; done; return 1; }
"$R" local start "$C" "$F"
wait_for 60 "a snapshot streaming to node $F" sender
L=$(sender)
echo "   killing node $L, which streams to $F"
"$R" local kill "$C" "$L"
wait_for 30 "a new leader" new_leader "$L"
restart_node "$L" "the sender"
verify 90 "after killing the sender"

L=$(leader_id); F=$(other_than "$L" 0)
echo "== 4. kill -9 follower $F while it installs a snapshot"
n0=$(log_count "$F" "installing")
make_lag "$L" "$F" four
"$R" local start "$C" "$F"
installing() { [ "$(log_count "$F" "installing")" -gt "$n0" ]; }
wait_for 60 "node $F installing" installing
"$R" local kill "$C" "$F"
n1=$(log_count "$F" "installed in")
restart_node "$F" "the installer"
verify 90 "after killing the installer"
echo "   restarted node $F: $(grep -c "installed in" "$C/node$F/node.log") installs in its log ($n1 before the kill)"
echo "PASS"
exit
}
