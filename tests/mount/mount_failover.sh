#!/bin/bash
# mount_failover.sh RAFTFS — a writer on each mount, kill -9 of the leader
# mid-stream: the survivors elect a leader and keep accepting writes, every
# write that returned success is on every surviving mount, the killed node
# restarts and converges. Then without a quorum mutations fail after a
# bounded wait while reads keep working.
# The whole script is one block, parsed before any of it runs: bash reads
# a script as it goes, so an edit to this file during a run would
# otherwise make the running test execute the edited text from a stale
# offset.
{
set -euo pipefail
. "$(dirname "$0")/lib.sh"
up

for id in 1 2 3; do : >"$T/acked$id"; line_writer $id & done
for id in 1 2 3; do wait_for 60 "writer $id started" acked_at_least $id 20; done

L=$(leader_id)
[ -n "$L" ] || fail "no leader"
echo "== kill -9 leader $L"
"$R" local kill "$C" "$L"
new_leader() { local l; l=$(leader_id); [ -n "$l" ] && [ "$l" != "$L" ]; }
wait_for 30 "a new leader" new_leader
echo "   new leader $(leader_id)"
for id in 1 2 3; do
	[ "$id" = "$L" ] && continue
	base=$(acked $id)
	wait_for 60 "writer $id going on after the election" acked_at_least $id $((base + 20))
done
touch "$T/stop"
wait

survivors=()
for id in 1 2 3; do [ "$id" = "$L" ] || survivors+=("$C/n$id"); done
"$R" verify --wait 30 "${survivors[@]}" >"$T/v.out" || { cat "$T/v.out"; fail "survivors differ"; }
for id in 1 2 3; do
	for m in "${survivors[@]}"; do
		# Every acknowledged line, exactly once.
		sort "$m/w$id" | uniq -d | grep -q . && fail "$m/w$id holds a line twice"
		missing=$(sort "$T/acked$id" | comm -23 - <(sort "$m/w$id") | head -n3)
		[ -z "$missing" ] || fail "$m/w$id misses acknowledged lines: $missing"
	done
	echo "   writer $id: $(acked $id) acknowledged writes, all present"
done

echo "== restart node $L"
start_node "$L"
verify 60 "after the restart of node $L"
wait_for 60 "a leader" has_leader # picks K below

echo "== an orphan left by a crash is released when its node restarts"
K=$(( $(leader_id) % 3 + 1 ))
echo held >"$C/n$K/orphan"
exec 7<"$C/n$K/orphan"
rm "$C/n$K/orphan"
# Orphans are index entries without a name: link count 1 in DATA/ids.
orphans() { find "$C"/node*/data/ids -type f -links 1 | wc -l; }
has_orphans() { [ "$(orphans)" -eq 3 ]; }
wait_for 30 "the open unlinked file on every node" has_orphans
"$R" local kill "$C" "$K"
exec 7<&-
start_node "$K" "the orphan's node"
no_orphans() { [ "$(orphans)" -eq 0 ]; }
wait_for 30 "node $K to release the orphan at start" no_orphans
verify 60 "after the orphan release"
wait_for 60 "a leader" has_leader # the next step keeps it up (leader_id)

echo "== no quorum"
L=$(leader_id)
others=()
for id in 1 2 3; do [ "$id" = "$L" ] || others+=("$id"); done
"$R" local kill "$C" "${others[0]}"
"$R" local kill "$C" "${others[1]}"
t0=$SECONDS
if { echo lost >"$C/n$L/noquorum"; } 2>"$T/err"; then fail "a write succeeded without a quorum"; fi
elapsed=$((SECONDS - t0))
echo "   write failed after ${elapsed}s: $(cat "$T/err")"
[ $elapsed -le 20 ] || fail "the write took ${elapsed}s to fail"
grep -q "timed out" "$T/err" || fail "want ETIMEDOUT, got: $(cat "$T/err")"
cat "$C/n$L/w1" >/dev/null || fail "reads stopped working without a quorum"
ls "$C/n$L" >/dev/null || fail "readdir stopped working without a quorum"
start_node "${others[0]}" "after the quorum loss"
start_node "${others[1]}" "after the quorum loss"
verify 60 "after the quorum came back"
wait_for 60 "a leader" has_leader # picks F below

echo "== a local fault while applying"
# Node F's tree refuses changes in one directory (immutable): applying a
# create there fails locally. F must stop applying and say so, fail
# mutations with EIO and keep serving reads; the others go on.
F=$(( $(leader_id) % 3 + 1 ))
mkdir "$M1/frozen"
sync_f() { : <"$C/n$F/w1"; [ -d "$C/n$F/frozen" ]; }
wait_for 30 "frozen/ on node $F" sync_f
IMMUTABLE=$C/node$F/data/tree/frozen
chattr +i "$IMMUTABLE" 2>/dev/null || { echo "   (no chattr +i here: skipped)"; echo PASS; exit 0; }
echo x >"$C/n$(( F % 3 + 1 ))/frozen/x"
unhealthy() { { "$R" local status "$C" || true; } | grep "^node $F:" | grep -q "stopped applying"; }
wait_for 30 "node $F reported unhealthy" unhealthy
if { : >"$C/n$F/after-fault"; } 2>"$T/err"; then fail "a mutation succeeded on the faulty node"; fi
grep -q "Input/output error" "$T/err" || fail "want EIO, got: $(cat "$T/err")"
cat "$C/n$F/w1" >/dev/null || fail "reads stopped on the faulty node"
chattr -i "$IMMUTABLE"
IMMUTABLE=
"$R" local stop "$C" "$F"
start_node "$F" "the faulty node"
verify 60 "after the faulty node restarted"
echo "PASS"
exit
}
