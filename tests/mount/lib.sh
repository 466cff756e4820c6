# lib.sh — shared by the mount tests: a 3-node cluster with its mounts in a
# temp dir, removed (mounts detached, nodes stopped) on exit, also on failure.
# Source it with the raftfs binary as $1.

R=${1:?usage: $0 RAFTFS_BINARY}
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (FUSE mounts, trusted xattrs)"; exit 77; }
[ -c /dev/fuse ] || { echo "SKIP: no /dev/fuse"; exit 77; }

. "$(dirname "${BASH_SOURCE[0]}")/teardown.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../lib/wait.sh" # fail, wait_for

T=$(mktemp -d /tmp/raftfs-mount.XXXXXX)
chmod 755 "$T"
C=$T/c
export RAFTFS_LOCAL_SM=fs

# A test killed outright runs no trap (ctest ends a test past its TIMEOUT
# with SIGKILL to its process tree, and the nodes are not in that tree): a
# reaper outside the tree waits for this shell to be gone, then stops the
# cluster, detaches what is still mounted and removes the temp dir. After a
# normal exit it finds nothing left to do. A test's gate files are named
# $T/*gate (RAFTFS_TEST_*_GATE): they go first, or a node held at one
# (its apply thread) stops only to local down's SIGKILL.
setsid -f bash -c 'tail -s 0.2 --pid="$1" -f /dev/null
	rm -f "$4"/*gate
	"$2" local down "$3"
	grep -o " $4/[^ ]*" /proc/mounts | while read -r m; do umount -l "$m"; done
	chattr -R -i "$4"
	rm -rf "$4"' reaper $$ "$R" "$C" "$T" </dev/null >/dev/null 2>&1

cleanup() {
	local rc=$?
	set +e
	trap - ERR # the teardown's own statuses are no test failures
	# The gates, then the children (writers), then the gates again (a
	# writer may still make one; the reaper says why), then the cluster,
	# then whatever mount is left. A child held in a FUSE request behind a
	# node's gate does not die of the kill until the gate opens: the wait
	# for it hung (mount.grant_slip failing with its gate up).
	rm -f "$T"/*gate
	[ -z "$(jobs -p)" ] || kill $(jobs -p) 2>/dev/null
	wait 2>/dev/null
	rm -f "$T"/*gate
	[ -z "${IMMUTABLE:-}" ] || chattr -i "$IMMUTABLE"
	# A sanitizer report in a node's log fails the test.
	teardown_cluster "$C" "$rc" 20
	rc=$?
	teardown_mounts "$C"
	rm -rf "$T"
	exit $rc
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# Under set -e, a command that ends the script names itself (errtrace:
# inside functions and command substitutions too); without it such an end
# printed nothing (snapshot.catchup, session 8). Scripts may set their own;
# one without set -e gets none (its failing commands are not its end).
case $- in *e*)
	set -E
	trap 'echo "FAIL: line $LINENO: exit status $? of: $BASH_COMMAND" >&2' ERR
	;;
esac

# Writers log each write whose close returned success, one line each, in
# $T/acked<ID>. acked ID: how many lines writer ID logged.
acked() { [ -f "$T/acked$1" ] && wc -l <"$T/acked$1" || echo 0; }
acked_at_least() { [ "$(acked "$1")" -ge "$2" ]; }

# line_writer ID: until $T/stop exists, appends "ID K" lines to w<ID>
# through mount ID, one open/append/close each, and logs every line whose
# close returned success. Writes are answered once proposed and close
# reports whether they applied (README, "Consistency"); bash never sees
# that (a redirection's file is closed by dup2, which drops close's error),
# so the append is dd's, which checks close.
line_writer() {
	local id=$1 k=0 m=$C/n$1
	while [ ! -e "$T/stop" ]; do
		k=$((k + 1))
		if echo "$id $k" | dd of="$m/w$id" oflag=append conv=notrunc status=none 2>/dev/null; then
			echo "$id $k" >>"$T/acked$id"
		else
			sleep 0.02 # its node is down, or no quorum for a moment: do not spin
		fi
	done
}

# Big files (mount.write_failover, mount.admit): big_src makes $T/src, 16
# MiB of random bytes; a writer's file K holds 8 MiB of it from MiB K % 8.
big_src() { head -c $((16 << 20)) /dev/urandom >"$T/src"; }

# big_writer ID NAME LOG [DD_ARG...]: until $T/stop exists, writes 8 MiB
# files NAME<ID>.<K> through mount ID in 1 MiB writes and logs K in $T/LOG
# once dd returned success: its writes and its close (pipelined writes
# report at close), and its fsync with conv=fsync.
big_writer() {
	local id=$1 name=$2 log=$3 k=0
	shift 3
	while [ ! -e "$T/stop" ]; do
		k=$((k + 1))
		if dd if="$T/src" of="$C/n$id/$name$id.$k" bs=1M count=8 skip=$((k % 8)) "$@" \
			status=none 2>/dev/null; then
			echo $k >>"$T/$log"
		else
			sleep 0.05 # no leader for a while: do not spin
		fi
	done
}

# big_check MOUNT ID NAME LOG: every file big_writer ID NAME logged in
# $T/LOG is whole on MOUNT.
big_check() {
	local k
	while read -r k; do
		dd if="$T/src" bs=1M count=8 skip=$((k % 8)) status=none |
			cmp -s - "$1/$3$2.$k" || fail "$1/$3$2.$k is not what was acknowledged"
	done <"$T/$4"
}

# Orphans (fs/README-sm.md): DATA/ids/xx/<16 hex digits> of id (decimal)
# on node n. index_of N ID
index_of() { local h; h=$(printf '%016x' "$2"); echo "$C/node$1/data/ids/${h:14:2}/$h"; }
# released_on N ID: the nodes that released id, as recorded on node n:
# "1 3 " etc.
released_on() {
	local v
	v=$(getfattr --absolute-names -e hex -n trusted.raftfs.released "$(index_of "$1" "$2")" 2>/dev/null |
		sed -n 's/^trusted.raftfs.released=0x//p')
	while [ -n "$v" ]; do printf '%d ' "0x${v:6:2}${v:4:2}${v:2:2}${v:0:2}"; v=${v:8}; done
}

# The mounts agree, and so do the nodes' data directories compared at one
# applied index (raftfs verify --trees): tree, ids index, orphans. Each node
# applies at its own pace: wait for it.
verify() {
	"$R" verify --wait "${1:-30}" "$C" >"$T/verify.out" ||
		{ cat "$T/verify.out"; fail "mounts differ (${2:-})"; }
	"$R" verify --wait "${1:-30}" --trees "$C" >"$T/verify.out" ||
		{ cat "$T/verify.out"; fail "node trees differ (${2:-})"; }
}

# Node id of the leader, from raftfs local status.
leader_id() {
	{ "$R" local status "$C" 2>/dev/null || true; } | awk '$6 == "leader" { sub(":", "", $2); print $2; exit }'
}

up() {
	"$R" local up 3 "$C" >"$T/up.out" || { cat "$T/up.out"; fail "local up failed"; }
	M1=$C/n1 M2=$C/n2 M3=$C/n3
}

# mount_answers K: node K's mount answers (FUSE, its root inode). `local start`
# returns once the node listens; its replay and mount come after, and a
# step through $MK before then reaches the bare directory beneath
# (mount.lookup_fence: a create right after node_conf failed with ENOENT).
mount_answers() {
	[ "$(stat -f -c %t "$C/n$1" 2>/dev/null)" = 65735546 ] &&
		[ "$(stat -c %i "$C/n$1" 2>/dev/null)" = 1 ]
}

# start_node K [WHAT]: starts node K again (stopped or killed) and waits
# for its mount to answer. Not `local up`, which also waits a fixed 30 s
# for a healthy leader: at load ~26 elections churned for longer and the
# test failed there (mount.admit, tests/FLAKY.md sessions 10 and 12). A
# step that needs a leader right after awaits one itself (has_leader).
start_node() {
	"$R" local start "$C" "$1" >"$T/start$1.out" 2>&1 ||
		{ cat "$T/start$1.out"; fail "restart of node $1${2:+ ($2)}"; }
	wait_for 60 "node $1's mount" mount_answers "$1"
}

# has_leader: some node answers as a healthy leader (leader_id).
has_leader() { [ -n "$(leader_id)" ]; }

# held_by H K PATH: node H (below 256) holds directory PATH, as node K's
# tree says (its delegation xattr, read there directly: not through a
# mount, whose lookup could recall it). No xattr (yet) is "not held": the
# getfattr's failure is swallowed inside the substitution, which errtrace
# would otherwise report as a FAIL line on every look of a wait_for (the
# substitution's subshell does not know it runs in a condition). A caller
# that needs PATH held still fails through held_by's own status.
held_by() {
	case "$(getfattr -e hex -n trusted.raftfs.deleg "$C/node$2/data/tree/$3" 2>/dev/null || true)" in
	*deleg=0x$(printf %02x "$1")000000*) return 0 ;;
	esac
	return 1
}

# silence_holder3 [FILE]: step 1 of mount.holder_back and mount.holder_early
# (run with RAFTFS_DELEG_IDLE_MS=0): node 3 makes a and p/x (p is node
# 1's; and p/x/FILE, applied on node 1 too) and is killed; node 1's stat
# of a waits for it once, revokes a and marks node 3 silent, and node 3
# still holds p/x in node 1's tree.
silence_holder3() {
	mkdir "$M1/p"
	mkdir "$M3/a" "$M3/p/x"
	[ -z "${1:-}" ] || touch "$M3/p/x/$1"
	wait_for 30 "node 1 applied node 3's grant of a" held_by 3 1 a
	wait_for 30 "node 1 applied node 3's grant of p/x" held_by 3 1 p/x
	[ -z "${1:-}" ] || wait_for 30 "node 1 applied node 3's p/x/$1" test -e "$C/node1/data/tree/p/x/$1"
	"$R" local kill "$C" 3
	stat "$M1/a" >/dev/null
	[ "$(waited)" = 1 ] || fail "node 1 waited $(waited) times for dead node 3, not once"
	! held_by 3 1 a || fail "node 3 still holds a in node 1's tree"
	held_by 3 1 p/x || fail "node 3 no longer holds p/x in node 1's tree before node 1 looked at it"
}

# grant_gate_nodes FILE HOOK: the setup of the grant-window tests
# (mount.grant_slip, grant_inflight, grant_listed; after `up`, with
# RAFTFS_DELEG_IDLE_MS=0): GATE=FILE (named $T/*gate: lib.sh's cleanup
# removes it before it stops the nodes, so a failure while it is up does
# not leave node 1's operation held there), node 1 runs with
# RAFTFS_TEST_<HOOK> gated on it, node 3 asks for a directory at its first
# change (no 8 changes in 2 s) and holds its proposals up to 60 s for
# company, and $M1/sync is there for an open.
grant_gate_nodes() {
	GATE=$1
	node_conf 3 close commit RAFTFS_PLUG_US=60000000 RAFTFS_TEST_GRANT_EAGER=1
	node_conf 1 close behind RAFTFS_MOUNT_OPTS=timeout=60 "RAFTFS_TEST_$2=$GATE"
	: >"$M1/sync"
}

# chgrp_behind3 PATH: node 3, which holds PATH, chgrps it to 65534 behind
# (its create in PATH applied first, so the setattr goes behind): fails
# when node 3 applied it at once (the grant-window tests prove nothing
# then).
chgrp_behind3() {
	python3 - "$C" "$1" <<'PY' || fail "node 3's chgrp of $1"
import os, sys
c, p = sys.argv[1], sys.argv[2]
fd = os.open(f"{c}/n3/{p}", os.O_RDONLY)
os.fsync(fd)  # node 3's create in it is applied: its setattr goes behind
os.close(fd)
os.chown(f"{c}/n3/{p}", -1, 65534)
if os.stat(f"{c}/node3/data/tree/{p}").st_gid != 0:
    sys.exit(f"node 3 applied its chgrp of {p} at once: not answered behind, the case proves nothing")
PY
}

# stop_counter K PATTERN WORD: stops node K and prints the number after WORD
# in the last line of its log matching PATTERN (a node logs its counters
# when it stops; the line itself goes to stderr, for the test's log), then
# starts node K again. Callers run it in a command substitution, where
# errexit is off: each step checks its own status (a failed stop must not
# go on to read the log of a node still running), and the assignment's
# status ends a set -e caller (x=$(stop_counter ...)).
stop_counter() {
	local k=$1 line
	"$R" local stop "$C" "$k" >/dev/null || fail "stop of node $k"
	line=$(grep -h "$2" "$C/node$k/node.log" | tail -1) || true
	echo "$line" >&2
	"$R" local start "$C" "$k" >/dev/null || fail "restart of node $k"
	wait_for 60 "node $k's mount" mount_answers "$k"
	echo "$line" | awk -v w="$3" '{for (i = 1; i < NF; i++) if ($i == w) print $(i + 1)}'
}

# set_conf K KEY VALUE: node K's configuration file says KEY = VALUE (the
# key must be there already: `local create` writes every one); takes
# effect at the node's next start.
set_conf() {
	local ini=$C/node$1/raftfs.ini
	sed -i "s/^$2 = .*/$2 = $3/" "$ini"
	grep -q "^$2 = $3\$" "$ini" || fail "node $1's configuration has no key $2"
}

