#!/usr/bin/env bash
# deploy.cluster — three machines as packaging/README.md sets them up, each
# a network namespace with an address of its own (tests/partition/netns.sh):
# raftfs installed by `cmake --install` into a temporary prefix (and once
# into a DESTDIR), each node's file written by `raftfs config new`, each
# node started by the installed systemd unit's ExecStartPre and ExecStart
# lines inside its namespace, with its EnvironmentFile, and $NOTIFY_SOCKET
# played by this script (Type=notify: a node is started once it sent
# READY=1). Steps, each checked:
#  - files written on one mount are read on the others;
#  - a node stopped as the unit stops it (SIGTERM to the node alone,
#    KillMode=mixed) exits 0, its mount and guard gone, STOPPING=1 said;
#    the others keep accepting writes; after a clean stop and a reboot
#    (a new boot id) it starts healthy and catches up;
#  - a node killed with SIGKILL is started again as Restart=on-failure
#    would, its dead mount detached (not mounted over);
#  - a rolling restart of two nodes, the leader among them, under a writer
#    on the third: no write fails;
#  - a node whose machine lost power (its tree damaged as a lost page
#    cache may leave it) comes back healthy by itself: it drops its
#    untrusted tree and rebuilds it from its own snapshot and log, and
#    says READY=1 only once it shows what it showed before the cut;
#  - a node whose disk is replaced is rebuilt under its id (stop, member
#    remove, data emptied, config new --join, start, member add), and
#    files created through it then get ids it never handed out before;
#  - a dead machine is replaced by a new one under a new id;
#  - raftfs status calls every node healthy, raftfs verify finds the mounts
#    identical, an administrator's umount stops a node with exit 0;
#  - systemd-analyze verify (when installed) has nothing to say about the
#    unit; the kv test state machine speaks the notify protocol too.
#   cluster.sh CMAKE_COMMAND BUILD_DIR
{
set -uo pipefail
CMAKE=${1:?usage: $0 CMAKE_COMMAND BUILD_DIR}
BUILD=${2:?usage: $0 CMAKE_COMMAND BUILD_DIR}
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (namespaces, FUSE mounts)"; exit 77; }
[ -c /dev/fuse ] || { echo "SKIP: no /dev/fuse"; exit 77; }
. "$(dirname "$0")/../partition/netns.sh"
net_available || { echo "SKIP: cannot create network namespaces here"; exit 77; }

N=3
NODES="1 2 3" # the members now (machine 4 replaces 3 later)
PORT=7001
CLUSTER=deploy$$
T=$(mktemp -d /tmp/raftfs-deploy.XXXXXX)
chmod 755 "$T"
P=$T/prefix
declare -A PID NOTIFY_PID

# Killed outright (ctest's TIMEOUT): a reaper outside the process tree
# waits for this shell to go, then ends the nodes (their sessions are their
# own), detaches what is mounted under $T, deletes the namespaces and $T.
setsid -f bash -c 'tail -s 0.2 --pid="$1" -f /dev/null
	for f in "$2"/pid.*; do [ -f "$f" ] && kill -9 "$(cat "$f")"; done
	sleep 0.5
	grep -o " $2/[^ ]*" /proc/mounts | while read -r m; do umount -l "$m"; done
	for ns in $(ip netns list | awk "{ print \$1 }" | grep "^$3-"); do ip netns del "$ns"; done
	rm -rf "$2"' reaper $$ "$T" "$NET_PREFIX" </dev/null >/dev/null 2>&1

. "$(dirname "$0")/../lib/wait.sh" # fail, wait_for

# Node i killed with SIGKILL, as a crash or a power cut would end it, and
# forgotten (its pid file too: the reaper must not kill a reused pid).
crash() {
	kill -9 "${PID[$1]}"
	wait "${PID[$1]}" 2>/dev/null || true # 137: killed, as intended
	PID[$1]=""
	rm -f "$T/pid.$1"
}

# gone PID: no such process, or only its zombie.
gone() {
	local s
	s=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 0
	[ "$s" = Z ]
}

mounted() { grep -q " $T/mnt$1 fuse" /proc/mounts; }

cleanup() {
	local rc=$? i f
	set +e
	trap - ERR
	for i in "${!PID[@]}"; do
		[ -n "${PID[$i]:-}" ] || continue
		kill -TERM "${PID[$i]}" 2>/dev/null
		for _ in $(seq 1 200); do gone "${PID[$i]}" && break; sleep 0.1; done
		kill -9 "${PID[$i]}" 2>/dev/null
	done
	for i in "${NOTIFY_PID[@]}"; do kill "$i" 2>/dev/null; done
	wait 2>/dev/null
	grep -o " $T/[^ ]*" /proc/mounts | while read -r m; do umount -l "$m"; done
	if grep -l -E "Sanitizer|runtime error" "$T"/node*.log 2>/dev/null; then
		echo "FAIL: sanitizer report in the node logs above"
		[ "$rc" -ne 0 ] || rc=1
	fi
	if [ "$rc" -ne 0 ]; then
		for f in "$T"/node*.log; do
			[ -f "$f" ] || continue
			echo "--- $f (tail)"
			tail -n 25 "$f"
		done
	fi
	net_destroy
	rm -rf "$T"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
set -E
trap 'echo "FAIL: line $LINENO: $BASH_COMMAND (status $?)" >&2' ERR

# 1. Install as the README says, and a second time into a DESTDIR (what a
# package build does): the unit names the binary of the prefix it went to.
"$CMAKE" --install "$BUILD" --prefix "$P" >"$T/install.log" 2>&1 ||
	{ cat "$T/install.log"; fail "cmake --install --prefix $P"; }
UNIT=$P/lib/systemd/system/raftfs.service
for f in "$P/bin/raftfs" "$UNIT" "$P/share/doc/raftfs/raftfs.ini.example" \
	"$P/share/doc/raftfs/README.md" "$P/share/man/man1/raftfs.1"; do
	[ -s "$f" ] || fail "cmake --install did not install $f"
done
DESTDIR=$T/dest "$CMAKE" --install "$BUILD" --prefix /usr/local >"$T/install.log" 2>&1 ||
	{ cat "$T/install.log"; fail "DESTDIR=$T/dest cmake --install --prefix /usr/local"; }
[ -x "$T/dest/usr/local/bin/raftfs" ] || fail "DESTDIR install: no usr/local/bin/raftfs"
grep -qx "ExecStart=/usr/local/bin/raftfs node --config /etc/raftfs/raftfs.ini" \
	"$T/dest/usr/local/lib/systemd/system/raftfs.service" ||
	fail "DESTDIR install: the unit does not start /usr/local/bin/raftfs"
rm -rf "$T/dest"
if command -v systemd-analyze >/dev/null; then
	systemd-analyze verify "$UNIT" >"$T/verify-unit.out" 2>&1
	[ ! -s "$T/verify-unit.out" ] || { cat "$T/verify-unit.out"; fail "systemd-analyze verify"; }
else
	echo "note: no systemd-analyze here, the unit file was not verified"
fi
grep -qx "Type=notify" "$UNIT" || fail "the unit is not Type=notify"
grep -qx "KillMode=mixed" "$UNIT" || fail "the unit does not stop the node alone first"

# unit_line KEY I: the unit's KEY= command line for node I, split into the
# array CMD (its config path moved to node I's file). The unit's lines
# carry no prefixes ('-', '@', ...) that this script would have to honour.
unit_line() {
	local line
	line=$(sed -n "s/^$1=//p" "$UNIT")
	[ -n "$line" ] || fail "the unit has no $1 line"
	case $line in [-@:+!]*) fail "$1 has a prefix this test does not run: $line" ;; esac
	line=${line//\/etc\/raftfs\/raftfs.ini/$T/etc$2/raftfs.ini}
	read -r -a CMD <<<"$line"
}

# unit_env I: the VAR=value lines of the unit's EnvironmentFile (node I's
# $T/etcI/default for /etc/default/raftfs; '-': it may be missing), as the
# array ENVV.
unit_env() {
	local f
	f=$(sed -n 's/^EnvironmentFile=-//p' "$UNIT")
	[ "$f" = /etc/default/raftfs ] || fail "EnvironmentFile is not -/etc/default/raftfs"
	ENVV=()
	[ -f "$T/etc$1/default" ] || return 0
	mapfile -t ENVV < <(grep -E '^[A-Z_]+=' "$T/etc$1/default")
}

# 2. The three files, written as README says (the same --peers everywhere).
peers=""
for i in $(seq 1 $N); do peers="$peers${peers:+,}$i=$(net_addr "$i"):$PORT"; done
for i in $(seq 1 $N); do
	mkdir -p "$T/etc$i"
	"$P/bin/raftfs" config new --id "$i" --peers "$peers" --cluster "$CLUSTER" \
		--data-dir "$T/data$i" --mount "$T/mnt$i" >"$T/etc$i/raftfs.ini" ||
		fail "raftfs config new for node $i"
done

# start I: what systemd does for the unit: ExecStartPre, then ExecStart in
# the node's own session with $NOTIFY_SOCKET; started once READY=1 came.
start() {
	local i=$1 sock=$T/notify$1.sock
	unit_line ExecStartPre "$i"
	net_run "$i" "${CMD[@]}" >>"$T/node$i.log" 2>&1 || fail "node $i: ExecStartPre failed"
	if [ -z "${NOTIFY_PID[$i]:-}" ]; then
		rm -f "$sock"
		python3 "$(dirname "$0")/notify_recv.py" "$sock" "$T/notify$i" $$ >"$T/notify$i.up" &
		NOTIFY_PID[$i]=$!
		wait_for 10 "node $i's notify socket" grep -qs ready "$T/notify$i.up"
	fi
	: >"$T/notify$i"
	unit_line ExecStart "$i"
	unit_env "$i"
	env "${ENVV[@]}" NOTIFY_SOCKET="$sock" setsid nsenter --net="/run/netns/$(net_ns "$i")" \
		"${CMD[@]}" </dev/null >>"$T/node$i.log" 2>&1 &
	PID[$i]=$!
	echo "${PID[$i]}" >"$T/pid.$i"
	wait_for 60 "READY=1 from node $i" ready "$i"
	[ "$(readlink "/proc/${PID[$i]}/exe")" = "$P/bin/raftfs" ] ||
		fail "node $i: pid ${PID[$i]} is not the installed raftfs"
	mounted "$i" || fail "node $i said READY=1 before it mounted"
	[ "$(stat -c %i "$T/mnt$i")" = 1 ] || fail "node $i's mount does not answer"
}

# ready I: node I sent READY=1 (and is still running).
ready() {
	gone "${PID[$1]}" && fail "node $1 exited: $(tail -n 5 "$T/node$1.log")"
	grep -q "READY=1" "$T/notify$1"
}

# stop I: what systemd does to stop the unit: SIGTERM to the node alone,
# and up to TimeoutStopSec for it to exit. It must exit 0, unmounted, its
# guard gone, having said STOPPING=1.
stop() {
	local i=$1 pid=${PID[$1]} guard rc timeout
	timeout=$(sed -n 's/^TimeoutStopSec=//p' "$UNIT")
	guard=$(pgrep -P "$pid" -x raftfs-guard) || fail "node $i has no guard process"
	kill -TERM "$pid"
	wait_for "$timeout" "node $i to exit after SIGTERM" gone "$pid"
	wait "$pid"
	rc=$?
	PID[$i]=""
	rm -f "$T/pid.$i"
	[ $rc -eq 0 ] || fail "node $i exited $rc after SIGTERM"
	grep -q "STOPPING=1" "$T/notify$i" || fail "node $i did not say STOPPING=1"
	! mounted "$i" || fail "node $i exited but left $T/mnt$i mounted: $(grep " $T/mnt$i " /proc/self/mountinfo)"
	wait_for 5 "node $i's guard to exit" gone "$guard"
}

net_create $((N + 1)) || fail "could not build the network"

# 2b. The test state machine (no mount) speaks the notify protocol too:
# machine 4, unused until step 10, runs one alone for a moment.
"$P/bin/raftfs" config new --id 4 --peers "4=$(net_addr 4):$PORT" --data-dir "$T/kv4" \
	--mount "" >"$T/kv4.ini" || fail "raftfs config new for the kv node"
sed -i 's/^state_machine = fs$/state_machine = kv/' "$T/kv4.ini"
python3 "$(dirname "$0")/notify_recv.py" "$T/kv4.sock" "$T/notify-kv" $$ >"$T/kv4.up" &
NOTIFY_PID[kv]=$!
wait_for 10 "the kv node's notify socket" grep -qs ready "$T/kv4.up"
NOTIFY_SOCKET=$T/kv4.sock setsid nsenter --net="/run/netns/$(net_ns 4)" "$P/bin/raftfs" node \
	--config "$T/kv4.ini" </dev/null >>"$T/node-kv.log" 2>&1 &
PID[kv]=$!
echo "${PID[kv]}" >"$T/pid.kv"
wait_for 30 "READY=1 from the kv node" grep -q READY=1 "$T/notify-kv"
kill -TERM "${PID[kv]}"
wait "${PID[kv]}" || fail "the kv node exited $? after SIGTERM"
PID[kv]=""
rm -f "$T/pid.kv"
grep -q STOPPING=1 "$T/notify-kv" || fail "the kv node did not say STOPPING=1"

# 3. Three machines started.
for i in $(seq 1 $N); do start "$i"; done
[ -d "$T/data1" ] && [ "$(stat -c %a "$T/data1")" = 700 ] || fail "ExecStartPre made no data dir"

# status_ok: every node healthy (a leader known, applying), asked from the
# hub as an operator's machine would.
status_ok() {
	local a="" i
	for i in $NODES; do a="$a $(net_addr "$i"):$PORT"; done
	# shellcheck disable=SC2086
	net_run h "$P/bin/raftfs" status --timeout 2000 $a >"$T/status.out" 2>&1
}
wait_for 30 "every node healthy" status_ok

# 4. Written on one machine, read on the others (close-to-open: open is
# the sync point).
M1=$T/mnt1 M2=$T/mnt2 M3=$T/mnt3
mkdir "$M1/docs" || fail "mkdir on node 1's mount"
for k in $(seq 1 20); do echo "note $k from node 1" >"$M1/docs/note$k" || fail "write note $k"; done
head -c 2097152 /dev/urandom >"$T/big"
cp "$T/big" "$M1/docs/big" || fail "cp of 2 MiB to node 1's mount"
for m in "$M2" "$M3"; do
	cmp "$T/big" "$m/docs/big" || fail "$m/docs/big differs"
	[ "$(cat "$m/docs/note20")" = "note 20 from node 1" ] || fail "$m/docs/note20 wrong"
	[ "$(ls "$m/docs" | wc -l)" = 21 ] || fail "$m/docs lists $(ls "$m/docs" | wc -l) names, not 21"
done

# 5. Node 2 stopped as the unit stops it; 1 and 3 keep accepting writes.
# Its machine reboots meanwhile (the next boot's id in its data dir): after
# a clean stop that must not matter (step 9 shows the unclean case).
stop 2
[ -s "$T/data2/sm/boot" ] || fail "no boot id in $T/data2/sm/boot"
cat /proc/sys/kernel/random/uuid >"$T/data2/sm/boot"
for k in $(seq 1 10); do
	timeout 20 bash -c "echo 'while 2 was down, $k' >'$M1/docs/down1.$k'" || fail "write on node 1 with node 2 down"
	timeout 20 bash -c "echo 'while 2 was down, $k' >'$M3/docs/down3.$k'" || fail "write on node 3 with node 2 down"
done
timeout 20 mv "$M3/docs/note1" "$M3/docs/renamed" || fail "rename on node 3 with node 2 down"

# 6. Started again, it catches up.
start 2
wait_for 30 "node 2 healthy after a clean stop and a reboot" status_ok
! grep -q "dropped the untrusted tree" "$T/node2.log" ||
	fail "node 2 dropped its tree after a clean stop (its copy was synced: it needs no rebuild)"
[ "$(cat "$M2/docs/down3.10")" = "while 2 was down, 10" ] || fail "node 2 did not catch up (down3.10)"
[ "$(cat "$M2/docs/down1.10")" = "while 2 was down, 10" ] || fail "node 2 did not catch up (down1.10)"
[ -e "$M2/docs/renamed" ] && [ ! -e "$M2/docs/note1" ] || fail "node 2 did not catch up (rename)"
echo "written on 2 after its restart" >"$M2/docs/after" || fail "write on node 2 after its restart"
[ "$(cat "$M1/docs/after")" = "written on 2 after its restart" ] || fail "node 1 misses docs/after"

# 7. Node 3 killed (a crash): Restart=on-failure runs the same two lines;
# the dead mount it left is detached by the node — also within the
# kernel's attribute cache time of the last look at it (a stat of the dead
# mount's root still succeeds then; the node used to mount on top of it).
# Node 3's cache time is 10 s, given as the README says (/etc/default/raftfs).
echo "RAFTFS_MOUNT_OPTS=timeout=10" >"$T/etc3/default"
stop 3
start 3
stat "$M3" >/dev/null
crash 3
echo "written while 3 was dead" >"$M1/docs/dead3" || fail "write on node 1 with node 3 dead"
start 3
[ "$(grep -c " $M3 " /proc/self/mountinfo)" = 1 ] ||
	fail "node 3 mounted on top of its dead mount: $(grep " $M3 " /proc/self/mountinfo)"
[ "$(cat "$M3/docs/dead3")" = "written while 3 was dead" ] || fail "node 3 did not catch up after a crash"

# 8. Healthy everywhere, mounts identical.
wait_for 30 "every node healthy after the restarts" status_ok
[ "$(grep -c "  healthy" "$T/status.out")" = $N ] || { cat "$T/status.out"; fail "status lines"; }
"$P/bin/raftfs" verify --wait 30 "$M1" "$M2" "$M3" >"$T/verify.out" 2>&1 ||
	{ cat "$T/verify.out"; fail "the mounts differ"; }

# 8b. A rolling restart (an upgrade between builds of one protocol, README
# section 9): the two machines other than a writer's restarted one after
# the other, the leader among them, each once all are healthy. The writer
# appends lines with dd (which checks close) the whole time: none may fail.
leader=""
for i in $NODES; do
	net_run h "$P/bin/raftfs" status --json "$(net_addr "$i"):$PORT" 2>/dev/null |
		grep -q '"role":"leader"' && leader=$i
done
[ -n "$leader" ] || fail "no leader among $NODES"
w=$((leader % N + 1)) # a node that does not lead: it writes
: >"$T/acked"
(
	k=0
	while [ ! -e "$T/stop-writer" ] && kill -0 $$ 2>/dev/null; do
		k=$((k + 1))
		echo "line $k" | dd of="$T/mnt$w/docs/log" oflag=append conv=notrunc status=none ||
			{ echo "write $k failed" >>"$T/writer.err"; break; }
		echo "line $k" >>"$T/acked"
		date +%s%N >>"$T/acked.times"
	done
) &
writer=$!
acked_over() { [ "$(wc -l <"$T/acked")" -gt "$1" ]; }
for i in $NODES; do
	[ "$i" != "$w" ] || continue
	n0=$(wc -l <"$T/acked")
	stop "$i"
	start "$i"
	wait_for 30 "every node healthy after restarting node $i" status_ok
	wait_for 30 "the writer going on after node $i's restart" acked_over $((n0 + 20))
done
touch "$T/stop-writer"
wait "$writer"
[ ! -s "$T/writer.err" ] || fail "the writer on node $w failed during the rolling restart: $(cat "$T/writer.err")"
awk 'NR > 1 && $1 - p > m { m = $1 - p } { p = $1 } END {
	printf "rolling restart: %d appends on node '"$w"', the longest wait between two %.0f ms\n", NR, m / 1e6 }' "$T/acked.times"
for i in $NODES; do
	cmp -s "$T/acked" "$T/mnt$i/docs/log" || fail "node $i's docs/log is not the $(wc -l <"$T/acked") lines written"
done

# 9. Machine 2 loses power (simulated: the node killed, then its data
# directory's boot id made another boot's, as a reboot does; nothing was
# synced, so its tree cannot be trusted: here a file of it is gone and
# another holds other bytes, as a lost page cache may leave them). It comes
# back healthy by itself (README section 6): it drops its tree and
# rebuilds it from its own stored snapshot and Raft log, and catches up.
crash 2
cat /proc/sys/kernel/random/uuid >"$T/data2/sm/boot"
rm "$T/data2/tree/docs/note2" || fail "no docs/note2 in node 2's tree"
echo "lost in the page cache" >"$T/data2/tree/docs/note3"
echo "written while 2 was off" >"$M1/docs/off2" || fail "write on node 1 with node 2 off"
before=$(wc -l <"$T/node2.log")
start 2
# READY=1 comes once node 2 replayed its own log up to the commit index it
# had saved (fs/svc_start.h): what it showed before the cut is there at once.
[ "$(cat "$M2/docs/note2" 2>/dev/null)" = "note 2 from node 1" ] ||
	fail "node 2 said READY=1 without docs/note2, which it showed before the power loss"
# (Or that nothing was left to replay: its snapshot at its saved commit.)
tail -n "+$((before + 1))" "$T/node2.log" |
	grep -Eq "replayed the log up to entry|nothing to replay before serving" ||
	fail "node 2's log does not say it replayed its log before READY=1"
# status_of I: node I's raftfs status (exit status and output in $T/st.out).
status_of() { net_run h "$P/bin/raftfs" status "$(net_addr "$1"):$PORT" >"$T/st.out" 2>&1; }
wait_for 60 "node 2 healthy by itself after the power loss" status_of 2
grep -q "the machine restarted (boot id changed)" "$T/node2.log" ||
	fail "node 2's log does not say it saw the power loss"
grep -q "dropped the untrusted tree" "$T/node2.log" ||
	fail "node 2's log does not say it dropped its untrusted tree"
has_off2() { [ "$(cat "$M2/docs/off2" 2>/dev/null)" = "written while 2 was off" ]; }
wait_for 60 "node 2 to catch up after the power loss (docs/off2)" has_off2
[ "$(cat "$M2/docs/note2")" = "note 2 from node 1" ] || fail "node 2 lost docs/note2 in the power loss"
[ "$(cat "$M2/docs/note3")" = "note 3 from node 1" ] || fail "node 2's docs/note3 is what its damaged tree held"
"$P/bin/raftfs" verify --wait 30 "$M1" "$M2" "$M3" >"$T/verify.out" 2>&1 ||
	{ cat "$T/verify.out"; fail "the mounts differ after node 2's power loss"; }
echo "written on 2 after its power loss" >"$M2/docs/after-power" || fail "write on node 2 after its power loss"
[ "$(cat "$M1/docs/after-power")" = "written on 2 after its power loss" ] ||
	fail "node 1 misses docs/after-power"

# 9b. Machine 2's disk is replaced (its data lost for good): rebuilt as
# README section 7 says: stopped, removed, its data directory emptied,
# configured with join = true, started, added again under its id. Files
# made through node 2 before: the rebuilt node must hand out none of their
# ids again (its id counter went with the disk; applying its own creates
# from the log raises it again), so creates through it work at once.
for k in 1 2 3 4 5; do
	echo "made on 2 before its rebuild $k" >"$M2/docs/pre-rebuild$k" ||
		fail "create docs/pre-rebuild$k through node 2"
done
ids_before=$(stat -c %i "$M2"/docs/pre-rebuild* "$M2/docs/after-power" | sort -n | tail -n 1)
stop 2
net_run h "$P/bin/raftfs" member remove 2 --via "$(net_addr 1):$PORT" >"$T/member.out" 2>&1 ||
	{ cat "$T/member.out"; fail "raftfs member remove 2"; }
rm -rf "$T/data2"
"$P/bin/raftfs" config new --id 2 --join --cluster "$CLUSTER" --data-dir "$T/data2" \
	--mount "$T/mnt2" --peers "$peers" >"$T/etc2/raftfs.ini" || fail "raftfs config new --join for node 2"
start 2
net_run h "$P/bin/raftfs" member add 2 "$(net_addr 2):$PORT" --via "$(net_addr 1):$PORT" \
	>"$T/member.out" 2>&1 || { cat "$T/member.out"; fail "raftfs member add 2"; }
wait_for 30 "node 2 healthy after its rebuild" status_of 2
[ "$(cat "$M2/docs/after-power")" = "written on 2 after its power loss" ] ||
	fail "node 2 rebuilt without docs/after-power"
"$P/bin/raftfs" verify --wait 30 "$M1" "$M2" "$M3" >"$T/verify.out" 2>&1 ||
	{ cat "$T/verify.out"; fail "the mounts differ after node 2's rebuild"; }
for k in 1 2 3 4 5 6; do
	echo "made on 2 after its rebuild $k" >"$M2/docs/post-rebuild$k" ||
		fail "create docs/post-rebuild$k through the rebuilt node 2"
	id=$(stat -c %i "$M2/docs/post-rebuild$k")
	[ "$id" -gt "$ids_before" ] ||
		fail "the rebuilt node 2 handed out id $id again (its files had ids up to $ids_before)"
done

# 10. Machine 3 dies for good (its disk with it); machine 4 replaces it as
# README says: the dead member removed, the new one configured with the
# members now and itself (--join), started, added; it catches up.
crash 3
umount -l "$M3" # gone with its machine
rm -rf "$T/data3"
net_run h "$P/bin/raftfs" member remove 3 --via "$(net_addr 1):$PORT" >"$T/member.out" 2>&1 ||
	{ cat "$T/member.out"; fail "raftfs member remove 3"; }
NODES="1 2 4"
mkdir -p "$T/etc4"
"$P/bin/raftfs" config new --id 4 --join --cluster "$CLUSTER" --data-dir "$T/data4" \
	--mount "$T/mnt4" --peers "1=$(net_addr 1):$PORT,2=$(net_addr 2):$PORT,4=$(net_addr 4):$PORT" \
	>"$T/etc4/raftfs.ini" || fail "raftfs config new for node 4"
start 4
net_run h "$P/bin/raftfs" member add 4 "$(net_addr 4):$PORT" --via "$(net_addr 2):$PORT" \
	>"$T/member.out" 2>&1 || { cat "$T/member.out"; fail "raftfs member add 4"; }
M4=$T/mnt4
cmp "$T/big" "$M4/docs/big" || fail "node 4 did not catch up (docs/big)"
echo "written on the new machine" >"$M4/docs/new4" || fail "write on node 4"
[ "$(cat "$M1/docs/new4")" = "written on the new machine" ] || fail "node 1 misses docs/new4"
wait_for 30 "nodes 1, 2, 4 healthy" status_ok
"$P/bin/raftfs" verify --wait 30 "$M1" "$M2" "$M4" >"$T/verify.out" 2>&1 ||
	{ cat "$T/verify.out"; fail "the mounts differ after the replacement"; }

# 11. An administrator's umount stops node 4 cleanly (exit 0: systemd's
# Restart=on-failure leaves it stopped); the others are stopped as the
# unit does it. Nothing is left mounted.
umount "$M4" || fail "umount $M4"
wait_for 30 "node 4 to exit after its mount was unmounted" gone "${PID[4]}"
wait "${PID[4]}" || fail "node 4 exited $? after its unmount, want 0"
PID[4]=""
rm -f "$T/pid.4"
for i in $NODES; do [ "$i" = 4 ] || stop "$i"; done
grep -q " $T/" /proc/mounts && fail "mounts left under $T"
echo "PASS"
exit 0
}
