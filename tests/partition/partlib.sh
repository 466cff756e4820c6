# partlib.sh — a 3-node raftfs cluster with mounts whose nodes each run in
# a network namespace of their own (netns.sh), so a test can cut the
# network between live nodes. Source it with the raftfs binary as $1.
#
# What it gives: $C (the `raftfs local` directory: DIR/n<i> is node i's
# mount, DIR/node<i> its config, data and log), $T (scratch), part_up,
# node_start/node_stop/node_kill, st (a node's status field), leader
# helpers, writers that record what close acknowledged, and a cleanup
# that stops writers, nodes, unmounts and deletes the namespaces on every
# exit — also when the script is killed outright (a reaper outside the
# process tree, as in tests/mount/lib.sh).

R=${1:?usage: $0 RAFTFS_BINARY}
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (namespaces, FUSE mounts)"; exit 77; }
[ -c /dev/fuse ] || { echo "SKIP: no /dev/fuse"; exit 77; }
. "$(dirname "${BASH_SOURCE[0]}")/netns.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../mount/teardown.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../lib/wait.sh" # fail, wait_for
net_available || { echo "SKIP: cannot create network namespaces here"; exit 77; }

PORT=7000
T=$(mktemp -d /tmp/raftfs-part.XXXXXX)
chmod 755 "$T"
C=$T/c
N=3
export RAFTFS_LOCAL_SM=fs

# Killed outright (ctest's TIMEOUT sends SIGKILL to the process tree; the
# nodes run in sessions of their own): the reaper waits for this shell to
# go, then stops the nodes, detaches mounts, deletes the namespaces and the
# temp dir. After a normal exit it finds nothing left.
setsid -f bash -c 'tail -s 0.2 --pid="$1" -f /dev/null
	"$2" local down "$3"
	grep -o " $4/[^ ]*" /proc/mounts | while read -r m; do umount -l "$m"; done
	for ns in $(ip netns list | awk "{ print \$1 }" | grep "^$5-"); do ip netns del "$ns"; done
	[ -n "$6" ] || rm -rf "$4"' reaper $$ "$R" "$C" "$T" "$NET_PREFIX" "${PART_KEEP:-}" </dev/null >/dev/null 2>&1

