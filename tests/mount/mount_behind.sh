#!/bin/bash
# mount_behind.sh RAFTFS — write-behind metadata under directory delegations
# ([fs] write_behind = true): tar x and cp -a through the holder of the new
# trees; another mount creating, removing and renaming in a directory the
# first holds while the holder is busy (recall and return, both orders); the
# O_EXCL race across mounts; kill -9 of the holder mid-copy (its directories
# are revoked after the bound and the survivors go on; what its processes
# got acknowledged at a close is there; it converges after a restart); no
# quorum: write(2) and mkdir(2) fail themselves.
# One block, parsed before any of it runs (tests/FLAKY.md).
{
set -euo pipefail
export RAFTFS_WRITE_BEHIND=true
. "$(dirname "$0")/lib.sh"
up
grep -q "write_behind = true" "$C/node1/raftfs.ini" || fail "write_behind not configured"

echo "== tar x and cp -a through the holder"
tar cf "$T/inc.tar" -C /usr/include linux
mkdir "$M1/t"
tar xf "$T/inc.tar" -C "$M1/t"
cp -a "$M1/t/linux" "$M1/t/copy"
diff -r /usr/include/linux "$M1/t/linux" >/dev/null || fail "tar x through the holder differs"
diff -r /usr/include/linux "$M1/t/copy" >/dev/null || fail "cp -a through the holder differs"
# (A listing on another mount is no sync point: only open and lookup are.)
verify 60 "after tar x and cp -a"
diff -r /usr/include/linux "$M2/t/copy" >/dev/null || fail "cp -a seen on another mount differs"
grep -h "write-behind" "$C"/node*/node.log && fail "a write-behind command failed"

echo "== another mount changes a directory the holder is filling"
mkdir "$M1/r"
busy() { # holder: files through dd (it checks close), until told to stop
	local k=0
	while [ ! -e "$T/stop" ]; do
		k=$((k + 1))
		echo "h $k" | dd of="$M1/r/h$k" status=none || exit 1
	done
	echo $k >"$T/busy.count"
}
busy &
BUSY=$!
wait_for 30 "the holder started" test -e "$M1/r/h20"
for i in 1 2 3 4 5; do # the other mount first, then the holder again, in turns
	echo "o $i" >"$M2/r/o$i" || fail "create through the other mount"
	mv "$M2/r/o$i" "$M2/r/p$i" || fail "rename through the other mount"
	mkdir "$M3/r/d$i" || fail "mkdir through a third mount"
	rm "$M2/r/h$i" || fail "unlink of the holder's file through the other mount"
	test -e "$M1/r/p$i" || fail "the other mount's rename not seen by the holder"
	echo "again $i" | dd of="$M1/r/q$i" status=none || fail "the holder again"
done
touch "$T/stop"
wait $BUSY || fail "the busy holder failed"
n=$(cat "$T/busy.count")
for i in 1 2 3 4 5; do
	for m in "$M1" "$M2" "$M3"; do
		[ "$(cat "$m/r/p$i")" = "o $i" ] || fail "$m/r/p$i"
		[ "$(cat "$m/r/q$i")" = "again $i" ] || fail "$m/r/q$i"
		[ -d "$m/r/d$i" ] && [ ! -e "$m/r/h$i" ] && [ ! -e "$m/r/o$i" ] || fail "$m/r entries $i"
	done
done
[ "$(cat "$M3/r/h$n")" = "h $n" ] || fail "the holder's last file"
verify 60 "after the recalls"

echo "== O_EXCL race across mounts: exactly one winner per name"
mkdir "$M1/x"
excl() { # MOUNT TAG: tries to create x/e1..e40 exclusively, logs the wins
	set +e
	set -C
	for i in $(seq 1 40); do
		{ echo "$2" >"$1/x/e$i"; } 2>/dev/null && echo "e$i" >>"$T/won.$2"
	done
	return 0
}
: >"$T/won.a"
: >"$T/won.b"
excl "$M1" a &
excl "$M2" b &
wait
[ "$(cat "$T/won.a" "$T/won.b" | sort | uniq -d | wc -l)" = 0 ] || fail "a name won twice"
[ "$(cat "$T/won.a" "$T/won.b" | wc -l)" = 40 ] || fail "not every name won once"
for i in $(seq 1 40); do
	w=$(grep -lx "e$i" "$T/won.a" "$T/won.b")
	[ "$(cat "$M3/x/e$i")" = "${w##*.}" ] || fail "x/e$i holds the loser's data"
done
verify 60 "after the O_EXCL race"

echo "== kill -9 of the holder mid-copy: revoked, the survivors go on, it converges"
# Every file whose close succeeded survives: a promise of close = commit (the
# holder's node is switched to it; mount.close_behind checks what close =
# behind promises after a crash).
node_conf 1 close commit
mkdir "$M1/k"
copier() { # acknowledged = its close succeeded
	local k=0
	while :; do
		k=$((k + 1))
		mkdir -p "$M1/k/d$((k / 10))" 2>/dev/null || return 0
		echo "k $k" | dd of="$M1/k/d$((k / 10))/f$k" status=none 2>/dev/null || return 0
		echo "d$((k / 10))/f$k" >>"$T/acked.k"
	done
}
: >"$T/acked.k"
copier &
COPIER=$!
copied() { [ "$(wc -l <"$T/acked.k")" -ge 40 ]; }
wait_for 60 "the copier started" copied
"$R" local kill "$C" 1
wait $COPIER || true
start=$SECONDS
echo survivor >"$M2/k/s" || fail "create in the dead holder's directory"
mkdir "$M2/k/d0/s" || fail "mkdir in the dead holder's subdirectory"
echo "   survivors' changes went through after $((SECONDS - start)) s"
grep -h "revoking" "$C"/node2/node.log | head -2 || true # none if node 1 had returned them idle
while read -r f; do
	[ "$(cat "$M2/k/$f")" = "k ${f##*/f}" ] || fail "acknowledged $f missing on a survivor"
done <"$T/acked.k"
echo "   $(wc -l <"$T/acked.k") acknowledged files present"
start_node 1 "the holder"
verify 60 "after the holder's restart"
wait_for 60 "a leader" has_leader # the next step's first writes need one

echo "== no quorum: write(2) and mkdir(2) fail themselves"
echo before >"$M1/q"
mkdir "$M1/qd"
"$R" local kill "$C" 2
"$R" local kill "$C" 3
# The first operation that needs the quorum finds it gone (5 s).
cat "$M1/q" >/dev/null 2>&1 || true
! echo x >>"$M1/q" 2>/dev/null || fail "an append without quorum succeeded"
! mkdir "$M1/qd/n" 2>/dev/null || fail "a mkdir without quorum succeeded"
[ "$(cat "$M1/q")" = before ] || fail "reads without quorum"
start_node 2 "after the quorum loss"
start_node 3 "after the quorum loss"
verify 60 "after the quorum came back"
echo "PASS"
exit 0
}
