#!/bin/bash
# disk_full.sh RAFTFS — the leader's disk is full. Its data directory is
# on a small loop-mounted ext4, filled to ~1 MiB free, then writers go on
# through its mount and through a follower's. The leader must stop (its
# tree cannot take a file: apply fails), say why in `raftfs status` and in
# its log, and answer its mount's writers with an error, not silence or
# success — a close too: once its node refused a change, no close of it
# succeeds (close = behind answers early only while the node applies); the
# cluster goes on committing; nothing any writer was acknowledged (its
# close returned 0) is lost, but what close = behind allows (whole or
# absent: see the check at the end). With room again and a restart it
# catches up: mounts and trees identical, every acknowledged file whole on
# every mount. Runs in either close mode (RAFTFS_CLOSE).
# (tests/mount/mount_user.sh fills a follower's disk.)
# The whole script is one block, parsed before any of it runs (tests/FLAKY.md).
{
set -eEuo pipefail
. "$(dirname "$0")/../mount/lib.sh"
trap 'echo "FAIL: line $LINENO: exit status $? of: $BASH_COMMAND" >&2' ERR
command -v mkfs.ext4 >/dev/null || { echo "SKIP: no mkfs.ext4"; exit 77; }

# The loop mount must go after its node stops and before lib.sh's cleanup
# (lib.sh's reaper detaches it if this shell is killed outright).
DISK=$T/disk
X=
disk_cleanup() {
	local rc=$?
	set +e
	trap - ERR
	# Writers still running (a failure mid-test) would keep n$X busy.
	touch "$T/stop"
	[ -z "$(jobs -p)" ] || kill $(jobs -p) 2>/dev/null
	wait 2>/dev/null
	if mountpoint -q "$DISK/mnt" 2>/dev/null; then
		[ -z "$X" ] || "$R" local stop "$C" "$X" >/dev/null 2>&1
		[ -z "$X" ] || umount "$C/n$X" 2>/dev/null || umount -l "$C/n$X" 2>/dev/null
		umount "$DISK/mnt" || umount -l "$DISK/mnt"
	fi
	(exit $rc)
	cleanup
}
trap disk_cleanup EXIT

mkdir -p "$DISK/mnt"
truncate -s 1G "$DISK/img"
mkfs.ext4 -q -F -m 0 "$DISK/img"
mount -o loop "$DISK/img" "$DISK/mnt" 2>"$T/loop.err" ||
	{ echo "SKIP: no loop-mounted ext4 here ($(cat "$T/loop.err"))"; exit 77; }

up
addr() { "$R" local addr "$C" "$1"; }
X=$(leader_id)
[ -n "$X" ] || fail "no leader"
echo "== node $X's data on a 1 GiB loop disk (no blocks reserved for root: the node runs as root)"
"$R" local stop "$C" "$X" >/dev/null
cp -a "$C/node$X/data/." "$DISK/mnt/"
rm -rf "$C/node$X/data"
ln -s "$DISK/mnt" "$C/node$X/data"
"$R" local start "$C" "$X" >/dev/null || fail "restart of node $X on the loop disk"
# Leadership back to X: with the third node stopped first, the stopped
# leader can only hand over to X; X's first entry as leader then reaches
# nobody before the other two start again, so its log is the one to win
# any election that follows. (Stopping the leader alone is no coin toss:
# it picks the follower most up to date, rarely the one on the loop disk.)
has_leader() { [ -n "$(leader_id)" ]; }
for try in $(seq 1 8); do
	wait_for 60 "a leader" has_leader
	L=$(leader_id)
	[ "$L" != "$X" ] || break
	Y=$((6 - X - L))
	"$R" local stop "$C" "$Y" >/dev/null
	"$R" local stop "$C" "$L" >/dev/null
	"$R" local start "$C" "$L" >/dev/null || fail "restart of node $L"
	"$R" local start "$C" "$Y" >/dev/null || fail "restart of node $Y"
done
[ "$(leader_id)" = "$X" ] || fail "node $X did not become leader in 8 rounds"
F=$((X % 3 + 1))
MX=$C/n$X MF=$C/n$F
echo "== node $X leads; its disk is filled, then writers go through n$X and n$F"
mkdir "$MF/f" "$MX/x"
# Files of 16 KiB: their log entries go to RocksDB's WAL, which has room
# it allocated beforehand, so the fault comes when the tree cannot take a
# file's data (apply). DISK_FILE_KB=1024 puts them in the value log, whose
# save then fails first (tests/fuzz/README.md "Found" 15; fuzz.disk_full_log).
head -c "${DISK_FILE_KB:-16}K" /dev/urandom >"$T/blob"
# writer DIR LIST: files of the blob, each listed once cp (which checks
# close) returned 0, and a line "!" where a cp failed (under close =
# behind a close reports a failure of an earlier file's commands).
writer() {
	local k=0
	: >"$2"
	while [ ! -e "$T/stop" ]; do
		k=$((k + 1))
		if timeout 60 cp "$T/blob" "$1/b$k" 2>>"$2.err"; then
			echo "b$k" >>"$2"
		else
			echo "!" >>"$2"
		fi
	done
}
count() { grep -c '^b' "$1" || true; }
at_least() { [ "$(count "$1")" -ge "$2" ]; }
# whole_or_absent DIR NAME: NAME is the blob on every mount, or on none.
whole_or_absent() {
	local m there=0
	for m in 1 2 3; do
		[ ! -e "$C/n$m/$1/$2" ] || there=$((there + 1))
	done
	[ $there = 0 ] && return 0
	for m in 1 2 3; do
		cmp -s "$T/blob" "$C/n$m/$1/$2" || fail "acknowledged $1/$2 is not whole on n$m"
	done
}

# Fillers up to ~1 MiB free; the node writes meanwhile, so a filler may
# find less room than df said: then another, smaller one.
filled() {
	local avail
	avail=$(df --output=avail -k "$DISK/mnt" | tail -n 1)
	[ "$avail" -gt 2048 ] || return 0
	fallocate -l $(((avail - 1024) * 1024)) "$DISK/mnt/filler.$SECONDS.$RANDOM" 2>/dev/null || true
	return 1
}
wait_for 30 "node $X's disk filled" filled
writer "$MF/f" "$T/acked.f" &
# On n$X files held open 5 ms each, so that its fault lands between a
# file's write and its close: the close must then fail, not succeed early
# (hold_writer.py; "early" lines).
python3 "$(dirname "$0")/hold_writer.py" "$MX/x" "$T/acked.x" "$T/blob" "$T/stop" &
unhealthy() { ! "$R" status "$(addr "$X")" >"$T/stx" 2>&1; }
wait_for 120 "node $X unhealthy with its disk full" unhealthy
echo "   node $X: $(cat "$T/stx")"
grep -q "No space left on device" "$T/stx" || fail "raftfs status does not say why node $X stopped: $(cat "$T/stx")"
grep -q "No space left" "$C/node$X/node.log" || fail "node $X's log does not say its disk is full"
# (Raft goes on: X may even stay leader, its log still saved; only its
# apply stopped.)
before=$(count "$T/acked.f")
wait_for 60 "writes through n$F to go on" at_least "$T/acked.f" $((before + 10))

# X's mount answers changes with an error (EIO once the node stopped),
# within the proposal timeout, and still serves reads.
rc=0
timeout 60 cp "$T/blob" "$MX/x/after" 2>"$T/err.x" || rc=$?
[ $rc != 0 ] || fail "a write through n$X succeeded with its node stopped"
[ $rc != 124 ] || fail "a write through n$X hung"
grep -q "Input/output error\|No space left on device" "$T/err.x" ||
	fail "want EIO or ENOSPC from n$X, got: $(cat "$T/err.x")"
echo "   a write through n$X: $(sed 's/^cp: //' "$T/err.x")"
ls "$MX/f" >/dev/null || fail "n$X stopped serving reads"

echo "== room again: node $X restarts and catches up"
touch "$T/stop"
wait
# What n$F's writer has not heard of yet: a later failure of a file
# closed behind shows at the mount's next sync point.
python3 -c 'import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd)' "$MF/f" ||
	echo "!" >>"$T/acked.f"
xn=$(grep -c '^ok ' "$T/acked.x" || true)
xe=$({ grep '^err ' "$T/acked.x" || true; } | sed -E 's/^err [^ ]* //' | sort | uniq -c | tr '\n' ';')
echo "   n$X's writer: $xn acknowledged, then: $xe"
! grep '^early ' "$T/acked.x" ||
	fail "n$X acknowledged the close of a file after refusing a change (its apply had stopped)"
rm -f "$DISK/mnt"/filler.*
"$R" local stop "$C" "$X" >/dev/null
"$R" local start "$C" "$X" >/dev/null || fail "restart of node $X with room again"
verify 120 "node $X after its disk had room again"
# Acknowledged = whole on every mount. Under close = behind (the default)
# two exceptions, both "whole or absent": a file of n$F's writer before
# one of its cps failed (that failure may be this file's, reported late),
# and a file of n$X's closed early before its node stopped applying (its
# commands still waiting to leave the node: lost with it, as if the node
# had died then; README "Close behind").
behind=$([ "${RAFTFS_CLOSE:-behind}" = behind ] && echo 1 || echo 0)
last_err=$({ grep -n '^!' "$T/acked.f" || true; } | tail -n 1 | cut -d: -f1)
# acked_whole DIR NAME MOUNT MAY_BE_ABSENT: acknowledged DIR/NAME (written
# through MOUNT) is whole on every mount, or with MAY_BE_ABSENT = 1 whole
# or absent everywhere (counted in absent).
acked_whole() {
	local m
	if [ "$4" = 1 ]; then
		whole_or_absent "$1" "$2"
		[ -e "$3/$1/$2" ] || absent=$((absent + 1))
		return 0
	fi
	for m in 1 2 3; do
		cmp -s "$T/blob" "$C/n$m/$1/$2" || fail "acknowledged $1/$2 is not whole on n$m"
	done
}
line=0 absent=0
while read -r b; do
	line=$((line + 1))
	[ "$b" != "!" ] || continue
	early=0
	[ $behind = 0 ] || [ $line -ge "${last_err:-0}" ] || early=1
	acked_whole f "$b" "$MF" $early
done <"$T/acked.f"
for b in $(sed -n 's/^ok //p' "$T/acked.x"); do
	acked_whole x "$b" "$MX" $behind
done
echo "   $(count "$T/acked.f") + $xn acknowledged files whole on every mount ($absent closed behind absent everywhere)"
echo "PASS"
exit
}
