# teardown.sh — the end of a cluster test, shared by tests/mount/lib.sh and
# tests/partition/partlib.sh (sourced; needs $R, the raftfs binary): stop
# the `raftfs local` cluster, fail on a sanitizer report in its node logs,
# show the logs' tails when the test failed, detach what is left mounted.

# teardown_cluster DIR RC LINES: stops the nodes of the cluster in DIR (if
# one was made); a sanitizer report in a node log is named and turns RC
# into 1; when RC is not 0, the last LINES lines of every node log are
# shown. Returns the resulting status.
teardown_cluster() {
	local dir=$1 rc=$2 lines=$3 f
	[ -f "$dir/cluster" ] || return "$rc"
	"$R" local down "$dir" >/dev/null 2>&1
	if grep -l -E "Sanitizer|runtime error" "$dir"/node*/node.log 2>/dev/null; then
		echo "FAIL: sanitizer report in the node logs above"
		[ "$rc" -ne 0 ] || rc=1
	fi
	if [ "$rc" -ne 0 ]; then
		for f in "$dir"/node*/node.log; do
			echo "--- $f (tail)"
			tail -n "$lines" "$f"
		done
	fi
	return "$rc"
}

# teardown_mounts DIR: detaches whatever is still mounted at DIR/n<i> — a
# node killed with SIGKILL leaves a dead mount, which `[ -e ]` fails on.
teardown_mounts() {
	local m
	for m in "$1"/n[0-9]*; do
		mountpoint -q "$m" 2>/dev/null && umount -l "$m"
		[ -e "$m" ] || umount -l "$m" 2>/dev/null
	done
	return 0
}
