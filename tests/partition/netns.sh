# netns.sh — a private network of N hosts in network namespaces, and the
# faults to cut it: links down/up, one direction of one pair (a route to a
# blackhole), whole hosts isolated. Reusable by any test; nothing here
# knows raftfs. Source it, then: net_create N; net_destroy at the end.
#
# Layout: a hub namespace NET_PREFIX-h holds a bridge (br0, 10.77.0.254/24);
# host i is namespace NET_PREFIX-i with eth0 = 10.77.0.i/24, a veth whose
# other end (p<i>) is a port of the bridge. Nothing is added to the root
# namespace, so several tests (ctest -j) use the same addresses side by
# side. A process runs in host i with `net_run i CMD...` (nsenter --net
# only: unlike `ip netns exec` it keeps the mount namespace, so a FUSE
# mount made there is seen by everybody).
#
# Names carry the pid of the shell that made them (rfp<pid>-...); net_sweep
# deletes those whose shell is gone (a run killed before it cleaned up), so
# a leftover never breaks the next run.

NET_PREFIX=rfp$$
NET_SUBNET=10.77.0
NET_HOSTS=0
NET_FAULTS="" # what net_heal undoes: "down:I" and "cut:A:B" words

# net_ns I: the namespace name of host I ("h" for the hub).
net_ns() { echo "$NET_PREFIX-$1"; }

# net_addr I: host I's address.
net_addr() { echo "$NET_SUBNET.$1"; }

# net_available: whether this machine lets us make namespaces (root, ip).
net_available() {
	command -v ip >/dev/null && command -v nsenter >/dev/null || return 1
	ip netns add "$NET_PREFIX-probe" 2>/dev/null || return 1
	ip netns del "$NET_PREFIX-probe"
}

# net_sweep: deletes the namespaces of earlier runs whose shell no longer
# exists (and our own pid's, which can only be a dead run's).
net_sweep() {
	local ns pid
	for ns in $(ip netns list 2>/dev/null | awk '{ print $1 }' | grep -E '^rfp[0-9]+-' || true); do
		pid=${ns#rfp}
		pid=${pid%%-*}
		if [ "$pid" = "$$" ] || ! kill -0 "$pid" 2>/dev/null; then
			ip netns del "$ns" 2>/dev/null || true
		fi
	done
}

# net_create N: the hub and N hosts, all links up. Returns non-zero (and
# says what failed) if any step fails.
net_create() {
	local n=$1 i h
	net_sweep
	h=$(net_ns h)
	ip netns add "$h" || { echo "net_create: ip netns add $h failed" >&2; return 1; }
	NET_HOSTS=$n
	ip -n "$h" link set lo up &&
		ip -n "$h" link add br0 type bridge &&
		ip -n "$h" addr add "$NET_SUBNET.254/24" dev br0 &&
		ip -n "$h" link set br0 up || { echo "net_create: bridge in $h failed" >&2; return 1; }
	for i in $(seq 1 "$n"); do
		local ns
		ns=$(net_ns "$i")
		ip netns add "$ns" &&
			ip -n "$ns" link set lo up &&
			ip link add eth0 netns "$ns" type veth peer name "p$i" netns "$h" &&
			ip -n "$h" link set "p$i" master br0 up &&
			ip -n "$ns" addr add "$(net_addr "$i")/24" dev eth0 &&
			ip -n "$ns" link set eth0 up || { echo "net_create: host $i ($ns) failed" >&2; return 1; }
	done
}

# net_destroy: deletes every namespace of this run (processes still inside
# keep theirs alive until they exit: stop them first).
net_destroy() {
	local i
	for i in $(seq 1 "$NET_HOSTS") h; do
		ip netns del "$(net_ns "$i")" 2>/dev/null || true
	done
	NET_HOSTS=0
}

# net_run I CMD...: runs CMD in host I's network (I = h: the hub's).
net_run() {
	local ns
	ns=$(net_ns "$1")
	shift
	nsenter --net="/run/netns/$ns" "$@"
}

# net_link_down I / net_link_up I: host I's only link (its veth; the bridge
# port sees the carrier go too). Its address stays, so processes inside
# still reach each other and themselves at it.
net_link_down() {
	ip -n "$(net_ns "$1")" link set eth0 down && NET_FAULTS="$NET_FAULTS down:$1"
}
net_link_up() {
	ip -n "$(net_ns "$1")" link set eth0 up
	# The kernel puts the subnet route back with the link.
}

# net_cut A B [KIND]: packets from host A to host B are dropped in A
# (KIND blackhole, the default: silently; unreachable or prohibit: the
# sender gets an error for what it originates). Only that direction: B
# still sends to A, but TCP between them stalls (no acknowledgements come
# back), which is what a one-way fault looks like to a connection.
net_cut() {
	ip -n "$(net_ns "$1")" route replace "${3:-blackhole}" "$(net_addr "$2")/32" &&
		NET_FAULTS="$NET_FAULTS cut:$1:$2"
}

# net_uncut A B: undoes net_cut A B (no error if there was none).
net_uncut() {
	ip -n "$(net_ns "$1")" route del "$(net_addr "$2")/32" 2>/dev/null || true
}

# net_split "A B" "C": cuts both directions between every host of the
# first group and every host of the second.
net_split() {
	local a b
	for a in $1; do
		for b in $2; do
			net_cut "$a" "$b" && net_cut "$b" "$a" || return 1
		done
	done
}

# net_isolate I: host I's link goes down (nobody reaches it, it reaches
# nobody; the hub cannot reach it either).
net_isolate() { net_link_down "$1"; }

# net_heal: undoes every fault made since the last heal (in this shell:
# faults made in a subshell are not recorded; net_heal_all undoes those).
net_heal() {
	local f a b
	for f in $NET_FAULTS; do
		IFS=: read -r _ a b <<<"$f"
		case $f in
		down:*) net_link_up "$a" || return 1 ;;
		cut:*) net_uncut "$a" "$b" ;;
		esac
	done
	NET_FAULTS=""
}

# net_heal_all: every link up and every host route gone, recorded or not
# (slower: two ip commands per pair).
net_heal_all() {
	local i j
	for i in $(seq 1 "$NET_HOSTS"); do
		net_link_up "$i" || return 1
		for j in $(seq 1 "$NET_HOSTS") 254; do
			[ "$i" = "$j" ] || net_uncut "$i" "$j"
		done
	done
	NET_FAULTS=""
}