# status_field ID FIELD: a number from node ID's `raftfs status --json`.
# A status that does not answer (a loaded machine, an election) is asked
# again for up to 30 s: under pipefail one lost answer ended a test
# through set -e with no word (snapshot.catchup, session 8).
status_field() {
	local out deadline=$((SECONDS + 30))
	until out=$("$R" status --json "$("$R" local addr "$C" "$1")" 2>/dev/null); do
		[ $SECONDS -lt $deadline ] || fail "node $1 did not answer raftfs status for 30 s"
		sleep 0.1
	done
	sed -n "s/.*\"$2\":\([0-9]*\).*/\1/p" <<<"$out"
}

# status_saved: raftfs local status into $T/status, failing while it does:
# until a leader is elected (local up does not always wait long enough for
# every node to hear of it) and whenever a node is unhealthy or does not
# answer within its second (load).
status_saved() { "$R" local status "$C" >"$T/status" 2>/dev/null; }
# commit: the cluster's commit index, once every node answers status (a
# status that fails is waited out, not the end of the script: pipefail
# ended a test at a pipe from a failed status, b80f608's mount.batch).
commit() {
	wait_for 60 "local status of every node" status_saved
	awk '{ print $12; exit }' "$T/status"
}

# waited / at_once: how many times node 1 waited for a holder that did not
# return a recalled delegation, and how many it revoked one at once (a
# holder known silent): lines of its node.log (fs/fuse_behind_deleg.c).
waited() { grep -c "did not return its delegation" "$C/node1/node.log" || true; }
at_once() { grep -c "revoking it at once" "$C/node1/node.log" || true; }
# started K: how many start commands node K's log says applied there.
started() { grep -c "start command applied" "$C/node$1/node.log" || true; }

# node_conf K KEY VALUE [NAME=VALUE...]: stops node K, sets KEY = VALUE in
# its configuration and starts it again (in the environment given, e.g. a
# RAFTFS_TEST_* knob for that node alone). The environment only seeds the
# files `local up` writes, so a setting for one node goes through its file.
node_conf() {
	local k=$1 key=$2 val=$3
	shift 3
	"$R" local stop "$C" "$k" >/dev/null || fail "stop of node $k"
	set_conf "$k" "$key" "$val"
	env "$@" "$R" local start "$C" "$k" >/dev/null || fail "restart of node $k ($key = $val)"
	wait_for 60 "node $k's mount" mount_answers "$k"
}
