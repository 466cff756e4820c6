#!/usr/bin/env bash
# deploy.config — the configuration files a user writes for a cluster of
# machines (packaging/README.md): raftfs config new writes one per node,
# the shipped example is exactly its output, and a mistyped key, section or
# value, a line that is not 'key = value', an address without a port, a
# node id missing from [peers] make raftfs node and raftfs config check
# fail with exit 2 and a message naming the file, the line and the key.
#   config.sh RAFTFS_BINARY SOURCE_DIR
{
set -uo pipefail
R=${1:?usage: $0 RAFTFS_BINARY SOURCE_DIR}
SRC=${2:?usage: $0 RAFTFS_BINARY SOURCE_DIR}
T=$(mktemp -d /tmp/raftfs-deploy-config.XXXXXX)
trap 'rm -rf "$T"' EXIT
trap 'exit 1' INT TERM
failed=0

fail() {
	echo "FAIL: $*" >&2
	failed=1
}

PEERS=1=192.0.2.1:7001,2=192.0.2.2:7001,3=192.0.2.3:7001
EXAMPLE=$SRC/packaging/raftfs.ini.example

# The example in packaging/ is what raftfs config new prints for node 1 of
# cluster 'home' (README's instructions use the command; the example must
# not drift from it).
"$R" config new --id 1 --peers "$PEERS" --cluster home >"$T/new1.ini" ||
	fail "config new for node 1 failed"
diff -u "$EXAMPLE" "$T/new1.ini" >"$T/diff" ||
	{ cat "$T/diff"; fail "packaging/raftfs.ini.example differs from raftfs config new's output"; }
"$R" config check "$EXAMPLE" >"$T/out" 2>&1 || { cat "$T/out"; fail "the example does not check"; }
grep -q "node 1 of cluster 'home', listens on 192.0.2.1:7001" "$T/out" ||
	{ cat "$T/out"; fail "config check did not describe the example"; }

# Every value line of the example has a comment line right above it.
awk '/^[^#[]/ && prev !~ /^#/ && !/^[0-9]+ = / { print FILENAME ":" NR ": " $0; bad = 1 }
	{ prev = $0 } END { exit bad }' "$EXAMPLE" >"$T/out" ||
	{ cat "$T/out"; fail "value lines without a comment above them"; }

# Three machines' files differ in the id line only (comments aside), and
# each checks.
for i in 2 3; do
	"$R" config new --id "$i" --peers "$PEERS" --cluster home >"$T/new$i.ini" ||
		fail "config new for node $i failed"
	diff <(grep -v '^#' "$T/new1.ini") <(grep -v '^#' "$T/new$i.ini") | grep '^[<>]' >"$T/diff"
	[ "$(cat "$T/diff")" = "< id = 1
> id = $i" ] || { cat "$T/diff"; fail "node $i's file differs from node 1's in more than the id"; }
	"$R" config check "$T/new$i.ini" >/dev/null || fail "node $i's file does not check"
done

# Options of config new land in the file.
"$R" config new --id 2 --peers "$PEERS" --cluster lab --data-dir /srv/rfs --mount /data \
	--close commit --listen 0.0.0.0:7001 >"$T/opts.ini" || fail "config new with options failed"
for line in "cluster = lab" "data_dir = /srv/rfs" "mount = /data" "close = commit" \
	"listen = 0.0.0.0:7001"; do
	grep -qx "$line" "$T/opts.ini" || fail "config new wrote no line '$line'"
done
"$R" config new --id 4 --peers "$PEERS,4=192.0.2.4:7001" --join >"$T/join.ini" &&
	grep -qx "join = true" "$T/join.ini" || fail "config new --join wrote no 'join = true'"

# config new refuses what raftfs node would refuse.
bad_new() {
	local what=$1
	shift
	if "$R" config new "$@" >"$T/out" 2>"$T/err"; then
		fail "config new accepted $what"
	elif [ $? -ne 2 ]; then
		fail "config new with $what did not exit 2"
	elif [ -s "$T/out" ]; then
		fail "config new with $what printed a file anyway"
	fi
}
bad_new "an id not in --peers" --id 4 --peers "$PEERS"
bad_new "a node listed twice" --id 1 --peers "$PEERS,1=192.0.2.9:7001"
bad_new "a peer without a port" --id 1 --peers 1=192.0.2.1,2=192.0.2.2:7001
bad_new "close = later" --id 1 --peers "$PEERS" --close later
bad_new "no --peers" --id 1
bad_new "an id past 65535" --id 70000 --peers "1=a:1,70000=b:1"

# The mistakes are made in the example with its directories moved into $T:
# should a reader ever accept one, the node it starts touches nothing else.
sed -e "s|^data_dir = .*|data_dir = $T/data|" -e "s|^mount = .*|mount = $T/mnt|" "$EXAMPLE" >"$T/base.ini"

# mistake NAME SED PATTERN MARK: the example with the sed edit applied must be
# refused by both readers with exit 2, naming the file and the line the
# edit touched (the first line matching MARK after the edit) and PATTERN.
mistake() {
	local name=$1 edit=$2 want=$3 mark=$4 f=$T/$1.ini line
	sed -E "$edit" "$T/base.ini" >"$f"
	cmp -s "$f" "$T/base.ini" && { fail "$name: the edit changed nothing"; return; }
	line=$(grep -n -m1 -E "$mark" "$f" | cut -d: -f1)
	[ -n "$line" ] || { fail "$name: marker '$mark' not found"; return; }
	for cmd in "config check" "node --config"; do
		# shellcheck disable=SC2086 # two words on purpose
		timeout 20 "$R" $cmd "$f" >"$T/out" 2>&1
		local rc=$?
		[ $rc -eq 2 ] || fail "$name: raftfs $cmd exited $rc, want 2: $(cat "$T/out")"
		grep -q -- "$f:$line: .*$want" "$T/out" ||
			fail "$name: raftfs $cmd said '$(cat "$T/out")', want '$f:$line: ...$want'"
	done
}
mistake key 's/^cluster = home/clustr = home/' "unknown key 'clustr' in section \[node\]" '^clustr'
mistake section 's/^\[raft\]/[rafts]/; s/^# tick_ms = 10/tick_ms = 10/' \
	"unknown section \[rafts\] .at key 'tick_ms'" '^tick_ms'
mistake value 's/^close = behind/close = later/' "bad value 'later' for key 'close'" '^close'
mistake number 's/^proposal_timeout_ms = 5000/proposal_timeout_ms = 5s/' \
	"bad value '5s' for key 'proposal_timeout_ms'" '^proposal_timeout_ms'
mistake syntax 's/^id = 1/id 1/' "syntax error" '^id 1'
mistake bracket 's/^\[peers\]/[peers/' "syntax error" '^\[peers$'
mistake port 's/^2 = 192.0.2.2:7001/2 = 192.0.2.2/' "peer 2: bad address '192.0.2.2'" '^2 = '
mistake outside 's/^\[node\]//' "key 'id' outside any section" '^id = '

# A file naming a node not in its [peers] is refused as a whole.
sed 's/^id = 1/id = 7/' "$T/base.ini" >"$T/noself.ini"
"$R" config check "$T/noself.ini" >"$T/out" 2>&1
[ $? -eq 2 ] && grep -q "node id 7 is not among the \[peers\]" "$T/out" ||
	fail "an id missing from [peers]: $(cat "$T/out")"
"$R" config check "$T/absent.ini" >"$T/out" 2>&1
[ $? -eq 2 ] && grep -q "$T/absent.ini: cannot open config file" "$T/out" ||
	fail "a missing file: $(cat "$T/out")"

# check --mkdir makes the data directory (0700) and the mount point
# (0755), parents included, and leaves existing ones alone.
"$R" config new --id 1 --peers "$PEERS" --data-dir "$T/var/lib/raftfs" --mount "$T/mnt/raftfs" \
	>"$T/mk.ini" || fail "config new for --mkdir failed"
"$R" config check --mkdir "$T/mk.ini" >/dev/null || fail "config check --mkdir failed"
[ "$(stat -c %a "$T/var/lib/raftfs" 2>/dev/null)" = 700 ] || fail "data directory not made 0700"
[ "$(stat -c %a "$T/mnt/raftfs" 2>/dev/null)" = 755 ] || fail "mount point not made 0755"
"$R" config check --mkdir "$T/mk.ini" >/dev/null || fail "config check --mkdir failed the second time"
touch "$T/file"
sed "s|^mount = .*|mount = $T/file|" "$T/mk.ini" >"$T/mkbad.ini"
"$R" config check --mkdir "$T/mkbad.ini" >"$T/out" 2>&1
[ $? -eq 1 ] && grep -q "mount point $T/file: Not a directory" "$T/out" ||
	fail "--mkdir over a file: $(cat "$T/out")"

# A hand-written file that forgot state_machine = fs (the node's default
# is the kv test machine) mounts nothing: check warns, naming the key.
grep -v '^state_machine' "$T/base.ini" >"$T/kv.ini"
"$R" config check "$T/kv.ini" >/dev/null 2>"$T/err" || fail "a kv config did not check"
grep -q "warning: mount = $T/mnt is ignored: state_machine is kv" "$T/err" ||
	fail "no warning for a mount without state_machine = fs: $(cat "$T/err")"

# raftfs version names the versions an upgrade depends on, as the source
# defines them.
tv=$(sed -n 's/^#define TRANSPORT_VERSION \([0-9]*\)$/\1/p' "$SRC/consensus/transport.h")
sv=$(sed -n 's/^#define STORE_FORMAT_VERSION \([0-9]*\)$/\1/p' "$SRC/store/store.h")
[ -n "$tv" ] && [ -n "$sv" ] || fail "version defines not found in the source"
[ "$("$R" version)" = "transport protocol $tv
store format $sv" ] || fail "raftfs version said '$("$R" version)', want protocol $tv, store $sv"

[ $failed -eq 0 ] && echo "PASS"
exit $failed
}
