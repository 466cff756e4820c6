#!/bin/bash
# mount_concurrent.sh RAFTFS — the three mounts change one shared directory
# tree at the same time (creates, appends, renames, mkdir/rmdir, unlinks,
# truncates, xattrs, chmod), racing on the same names. Races may fail with
# ENOENT/EEXIST/ENOTEMPTY, never with EIO or a stale handle the caller did
# not cause; afterwards the mounts must be identical.
# The whole script is one block, parsed before any of it runs: bash reads
# a script as it goes, so an edit to this file during a run would
# otherwise make the running test execute the edited text from a stale
# offset.
{
set -euo pipefail
. "$(dirname "$0")/lib.sh"
up

mkdir "$M1/sh"
for d in 0 1 2 3; do mkdir "$M1/sh/d$d"; done

# worker ID N: N random operations through mount ID on names shared by all.
worker() {
	local m=$C/n$1/sh i a b
	set +e # losing a race is expected; every error is checked below
	RANDOM=$(($1 * 7919))
	for i in $(seq "$2"); do
		a=$((RANDOM % 8)) b=$((RANDOM % 4))
		case $((RANDOM % 10)) in
		0 | 1) echo "w$1 $i" >"$m/f$a" ;;
		2) echo "w$1 $i" >>"$m/d$b/f$a" ;;
		3) mv "$m/f$a" "$m/d$b/f$a" ;;
		4) mv "$m/d$b/f$a" "$m/f$((RANDOM % 8))" ;;
		5) rm -f "$m/f$a" "$m/d$b/f$a" ;;
		6) mkdir "$m/d$b/s$a" && echo x >"$m/d$b/s$a/x" ;;
		7) rm -rf "$m/d$b/s$a" ;;
		8) truncate -s $((RANDOM % 9000)) "$m/f$a" ;;
		9) setfattr -n user.k -v "w$1" "$m/f$a" && chmod 6$((RANDOM % 8))$((RANDOM % 8)) "$m/f$a" ;;
		esac
	done
}

for id in 1 2 3; do worker $id 300 2>"$T/err$id" & done
wait
ran=$(find "$C/n1/sh" | wc -l)
[ "$ran" -gt 10 ] || fail "the workers did next to nothing ($ran entries)"
if grep -E "Input/output|Transport|timed out" "$T"/err[123]; then
	fail "an operation failed with an error no race explains"
fi
# ESTALE is the documented limit of the orphan rule (README, "Unlinked open
# files"): a write through a handle on this mount to a file another mount
# removed and released meanwhile.
grep "Stale" "$T"/err[123] | grep -qv "write error" && fail "ESTALE other than on a write"
echo "   $(cat "$T"/err[123] | wc -l) operations lost a race (ENOENT/EEXIST/ENOTEMPTY;" \
	"$(cat "$T"/err[123] | grep -c Stale) writes to a file removed elsewhere: ESTALE)"
sed "s/.*: //" "$T"/err[123] | sort | uniq -c | sort -rn | head -n 8
verify 60 "after concurrent changes from all mounts"
echo "PASS"
exit
}
