#!/bin/bash
# mount_save_read.sh RAFTFS — readers on two mounts open and read a path
# while a third mount saves it the way editors do, over and over (write a
# temp file, rename it over the path). On a local filesystem a reader gets
# the old file or the new one, never an error; here every rename orphans
# the file a reader may be opening, and the node releases orphans its mount
# holds no handle on, so an open racing with that release must either win
# (and hold the old file) or fail early enough for the kernel's one retry
# with a fresh lookup. Every cat must succeed and show one whole version.
# One block, parsed whole before it runs (tests/FLAKY.md).
{
set -eEuo pipefail
. "$(dirname "$0")/lib.sh"
trap 'echo "FAIL: line $LINENO: exit status $? of: $BASH_COMMAND" >&2' ERR

SAVES=${SAVES:-300}
up

printf 'version 0\n' >"$M1/doc.txt"
: >"$M1/.sync"
: <"$M2/.sync"
: <"$M3/.sync"
reader() {
	local m=$1 n=0 v
	while [ ! -e "$T/stop-read" ]; do
		n=$((n + 1))
		v=$(cat "$m/doc.txt" 2>&1) || { echo "$m: cat failed: $v" >>"$T/read.bad"; continue; }
		case $v in "version "[0-9]*) ;; *) echo "$m: read '$v'" >>"$T/read.bad" ;; esac
	done
	echo "$n" >"$T/reads.${m##*/}"
}
reader "$M2" &
reader "$M3" &
for i in $(seq 1 "$SAVES"); do
	printf 'version %d\n' "$i" >"$M1/.doc.txt.swp"
	mv "$M1/.doc.txt.swp" "$M1/doc.txt"
done
touch "$T/stop-read"
wait
[ ! -s "$T/read.bad" ] || fail "$(wc -l <"$T/read.bad") reads failed, e.g.: $(head -n 3 "$T/read.bad")"
# Readers that never overlapped the saves would prove nothing.
for n in n2 n3; do
	[ "$(cat "$T/reads.$n")" -ge 20 ] || fail "only $(cat "$T/reads.$n") reads on $n during $SAVES saves"
done
: <"$M3/.sync"
[ "$(cat "$M3/doc.txt")" = "version $SAVES" ] || fail "n3 shows $(cat "$M3/doc.txt") after the last save"
echo "ok: $SAVES saves on n1, $(cat "$T/reads.n2") reads on n2 and $(cat "$T/reads.n3") on n3, none failed"
verify 60 "saves"
exit 0
}
