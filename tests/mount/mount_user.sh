#!/bin/bash
# mount_user.sh RAFTFS — what users of a replicated filesystem do, each step
# on one mount and checked on the others: git clone/commit/status/fsck
# across mounts, rsync in and a checksum compare, an editor's save (temp
# file, fsync, rename over) while another mount reads, make, sqlite3, long
# and unicode names, paths longer than PATH_MAX, a build as nobody, a node
# killed and restarted in the middle of a copy, and a node whose disk fills
# up (it stops applying and says so; the others lose nothing; once there is
# room again it catches up). After each step the mounts must be identical.
# The whole script is one block, parsed before any of it runs: bash reads
# a script as it goes, so an edit to this file during a run would
# otherwise make the running test execute the edited text from a stale
# offset.
{
set -eEuo pipefail
. "$(dirname "$0")/lib.sh"
trap 'echo "FAIL: line $LINENO: exit status $? of: $BASH_COMMAND" >&2' ERR
for tool in git make cc sqlite3 rsync runuser; do
	command -v "$tool" >/dev/null || { echo "SKIP: no $tool (scripts/install-deps)"; exit 77; }
done

# The disk-full step puts node 3's data on a small loop-mounted ext4; the
# loop mount must go after node 3 stops and before lib.sh's cleanup.
DISK=$T/disk
user_cleanup() {
	local rc=$?
	set +e
	trap - ERR
	if mountpoint -q "$DISK/mnt" 2>/dev/null; then
		"$R" local stop "$C" 3 >/dev/null 2>&1
		umount "$C/n3" 2>/dev/null
		umount "$DISK/mnt" || umount -l "$DISK/mnt"
	fi
	(exit $rc)
	cleanup
}
trap user_cleanup EXIT

up
step() { echo "== $* (at ${SECONDS} s)"; }

# Close-to-open (README, "Consistency"): a check on another mount opens a
# file there first, which waits until that node applied what was acknowledged.
: >"$M1/.sync"
sync_to() { [ "${RAFTFS_MOUNT_OPTS:-}" = linearizable ] || : <"$1/.sync"; }

step "git: clone on n1, commit on n2, commit on n3, status and fsck everywhere"
src=$T/src
mkdir "$src"
git -C "$src" init -q
cp -r "$(dirname "$0")/../../proto" "$src/"
git -C "$src" add .
git -C "$src" -c user.name=t -c user.email=t@t commit -qm init
git clone -q "$src" "$M1/repo"
sync_to "$M2"
echo "// n2" >>"$M2/repo/proto/raft.proto"
git -C "$M2/repo" -c user.name=u -c user.email=u@u commit -qam "from n2"
sync_to "$M3"
[ -z "$(git -C "$M3/repo" status --porcelain)" ] || fail "git status on n3 not clean after n2's commit"
echo new >"$M3/repo/new"
git -C "$M3/repo" add new
git -C "$M3/repo" -c user.name=u -c user.email=u@u commit -qm "from n3"
sync_to "$M1"
[ "$(git -C "$M1/repo" log --format=%s | head -n 2 | tr '\n' ' ')" = "from n3 from n2 " ] ||
	fail "git log on n1: $(git -C "$M1/repo" log --oneline | head -n 3)"
git -C "$M1/repo" gc -q
sync_to "$M2"
git -C "$M2/repo" fsck --full 2>"$T/fsck" || fail "git fsck on n2 after gc on n1: $(cat "$T/fsck")"
[ -z "$(git -C "$M2/repo" status --porcelain)" ] || fail "git status on n2 not clean after gc on n1"
verify 60 "git"

step "rsync -a in on n2, rsync -c compare on n3 and n1"
rsync -a "$(dirname "$0")/../../consensus" "$M2/rs/"
sync_to "$M3"
for m in "$M3" "$M1"; do
	rsync -a -c -n --itemize-changes "$(dirname "$0")/../../consensus" "$m/rs/" >"$T/rs.out"
	[ ! -s "$T/rs.out" ] || fail "rsync -c finds differences on $m: $(head -n 5 "$T/rs.out")"
done
verify 60 "rsync"

step "editor's save (temp, fsync, rename over) on n1 while n2 and n3 read"
printf 'version 0\n' >"$M1/doc.txt"
sync_to "$M2"
reader() {
	local m=$1 v
	while [ ! -e "$T/stop-read" ]; do
		v=$(cat "$m/doc.txt" 2>&1) || { echo "cat failed: $v" >>"$T/read.bad"; continue; }
		# A reader sees one whole version, never a partial file.
		case $v in "version "[0-9]* | "") ;; *) echo "partial: $v" >>"$T/read.bad" ;; esac
		[ -z "$v" ] && echo "empty" >>"$T/read.bad"
	done
}
reader "$M2" &
reader "$M3" &
for i in $(seq 1 20); do
	printf 'version %d\n' "$i" >"$M1/.doc.txt.swp"
	sync "$M1/.doc.txt.swp"
	mv "$M1/.doc.txt.swp" "$M1/doc.txt"
