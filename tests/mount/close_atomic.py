#!/usr/bin/env python3
"""close_atomic.py — the writer and the checker of mount_close_atomic.sh.

write DIR SEED PID KILL_AFTER LOG: creates, writes and closes files in DIR
(several sizes, in writes of several sizes, some existing files overwritten
with O_TRUNC), never fsyncing; each file's content names itself: a first
line "NAME VERSION LENGTH CRC32" and then LENGTH - len(first line) bytes
whose CRC32 it gives. LOG gets "open NAME VERSION" before a file's open and
"closed NAME VERSION" once close() returned. Once KILL_AFTER files were
closed (0: never), right after the next close of a file bigger than the
mount's plug holds (256 KiB: its commands cannot all wait for its close),
it sends SIGKILL to PID, the node under DIR: the moment a close answered
before its commit is least likely to have reached the other nodes. Stops
at the first error (the node is gone).

straddle PATH LOG SIGDIR: one file whose commands straddle a cut: creates
PATH and writes its first part, touches SIGDIR/paused, waits for SIGDIR/go
(the test cut the node off meanwhile), writes the rest and closes; LOG as
for write, "failed NAME VERSION ERROR" when close failed.

check DIR LOG: every file in DIR (a survivor's view) must be a whole version
of itself, but for the one file that was open and not closed when the node
died (no promise there). A closed file may be absent, or show an older
version (close = behind: its commands may not have reached the others),
never be torn. Prints what is wrong and exits 1, or a summary and 0.
"""
import os
import random
import signal
import sys
import time
import zlib

SIZES = [60, 100, 3000, 4096, 20000, 65536, 70000, 200000, 300000, 700000]
CHUNKS = [1000, 4096, 32768, 131072]
BIG = 256 << 10


def content(name, ver, size, rnd):
    body = rnd.randbytes(max(size, 60))
    head = b""
    # The first line names the total length, which includes the line itself.
    for _ in range(3):
        total = len(head) + len(body)
        head = b"%s %d %d %08x\n" % (name.encode(), ver, total, zlib.crc32(body))
    assert len(head) + len(body) == total
    return head + body


def parse(data):
    nl = data.find(b"\n")
    if nl < 0:
        return None
    try:
        name, ver, total, crc = data[:nl].decode().split()
        ver, total, crc = int(ver), int(total), int(crc, 16)
    except ValueError:
        return None
    body = data[nl + 1:]
    if len(data) != total or zlib.crc32(body) != crc:
        return None
    return name, ver


def alive(pid):
    """Whether pid runs (a zombie does not: nobody may reap the nodes)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def write(d, seed, pid, kill_after, log):
    rnd = random.Random(seed)
    names = []
    closes = 0
    with open(log, "a", buffering=1) as lg:
        n = 0
        while True:
            n += 1
            over = names and rnd.random() < 0.2
            name = rnd.choice(names) if over else "f%05d" % n
            data = content(name, n, rnd.choice(SIZES), rnd)
            chunk = rnd.choice(CHUNKS)
            path = os.path.join(d, name)
            flags = os.O_WRONLY | (os.O_TRUNC if over else os.O_CREAT | os.O_EXCL)
            lg.write("open %s %d\n" % (name, n))
            try:
                fd = os.open(path, flags, 0o644)
                try:
                    for off in range(0, len(data), chunk):
                        os.write(fd, data[off:off + chunk])
                finally:
                    os.close(fd)
            except OSError as e:
                # The node is gone (a SIGKILLed node's connection aborts
                # while it exits: allow it 10 s to be gone), or still runs:
                # then an error of close = behind itself (EIO, ETIMEDOUT),
                # what this test exists to see.
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    if not alive(pid):
                        return 0
                    time.sleep(0.05)
                lg.write("error %s %d: %s\n" % (name, n, e))
                print("write %s: %s while node %d lives" % (name, e, pid))
                return 1
            lg.write("closed %s %d\n" % (name, n))
            closes += 1
            if not over:
                names.append(name)
            if kill_after and closes >= kill_after and len(data) > BIG:
                os.kill(pid, signal.SIGKILL)
                lg.write("killed\n")
                return 0


def straddle(path, log, sig):
    name = os.path.basename(path)
    data = content(name, 1, 9000, random.Random(1))
    with open(log, "a", buffering=1) as lg:
        lg.write("open %s 1\n" % name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, data[:3000])
        open(os.path.join(sig, "paused"), "w").close()
        deadline = time.monotonic() + 120
        while not os.path.exists(os.path.join(sig, "go")):
            if time.monotonic() > deadline:
                return 1
            time.sleep(0.01)
        try:
            os.write(fd, data[3000:])
            os.close(fd)
        except OSError as e:
            lg.write("failed %s 1 %s\n" % (name, e.strerror))
            return 0
        lg.write("closed %s 1\n" % name)
    return 0


def check(d, log):
    opened, closed = {}, {}
    current = None
    with open(log) as lg:
        for line in lg:
            w = line.split()
            if w[0] == "open":
                opened.setdefault(w[1], set()).add(int(w[2]))
                current = (w[1], int(w[2]))
            elif w[0] == "closed":
                closed.setdefault(w[1], set()).add(int(w[2]))
                current = None
    bad = whole = 0
    for name in sorted(os.listdir(d)):
        with open(os.path.join(d, name), "rb") as f:
            data = f.read()
        got = parse(data)
        if got and got[0] == name and got[1] in opened.get(name, ()):
            whole += 1
            continue
        if current and current[0] == name:
            continue  # being written when the node died: no promise
        bad += 1
        print("TORN: %s (%d bytes, closed versions %s)" %
              (name, len(data), sorted(closed.get(name, ()))))
    print("%d files whole, %d closed before the kill, %d torn" %
          (whole, sum(len(v) for v in closed.values()), bad))
    return 1 if bad else 0


if __name__ == "__main__":
    if sys.argv[1] == "straddle":
        sys.exit(straddle(sys.argv[2], sys.argv[3], sys.argv[4]))
    if sys.argv[1] == "write":
        sys.exit(write(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]),
                       int(sys.argv[5]), sys.argv[6]))
    sys.exit(check(sys.argv[2], sys.argv[3]))
