#!/bin/bash
# mount_close_mixed.sh RAFTFS — a cluster whose nodes close differently
# (n1 and n3 `close = behind`, n2 `close = commit`). The holder's close
# mode travels with its delegation (Deleg.close_behind,
# Mkdir.grant_close_behind), so
#  1. a file n1 closed behind is complete (bytes, size, mode, mtime) when
#     n2 — which closes synchronously itself — or n3 opens it right after
#     the close, and n2 lists every file n1 closed (n2 recalls n1's
#     directories before it looks, as n3 does);
#  2. n1 really answered most of those closes early;
#  3. a directory n2 (commit) holds needs no fence: n1 and n3 list it and
#     read its files, and n2 still holds it afterwards (nobody recalled it);
#  4. the three mounts and the nodes' trees agree.
# One block, parsed before any of it runs (tests/FLAKY.md).
{
set -euo pipefail
export RAFTFS_CLOSE=behind
export RAFTFS_STAGES=1 # the nodes log how many closes they answered early
# Holders keep their directories until recalled (no return when idle): the
# test reads who holds a directory after other mounts listed it.
export RAFTFS_DELEG_IDLE_MS=0
. "$(dirname "$0")/lib.sh"
up
# Node 2 closes synchronously: its configuration file says so (the
# environment only seeds the files `local up` writes).
"$R" local stop "$C" 2 >/dev/null
sed -i 's/^close = behind$/close = commit/' "$C/node2/raftfs.ini"
grep -q "^close = commit$" "$C/node2/raftfs.ini" || fail "node 2's configuration: no close key"
"$R" local start "$C" 2 >/dev/null || fail "restart of node 2 (commit)"

echo "== 1. closed behind on n1, opened on n2 (commit) and n3 (behind) at once"
mkdir "$M1/c"
python3 - "$M1" "$M2" "$M3" <<'PY' || fail "a file closed behind was not complete on another mount"
import os, sys
m1, others = sys.argv[1], sys.argv[2:]
sizes = [0, 1, 100, 4096, 4097, 65535, 65536, 300000]
bad = 0

def make(p, i):
    size = sizes[i % len(sizes)]
    data = bytes((i * 7 + k) % 251 for k in range(size))
    fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    for off in range(0, size, 4096):  # as cp and tar write: in pieces
        os.write(fd, data[off:off + 4096])
    if i % 3 == 1:  # tar: mode and times set through the handle
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

# A directory each: every close is one n1 answers early (a look from
# another mount recalls the directory, and n1's later closes there wait).
for i in range(32):
    os.mkdir(f"{m1}/d{i}")
    data, want = make(f"{m1}/d{i}/f", i)
    check(f"d{i}/f", data, want)
made = [make(f"{m1}/c/f{i}", i) for i in range(120)]
for i, (data, want) in enumerate(made):
    check(f"c/f{i}", data, want)
sys.exit(1 if bad else 0)
PY
# Listings on the commit-mode mount right after the closes show every file,
# also in a directory n1 was granted on demand (not made by it).
for r in 1 2 3; do
	mkdir "$M1/l$r"
	for i in $(seq 1 40); do echo "$i" >"$M1/l$r/x$i"; done
	n=$(ls "$M2/l$r" | wc -l)
	[ "$n" = 40 ] || fail "n2 (commit) lists $n of the 40 files n1 closed (round $r)"
done

echo "== 2. n1 answered the closes early"
"$R" local stop "$C" 1 >/dev/null
grep -h "flushes of files created behind" "$C/node1/node.log" | tail -1 >"$T/early" || true
cat "$T/early"
early=$(awk '{for (i = 1; i < NF; i++) if ($i == "answered") print $(i + 1)}' "$T/early")
[ "${early:-0}" -ge 96 ] || fail "node 1 closed few files behind (${early:-none})"
"$R" local start "$C" 1 >/dev/null || fail "restart of node 1"

echo "== 3. a directory the commit-mode node holds is not fenced"
mkdir "$M2/s"
for i in $(seq 1 30); do echo "s$i" >"$M2/s/y$i"; done
# A directory's delegation in node K's tree, in hex (read there directly, not
# through a mount, which could recall it).
xdeleg() { getfattr -e hex -n trusted.raftfs.deleg "$C/node$1/data/tree/$2" 2>/dev/null |
	sed -n 's/^trusted.raftfs.deleg=//p'; }
deleg() { xdeleg "$1" s; }
# 0x02000000 (holder 2, native order) then the epoch; no flags byte.
h=$(deleg 2)
case "$h" in 0x02000000*) ;; *) fail "n2 does not hold s after making it ($h)" ;; esac
[ ${#h} = 26 ] || fail "n2's delegation of s says it closes behind ($h)"
for m in "$M1" "$M3"; do
	n=$(ls "$m/s" | wc -l)
	[ "$n" = 30 ] || fail "$m lists $n of the 30 files n2 made"
	[ "$(cat "$m/s/y17")" = s17 ] || fail "$m/s/y17"
done
for k in 1 2 3; do
	[ "$(deleg "$k")" = "$h" ] || fail "node $k: delegation of s changed after the listings ($(deleg "$k") vs $h)"
done
# n1's delegations carry the flag (a 13th byte, 01), replicated: node 2
# has it in its tree too.
mkdir "$M1/q"
echo q >"$M1/q/a"
qdeleg() { [ "$(xdeleg "$1" q)" = "$2" ]; }
wait_for 20 "n1's delegation of q on node 2" qdeleg 2 0x01000000010000000000000001
qdeleg 1 0x01000000010000000000000001 || fail "node 1's delegation of q has no close-behind flag"

echo "== 4. verify"
verify 60 "mixed close modes"
echo "PASS"
exit 0
}
