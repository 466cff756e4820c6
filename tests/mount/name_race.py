# name_race.py DIR TAG SYNC TAGS OWN SHARED [rename] — one racer of several
# mounts in one directory (mount.grant, mount.grant_race): OWN files
# TAG0..TAG<OWN-1> of its own, then O_EXCL creates of s0..s<SHARED-1>
# (names every racer tries), then (with "rename") renames of its even own
# files to .r, then unlinks of the shared names. Each phase starts when
# every racer in TAGS reached it (marker files in SYNC, 120 s at most);
# every errno but the expected one (EEXIST for a create, ENOENT for an
# unlink) fails the racer. Writes the names it created and unlinked to
# SYNC/won.TAG and SYNC/gone.TAG: across racers each name must be in
# exactly one of each.
import errno
import os
import sys
import time

d, tag, t, tags, own, shared = sys.argv[1:7]
own, shared = int(own), int(shared)
rename = sys.argv[7:] == ["rename"]
won, gone = [], []


def step(name):
    open(f"{t}/{name}.{tag}", "w").close()
    end = time.monotonic() + 120
    while not all(os.path.exists(f"{t}/{name}.{x}") for x in tags):
        if time.monotonic() > end:
            sys.exit(f"{tag}: the others did not reach {name}")
        time.sleep(0.01)


step("start")
for i in range(own):
    with open(f"{d}/{tag}{i}", "w") as f:
        f.write(f"{tag} {i}\n")
step("created")
for i in range(shared):
    try:
        fd = os.open(f"{d}/s{i}", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        os.write(fd, tag.encode())
        os.close(fd)
        won.append(f"s{i}")
    except OSError as e:
        if e.errno != errno.EEXIST:
            sys.exit(f"{tag}: create s{i}: {e}")
step("raced")
if rename:
    for i in range(0, own, 2):
        os.rename(f"{d}/{tag}{i}", f"{d}/{tag}{i}.r")
for i in range(shared):
    try:
        os.unlink(f"{d}/s{i}")
        gone.append(f"s{i}")
    except OSError as e:
        if e.errno != errno.ENOENT:
            sys.exit(f"{tag}: unlink s{i}: {e}")
with open(f"{t}/won.{tag}", "w") as f:
    f.write("\n".join(won) + "\n")
with open(f"{t}/gone.{tag}", "w") as f:
    f.write("\n".join(gone) + "\n")
