#!/usr/bin/env python3
# hold_writer.py DIR LIST BLOB STOP [HOLD_MS] — a writer that keeps each
# file open a little while (HOLD_MS, 5 by default: well inside the 50 ms a
# file created behind is held together, fs/fs_plug.h), so that a fault of
# its node is likely to land between a file's write and its close. Before
# each close it changes the file's mode, a change of the file itself (it
# joins the file's own log entry, so it does not make the close wait): if
# that fails with EIO the node has stopped taking changes, and the close
# that follows must not succeed (a node that cannot apply must not
# acknowledge a close before the cluster has the file). One line per file
# in LIST:
#   ok NAME         close returned 0
#   err NAME WHAT   open, write or close failed
#   early NAME      close returned 0 after the write or the mode change was
#                   refused with EIO (a bug)
# It stops when STOP exists, or once a change was refused with EIO (every
# one after would be too).
import errno
import os
import sys
import time


def main():
    d, listing, blob_path, stop = sys.argv[1:5]
    hold = (int(sys.argv[5]) if len(sys.argv) > 5 else 5) / 1000.0
    with open(blob_path, "rb") as f:
        blob = f.read()
    out = open(listing, "w", buffering=1)
    k = 0
    while not os.path.exists(stop):
        k += 1
        name = "h%d" % k
        try:
            fd = os.open(os.path.join(d, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except OSError as e:
            out.write("err %s open: %s\n" % (name, os.strerror(e.errno)))
            if e.errno == errno.EIO:
                return 0
            time.sleep(hold)  # pace, not wait: no loop at full speed on errors
            continue
        wrote = refused = False
        try:
            wrote = os.write(fd, blob) == len(blob)
            if not wrote:
                out.write("err %s write: short\n" % name)
        except OSError as e:
            refused = e.errno == errno.EIO
            out.write("err %s write: %s\n" % (name, os.strerror(e.errno)))
        if not refused:
            time.sleep(hold)
            try:
                os.fchmod(fd, 0o640)
            except OSError as e:
                refused = e.errno == errno.EIO
        t = time.monotonic()
        try:
            os.close(fd)
            if refused:
                out.write("early %s\n" % name)
            elif wrote:
                out.write("ok %s\n" % name)
        except OSError as e:
            out.write("err %s close: %s (%.2f s%s)\n" % (name, os.strerror(e.errno),
                      time.monotonic() - t, ", after a refused change" if refused else ""))
        if refused:
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
