#!/bin/bash
# node.local_start — `raftfs local start` says why a node did not start.
# A node stopped after serving leaves its port's connections in TIME_WAIT;
# started again with a typo in its config it exits at once, and the
# message must give its exit status and its config error, not blame the
# port. With its port really held by a listener, the message must say so.
# kv cluster (no mounts); every process and the temp dir go on exit.
{
	set -uo pipefail
	R=${1:?usage: $0 RAFTFS_BINARY}
	export RAFTFS_LOCAL_SM=kv
	T=$(mktemp -d /tmp/raftfs-local-start.XXXXXX)
	C=$T/c
	# Killed outright (ctest's timeout), no trap runs: a reaper outside the
	# process tree stops the cluster and removes the temp dir.
	setsid -f bash -c 'tail -s 0.2 --pid="$1" -f /dev/null
		"$2" local down "$3"
		rm -rf "$4"' reaper $$ "$R" "$C" "$T" </dev/null >/dev/null 2>&1
	LISTENER=
	cleanup() {
		local rc=$?
		[ -z "$LISTENER" ] || { kill "$LISTENER" 2>/dev/null; wait "$LISTENER" 2>/dev/null; }
		[ ! -f "$C/cluster" ] || "$R" local down "$C" >/dev/null 2>&1
		if [ $rc -ne 0 ]; then
			for f in "$C"/n*/node.log; do
				echo "--- $f (tail)"
				tail -n 15 "$f"
			done
		fi
		rm -rf "$T"
		exit $rc
	}
	trap cleanup EXIT
	trap 'exit 1' INT TERM
	. "$(dirname "$0")/../lib/wait.sh" # fail

	"$R" local up 3 "$C" >"$T/up.out" || { cat "$T/up.out"; fail "local up"; }
	# Traffic, so that node 3's port has connections to leave behind.
	"$R" kv load --count 50 --prefix K $("$R" local addr "$C" 1) $("$R" local addr "$C" 2) \
		$("$R" local addr "$C" 3) >/dev/null 2>"$T/load.err" || fail "kv load: $(cat "$T/load.err")"
	port=$("$R" local addr "$C" 3 | cut -d: -f2)
	"$R" local stop "$C" 3 || fail "local stop of node 3"

	# 1. A config typo: exit status 2 and the config's complaint.
	cp "$C/n3/raftfs.ini" "$T/good.ini"
	echo "snapshot_entriez = 5" >>"$C/n3/raftfs.ini"
	"$R" local start "$C" 3 2>"$T/start1.err" && fail "local start succeeded with a bad config"
	cat "$T/start1.err"
	grep -q "another process holds its port" "$T/start1.err" &&
		fail "blamed the port for a config error (TIME_WAIT on $port counted as taken)"
	grep -q "node 3 exited during start: it exited with status 2" "$T/start1.err" ||
		fail "no exit status in the message"
	grep -q "unknown key 'snapshot_entriez'" "$T/start1.err" ||
		fail "the node's own error is not shown"
	cp "$T/good.ini" "$C/n3/raftfs.ini"

	# 2. The port really held (a listener on it).
	python3 -c '
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(1)
open(sys.argv[2], "w").write("listening\n")
time.sleep(300)' "$port" "$T/listening" &
	LISTENER=$!
	for _ in $(seq 600); do [ -s "$T/listening" ] && break; sleep 0.05; done
	[ -s "$T/listening" ] || fail "the listener did not start"
	"$R" local start "$C" 3 2>"$T/start2.err" && fail "local start succeeded with its port held"
	cat "$T/start2.err"
	grep -q "node 3 exited during start: another process holds its port (127.0.0.1:$port; the node exited with status" \
		"$T/start2.err" || fail "did not say the port is held"
	kill "$LISTENER"
	wait "$LISTENER" 2>/dev/null
	LISTENER=

	# 3. Free again: it starts.
	"$R" local start "$C" 3 2>"$T/start3.err" || fail "node 3 did not start: $(cat "$T/start3.err")"
	echo PASS
	exit 0
}
