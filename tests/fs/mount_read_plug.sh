#!/bin/bash
# mount_read_plug.sh RAFTFS — reads of a file with no write in flight
# leave the plug's batches whole: 200 mkdirs answered behind, each followed
# by an lseek(SEEK_DATA) and a pread of another file (the page cache
# dropped, so both reach the mount), take well under one log entry each,
# through the leader's mount and a follower's. What it guards: read, lseek
# and copy_file_range wait for the mount's writes of their file
# (fuse_write_wait), which started everything the node's plug held even
# for a file with nothing in flight, so each mkdir went out as an entry of
# its own (200). Then a read of a file whose writes are still in flight
# sees them (read-your-writes), and the trees agree.
# One block, parsed before any of it runs (tests/FLAKY.md).
{
set -euo pipefail
# As mount.batch: directories stay held and a held command waits up to
# 200 ms for company, so only a flush would split the burst.
. "$(dirname "$0")/plug_lib.sh" # RAFTFS_PLUG_US, commit, node_of, has_role
up

N=200
# N / 8 batches plus the linger's and limit's cuts; the bug is N.
MAX=$((N / 2))

for role in leader follower; do
	wait_for 60 "a $role in local status" has_role $role
	k=$(node_of $role)
	[ -n "$k" ] || fail "no $role in local status"
	M=$C/n$k D=$C/n$k/r$k
	echo "== node $k ($role)"
	mkdir "$D"
	echo "the file read between the mkdirs" >"$D/data"
	sync "$D/data" # no write of it in flight
	c0=$(commit)
	python3 -c "import os, sys
d, n = sys.argv[1], int(sys.argv[2])
want = b'the file read between the mkdirs\n'
fd = os.open(d + '/data', os.O_RDONLY)
for i in range(1, n + 1):
    os.mkdir(f'{d}/d{i}')
    if os.lseek(fd, 0, os.SEEK_DATA) != 0:
        sys.exit(f'lseek SEEK_DATA of {d}/data after mkdir {i}')
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    got = os.pread(fd, 100, 0)
    if got != want:
        sys.exit(f'read {got!r} from {d}/data after mkdir {i}')
os.close(fd)
fd = os.open(d, os.O_RDONLY)
os.fsync(fd)
os.close(fd)" "$D" "$N" || fail "mkdirs and reads through $M"
	c1=$(commit)
	echo "  mkdir + lseek + read: $((c1 - c0)) entries for $N"
	[ $((c1 - c0)) -le $MAX ] ||
		fail "$N mkdirs with reads between through $M took $((c1 - c0)) entries (at most $MAX)"
	# Read-your-writes still: a write still in flight is read back.
	python3 -c "import os, sys
p = sys.argv[1] + '/rw'
w = os.open(p, os.O_CREAT | os.O_WRONLY, 0o644)
r = os.open(p, os.O_RDONLY)
for i in range(50):
    b = b'%04d' % i
    os.pwrite(w, b, 4 * i)
    os.posix_fadvise(r, 0, 0, os.POSIX_FADV_DONTNEED)
    if os.pread(r, 4, 4 * i) != b:
        sys.exit(f'write {i} of {p} not read back')
os.close(w)
os.close(r)" "$D" || fail "read-your-writes through $M"
	[ -d "$D/d1" ] && [ -d "$D/d$N" ] || fail "$D/d1 or d$N after the mkdirs"
done
verify 60 "after the mkdirs and reads"
echo PASS
exit 0
}
