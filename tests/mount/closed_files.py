# closed_files.py M1 M2 [M3...] — files closed on mount M1 are complete on
# the other mounts right after the close returned (close-to-open, README
# "Consistency"): bytes, size, mode and mtime. Used by mount.close_behind
# and mount.close_mixed, where M1's node closes behind. Exit status 1 (and
# a line per file) when any is not.
import os
import sys

m1, others = sys.argv[1], sys.argv[2:]
sizes = [0, 1, 100, 4096, 4097, 65535, 65536, 300000]
bad = 0


def make(p, i):
    size = sizes[i % len(sizes)]
    data = bytes((i * 7 + k) % 251 for k in range(size))
    fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    for off in range(0, size, 4096):  # as cp and tar write: in pieces
        os.write(fd, data[off:off + 4096])
    if i % 3 == 1:  # tar: mode and times set through the handle before close
        os.fchmod(fd, 0o640)
        os.utime(fd, ns=(1_000_000_000 * i, 1_000_000_000 * i + 5))
    os.close(fd)
    return data, os.stat(p)


def check(rel, data, want):
    global bad
    for o in others:
        q = f"{o}/{rel}"
        with open(q, "rb") as f:
            got = f.read()
        st = os.stat(q)
        if got != data or (st.st_mode, st.st_mtime_ns, st.st_size) != \
                (want.st_mode, want.st_mtime_ns, want.st_size):
            print(f"{q}: {len(got)} of {len(data)} bytes, same data {got == data}, "
                  f"mode {st.st_mode:o}/{want.st_mode:o}, "
                  f"mtime {st.st_mtime_ns}/{want.st_mtime_ns}")
            bad += 1


# Opened elsewhere right after the close: a directory each, so that every
# close is one M1 answers early (the first look from another mount
# recalls the directory: M1's later closes there wait).
for i in range(32):
    os.mkdir(f"{m1}/d{i}")
    data, want = make(f"{m1}/d{i}/f", i)
    check(f"d{i}/f", data, want)
# A burst in one directory, then read elsewhere. Made here, right before:
# a holder returns a directory it has not used for 500 ms.
os.mkdir(f"{m1}/c")
made = [make(f"{m1}/c/f{i}", i) for i in range(120)]
for i, (data, want) in enumerate(made):
    check(f"c/f{i}", data, want)
sys.exit(1 if bad else 0)
