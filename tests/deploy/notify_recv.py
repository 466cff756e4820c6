#!/usr/bin/env python3
"""notify_recv.py SOCKET LOG PID: plays systemd's side of sd_notify(3) for a test.

Binds a datagram socket at the path SOCKET (a path, not an abstract name,
so a node in another network namespace reaches it), and appends every
message received to LOG as one line (the message's newlines as spaces),
flushed at once, until killed or until process PID (the test) is gone, so
a test killed outright leaves no receiver behind. Prints 'ready' on stdout
once bound.
"""
import os
import socket
import sys


def main():
    path, log, parent = sys.argv[1], sys.argv[2], int(sys.argv[3])
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(0.5)
    print("ready", flush=True)
    with open(log, "a") as out:
        while True:
            try:
                msg = s.recv(4096)
            except socket.timeout:
                try:
                    os.kill(parent, 0)
                except ProcessLookupError:
                    return
                continue
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
