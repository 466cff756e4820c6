# wait.sh — fail and wait_for, shared by the test scripts that run clusters
# (tests/mount/lib.sh, tests/partition/partlib.sh, tests/member,
# tests/deploy). Source it; it defines functions only.

# fail MESSAGE...: the test fails, saying why (the EXIT trap cleans up).
fail() {
	echo "FAIL: $*" >&2
	exit 1
}

# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND until it succeeds;
# fails naming DESCRIPTION when SECONDS pass first. A condition awaited,
# never a fixed sleep: on a loaded machine the same step takes 10x longer.
wait_for() {
	local deadline=$((SECONDS + $1)) what=$2
	shift 2
	until "$@"; do
		[ $SECONDS -lt $deadline ] || fail "timed out waiting for: $what"
		sleep 0.05
	done
}
