#!/bin/bash
# mount_perm.sh RAFTFS — a non-root user (runuser -u nobody) gets the
# permission errors a local filesystem gives, on every mount, and what it
# may create is owned by it everywhere.
# The whole script is one block, parsed before any of it runs: bash reads
# a script as it goes, so an edit to this file during a run would
# otherwise make the running test execute the edited text from a stale
# offset.
{
set -euo pipefail
. "$(dirname "$0")/lib.sh"
command -v runuser >/dev/null || { echo "SKIP: no runuser"; exit 77; }
up

as_nobody() { runuser -u nobody -- "$@"; }

# denied WHAT COMMAND...: the command, run as nobody, must fail with
# "Permission denied" or "Operation not permitted".
denied() {
	local what=$1
	shift
	if as_nobody "$@" 2>"$T/err"; then fail "nobody could $what"; fi
	grep -Eq "Permission denied|Operation not permitted" "$T/err" ||
		fail "$what: want EACCES/EPERM, got: $(cat "$T/err")"
}

mkdir "$M1/priv"
echo secret >"$M1/priv/f"
echo hidden >"$M1/priv/mine-only"
chmod 600 "$M1/priv/mine-only"
mkdir "$M1/pub"
chmod 1777 "$M1/pub"
echo root >"$M1/pub/rootfile"
verify 30 "setup"

denied "write a root file (n2)" sh -c "echo x >'$M2/priv/f'"
denied "create in a root dir (n3)" touch "$M3/priv/new"
denied "chmod a root file (n1)" chmod 777 "$M1/priv/f"
denied "remove from a root dir (n2)" rm -f "$M2/priv/f"
denied "read a 0600 root file (n3)" cat "$M3/priv/mine-only"
denied "chown to itself (n1)" chown nobody "$M1/priv/f"
denied "remove another's file in a sticky dir (n2)" rm -f "$M2/pub/rootfile"
denied "mkdir in a root dir (n1)" mkdir "$M1/priv/d"

as_nobody sh -c "echo mine >'$M2/pub/nobodys'" || fail "nobody cannot create in a 1777 dir"
as_nobody mkdir "$M3/pub/nd" || fail "nobody cannot mkdir in a 1777 dir"
for m in "$M1" "$M2" "$M3"; do
	[ "$(stat -c %U "$m/pub/nobodys")" = nobody ] || fail "owner on $m: $(stat -c %U "$m/pub/nobodys")"
	[ "$(stat -c %U "$m/pub/nd")" = nobody ] || fail "dir owner on $m"
done
as_nobody chmod 600 "$M1/pub/nobodys" || fail "nobody cannot chmod its own file"
[ "$(as_nobody cat "$M3/pub/nobodys")" = mine ] || fail "nobody cannot read its own file on n3"
[ "$(cat "$M1/priv/f")" = secret ] || fail "the root file changed"

# A write by an unprivileged process clears set-user-ID (and set-group-ID
# with group execute), as on ext4 — also an append, whose handle is direct
# I/O, where the kernel leaves it to the filesystem. A root write keeps them.
# wait_for runs its command on every try: the stat must be inside it.
mode_is() { [ "$(stat -c %a "$1")" = "$2" ]; }
for how in append overwrite; do
	f="$M1/pub/setid-$how"
	echo x >"$f"
	chmod 6777 "$f"
	# The kernel checks nobody's open against n2's view, which may lag
	# n1's chmod by the replication delay (README, "Consistency").
	wait_for 10 "n2 shows the chmod" mode_is "$M2/pub/setid-$how" 6777
	if [ $how = append ]; then
		as_nobody sh -c "echo z >>'$M2/pub/setid-$how'" || fail "nobody cannot append to a 6777 file"
	else
		as_nobody sh -c "echo z >'$M2/pub/setid-$how'" || fail "nobody cannot write a 6777 file"
	fi
	for m in "$M2" "$M1" "$M3"; do
		wait_for 10 "mode 777 on $m after nobody's $how (set-id bits kept: $(stat -c %a "$m/pub/setid-$how"))" \
			mode_is "$m/pub/setid-$how" 777
	done
done
chmod 6777 "$M1/pub/setid-append"
echo again >>"$M1/pub/setid-append"
wait_for 10 "root's append on n3" grep -qx again "$M3/pub/setid-append"
for m in "$M1" "$M3"; do
	[ "$(stat -c %a "$m/pub/setid-append")" = 6777 ] || fail "root's append cleared the set-id bits on $m"
done
verify 30 "after the permission checks"

echo "== local down stops every node cleanly and unmounts"
"$R" local down "$C"
for id in 1 2 3; do
	tail -n 1 "$C/node$id/node.log" | grep -q "stopped$" ||
		fail "node $id did not stop cleanly: $(tail -n 3 "$C/node$id/node.log")"
	mountpoint -q "$C/n$id" && fail "n$id is still mounted"
done
echo "PASS"
exit
}
