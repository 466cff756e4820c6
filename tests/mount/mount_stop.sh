#!/bin/bash
# mount.stop — stopping a node while requests are blocked in its mount
# (and, first, the fresh cluster's root times: its birth, on every mount).
# Two of three nodes are killed, so nothing commits; on the third, a mkdir
# and a writer wait for the node (proposal timeout 60 s), a process holds a
# file open in the mount and a shell sits in it. `raftfs local stop` of
# that node must return at once with the session loop ended (no "did not
# end", nothing leaked under ASan), every blocked process must get an error
# soon after, and no mount may be left at DIR/n3.
{
	. "$(dirname "$0")/lib.sh"

	"$R" local create 3 "$C" >"$T/create.out" || { cat "$T/create.out"; fail "local create"; }
	set_conf 3 proposal_timeout_ms 60000
	born=$(date +%s)
	up
	# A fresh cluster's root carries its birth time (the first command
	# applied stamps it, fs/sm.c), the same on every mount, not 1970.
	root_stamped() { ! stat -c "%Y %Z" "$M1" "$M2" "$M3" | grep -q -w 0; }
	wait_for 30 "the root's birth time on every mount" root_stamped
	t1=$(stat -c "%y %z" "$M1")
	[ "$(stat -c "%y %z" "$M2")" = "$t1" ] && [ "$(stat -c "%y %z" "$M3")" = "$t1" ] ||
		fail "root times differ: $(stat -c "%n %y %z" "$M1" "$M2" "$M3")"
	m=$(stat -c %Y "$M1")
	[ "$m" -ge $((born - 1)) ] && [ "$m" -le $(($(date +%s) + 1)) ] ||
		fail "root mtime $m is not the cluster's birth (made at $born)"
	echo "root: $t1 on every mount"
	echo kept >"$M3/f"
	verify 30 "before the kills"
	# Before the kills: a process holding a file open, a shell sitting in
	# the mount, and a writer with its file open that writes 1 MiB at a
	# time once told to (pipelined: it blocks once 4 MiB are in flight).
	sleep 600 <"$M3/f" &
	HOLD=$!
	(cd "$M3" && exec sleep 600) &
	CWD=$!
	python3 - "$M3/big" "$T/go" "$T/writer.out" <<-'EOF' &
		import os, sys, time
		fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
		open(sys.argv[3], "w").write("open\n")
		while not os.path.exists(sys.argv[2]):
		    time.sleep(0.01)
		try:
		    for i in range(64):
		        os.write(fd, b"x" * (1 << 20))
		except OSError as e:
		    open(sys.argv[3], "a").write("error after %d MiB: %s\n" % (i, e.strerror))
		    sys.exit(1)
		open(sys.argv[3], "a").write("wrote 64 MiB\n")
	EOF
	WR=$!
	wait_for 30 "the writer's open" test -s "$T/writer.out"
	"$R" local kill "$C" 1
	"$R" local kill "$C" 2

	# pid $1 waits in the kernel for an answer of a FUSE daemon.
	in_fuse() {
		grep -q request_wait_answer "/proc/$1/stack" 2>/dev/null ||
			grep -q request_wait_answer "/proc/$1/wchan" 2>/dev/null
	}
	# Still in write(2) with 4 MiB in flight: waits in the daemon.
	touch "$T/go"
	wait_for 30 "the writer blocked in the mount" in_fuse $WR
	mkdir "$M3/blocked" 2>"$T/mkdir.err" &
	MK=$!
	wait_for 30 "mkdir blocked in the mount" in_fuse $MK

	start=$(date +%s%N)
	"$R" local stop "$C" 3 || fail "local stop of node 3 failed"
	took=$((($(date +%s%N) - start) / 1000000))
	echo "local stop of node 3 with blocked requests: $took ms"
	grep -n "did not end" "$C/node3/node.log" && fail "node 3's session loop did not end"
	grep -n -E "Sanitizer|runtime error" "$C/node3/node.log" && fail "sanitizer report of node 3"
	# It waited at most its grace for commits, not for the node's timeout
	# (60 s) nor for the holders to go (10 min).
	[ "$took" -lt 15000 ] || fail "local stop took $took ms"

	# The waiting processes got an error: EIO from the node, or the
	# kernel's ENOTCONN/ECONNABORTED if the mount went first.
	for p in $MK $WR; do
		wait_for 10 "blocked process $p to end" bash -c "! kill -0 $p 2>/dev/null"
		wait $p && fail "process $p succeeded without a quorum"
	done
	cat "$T/mkdir.err" "$T/writer.out"
	grep -q -E "Input/output error|not connected|connection abort" "$T/mkdir.err" ||
		fail "mkdir: unexpected error: $(cat "$T/mkdir.err")"
	grep -q -E "error after [0-9]+ MiB: (Input/output error|.*not connected|.*connection abort)" \
		"$T/writer.out" || fail "writer: unexpected outcome: $(cat "$T/writer.out")"
	grep -q " $M3 " /proc/mounts && fail "a mount is left at $M3"
	# The holders still run, with their files gone from under them.
	kill -0 $HOLD && kill -0 $CWD || fail "a holder ended"
	kill $HOLD $CWD
	wait $HOLD $CWD 2>/dev/null
	echo "PASS"
	exit 0
}
