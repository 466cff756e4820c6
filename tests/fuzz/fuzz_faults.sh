#!/bin/bash
# fuzz_faults.sh RAFTFS FSOP_FUZZ — random operations from six processes on
# the three mounts at once, and kill -9 of the leader in the middle, then
# its restart. On each mount one fsop_fuzz works in a directory of its own
# against a model (every result compared, also across the election), and
# one shares a directory with the other mounts' (no model: only faults
# fail). Both kinds also write new files, fsync and close them, and list
# those that returned. At the end the mounts and the nodes' trees are
# identical and every listed file holds what was fsynced, on every mount.
# The whole script is one block, parsed before any of it runs (tests/FLAKY.md).
{
set -euo pipefail
. "$(dirname "$0")/../mount/lib.sh"
F=${2:?usage: $0 RAFTFS FSOP_FUZZ}
up
ops=${FUZZ_OPS:-1500}
seed=${FUZZ_SEED:-300}

mkdir "$M1/shared"
# -t 60: a hung operation ends its fuzzer, naming the operation, early
# enough that the restart and two verifies of up to 90 s each still fit in
# ctest's 300 s (fuzz.faults_behind once timed out with no word of why).
pids=()
for i in 1 2 3; do
	mkdir "$C/n$i/p$i" "$T/model$i" # made on its own mount: delegated to it
	: >"$T/man.p$i"
	: >"$T/man.x$i"
	"$F" -g -s $((seed + i)) -n "$ops" -k 0 -t 60 -d "$T/man.p$i" \
		"$T/model$i" "$C/n$i/p$i" >"$T/p$i.out" 2>&1 &
	pids+=($!)
	"$F" -x -g -s $((seed + 10 + i)) -n "$ops" -t 60 -d "$T/man.x$i" \
		"$C/n$i/shared" >"$T/x$i.out" 2>&1 &
	pids+=($!)
done
L=$(leader_id)
[ -n "$L" ] || fail "no leader"
listed() { [ -f "$1" ] && [ "$(wc -l <"$1")" -ge "$2" ]; }
wait_for 120 "the fuzzers on n$L to make progress" listed "$T/man.p$L" 3
echo "== kill -9 of leader $L while six fuzzers run"
"$R" local kill "$C" "$L"

# Every fuzzer ends: 0, or 3 (its mount went away) on the killed node only.
bad=0
for k in "${!pids[@]}"; do
	i=$((k / 2 + 1)) kind=$([ $((k % 2)) = 0 ] && echo p || echo x)
	rc=0
	wait "${pids[$k]}" || rc=$?
	sed -n 's/^fsop_fuzz: seed/   n'"$i $kind"': seed/p' "$T/$kind$i.out" | tail -n 1
	grep -h "errors from the mount\|^  EAGAIN: " "$T/$kind$i.out" | sed 's/^ */      /' || true
	if [ $rc = 3 ] && [ "$i" = "$L" ]; then
		continue
	elif [ $rc != 0 ]; then
		tail -n 60 "$T/$kind$i.out"
		echo "FAIL: fsop_fuzz $kind on n$i exited with $rc"
		bad=1
	fi
done
[ $bad = 0 ] || fail "a fuzzer failed"
grep -h "known" "$T"/p?.out | sed 's/^/   /' || true

echo "== restart of node $L"
"$R" local start "$C" "$L" >/dev/null || fail "restart of node $L"
verify 90 "after six fuzzers and kill -9 of the leader"
for i in 1 2 3; do
	for m in 1 2 3; do
		"$F" -C "$T/man.p$i" "$C/n$m/p$i" >/dev/null || fail "fsynced files of p$i on n$m"
		"$F" -C "$T/man.x$i" "$C/n$m/shared" >/dev/null || fail "fsynced files of x$i on n$m"
	done
done
echo "   $(cat "$T"/man.* | wc -l) fsynced files whole on every mount"
echo "PASS"
exit
}
