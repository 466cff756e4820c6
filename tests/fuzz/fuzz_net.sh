#!/bin/bash
# fuzz_net.sh RAFTFS NET_FUZZ — bad input on every node's port while a
# writer on a mount goes on: random bytes, frames cut short or of absurd
# length, client requests with absurd fields (each must be answered), and,
# with node 1 stopped, raft messages and snapshot chunks posing as node 1
# with absurd fields and stale terms (net_fuzz.c). Every node must stay up
# and healthy, log why it dropped what it dropped, and lose nothing: every
# file the writer's close acknowledged is on every mount, and the mounts
# and the nodes' trees are identical (node 1 restarted).
# The whole script is one block, parsed before any of it runs (tests/FLAKY.md).
{
set -euo pipefail
. "$(dirname "$0")/../mount/lib.sh"
N=${2:?usage: $0 RAFTFS NET_FUZZ}
rounds=${NET_ROUNDS:-60}
seed=${NET_SEED:-500}
up
read -r _ cluster _ <"$C/cluster"
addr() { "$R" local addr "$C" "$1"; }
term_of() { "$R" status --json "$(addr "$1")" | sed -n -E 's/.*"term":([0-9]+).*/\1/p'; }
healthy() { "$R" status "$(addr "$1")" >/dev/null 2>&1; }

# The writer: one file per round through n2, counted once /bin/echo (which
# checks close) returned 0. (Its failures while node 2 restarts, below, are
# no finding: they are not counted.)
mkdir "$M2/w"
: >"$T/acked"
(
	k=0
	while [ ! -e "$T/stop" ]; do
		k=$((k + 1))
		/bin/echo "line $k" >"$M2/w/f$k" && echo "$k" >>"$T/acked"
	done
) 2>"$T/writer.err" &
writer=$!
count() { wc -l <"$T/acked"; }
at_least() { [ "$(count)" -ge "$1" ]; }
wait_for 60 "the writer to start" at_least 5

echo "== bad input from clients to every node"
for i in 1 2 3; do
	# -B: a hello announced as 1 MiB must be refused at once (before the
	# handshake a frame may be 4 KiB: nobody is known yet). -E: a request
	# of each kind with every field empty (protobuf-c hands those over as
	# NULL pointers), each answered.
	"$N" -B -E -s $((seed + i)) -n "$rounds" -c "$cluster" "$(addr "$i")" >"$T/client$i.out" 2>&1 ||
		{ cat "$T/client$i.out"; fail "node $i stopped answering bad client input"; }
	sed 's/^/   /' "$T/client$i.out"
done

# Raft messages posing as node 1 need node 1 down (a member id is all its
# hello proves) and a term of 2 or more, so every term they carry is stale.
echo "== raft messages and snapshot chunks posing as node 1 (stopped)"
L=$(leader_id)
[ -n "$L" ] || fail "no leader"
if [ "$(term_of "$L")" -lt 2 ]; then
	"$R" local stop "$C" "$L" >/dev/null
	"$R" local start "$C" "$L" >/dev/null || fail "restart of node $L"
fi
"$R" local stop "$C" 1 >/dev/null
has_leader() { [ -n "$(leader_id)" ]; }
wait_for 60 "a leader among nodes 2 and 3" has_leader
before=$(count)
# A status request can fail while the new leader settles (the CI run of
# f41f125 once): asked again until it answers with a term.
term_known() { t=$(term_of "$1") && [ -n "$t" ]; }
for i in 2 3; do
	wait_for 30 "node $i's status with its term" term_known "$i"
	[ "$t" -ge 2 ] || fail "node $i's term is '$t'"
	"$N" -s $((seed + 10 + i)) -n "$rounds" -p 1 -t "$i" -T $((t - 1)) -c "$cluster" \
		"$(addr "$i")" >"$T/peer$i.out" 2>&1 ||
		{ cat "$T/peer$i.out"; fail "node $i stopped answering raft messages posing as node 1"; }
	sed 's/^/   /' "$T/peer$i.out"
done
wait_for 60 "the writer to go on with node 1 down" at_least $((before + 20))
for i in 2 3; do healthy "$i" || fail "node $i unhealthy after the bad input: $("$R" status "$(addr "$i")" 2>&1)"; done
for want in "closing" "undecodable raft message\|on this link: dropped"; do
	grep -q "$want" "$C/node2/node.log" || fail "node 2 logged nothing like: $want"
done
echo "   what node 2 logged about it (kinds, counted):"
grep -h "ERR" "$C/node2/node.log" | sed -E 's/^.*ERR[^:]*: //; s/[0-9]+/N/g; s/'"'"'[^'"'"']*'"'"'/S/g' |
	sort | uniq -c | sort -rn | head -n 12 | sed 's/^/     /'

echo "== node 1 back; the writer stops; nothing lost"
"$R" local start "$C" 1 >/dev/null || fail "restart of node 1"
touch "$T/stop"
wait "$writer" || true
for i in 1 2 3; do healthy "$i" || fail "node $i unhealthy at the end: $("$R" status "$(addr "$i")" 2>&1)"; done
verify 90 "after the bad input"
n=0
while read -r k; do
	for m in "$M1" "$M2" "$M3"; do
		[ "$(cat "$m/w/f$k" 2>/dev/null)" = "line $k" ] || fail "acknowledged file f$k is wrong on $m"
	done
	n=$((n + 1))
done <"$T/acked"
echo "   $n acknowledged files whole on every mount"
echo "PASS"
exit
}
