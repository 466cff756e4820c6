#!/bin/bash
# mount_ops.sh RAFTFS — shell-level scenarios on the three mounts of a local
# 3-node cluster; after each, the mounts must be identical (raftfs verify).
# The whole script is one block, parsed before any of it runs: bash reads
# a script as it goes, so an edit to this file during a run would
# otherwise make the running test execute the edited text from a stale
# offset.
{
set -euo pipefail
. "$(dirname "$0")/lib.sh"
up

# The consistency contract (README, "Consistency"): by default an open() on
# a mount is a sync point — it returns once that node applied everything
# completed anywhere before, and its kernel dropped what changed; with
# RAFTFS_MOUNT_OPTS=linearizable every lookup and stat is. So checks on
# another mount open a file there first, unless linearizable.
: >"$M1/.sync"
sync_to() { [ "${RAFTFS_MOUNT_OPTS:-}" = linearizable ] || : <"$1/.sync"; }

echo "== echo, cat, append across mounts"
echo one >"$M1/f"
sync_to "$M2"; [ "$(cat "$M2/f")" = one ] || fail "n2 does not show what n1 wrote"
echo two >>"$M3/f"
sync_to "$M1"; [ "$(cat "$M1/f")" = "$(printf 'one\ntwo')" ] || fail "n1 misses n3's append"
printf 'three\n' >>"$M2/f"
sync_to "$M3"; [ "$(wc -l <"$M3/f")" = 3 ] || fail "n3 misses n2's append"
verify 30 "echo/cat/append"

echo "== mkdir -p and rm -r of a deep tree"
deep=$M1/deep
for i in $(seq 40); do deep=$deep/d$i; done
mkdir -p "$deep"
echo leaf >"$deep/leaf"
sync_to "$M2"; [ "$(cat "${deep/$M1/$M2}/leaf")" = leaf ] || fail "deep leaf not visible on n2"
mkdir -p "$M2/wide"
for i in $(seq 30); do mkdir "$M2/wide/w$i"; echo "$i" >"$M2/wide/w$i/f"; done
verify 30 "deep tree"
rm -r "$M3/deep" "$M3/wide"
# Names removed elsewhere go once this node applied the removal (not
# linearizable by default: see README, "Consistency").
gone() { [ ! -e "$M1/deep" ] && [ ! -e "$M2/wide" ]; }
wait_for 30 "rm -r on n3 to show on n1 and n2" gone
verify 30 "rm -r"

echo "== a tree deeper than PATH_MAX, and raftfs verify on it"
# 20 names of 240 bytes: the leaf's path is about 4.8 KB, beyond PATH_MAX
# (4096), so it is made and walked relative to each directory (mkdir + cd).
d238=$(printf 'd%.0s' $(seq 238))
long_rel=long
for i in $(seq 10 29); do long_rel=$long_rel/$d238$i; done
(cd "$M1" && mkdir long && cd long && for i in $(seq 10 29); do mkdir "$d238$i" && cd "$d238$i"; done &&
	echo bottom >leaf) || fail "making a tree deeper than PATH_MAX on n1"
[ ${#long_rel} -gt 4096 ] || fail "the deep path is only ${#long_rel} bytes"
sync_to "$M2"
got=$(cd "$M2/long" && for i in $(seq 10 29); do cd "$d238$i"; done && cat leaf) || fail "walking the deep tree on n2"
[ "$got" = bottom ] || fail "deep leaf on n2: $got"
verify 30 "tree deeper than PATH_MAX"
# Forge the leaf's content on node 2's own tree (same size, mtime put back):
# both comparisons must find it at the bottom and name it in full.
forge_leaf() {
	python3 - "$C/node2/data/tree/long" "$d238" "$1" <<'PY'
import os, sys
os.chdir(sys.argv[1])
for i in range(10, 30):
    os.chdir(sys.argv[2] + str(i))
st = os.stat("leaf")
with open("leaf", "r+b") as f:
    f.write(sys.argv[3].encode())
os.utime("leaf", ns=(st.st_atime_ns, st.st_mtime_ns))
PY
}
forge_leaf BOTTOM
if "$R" verify --wait 30 --trees "$C" >"$T/v.out"; then fail "verify --trees missed a changed file deeper than PATH_MAX"; fi
grep -qxF "node1 vs node2: $long_rel/leaf: content differs at or after byte 0" "$T/v.out" ||
	fail "verify --trees on the forged deep file: $(cat "$T/v.out")"
# (The mount serves reads from node 2's tree; open drops n2's page cache.)
if "$R" verify "$C" >"$T/v.out"; then fail "verify missed a changed file deeper than PATH_MAX on n2"; fi
grep -qxF "$M1 vs $M2: $long_rel/leaf: content differs at or after byte 0" "$T/v.out" ||
	fail "verify on the forged deep file: $(cat "$T/v.out")"
forge_leaf bottom
verify 30 "deep tree repaired"
rm -r "$M3/long"
gone_long() { [ ! -e "$M1/long" ] && [ ! -e "$M2/long" ]; }
wait_for 30 "rm -r of the deep tree on n3 to show on n1 and n2" gone_long

echo "== tar x and cp -a of a real tree"
# (A smaller tree when linearizable: every lookup is a Raft round there.)
dirs="linux/usb arpa netinet"
[ "${RAFTFS_MOUNT_OPTS:-}" = linearizable ] || dirs="$dirs linux/netfilter linux/netfilter_ipv4"
tar cf "$T/inc.tar" -C /usr/include $dirs
mkdir "$M1/inc"
tar xf "$T/inc.tar" -C "$M1/inc"
for d in $dirs; do
	diff -r "/usr/include/$d" "$M3/inc/$d" >/dev/null || fail "tar x on n1: $d differs on n3"
done
cp -a "$M2/inc" "$M2/inc-copy"
verify 60 "tar x / cp -a"
diff -r "$M1/inc" "$M3/inc-copy" >/dev/null || fail "cp -a on n2: copy differs on n3"

echo "== mv and rename"
mkdir -p "$M1/a/sub" "$M1/b" "$M1/empty"
echo x >"$M1/a/file"
echo y >"$M1/a/sub/inner"
echo old >"$M1/b/target"
mv "$M2/a/file" "$M2/b/moved"
sync_to "$M3"; [ "$(cat "$M3/b/moved")" = x ] && [ ! -e "$M3/a/file" ] || fail "mv across dirs"
mv "$M3/b/moved" "$M3/b/target"
sync_to "$M1"; [ "$(cat "$M1/b/target")" = x ] || fail "rename over an existing file"
mv -T "$M1/a/sub" "$M1/empty"
sync_to "$M2"; [ "$(cat "$M2/empty/inner")" = y ] && [ ! -e "$M2/a/sub" ] || fail "rename of a non-empty dir onto an empty one"
mkdir "$M1/full" && echo z >"$M1/full/z"
if mv -T "$M2/empty" "$M2/full" 2>/dev/null; then fail "rename onto a non-empty dir succeeded"; fi
mv "$M3/a" "$M3/b/a-moved"
sync_to "$M1"; [ -d "$M1/b/a-moved" ] || fail "mv of a directory"
# A directory this mount's kernel knows, renamed through another mount,
# keeps its entries here under the new name.
mkdir "$M1/filled"
for i in 1 2 3; do echo "$i" >"$M1/filled/f$i"; done
ls "$M1/filled" >/dev/null
mv "$M2/filled" "$M2/renamed"
sync_to "$M1"; [ "$(ls "$M1/renamed" | wc -l)" = 3 ] || fail "a dir renamed on n2 looks empty on n1: $(ls -la "$M1/renamed")"
[ "$(cat "$M1/renamed/f2")" = 2 ] || fail "a dir renamed on n2: content on n1"
python3 - "$M1" <<'PY' || fail "RENAME_NOREPLACE / RENAME_EXCHANGE"
import ctypes, os, sys
m = sys.argv[1]
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, NOREPLACE, EXCHANGE = -100, 1, 2
open(m + "/x1", "w").write("1")
open(m + "/x2", "w").write("2")
def renameat2(a, b, flags):
    r = libc.renameat2(AT_FDCWD, (m + a).encode(), AT_FDCWD, (m + b).encode(), flags)
    return 0 if r == 0 else ctypes.get_errno()
assert renameat2("/x1", "/x2", NOREPLACE) == 17, "NOREPLACE over an existing name"
assert renameat2("/x1", "/x2", EXCHANGE) == 0
assert open(m + "/x1").read() == "2" and open(m + "/x2").read() == "1"
PY
verify 30 "mv/rename"

echo "== ln and ln -s"
echo linked >"$M1/orig"
ln "$M2/orig" "$M2/hard"
ln -s orig "$M3/soft"
sync_to "$M1"; [ "$(cat "$M1/hard")" = linked ] && [ "$(cat "$M1/soft")" = linked ] || fail "links"
sync_to "$M3"; [ "$(stat -c %h "$M3/orig")" = 2 ] || fail "link count on n3"
sync_to "$M1"; sync_to "$M3"; [ "$(stat -c %i "$M1/hard")" = "$(stat -c %i "$M3/orig")" ] || fail "hard link inode"
sync_to "$M2"; [ "$(readlink "$M2/soft")" = orig ] || fail "symlink target"
# The longest target Linux takes (PATH_MAX - 1 bytes) is kept whole on every
# node; a longer one the kernel refuses itself, on every mount alike.
t4095=$(printf 't%.0s' $(seq 4095))
ln -s "$t4095" "$M1/longlink"
sync_to "$M2"; [ "$(readlink "$M2/longlink")" = "$t4095" ] || fail "a 4095-byte symlink target on n2"
for m in "$M1" "$M3"; do
	if ln -s "${t4095}t" "$m/toolong" 2>"$T/ln.err"; then fail "a 4096-byte symlink target on $m"; fi
	grep -q "File name too long" "$T/ln.err" || fail "a 4096-byte symlink target on $m: $(cat "$T/ln.err")"
done
verify 30 "links"

echo "== chmod, chown, touch -d, truncate, sparse files"
echo data >"$M1/attr"
chmod 640 "$M2/attr"
chown 123:456 "$M3/attr"
touch -d '2001-02-03 04:05:06.789' "$M1/attr"
sync_to "$M2"; [ "$(stat -c '%a %u %g %Y' "$M2/attr")" = "640 123 456 981173106" ] || fail "attrs on n2: $(stat -c '%a %u %g %Y' "$M2/attr")"
truncate -s 1M "$M2/attr"
sync_to "$M3"; [ "$(stat -c %s "$M3/attr")" = 1048576 ] || fail "truncate up"
truncate -s 2 "$M3/attr"
sync_to "$M1"; [ "$(cat "$M1/attr")" = da ] || fail "truncate down"
dd if=/dev/urandom of="$T/blk" bs=64k count=1 status=none
dd if="$T/blk" of="$M1/sparse" bs=64k seek=100 conv=notrunc status=none
sync_to "$M2"; [ "$(stat -c %s "$M2/sparse")" = $((101 * 65536)) ] || fail "sparse size"
cmp -s <(dd if="$M3/sparse" bs=64k skip=100 status=none) "$T/blk" || fail "sparse tail"
cmp -s <(head -c $((100 * 65536)) "$M2/sparse") <(head -c $((100 * 65536)) /dev/zero) || fail "hole not zero"
python3 - "$M3/sparse" <<'PY' || fail "SEEK_DATA/SEEK_HOLE"
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
assert os.lseek(fd, 0, os.SEEK_DATA) >= 64 * 1024, "data found in the hole"
assert os.lseek(fd, 0, os.SEEK_HOLE) == 0
PY
verify 30 "attributes"

echo "== xattrs"
setfattr -n user.color -v blue "$M1/attr"
setfattr -n user.empty "$M2/attr"
sync_to "$M3"; [ "$(getfattr --only-values -n user.color "$M3/attr")" = blue ] || fail "xattr on n3"
setfattr -x user.empty "$M3/attr"
sync_to "$M1"; getfattr -d "$M1/attr" | grep -q user.empty && fail "removed xattr still on n1"
verify 30 "xattrs"

echo "== write through a handle while another mount renames the file"
exec 3>"$M1/moving"
echo first >&3
mv "$M2/moving" "$M2/moved"
echo second >&3
exec 3>&-
sync_to "$M3"; [ "$(cat "$M3/moved")" = "$(printf 'first\nsecond')" ] || fail "write after a rename elsewhere: $(cat "$M3/moved")"
verify 30 "handle across rename"

echo "== unlinked but open"
echo before >"$M1/gone"
exec 4<>"$M1/gone"
rm "$M1/gone"
sync_to "$M2"; [ ! -e "$M2/gone" ] || fail "unlinked name still on n2"
echo after >&4
python3 - <<'PY' || fail "read/write through an unlinked handle"
import os
os.lseek(4, 0, os.SEEK_SET)
d = os.read(4, 100)
assert d == b"after\n\n", d  # "before\n" overwritten from offset 0
os.pwrite(4, b"again", 0)
assert os.pread(4, 5, 0) == b"again"
PY
exec 4>&-
echo other >"$M2/gone2"
exec 5<"$M3/gone2"
rm "$M1/gone2"
[ "$(cat <&5)" = other ] || fail "reading an unlinked file through a handle on another mount"
exec 5<&-
verify 30 "unlinked open files"

echo "== git in the mount"
git -C "$M1" init -q repo
cp -r /work/main/tests/mount "$M1/repo/src" 2>/dev/null || cp "$0" "$M1/repo/"
git -C "$M2/repo" -c user.name=t -c user.email=t@t -c safe.directory='*' add -A
git -C "$M3/repo" -c user.name=t -c user.email=t@t -c safe.directory='*' commit -q -m test
git -C "$M1/repo" -c safe.directory='*' log --oneline | grep -q test || fail "git log on n1"
git -C "$M2/repo" -c safe.directory='*' fsck >/dev/null 2>&1 || fail "git fsck on n2"
verify 30 "git"

echo "== flock and fcntl locks among the processes of one mount"
: >"$M1/lockf"
exec 6>"$M1/lockf"
flock -x 6
if flock -n "$M1/lockf" true; then fail "a second flock on n1 was granted"; fi
python3 - "$M1/lockf" <<'PY' || fail "fcntl lock"
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
if os.fork() == 0:
    try:
        fcntl.lockf(os.open(sys.argv[1], os.O_RDWR), fcntl.LOCK_EX | fcntl.LOCK_NB)
        os._exit(1)  # granted twice
    except OSError:
        os._exit(0)
_, st = os.wait()
sys.exit(os.waitstatus_to_exitcode(st))
PY
flock -u 6
exec 6>&-
flock -n "$M1/lockf" true || fail "flock not granted after the release"

echo "== two mounts create the same name at once"
# excl PATH: O_CREAT|O_EXCL; prints the errno name on failure.
excl() {
	python3 -c '
import errno, os, sys
try:
    os.close(os.open(sys.argv[1], os.O_CREAT | os.O_EXCL | os.O_WRONLY))
except OSError as e:
    print(errno.errorcode[e.errno]); sys.exit(1)' "$1"
}
for i in $(seq 10); do
	excl "$M1/race$i" >"$T/e1" & p1=$!
	excl "$M2/race$i" >"$T/e2" & p2=$!
	r1=0 r2=0
	wait $p1 || r1=1
	wait $p2 || r2=1
	[ $((r1 + r2)) = 1 ] || fail "race $i: $r1 $r2 (want exactly one failure)"
	[ "$(cat "$T/e1" "$T/e2")" = EEXIST ] || fail "race $i: the loser got $(cat "$T/e1" "$T/e2")"
	mkdir "$M2/rd$i" 2>"$T/e1" & p1=$!
	mkdir "$M3/rd$i" 2>"$T/e2" & p2=$!
	r1=0 r2=0
	wait $p1 || r1=1
	wait $p2 || r2=1
	[ $((r1 + r2)) = 1 ] || fail "mkdir race $i: $r1 $r2"
	grep -q "File exists" "$T/e1" "$T/e2" || fail "mkdir race $i: $(cat "$T/e1" "$T/e2")"
done
# Without O_EXCL both win: the later create opens (and truncates) what the
# first made.
for i in $(seq 5); do
	echo "first writer $i" >"$M1/both$i"
	echo "one $i" >"$M1/both$i" & p1=$!
	echo "two $i" >"$M3/both$i" & p2=$!
	wait $p1 || fail "non-exclusive create $i on n1 failed"
	wait $p2 || fail "non-exclusive create $i on n3 failed"
	rm "$M2/both$i"
	echo "one $i" >"$M2/both$i" & p1=$!
	echo "two $i" >"$M3/both$i" & p2=$!
	wait $p1 || fail "racing create $i on n2 failed"
	wait $p2 || fail "racing create $i on n3 failed"
	sync_to "$M1"
	grep -Eqx "(one|two) $i" "$M1/both$i" || fail "racing creates $i left: $(cat "$M1/both$i")"
done
verify 30 "races"
echo "PASS"
exit
}