cleanup() {
	local rc=$?
	set +e
	trap - ERR
	touch "$T/stop"
	# Writers and their dd (which may wait in the mount).
	for p in $(jobs -p); do kill $(ps -o pid= --ppid "$p") "$p" 2>/dev/null; done
	wait 2>/dev/null
	net_heal_all 2>/dev/null # a node stopping hands over leadership: let it
	teardown_cluster "$C" "$rc" 25
	rc=$?
	teardown_mounts "$C"
	net_destroy
	if [ -n "${PART_KEEP:-}" ]; then
		echo "kept $T"
	else
		rm -rf "$T"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 1' INT TERM
set -E
trap 'echo "FAIL: line $LINENO: $BASH_COMMAND (status $?)" >&2' ERR

# ms: milliseconds on the monotonic-ish wall clock (for logs and budgets).
ms() { echo $(($(date +%s%N) / 1000000)); }

# part_create [KEY=VALUE...]: the cluster's files, node i at 10.77.0.i;
# each KEY=VALUE replaces that key's line in every node's config, or is
# added to its [raft] section if the file has no such line.
part_create() {
	local kv i
	"$R" local create $N "$C" >/dev/null || fail "local create"
	for i in $(seq 1 $N); do
		sed -i -E "s/^$i = 127\.0\.0\.1:[0-9]+$/$i = $(net_addr "$i"):$PORT/" "$C"/node*/raftfs.ini
	done
	for kv in "$@"; do
		grep -q "^${kv%%=*} = " "$C"/node1/raftfs.ini ||
			sed -i "/^\[raft\]\$/a ${kv%%=*} = ${kv#*=}" "$C"/node*/raftfs.ini
		sed -i -E "s/^${kv%%=*} = .*/${kv%%=*} = ${kv#*=}/" "$C"/node*/raftfs.ini
		grep -q "^${kv%%=*} = ${kv#*=}\$" "$C"/node1/raftfs.ini || fail "config key ${kv%%=*} not found"
	done
	grep -q "^3 = $(net_addr 3):$PORT\$" "$C"/node1/raftfs.ini || fail "peers not rewritten"
}

# node_launch I: starts node I in its namespace (a session of its own,
# output to its node.log, pid in its pid file, so `raftfs local
# stop/kill/down` work on it). The mount options come from
# RAFTFS_MOUNT_OPTS, as for `raftfs local`.
node_launch() {
	local i=$1 d=$C/node$1
	rm -f "$d/pid"
	setsid -f bash -c 'echo $$ >"$1.tmp" && mv "$1.tmp" "$1" && exec nsenter --net="$2" "$3" node --config "$4"' \
		start "$d/pid" "/run/netns/$(net_ns "$i")" "$R" "$d/raftfs.ini" </dev/null >>"$d/node.log" 2>&1
	wait_for 10 "node $i's pid file" test -s "$d/pid"
}

# node_start I: node_launch, then waits for its mount (with linearizable
# mounts a stat waits for a quorum: start the others first).
node_start() {
	node_launch "$1"
	wait_for 60 "node $1's mount" mount_answers "$1"
}

# mount_answers I: node I's mount is a live FUSE mount (root inode 1).
mount_answers() {
	local m=$C/n$1 pid
	pid=$(cat "$C/node$1/pid" 2>/dev/null) || return 1
	kill -0 "$pid" 2>/dev/null || fail "node $1 exited: $(tail -n 5 "$C/node$1/node.log")"
	[ "$(stat -f -c %T "$m" 2>/dev/null)" = fuseblk ] || [ "$(stat -f -c %T "$m" 2>/dev/null)" = fuse ] || return 1
	[ "$(stat -c %i "$m" 2>/dev/null)" = 1 ]
}

node_stop() { "$R" local stop "$C" "$1" >/dev/null; }
node_kill() { "$R" local kill "$C" "$1" >/dev/null; }

# part_up [KEY=VALUE...]: create, start every node, wait for a leader.
part_up() {
	local i
	net_create $N || fail "could not build the network"
	part_create "$@"
	for i in $(seq 1 $N); do node_launch "$i"; done
	for i in $(seq 1 $N); do wait_for 60 "node $i's mount" mount_answers "$i"; done
	wait_for 60 "a leader" leader_among 1 2 3 >/dev/null
}

# status I: node I's `raftfs status --json`, asked inside its own
# namespace (so it answers while its links are down).
status() {
	net_run "$1" "$R" status --json --timeout 2000 "$(net_addr "$1"):$PORT" 2>/dev/null || true
}

# st I FIELD: one field of node I's status ("" if it did not answer).
st() {
	status "$1" | sed -n -E "s/^.*\"$2\":\"?([^\",]*).*$/\1/p"
}

# leader_among I...: prints the first of the given nodes that is leader
# (fails if none is).
leader_among() {
	local i
	for i in "$@"; do
		[ "$(st "$i" role)" = leader ] && { echo "$i"; return 0; }
	done
	return 1
}

# others I: the nodes other than I.
others() {
	local i
	for i in $(seq 1 $N); do [ "$i" = "$1" ] || echo -n "$i "; done
}

# tcp_state I J: node I's TCP connections to node J, as the kernel sees
# them (retransmission timeout, backoff, unacknowledged bytes): shown when
# PART_DIAG is set, to tell a stalled connection from a Raft problem.
tcp_state() {
	[ -n "${PART_DIAG:-}" ] || return 0
	echo "   tcp $1 -> $2: $(net_run "$1" ss -tin dst "$(net_addr "$2")" | tr -s ' \n' ' ')"
}

# part_verify SECONDS WHAT: the mounts are identical, and so are the nodes'
# data directories at one applied index (asked from the hub: every node
# must be reachable).
part_verify() {
	"$R" verify --wait "$1" "$C" >"$T/verify.out" ||
		{ cat "$T/verify.out"; fail "mounts differ ($2)"; }
	net_run h "$R" verify --wait "$1" --trees "$C" >"$T/verify.out" ||
		{ cat "$T/verify.out"; fail "node trees differ ($2)"; }
}

# running: a background loop of the test goes on (no stop file, and the
# test's shell is alive: killed outright, its loops must not outlive it
# and write into the temp dir the reaper removes).
running() { [ ! -e "$T/stop" ] && kill -0 $$ 2>/dev/null; }

# writer ID MOUNT FILE: appends "ID K" lines to FILE (relative to mount
# MOUNT) with dd, which checks close (a write is answered once proposed;
# close says whether it applied), one open/append/close per line, and logs
# each line whose dd succeeded in $T/acked.ID; stops when $T/stop exists.
# A failed line is retried under the next sequence number, so a line that
# failed but was applied anyway shows up as present-but-unacknowledged,
# never as a duplicate.
writer() {
	local id=$1 m=$C/n$2 f=$3 k=0
	while running; do
		k=$((k + 1))
		if echo "$id $k" | dd of="$m/$f" oflag=append conv=notrunc status=none 2>>"$T/err.$id"; then
			echo "$id $k" >>"$T/acked.$id"
		else
			sleep 0.05 # no quorum here: do not spin
		fi
	done
}

acked() { if [ -f "$T/acked.$1" ]; then wc -l <"$T/acked.$1"; else echo 0; fi; }
acked_at_least() { [ "$(acked "$1")" -ge "$2" ]; }

# check_log ID FILE: on every mount, FILE holds each line writer ID got
# acknowledged, and no line twice.
check_log() {
	local id=$1 f=$2 i missing
	for i in $(seq 1 $N); do
		[ -f "$C/n$i/$f" ] || fail "n$i/$f missing"
		sort "$C/n$i/$f" | uniq -d | head -n 3 >"$T/dups"
		[ ! -s "$T/dups" ] || fail "n$i/$f holds lines twice: $(tr '\n' ' ' <"$T/dups")"
		missing=$(sort "$T/acked.$id" | comm -23 - <(sort "$C/n$i/$f") | head -n 3 | tr '\n' ' ')
		[ -z "$missing" ] || fail "n$i/$f misses acknowledged lines: $missing"
	done
}