done
touch "$T/stop-read"
wait
[ ! -s "$T/read.bad" ] || fail "a reader saw a partial or empty file: $(head -n 3 "$T/read.bad")"
sync_to "$M3"
[ "$(cat "$M3/doc.txt")" = "version 20" ] || fail "n3 shows $(cat "$M3/doc.txt") after the last save"
verify 30 "editor save"

step "make on n1, up to date on n2, rebuilt on n3 after a touch"
mkdir "$M1/proj"
printf '#include <stdio.h>\nint b(void);\nint main(void) { printf("%%d\\n", b()); return 0; }\n' >"$M1/proj/a.c"
echo 'int b(void) { return 42; }' >"$M1/proj/b.c"
printf 'p: a.o b.o\n\t$(CC) -o $@ a.o b.o\n%%.o: %%.c\n\t$(CC) -c $<\n' >"$M1/proj/Makefile"
make -s -C "$M1/proj"
sync_to "$M2"
make -s -q -C "$M2/proj" || fail "make on n2 is not up to date after n1's build (mtimes differ?)"
[ "$("$M2/proj/p")" = 42 ] || fail "the program built on n1 does not run on n2"
touch "$M3/proj/b.c"
make -s -C "$M3/proj" >"$T/make.out" 2>&1
sync_to "$M1"
make -s -q -C "$M1/proj" || fail "n1 does not see n3's rebuild as up to date"
verify 30 "make"

step "sqlite3: two writers on n1, read and checked on n2 and n3"
sqlite3 "$M1/t.db" "create table t(a integer primary key, who text, i int);"
for w in a b; do
	(for i in $(seq 25); do
		sqlite3 -cmd ".timeout 10000" "$M1/t.db" "insert into t(who, i) values('$w', $i);"
	done) >"$T/sq.$w" 2>&1 &
done
wait
[ ! -s "$T/sq.a" ] && [ ! -s "$T/sq.b" ] || fail "sqlite3 writers on one mount: $(cat "$T/sq.a" "$T/sq.b" | head -n 3)"
for m in "$M2" "$M3"; do
	sync_to "$m"
	[ "$(sqlite3 "$m/t.db" "pragma integrity_check; select count(*) from t;" | tr '\n' ' ')" = "ok 50 " ] ||
		fail "sqlite3 on $m: $(sqlite3 "$m/t.db" "pragma integrity_check; select count(*) from t;" 2>&1)"
done
verify 30 "sqlite3"

step "names: 255 bytes, 256 bytes, unicode, spaces and a newline"
n255=$(printf 'a%.0s' $(seq 255))
echo x >"$M1/$n255"
if touch "$M2/${n255}b" 2>"$T/err"; then fail "a 256-byte name was accepted"; fi
grep -q "File name too long" "$T/err" || fail "256-byte name: $(cat "$T/err")"
u254=$(printf 'é%.0s' $(seq 127))
echo u >"$M2/$u254"
echo uni >"$M3/日本語 ファイル 🎉.txt"
mkdir "$M1/sp ace"
echo nl >"$M1/sp ace/new
line"
mv "$M2/$n255" "$M2/${n255:0:254}c"
sync_to "$M3"
[ -e "$M3/${n255:0:254}c" ] && [ "$(cat "$M3/$u254")" = u ] && [ "$(cat "$M1/日本語 ファイル 🎉.txt")" = uni ] ||
	fail "long or unicode names differ across mounts"
verify 30 "names"

step "a path longer than PATH_MAX (20 names of 240 bytes), made on n1, walked on n2 and n3"
d240=$(printf 'd%.0s' $(seq 240))
mkdir "$M1/deep"
(cd "$M1/deep" && for i in $(seq 20); do mkdir "$d240$i" && cd "$d240$i"; done &&
	echo leaf >leaf)
