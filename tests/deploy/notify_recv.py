#!/usr/bin/env python3
"""notify_recv.py SOCKET LOG: plays systemd's side of sd_notify(3) for a test.

Binds a datagram socket at the path SOCKET (a path, not an abstract name,
so a node in another network namespace reaches it), and appends every
message received to LOG as one line (the message's newlines as spaces),
flushed at once, until killed. Prints 'ready' on stdout once bound.
"""
import os
import socket
import sys


def main():
    path, log = sys.argv[1], sys.argv[2]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    print("ready", flush=True)
    with open(log, "a") as out:
        while True:
            msg = s.recv(4096)
            out.write(msg.decode(errors="replace").replace("\n", " ") + "\n")
            out.flush()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
    finally:
        if len(sys.argv) > 1 and os.path.exists(sys.argv[1]):
            os.unlink(sys.argv[1])
