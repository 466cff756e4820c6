#!/usr/bin/env bash
# rotate.sh NAME=BUILD_DIR[,VAR=VALUE...] ... — before/after comparisons of
# small-file creates on a noisy machine: one fresh 3-node cluster per
# variant, all running at once, and open(O_CREAT|O_EXCL) + write 4 KiB +
# close in bursts of BURST files (default 100) given to each variant in
# turn, ROUNDS times (default 10), first on each cluster's follower mount,
# then on its leader's; then tar x of TARBALL (default /usr/include/linux)
# into each follower mount in turn, TROUNDS times (default 3). The load's
# swings hit every variant alike, which whole benchmark runs one after the
# other do not (bench/fs/README.md, "Small files"). Prints per variant the
# median burst rate and the p50/p90 of every file. Example:
#   rotate.sh old=build/old-release new=build/release nohold=build/release,RAFTFS_PLUG_US=0
# Needs root (mounts); everything it starts is stopped on exit.
set -euo pipefail
[ $# -ge 1 ] || { sed -n '2,13p' "$0"; exit 2; }
rounds=${ROUNDS:-10} burst=${BURST:-100} trounds=${TROUNDS:-3}
work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/raftfs-rotate.XXXXXX")
names=()
declare -A bin envs foll lead
cleanup() {
	for n in "${names[@]}"; do
		"${bin[$n]}" local down "$work/$n" >/dev/null 2>&1 || true
	done
	rm -rf "$work"
}
trap cleanup EXIT
for spec in "$@"; do
	n=${spec%%=*} rest=${spec#*=}
	names+=("$n")
	bin[$n]=$(cd "${rest%%,*}" && pwd)/fs/raftfs
	envs[$n]=$([ "$rest" = "${rest#*,}" ] || echo "${rest#*,}" | tr , ' ')
	# shellcheck disable=SC2086
	env ${envs[$n]} "${bin[$n]}" local up 3 "$work/$n" >/dev/null
done
for n in "${names[@]}"; do
	l=
	for _ in $(seq 100); do
		l=$({ "${bin[$n]}" local status "$work/$n" 2>/dev/null || true; } |
			awk '$6 == "leader" { sub(":", "", $2); print $2; exit }')
		[ -n "$l" ] && break
		sleep 0.1
	done
	[ -n "$l" ] || { echo "rotate.sh: no leader in $work/$n" >&2; exit 1; }
	lead[$n]=$l foll[$n]=$((l % 3 + 1))
	mkdir "$work/$n/n${foll[$n]}/f" "$work/$n/n$l/l"
done
bursts() { # WHICH(foll|lead)
	python3 - "$rounds" "$burst" "$@" <<'PY'
import os, statistics, sys, time
rounds, burst = int(sys.argv[1]), int(sys.argv[2])
targets = [a.split("=", 1) for a in sys.argv[3:]]
buf = b"x" * 4096
rates = {n: [] for n, _ in targets}
lat = {n: [] for n, _ in targets}
for r in range(rounds):
    for n, d in (targets if r % 2 == 0 else targets[::-1]):
        os.mkdir(f"{d}/r{r}")
        t0 = time.perf_counter()
        for i in range(burst):
            a = time.perf_counter()
            fd = os.open(f"{d}/r{r}/f{i}", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            os.write(fd, buf)
            os.close(fd)
            lat[n].append(time.perf_counter() - a)
        rates[n].append(burst / (time.perf_counter() - t0))
for n, _ in targets:
    v = sorted(lat[n])
    print(f"{n:10s} median of {rounds} bursts {statistics.median(rates[n]):6.0f} files/s "
          f"(min {min(rates[n]):.0f}, max {max(rates[n]):.0f})  "
          f"p50 {v[len(v) // 2] * 1e3:.2f} ms  p90 {v[int(len(v) * .9)] * 1e3:.2f} ms")
PY
}
echo "### creates, follower mounts [$(uptime | sed 's/.*load/load/')]"
bursts $(for n in "${names[@]}"; do echo "$n=$work/$n/n${foll[$n]}/f"; done)
echo "### creates, leader mounts [$(uptime | sed 's/.*load/load/')]"
bursts $(for n in "${names[@]}"; do echo "$n=$work/$n/n${lead[$n]}/l"; done)
tar cf "$work/t.tar" -C "$(dirname "${TARBALL_DIR:-/usr/include/linux}")" \
	"$(basename "${TARBALL_DIR:-/usr/include/linux}")"
echo "### tar x of ${TARBALL_DIR:-/usr/include/linux}, follower mounts"
for r in $(seq "$trounds"); do
	line="round $r:"
	for n in "${names[@]}"; do
		d=$work/$n/n${foll[$n]}/t$r
		mkdir "$d"
		s=$(date +%s.%N)
		tar xf "$work/t.tar" -C "$d"
		line="$line $n $(echo "$(date +%s.%N) - $s" | bc | cut -c1-5) s"
	done
	echo "$line  [$(uptime | sed 's/.*load/load/')]"
done
for n in "${names[@]}"; do
	"${bin[$n]}" verify --wait 30 "$work/$n" >/dev/null || { echo "$n: mounts differ" >&2; exit 1; }
done
echo "verify: identical"
