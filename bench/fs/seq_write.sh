#!/usr/bin/env bash
# seq_write.sh BUILD_DIR [ROUNDS] — sequential write through a fresh 3-node
# cluster's mounts, and the tail of small commands behind a big writer.
#
# Default: ROUNDS times, on a follower's mount then on the leader's, a
# `dd bs=1M count=64 conv=fsync` of a new file (SEQ_MIB=N: N MiB), each
# line with MiB/s, the
# load average, and the three nodes' CPU per MiB written by thread kind
# (loop, apply, persist, plug, vlog syncer, rocksdb, other: bench/fs/lib.sh's
# thread_snap, the method of cpu_per_file.sh), and the bytes the nodes
# sent each other over TCP per MiB written (wire, from ss: both ends of
# every connection between them).
# TAIL=1: instead, ROUNDS times, a loop of 4 KiB pwrite + fsync on one
# follower's mount while dd writes TAIL_MIB (default 128) MiB on the other
# follower's mount; prints the loop's latency percentiles during the dd and
# the dd's MiB/s (consensus/README-node.md, "Small operations behind a big
# write"). WRITERS=2: a second dd of TAIL_MIB MiB at once on the leader's
# mount (two writers on two mounts, the small loop on the third).
# SMALL=leader: the small loop on the leader's mount instead, the writers on
# the followers' (WRITERS=2: both followers). Each node's admission line
# (consensus/node_admit.h: proposals held, most held at once, most big
# bytes uncommitted; logged when the node stops) is printed at the end (in
# both modes), and how many of other nodes' big writes its apply wrote
# around the page cache (RAFTFS_APPLY_DIRECT: 0 never, 1 always), and
# what it elided (consensus/README-node.md, "A forwarder's own bytes":
# RAFTFS_ELIDE=0 sends every append whole);
# RAFTFS_ADMIT_KIB=0 turns admission off for a before/after in one build.
# SNAPSHOT_BYTES=N sets [raft] snapshot_bytes (the default, 256 MiB, takes
# a snapshot in the middle of the runs: its copy of the file being written
# is measured too).
# The cluster runs in a fresh directory of BENCH_DIR (default /var/tmp);
# everything started is stopped and removed on exit. Needs root (mounts).
set -euo pipefail
[ $# -ge 1 ] || { sed -n '2,20p' "$0"; exit 2; }
build=$(cd "$1" && pwd)
rounds=${2:-3}
raftfs=$build/fs/raftfs
. "$(dirname "$0")/lib.sh"
bench_workdir seqw
load() { uptime | sed 's/.*load average: //'; }
status() { cluster_status "$c"; }

if [ -n "${SNAPSHOT_BYTES:-}" ]; then
	"$raftfs" local create 3 "$c" >/dev/null
	sed -i "s/^snapshot_entries = .*/&\nsnapshot_bytes = $SNAPSHOT_BYTES/" "$c"/node*/raftfs.ini
	grep -q "^snapshot_bytes = $SNAPSHOT_BYTES" "$c"/node1/raftfs.ini ||
		{ echo "seq_write.sh: no [raft] snapshot_entries key to follow" >&2; exit 1; }
fi
"$raftfs" local up 3 "$c" >/dev/null
leader=$(leader_of "$c")
f1=$((leader % 3 + 1))
f2=$((f1 % 3 + 1))
pids=$(node_pids "$c")
ports=$(for n in 1 2 3; do "$raftfs" local addr "$c" "$n"; done | sed 's/.*://' | tr '\n' ' ')

# wire_bytes: bytes sent so far on the established TCP connections with a
# node's port at either end (each connection's two ends: both directions).
wire_bytes() {
	ss -tinH state established | awk -v ports="$ports" '
		BEGIN { n = split(ports, p, " "); for (i = 1; i <= n; i++) want[p[i]] = 1 }
		/^[0-9]/ { l = $3; r = $4; sub(/.*:/, "", l); sub(/.*:/, "", r); ok = (l in want) || (r in want); next }
		ok && match($0, /bytes_sent:[0-9]+/) { s += substr($0, RSTART + 11, RLENGTH - 11) }
		END { printf "%.0f\n", s }'
}

# Every node has applied all that was committed.
wait_settled() {
	local s
	for _ in $(seq 600); do
		s=$(status | awk '{ print $12, $14 }' | tr ' ' '\n' | sort -u | wc -l)
		[ "$s" = 1 ] && return 0
		sleep 0.1
	done
	echo "seq_write.sh: the nodes did not settle" >&2
	exit 1
}

# shellcheck disable=SC2086 # one word a pid
snap() { thread_snap $pids; }
cpu_per_mib() {
	thread_cost "$1" "$2" "$3" | awk '$1 == "total" { t = $2; next } { s = s sprintf(" %s %.2f", $1, $2) }
		END { printf "CPU ms/MiB: total %.2f%s", t, s }'
}

# dd_mib FILE MIB: writes MIB MiB with fsync; prints MiB/s.
dd_mib() {
	local t0 t1
	t0=$(date +%s.%N)
	dd if=/dev/zero of="$1" bs=1M count="$2" conv=fsync status=none
	t1=$(date +%s.%N)
	echo "$2 / ($t1 - $t0)" | bc -l | xargs printf '%.1f'
}

# Each node's admission line, and how its apply wrote other nodes' big
# writes (fs/apply.c, exec_write: around the page cache or through it),
# once the cluster is down.
admission_lines() {
	"$raftfs" local down "$c" >/dev/null 2>&1 || true
	local n a
	for n in 1 2 3; do
		a=$(grep -h 'admission:' "$c/node$n/node.log" 2>/dev/null | tail -1 | sed 's/.*admission: //' || true)
		[ -z "$a" ] || echo "n$n admission: $a"
		a=$(grep -h 'big writes of other nodes' "$c/node$n/node.log" 2>/dev/null | tail -1 | sed 's/.*big writes/big writes/' || true)
		[ -z "$a" ] || echo "n$n apply: $a"
		a=$(grep -h 'elision:' "$c/node$n/node.log" 2>/dev/null | tail -1 | sed 's/.*elision: //' || true)
		[ -z "$a" ] || echo "n$n elision: $a"
	done
}

if [ -z "${TAIL:-}" ]; then
	size=${SEQ_MIB:-64}
	for r in $(seq "$rounds"); do
		for n in "$f1" "$leader"; do
			role=follower
			[ "$n" = "$leader" ] && role=leader
			wait_settled
			snap >"$work/before"
			w0=$(wire_bytes)
			l=$(load)
			mibs=$(dd_mib "$c/n$n/seq.$r.$n" "$size")
			wait_settled
			snap >"$work/after"
			w1=$(wire_bytes)
			wire=$(echo "($w1 - $w0) / 1048576 / $size" | bc -l | xargs printf '%.2f')
			echo "round $r n$n ($role): $size MiB $mibs MiB/s [load $l] wire $wire MiB/MiB $(cpu_per_mib "$work/before" "$work/after" "$size")"
			rm -f "$c/n$n/seq.$r.$n"
		done
	done
	admission_lines
	exit 0
fi

mib=${TAIL_MIB:-128}
# s: the small loop's node; w1, w2: the writers' (w2 with WRITERS=2).
s=$f1 w1=$f2 w2=$leader
if [ "${SMALL:-follower}" = leader ]; then s=$leader w1=$f1 w2=$f2; fi
for r in $(seq "$rounds"); do
	# The small file is made (and its directory's delegation settled)
	# before the writer starts: only the writes and fsyncs are measured.
	echo x >"$c/n$s/small.$r"
	wait_settled
	l=$(load)
	bigs="$c/n$w1/big.$r" ws="n$w1"
	if [ "${WRITERS:-1}" = 2 ]; then bigs="$bigs $c/n$w2/big2.$r" ws="$ws n$w2"; fi
	python3 - "$c/n$s/small.$r" "$bigs" "$mib" <<'EOF'
import os, subprocess, sys, time
path, bigs, mib = sys.argv[1], sys.argv[2].split(), sys.argv[3]
fd = os.open(path, os.O_WRONLY)
buf = b"x" * 4096
lat = []
t0 = time.perf_counter()
dds = [subprocess.Popen(["dd", "if=/dev/zero", "of=" + big, "bs=1M", "count=" + mib,
                         "conv=fsync", "status=none"]) for big in bigs]
def running():
    live = False
    for dd in dds:
        if dd.poll() is None:
            live = True
        elif not hasattr(dd, "t1"):
            dd.t1 = time.perf_counter()
    return live
i = 0
while running():
    t = time.perf_counter()
    os.pwrite(fd, buf, (i % 256) * 4096)
    os.fsync(fd)
    lat.append((time.perf_counter() - t) * 1e3)
    i += 1
t1 = time.perf_counter()
os.close(fd)
if any(dd.returncode != 0 for dd in dds):
    sys.exit("seq_write.sh: dd failed")
rates = " ".join(f"{int(mib) / (dd.t1 - t0):.1f}" for dd in dds)
lat.sort()
if not lat:
    lat = [float("nan")]
def p(q):
    return lat[min(len(lat) - 1, int(q * len(lat)))]
print(f"small 4K write+fsync: n {len(lat)} p50 {p(.5):.2f} p90 {p(.9):.2f} "
      f"p99 {p(.99):.2f} max {lat[-1]:.2f} ms; "
      f"{len(dds)} writer(s) {len(dds) * int(mib) / (t1 - t0):.1f} MiB/s ({rates})", end="")
EOF
	echo " [load $l] (round $r, small n$s, writers $ws, leader n$leader)"
	rm -f "$c/n$w1/big.$r" "$c/n$w2/big2.$r" "$c/n$s/small.$r"
done
"$raftfs" local down "$c" >/dev/null 2>&1 || true
# RAFTFS_STAGES=1: where the small loop's node's own proposals spent their
# time (consensus/node_stages.h), from its log.
[ -z "${RAFTFS_STAGES:-}" ] || [ -z "${TAIL:-}" ] ||
	grep -h 'stages of' "$c/node$s/node.log" 2>/dev/null | sed "s/^/n$s /" || true
admission_lines
