# closed_files.py [--flat N] M1 M2 [M3...] — files closed on mount M1 are
# complete on the other mounts right after the close returned
# (close-to-open, README "Consistency"): bytes, size, mode and mtime. Exit
# status 1 (and a line per file) when any is not.
#   default (mount.close_behind, mount.close_mixed: M1 closes behind): a
#     file in each of 32 new directories, each checked at once, then a
#     burst of 120 in a new directory c, checked after the burst;
#   --flat N (mount.create, M1..Mk being one directory on each mount): N
#     files of up to 200 KiB in it, each checked at once.
import os
import sys

args = sys.argv[1:]
flat = 0
if args[:1] == ["--flat"]:
    flat, args = int(args[1]), args[2:]
m1, others = args[0], args[1:]
sizes = [0, 1, 100, 4096, 4097, 65535, 65536, 200000 if flat else 300000]
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


if flat:
    for i in range(flat):
        data, want = make(f"{m1}/f{i}", i)
        check(f"f{i}", data, want)
    sys.exit(1 if bad else 0)
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
