#!/bin/bash
# part_flap.sh RAFTFS — links flap: for FLAP_S seconds (default 20) a random
# fault every few hundred ms — a node's link down, the leader's link down,
# one direction of one pair cut — each healed before the next, while a
# writer on every mount appends numbered lines to its own file and another
# to a file all mounts share, counting a line only when dd's close
# succeeded. Afterwards (healed) every mount holds every acknowledged line,
# and no line twice: an append applied twice (a retry after a leader change
# that the duplicate table missed) would show as a repeated line.
# One block, parsed whole before it runs (tests/FLAKY.md).
{
set -euo pipefail
. "$(dirname "$0")/partlib.sh"
FLAP_S=${FLAP_S:-20}

part_up
echo "== writers on every mount"
for i in 1 2 3; do
	: >"$T/acked.$i"
	: >"$T/acked.$((i + 10))"
	writer "$i" "$i" "w$i" &
	writer "$((i + 10))" "$i" shared &
done
for i in 1 2 3 11 12 13; do wait_for 60 "writer $i started" acked_at_least "$i" 3; done

# The leader as last seen, kept by a poller so a fault needs no status
# round (each is a process start: slow under ASan on a loaded machine).
track_leader() {
	while running; do
		l=$(leader_among 1 2 3) && echo "$l" >"$T/leader.tmp" && mv "$T/leader.tmp" "$T/leader"
		sleep 0.2
	done
}
track_leader &
echo "== flapping for ${FLAP_S} s"
declare -A kinds
t0=$SECONDS
faults=0 long=0
while [ $((SECONDS - t0)) -lt "$FLAP_S" ]; do
	hold=$(printf '0.%03d' $((100 + RANDOM % 400)))
	case $((RANDOM % 4)) in
	0)
		k="link down"
		net_link_down $((RANDOM % 3 + 1))
		;;
	1)
		k="leader link down"
		l=$(cat "$T/leader" 2>/dev/null) || l=$((RANDOM % 3 + 1))
		net_link_down "$l"
		;;
	2)
		k="one-way cut"
		a=$((RANDOM % 3 + 1))
		b=$(((a + RANDOM % 2) % 3 + 1))
		net_cut "$a" "$b"
		;;
	3)
		k="pair cut"
		a=$((RANDOM % 3 + 1))
		b=$(((a + RANDOM % 2) % 3 + 1))
		net_split "$a" "$b"
		;;
	esac
	# Once, half-way: a fault longer than the proposal timeout (5 s), so
	# some writers see their close fail and go on with the next line.
	if [ "$long" = 0 ] && [ $((SECONDS - t0)) -ge $((FLAP_S / 2)) ]; then
		long=1 hold=6
		k="$k (6 s)"
	fi
	kinds[$k]=$((${kinds[$k]:-0} + 1))
	faults=$((faults + 1))
	sleep "$hold"
	net_heal
	sleep "$(printf '0.%03d' $((50 + RANDOM % 250)))"
done
echo "   $faults faults: $(for k in "${!kinds[@]}"; do echo -n "$k ${kinds[$k]}; "; done)"
for i in 1 2 3 11 12 13; do echo -n "   writer $i: $(acked "$i")"; done
echo

echo "== healed: every writer goes on"
t2=$(ms)
for i in 1 2 3 11 12 13; do
	base=$(acked "$i")
	wait_for 90 "writer $i going on after the heal" acked_at_least "$i" $((base + 3))
done
echo "   all writers acknowledged again within $(($(ms) - t2)) ms of the heal"
touch "$T/stop"
wait
part_verify 60 "after flapping"
for i in 1 2 3; do check_log "$i" "w$i"; done
for i in 11 12 13; do check_log "$i" shared; done
for i in 1 2 3 11 12 13; do echo -n "   writer $i: $(acked "$i") ok"; done
echo
echo "   shared: $(wc -l <"$C/n1/shared") lines, $(cat "$T"/acked.1[123] | wc -l) acknowledged; $(cat "$T"/err.* | wc -l) failed closes"
echo PASS
exit
}