sync_to "$M2"
for m in "$M2" "$M3"; do
	got=$(cd "$m/deep" && for i in $(seq 20); do cd "$d240$i"; done && cat leaf) ||
		fail "walking the deep path on $m"
	[ "$got" = leaf ] || fail "deep leaf on $m: $got"
done
"$R" local status "$C" >"$T/status" || fail "a node is unhealthy after the deep path: $(cat "$T/status")"
verify 60 "deep path"
rm -rf "$M2/deep"
verify 60 "deep path removed"

step "nobody builds in a 1777 directory on n1; owned by nobody on n3"
mkdir -m 1777 "$M1/tmp"
runuser -u nobody -- cp -r "$M1/proj" "$M1/tmp/proj"
runuser -u nobody -- make -s -C "$M1/tmp/proj" -B >/dev/null
sync_to "$M3"
[ "$(stat -c %U "$M3/tmp/proj/p")" = nobody ] || fail "nobody's build is owned by $(stat -c %U "$M3/tmp/proj/p") on n3"
if runuser -u nobody -- rm -f "$M3/proj/p" 2>/dev/null; then fail "nobody removed root's file"; fi
verify 30 "nobody"

step "kill -9 of node 3 in the middle of cp -a on n1, restart, converge"
cp -a /usr/include/linux "$M1/inc" &
cpid=$!
copied() { [ "$(find "$M1/inc" 2>/dev/null | wc -l)" -gt 100 ]; }
wait_for 60 "cp -a under way" copied
"$R" local kill "$C" 3
wait "$cpid" || fail "cp -a on n1 failed while node 3 was killed"
start_node 3
verify 60 "kill during cp -a"
diff -r /usr/include/linux "$M3/inc" >/dev/null || fail "the copy differs on the restarted node 3"

step "node 3's disk fills up: it stops applying and says so; the others lose nothing"
if ! command -v mkfs.ext4 >/dev/null || ! mkdir -p "$DISK/mnt" || ! truncate -s 1G "$DISK/img" ||
	! mkfs.ext4 -q -F -m 0 "$DISK/img" || ! mount -o loop "$DISK/img" "$DISK/mnt" 2>"$T/loop.err"; then
	echo "   skipped: no loop-mounted ext4 here ($(cat "$T/loop.err" 2>/dev/null))"
else
	"$R" local stop "$C" 3
	cp -a "$C/node3/data/." "$DISK/mnt/"
	rm -rf "$C/node3/data"
	ln -s "$DISK/mnt" "$C/node3/data"
	start_node 3 "on the loop disk"
	verify 60 "node 3 on the small disk"
	# The writes below need a leader (`local up` used to await one).
	wait_for 60 "a leader" has_leader
	# Leave about 1 MiB free, then write 8 MiB through n1. No blocks are
	# reserved for root (mkfs -m 0): the node runs as root, and with the
	# default 5% (50 MiB) it wrote on into the reserve unless RocksDB
	# happened to preallocate a WAL there first (seen 3 of 3 healthy).
	avail=$(df --output=avail -k "$DISK/mnt" | tail -n 1)
	fallocate -l $(((avail - 1024) * 1024)) "$DISK/mnt/filler"
	for i in 1 2 3 4; do head -c 2M /dev/urandom >"$M1/big$i"; done
	unhealthy() { ! "$R" status "$("$R" local addr "$C" 3)" >"$T/st3" 2>&1; }
	wait_for 60 "node 3 unhealthy with its disk full" unhealthy
	grep -q "No space left" "$C/node3/node.log" || fail "node 3's log does not say its disk is full"
	grep -q "No space left on device" "$T/st3" || fail "raftfs status does not say why node 3 stopped: $(cat "$T/st3")"
	"$R" status "$("$R" local addr "$C" 1)" "$("$R" local addr "$C" 2)" >/dev/null ||
		fail "nodes 1 and 2 unhealthy while node 3's disk is full"
	"$R" verify --wait 30 "$M1" "$M2" >"$T/v12" || { cat "$T/v12"; fail "n1 and n2 differ while node 3's disk is full"; }
	cmp "$M1/big4" "$M2/big4" || fail "n2 lost n1's write while node 3's disk was full"
	echo "   node 3: $(cat "$T/st3")"
	# Room again: restart node 3 and it catches up.
	rm -f "$DISK/mnt/filler"
	"$R" local stop "$C" 3
	start_node 3 "with room again"
	verify 90 "node 3 after its disk had room again"
	cmp "$M1/big4" "$M3/big4" || fail "node 3 misses n1's write after catching up"
fi

echo "PASS"
exit
}
