#!/bin/bash
# fuzz_found.sh RAFTFS — short reproducers of what fsop_fuzz found, kept as
# a regression test (tests/fuzz/README.md, "Found"). Each case names the
# seed that found it.
# The whole script is one block, parsed before any of it runs (tests/FLAKY.md).
{
set -euo pipefail
. "$(dirname "$0")/../mount/lib.sh"
up
: >"$M1/.sync"
fsyncdir() { python3 -c 'import os, sys; os.fsync(os.open(sys.argv[1], os.O_RDONLY))' "$1"; }

echo "== link() on n3 of a name whose other name n1 removed (seed 22, 3 mounts)"
# n1 removes one of two names of a symlink (or file); n3, whose kernel knew
# both, links the other: was ENOENT for symlinks, because n3 told its kernel
# notify_delete for the removed name, which sets the inode's link count to 0
# (vfs_link refuses such an inode). Fixed in fs/fuse_inval.c: a name whose
# object keeps another name goes by inval_entry.
# The same when the name goes by a rename over it.
for kind in symlink file over; do
	for i in 1 2 3; do
		d=$M1/$kind$i
		mkdir "$d"
		if [ $kind = file ]; then echo x >"$d/f1"; else ln -s a "$d/f1"; fi
		ln -P "$d/f1" "$d/f2"
		echo y >"$d/g"
		fsyncdir "$d"
		: <"$M3/.sync"
		stat "$M3/$kind$i/f1" "$M3/$kind$i/f2" >/dev/null # n3's kernel holds both names
		if [ $kind = over ]; then mv "$d/g" "$d/f1"; else rm "$d/f1"; fi
		fsyncdir "$d"
		: <"$M3/.sync"
		ln -P "$M3/$kind$i/f2" "$M3/$kind$i/f3" ||
			fail "$kind $i: link on n3 after n1 removed the other name"
	done
done
verify 30 "links after removals elsewhere"

# Found 2 and 5 need write-behind (the default): commands answered before
# they apply, in directories this mount made (delegated to it). Each case
# runs on n1 and n2 (a follower and the leader, in either order), in one
# process so that the next call comes while the last commands are pending.
behind_attrs() {
	python3 - "$1" <<'PY'
import os, sys
w, bad = sys.argv[1], []
os.umask(0o022)
for i in range(40):
    r = f"{w}/{i}"
    os.mkdir(r)
    # Found 2 (seeds 11-14 with -W): a directory's link count while
    # mkdirs/rmdirs in it pend was the applied count plus all their
    # deltas, reset only when the last completed: once one of them
    # applied it was counted twice (3 after mkdir+mkdir+rmdir, 2-5 of 20).
    os.mkdir(f"{r}/e")
    for s in "fgh":
        os.mkdir(f"{r}/e/{s}")
    if os.stat(f"{r}/e").st_nlink != 5:
        bad.append(f"{r}/e: nlink {os.stat(f'{r}/e').st_nlink} after 3 mkdirs, want 5")
    os.mkdir(f"{r}/y"); os.mkdir(f"{r}/y/c"); os.rmdir(f"{r}/y/c")
    if os.stat(f"{r}/y").st_nlink != 2:
        bad.append(f"{r}/y: nlink {os.stat(f'{r}/y').st_nlink} after mkdir+rmdir, want 2")
    # Found 5 (seeds 1105, 1122-1124): a lookup answered the applied
    # attributes without this mount's pending unlink of another name, and
    # the kernel cached them (the O_EXCL open looks b up): nlink 2, 20/20.
    b = f"{r}/b"
    fd = os.open(b, os.O_CREAT | os.O_RDWR, 0o644)
    os.write(fd, b"x" * 100)
    os.link(b, f"{r}/f")
    os.unlink(f"{r}/f")
    try:
        os.close(os.open(b, os.O_CREAT | os.O_EXCL))
        bad.append(f"{b}: O_EXCL open of an existing file succeeded")
    except FileExistsError:
        pass
    if os.fstat(fd).st_nlink != 1:
        bad.append(f"{b}: fstat nlink {os.fstat(fd).st_nlink} after link+unlink, want 1")
    os.close(fd)
    # Found 5 (seed 1120): the same for a chmod answered behind of a file
    # whose creation is pending: the old mode (10 of 20).
    c = f"{r}/c"
    fd = os.open(c, os.O_CREAT | os.O_RDWR, 0o612)
    os.chmod(c, 0o674)
    try:
        os.close(os.open(c, os.O_CREAT | os.O_EXCL))
        bad.append(f"{c}: O_EXCL open of an existing file succeeded")
    except FileExistsError:
        pass
    if os.fstat(fd).st_mode & 0o7777 != 0o674:
        bad.append(f"{c}: fstat mode {os.fstat(fd).st_mode & 0o7777:o} after chmod 674")
    os.close(fd)
    # The same through readdirplus (seeds 1101-1106 once -W was gone): a
    # listing handed the kernel the applied attributes of entries with
    # pending changes (the mode before a chmod, 8 of 20; a directory's
    # link count before a mkdir inside it, most seeds).
    g = f"{r}/g"
    fd = os.open(g, os.O_CREAT | os.O_RDWR, 0o612)
    os.chmod(g, 0o674)
    os.mkdir(f"{r}/e/i")
    os.listdir(r)
    if os.fstat(fd).st_mode & 0o7777 != 0o674:
        bad.append(f"{g}: fstat mode {os.fstat(fd).st_mode & 0o7777:o} after chmod 674, listing")
    if os.stat(f"{r}/e").st_nlink != 6:
        bad.append(f"{r}/e: nlink {os.stat(f'{r}/e').st_nlink} after a 4th mkdir, listing, want 6")
    os.close(fd)
if bad:
    print(f"{len(bad)} wrong answers in 40 tries, the first ones:", *bad[:10], sep="\n")
sys.exit(1 if bad else 0)
PY
}
for n in 1 2; do
	echo "== write-behind attributes on n$n (found 2 and 5)"
	mkdir "$C/n$n/wb$n"
	behind_attrs "$C/n$n/wb$n" || fail "attributes with write-behind pending on n$n"
done
verify 30 "after the write-behind attribute cases"
echo "PASS"
exit
}
