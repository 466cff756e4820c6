#!/bin/bash
# mount_close_atomic.sh RAFTFS — close = behind answers the close of a file
# created in a held directory before its commands commit (fs/fuse_close.h);
# the promise is that the file then reaches the other nodes whole or not at
# all: every command of it since its creation goes out in one log entry
# with its close (fs_node_flush_unit), or the close waits for their commit.
# Rounds: a writer on a follower's mount creates, writes (several sizes and
# write sizes) and closes files, overwrites some with O_TRUNC, never
# fsyncs; that node is killed with SIGKILL — by the writer right after the
# close of a big file (the likeliest moment for a torn file), or by this
# script at a moment given by the number of closes it sees. On both
# survivors every file is a whole version of itself (close_atomic.py: each
# file names its length and checksum), but the one open at the kill; the
# survivors' mounts are identical; the node restarts and converges.
# One block, parsed before any of it runs (tests/FLAKY.md).
{
set -euo pipefail
export RAFTFS_CLOSE=behind
. "$(dirname "$0")/lib.sh"
PY=$(dirname "$0")/close_atomic.py
up

closes() { grep -c '^closed' "$1" 2>/dev/null || true; }
closes_at_least() { [ "$(closes "$1")" -ge "$2" ]; }
node_gone() { ! kill -0 "$1" 2>/dev/null; }
# leader_known: sets L to the leader's id, if there is one.
leader_known() { L=$(leader_id); [ -n "$L" ]; }

ROUNDS=${CLOSE_ATOMIC_ROUNDS:-5}
for round in $(seq 1 "$ROUNDS"); do
	# Awaited: the restart that ended the last round (lib.sh, start_node)
	# does not wait for an election it may have caused, and one look at
	# local status can miss a leader slow to answer (load).
	wait_for 60 "a leader before round $round" leader_known
	# A follower (forwarding adds to the time a close is ahead of the log).
	F=$(( (L + round - 1) % 3 + 1 ))
	[ "$F" != "$L" ] || F=$((L % 3 + 1))
	S=()
	for i in 1 2 3; do [ "$i" = "$F" ] || S+=("$i"); done
	d=r$round
	mkdir "$C/n$F/$d" # granted to node F: its creates are answered behind
	pid=$(cat "$C/node$F/pid")
	log=$T/log$round
	: >"$log"
	seed=$((RANDOM * 32768 + RANDOM))
	if [ $((round % 2)) = 1 ]; then
		how="by the writer after the close of a big file past $((round * 7)) closes"
		python3 "$PY" write "$C/n$F/$d" "$seed" "$pid" $((round * 7)) "$log" &
		w=$!
	else
		at=$((10 + RANDOM % 60))
		how="after $at closes seen"
		python3 "$PY" write "$C/n$F/$d" "$seed" "$pid" 0 "$log" &
		w=$!
		wait_for 60 "$at closes on n$F" closes_at_least "$log" "$at"
		kill -9 "$pid"
	fi
	wait_for 60 "node $F killed ($how)" node_gone "$pid"
	wait "$w" || fail "the writer of round $round failed"
	echo "== round $round: node $F killed $how, $(closes "$log") closes; seed $seed"
	for s in "${S[@]}"; do
		python3 "$PY" check "$C/n$s/$d" "$log" >"$T/check.out" ||
			{ cat "$T/check.out"; fail "round $round: a file closed on n$F is torn on n$s"; }
	done
	cat "$T/check.out"
	"$R" verify --wait 30 "$C/n${S[0]}" "$C/n${S[1]}" >"$T/verify.out" ||
		{ cat "$T/verify.out"; fail "round $round: the survivors differ"; }
	start_node "$F" "round $round"
done
verify 60 "after the last restart"
echo "PASS"
exit
}
