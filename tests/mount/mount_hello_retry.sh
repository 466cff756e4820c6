#!/bin/bash
# mount_hello_retry.sh RAFTFS — a node that starts without a quorum still
# tells the others it is back once they are up (fs/fuse_run.c,
# hello_retry). Every node proposes a command at its start (propose_hello):
# until one of its commands applies elsewhere, a mount that revoked one of
# its directories for silence keeps revoking its others at once
# (mount.holder_back). Started alone, the node's start command fails (no
# leader); it used to be tried again only at the next start, so a node
# that came up first and then stayed idle stayed marked silent. Now it is
# proposed again (a pause doubling from 0.5 s to 30 s) until it applies.
# All three nodes are stopped, node 3 starts alone and logs that its start
# command failed; then nodes 1 and 2 start, and node 3 must log that its
# start command applied. Fails without the retry: the second wait ends the
# test (node 3 logs nothing more).
# One block, parsed before any of it runs (tests/FLAKY.md).
{
set -euo pipefail
. "$(dirname "$0")/lib.sh"
up

log3=$C/node3/node.log
# since N PATTERN: a line of node 3's log after its first N lines matches.
since() { tail -n "+$(($1 + 1))" "$log3" | grep -q "$2"; }

echo "== all nodes stopped; node 3 starts alone"
for k in 1 2 3; do "$R" local stop "$C" "$k" >/dev/null || fail "stop of node $k"; done
n0=$(wc -l <"$log3")
"$R" local start "$C" 3 >/dev/null || fail "start of node 3"
wait_for 120 "node 3's start command to fail (no quorum)" since "$n0" "start command failed"
n1=$(wc -l <"$log3")

echo "== nodes 1 and 2 start: node 3's start command is tried again and applies"
for k in 1 2; do "$R" local start "$C" "$k" >/dev/null || fail "start of node $k"; done
wait_for 120 "node 3's start command to apply after the others came back" \
	since "$n1" "start command applied"
for k in 1 2 3; do wait_for 60 "node $k's mount" mount_answers "$k"; done
verify 60 "after the restart"
echo PASS
exit 0
}
