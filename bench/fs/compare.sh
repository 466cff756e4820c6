#!/usr/bin/env bash
# compare.sh BUILD_DIR [N] — runs fs-bench, in one sitting, on a plain
# directory, on libfuse's passthrough_ll example (the cost of FUSE alone;
# compiled from the Debian package's examples, not shipped here) and on
# DIR/n1 of a fresh 3-node raftfs cluster, then prints the three results.
# Needs root (mounts). Everything it mounts or starts is undone on exit.
set -euo pipefail
build=$(cd "${1:?usage: compare.sh BUILD_DIR [N]}" && pwd)
n=${2:-500}
raftfs=$build/fs/raftfs
bench=$build/bench/fs/fs-bench
examples=/usr/share/doc/libfuse3-dev/examples

work=$(mktemp -d /var/tmp/raftfs-compare.XXXXXX)
cleanup() {
	"$raftfs" local down "$work/cluster" >/dev/null 2>&1 || true
	mountpoint -q "$work/pt" && fusermount3 -u "$work/pt"
	rm -rf "$work"
}
trap cleanup EXIT

tar cf "$work/include.tar" -C /usr/include .

echo "### plain directory (ext4)"
mkdir -p "$work/plain"
"$bench" -n "$n" -t "$work/include.tar" "$work/plain"

echo "### passthrough_ll (FUSE alone)"
gcc -O2 -o "$work/passthrough_ll" "$examples/passthrough_ll.c" $(pkg-config --cflags --libs fuse3)
mkdir -p "$work/pt" "$work/pt-src"
"$work/passthrough_ll" -o source="$work/pt-src" "$work/pt"
"$bench" -n "$n" -t "$work/include.tar" "$work/pt"
fusermount3 -u "$work/pt"

echo "### raftfs, 3 nodes on loopback, DIR/n1"
"$raftfs" local up 3 "$work/cluster" >/dev/null
"$bench" -n "$n" -t "$work/include.tar" "$work/cluster/n1"
"$raftfs" verify "$work/cluster"
