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
echo "PASS"
exit
}
