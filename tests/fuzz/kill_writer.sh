#!/bin/bash
# kill_writer.sh RAFTFS — writers killed with SIGKILL in the middle of
# their writes, on every mount: dd of a big file (writes pipelined, some in
# flight at the kill), a shell appending lines through O_APPEND, a writer
# whose file was unlinked while it wrote. The kernel closes their handles
# for them; nothing may hang or be left behind. Afterwards every mount
# shows the same content for each file, a prefix of what was written (one
# node's writes apply in order); the mounts and the nodes' trees are
# identical; the unlinked file's data is released on every node; and once
# every file is removed, no node keeps any of them (DATA/ids empty).
# Run with RAFTFS_CLOSE=behind too (ctest fuzz.kill_writer_behind).
# The whole script is one block, parsed before any of it runs (tests/FLAKY.md).
{
set -eEuo pipefail
. "$(dirname "$0")/../mount/lib.sh"
trap 'echo "FAIL: line $LINENO: exit status $? of: $BASH_COMMAND" >&2' ERR
up
head -c 48M /dev/urandom >"$T/src"
size() { stat -c %s "$1" 2>/dev/null || echo 0; }
bigger() { [ "$(size "$1")" -ge "$2" ]; }

echo "== dd killed mid-write, on each mount"
for i in 1 2 3; do
	M=$C/n$i
	dd if="$T/src" of="$M/dd$i" bs=256K status=none &
	pid=$!
	wait_for 60 "dd on n$i to write 4 MiB" bigger "$M/dd$i" $((4 << 20))
	kill -9 $pid
	wait $pid 2>/dev/null || true
done

echo "== appenders killed mid-line stream, on each mount"
lines() { [ "$(grep -c "^appender $2 " "$1" 2>/dev/null)" -ge "$3" ]; }
for i in 1 2 3; do
	M=$C/n$i
	bash -c 'k=0; while :; do k=$((k + 1)); /bin/echo "appender '"$i"' line $k" >>"$1"; done' \
		appender "$M/app" &
	pid=$!
	wait_for 60 "appender $i to write 20 lines" lines "$M/app" "$i" 20
	kill -9 $pid
	wait $pid 2>/dev/null || true
done

echo "== a writer of an unlinked file killed"
# The last name goes while the writer holds the file open: an orphan,
# kept until the writer's handle is released — here by its death.
dd if="$T/src" of="$C/n2/gone" bs=256K status=none &
pid=$!
wait_for 60 "the writer of gone to write 4 MiB" bigger "$C/n2/gone" $((4 << 20))
rm "$C/n1/gone"
kill -9 $pid
wait $pid 2>/dev/null || true

verify 90 "after the killed writers"
for i in 1 2 3; do
	s=$(size "$C/n1/dd$i")
	[ "$s" -gt 0 ] || fail "dd$i is empty"
	for m in 1 2 3; do
		[ "$(size "$C/n$m/dd$i")" = "$s" ] || fail "dd$i: $(size "$C/n$m/dd$i") bytes on n$m, $s on n1"
		cmp -s -n "$s" "$T/src" "$C/n$m/dd$i" || fail "dd$i on n$m is not a prefix of what dd wrote"
	done
	echo "   dd$i: $s bytes, the same prefix on every mount"
done
# Each appender's lines are whole and in order (writes of one mount apply
# in order; a line is one write(2) of an O_APPEND handle).
for i in 1 2 3; do
	grep "^appender $i line" "$C/n3/app" | awk -v a="$i" '
		$0 != "appender " a " line " NR { bad = 1; exit }
		END { exit bad }' || fail "appender $i's lines are torn or out of order"
done
cmp -s "$C/n1/app" "$C/n2/app" && cmp -s "$C/n1/app" "$C/n3/app" || fail "app differs between mounts"
echo "   app: $(wc -l <"$C/n1/app") lines, whole and in order on every mount"

echo "== everything removed: no node keeps a file"
rm -f "$C/n1"/dd? "$C/n1/app"
kept() { find "$C"/node?/data/ids -type f 2>/dev/null | wc -l; }
empty() { [ "$(kept)" = 0 ]; }
wait_for 60 "DATA/ids empty on every node ($(kept) left)" empty
verify 60 "after removing everything"
echo "PASS"
exit
}
