#!/bin/bash
# member_errors.sh RAFTFS — what raftfs member refuses, and that it says
# why, on a 3-node cluster of the kv test state machine (no mounts): an
# unknown id, an address another member has, a member added twice, bad
# usage, a change while another is under way, a learner that does not
# catch up (it stays a learner), a removal that would leave no quorum, the
# last voter; a learner added and removed, listed by every node's status;
# a change sent to a follower, which relays it to the leader; a removed id
# added again, with its old data dir and with a fresh one; a
# joining node's config that names no member, or two peers at one address.
# Every process and the temp dir go on exit, also on failure (a reaper
# outside ctest's process tree covers a killed test).
# The whole script is one block, parsed before any of it runs (tests/FLAKY.md).
{
set -euo pipefail
R=${1:?usage: $0 RAFTFS}
export RAFTFS_LOCAL_SM=kv
T=$(mktemp -d /tmp/raftfs-member.XXXXXX)
C=$T/c
setsid -f bash -c 'tail -s 0.2 --pid="$1" -f /dev/null
	"$2" local down "$3"
	rm -rf "$4"' reaper $$ "$R" "$C" "$T" </dev/null >/dev/null 2>&1
cleanup() {
	local rc=$?
	set +e
	[ -z "$(jobs -p)" ] || kill $(jobs -p) 2>/dev/null
	wait 2>/dev/null
	if [ -f "$C/cluster" ]; then
		"$R" local down "$C" >/dev/null 2>&1
		if grep -l -E "Sanitizer|runtime error" "$C"/n*/node.log 2>/dev/null; then
			echo "FAIL: sanitizer report in the node logs above"
			[ $rc -ne 0 ] || rc=1
		fi
		if [ $rc -ne 0 ]; then
			for f in "$C"/n*/node.log; do echo "--- $f (tail)"; tail -n 20 "$f"; done
		fi
	fi
	rm -rf "$T"
	exit $rc
}
trap cleanup EXIT
trap 'exit 1' INT TERM
. "$(dirname "$0")/../lib/wait.sh" # fail, wait_for
# refused WANT_STATUS WANT_MESSAGE ARGS...: raftfs ARGS exits WANT_STATUS
# and says WANT_MESSAGE on stderr.
refused() {
	local want=$1 msg=$2 rc=0
	shift 2
	"$R" "$@" >"$T/out" 2>"$T/err" || rc=$?
	[ "$rc" = "$want" ] || fail "raftfs $*: exit $rc, want $want ($(cat "$T/err"))"
	grep -qF -- "$msg" "$T/err" || fail "raftfs $*: said '$(cat "$T/err")', want '$msg'"
}
members() { "$R" member list --via "$A1" | awk '{ print $1, $3 }' | tr '\n' ' '; }
leader_id() {
	{ "$R" local status "$C" 2>/dev/null || true; } | awk '$6 == "leader" { sub(":", "", $2); print $2; exit }'
}

"$R" local up 3 "$C" >"$T/up.out" || { cat "$T/up.out"; fail "local up failed"; }
A1=$("$R" local addr "$C" 1)
A2=$("$R" local addr "$C" 2)
# A port nobody listens on, for a member that never runs.
P=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

echo "== refusals"
refused 1 "node 9 is not a member" member remove 9 --via "$A1"
refused 1 "node 9 is not a member" member promote 9 --via "$A2"
refused 1 "address $A2 is taken by node 2" member add 4 "$A2" --via "$A1"
refused 1 "node 2 is already a voter" member add 2 "127.0.0.1:$P" --via "$A1"
refused 1 "bad address 'nowhere'" member add 4 nowhere --via "$A1"
refused 2 "bad node id 'x'" member add x "127.0.0.1:$P" --via "$A1"
refused 2 "want ID HOST:PORT" member add 4 --via "$A1"
refused 2 "--via ADDR" member list
refused 1 "connect" member list --via 127.0.0.1:1
[ "$(members)" = "1 voter 2 voter 3 voter " ] || fail "the refusals changed the members: $(members)"

echo "== a learner that never runs"
"$R" member add 4 "127.0.0.1:$P" --learner --via "$A2" >"$T/out" || fail "add --learner failed"
[ "$(members)" = "1 voter 2 voter 3 voter 4 learner " ] || fail "members with a learner: $(members)"
L=$(leader_id)
[ -n "$L" ] || fail "no leader"
"$R" status "$("$R" local addr "$C" "$L")" | grep -q "learner 4 " || fail "status shows no learner 4"
# Every node's status lists the learner, not only the leader's.
for f in 1 2 3; do
	[ "$f" = "$L" ] && continue
	learner_on() { "$R" status "$("$R" local addr "$C" "$1")" | grep -q "^    learner 4  disconnected$"; }
	wait_for 10 "node $f's status listing learner 4" learner_on "$f"
done
refused 1 "node 4 is already a learner" member add 4 "127.0.0.1:$P" --learner --via "$A1"
# A promotion waits for a catch-up that never comes; meanwhile every other
# change is refused; at its deadline it fails and node 4 stays a learner.
"$R" member promote 4 --timeout 4 --via "$A1" >"$T/promote.out" 2>&1 &
PROMOTE=$!
L=$(leader_id)
promoting() { grep -q "promoting node 4 once it caught up" "$C/n$L/node.log"; }
wait_for 10 "the promotion under way on leader $L" promoting
refused 1 "is already in progress" member remove 4 --via "$A1"
rc=0
wait $PROMOTE || rc=$?
[ $rc = 1 ] || fail "promote of a learner that is down: exit $rc ($(cat "$T/promote.out"))"
grep -q "node 4 did not catch up in time" "$T/promote.out" || fail "promote said: $(cat "$T/promote.out")"
[ "$(members)" = "1 voter 2 voter 3 voter 4 learner " ] || fail "members after the failed promotion: $(members)"
# Through a follower that does not lead: it relays the change to the
# leader itself (--no-follow: the command does not look for the leader).
L=$(leader_id)
F=1
[ "$F" != "$L" ] || F=2
"$R" member remove 4 --via "$("$R" local addr "$C" "$F")" --no-follow >"$T/out" 2>&1 ||
	fail "removing the learner through follower $F (leader $L) failed: $(cat "$T/out")"
grep -q "membership request relayed to the leader, node $L" "$C/n$F/node.log" ||
	fail "node $F did not relay the removal to leader $L"
[ "$(members)" = "1 voter 2 voter 3 voter " ] || fail "members after removing the learner: $(members)"

echo "== re-adding a removed id: with its old data dir, then with a fresh one"
A3=$("$R" local addr "$C" 3)
field() { "$R" status "$1" | awk -v f="$2" '{ for (i = 1; i < NF; i++) if ($i == f) { print $(i + 1); exit } }'; }
# Node 3 applied everything node 1 committed (no writes meanwhile).
caught_up3() { [ "$(field "$A3" applied)" -ge "$(field "$A1" commit)" ]; }
readd3() {
	"$R" member add 3 "$A3" --via "$A1" >"$T/out" 2>&1 || fail "re-adding node 3 ($1): $(cat "$T/out")"
	[ "$(members)" = "1 voter 2 voter 3 voter " ] || fail "members after re-adding 3 ($1): $(members)"
	"$R" kv put "$A1" "readd-$1" v >/dev/null || fail "a put after re-adding 3 ($1)"
	wait_for 30 "node 3 caught up ($1)" caught_up3
}
"$R" member remove 3 --via "$A1" >"$T/out" || fail "removing 3: $(cat "$T/out")"
"$R" kv put "$A1" while-removed v >/dev/null || fail "a put while 3 is out"
"$R" local stop "$C" 3 || fail "node 3 did not stop"
"$R" local start "$C" 3 || fail "node 3 did not start with its old data dir"
readd3 "old data dir"
"$R" member remove 3 --via "$A1" >"$T/out" || fail "removing 3 again: $(cat "$T/out")"
"$R" local stop "$C" 3 || fail "node 3 did not stop"
rm -rf "$C/n3/data"
# A fresh node joins (join = true: it does not bootstrap from [peers]).
sed -i 's/^\[node\]$/[node]\njoin = true/' "$C/n3/raftfs.ini"
grep -q '^join = true' "$C/n3/raftfs.ini" || fail "no join = true in node 3's config"
"$R" local start "$C" 3 || fail "node 3 did not start with a fresh data dir"
readd3 "fresh data dir"

echo "== quorum"
"$R" local kill "$C" 3
refused 1 "would leave 2 voters of which 1 are connected: no quorum" member remove 2 --via "$A1"
"$R" local start "$C" 3 || fail "node 3 did not start again"
up3() { "$R" member list --via "$A1" | grep -q "^3 .* connected$"; }
wait_for 30 "node 3 connected again" up3
"$R" member remove 3 --via "$A1" >"$T/out" || fail "removing 3 failed: $(cat "$T/out")"
"$R" member remove 2 --via "$A1" >"$T/out" || fail "removing 2 failed: $(cat "$T/out")"
[ "$(members)" = "1 voter " ] || fail "members after shrinking to one: $(members)"
refused 1 "node 1 is the last voter" member remove 1 --via "$A1"
"$R" kv put "$A1" k v >/dev/null ||
	fail "a one-node cluster takes no writes"

echo "== joining configs"
cat >"$T/join.ini" <<INI
[node]
id = 7
data_dir = $T/j7
join = true
[peers]
7 = 127.0.0.1:$P
INI
refused 1 "names no member of the cluster to join" node --config "$T/join.ini"
cat >"$T/dup.ini" <<INI
[node]
id = 7
data_dir = $T/j7
join = true
[peers]
1 = $A1
7 = $A1
INI
refused 2 "[peers] 1 and 7 have the same address $A1" node --config "$T/dup.ini"
echo "PASS member.errors"
exit 0
}
