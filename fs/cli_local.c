/* cli_local.c — raftfs local: run an N-node cluster on loopback as
 * separate processes (fs/local_cluster.h has the layout). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"
#include "local_cluster.h"
#include "mono_ms.h"

static const char usage[] =
	"NAME\n"
	"    raftfs local - run a raftfs cluster on this machine\n"
	"\n"
	"SYNOPSIS\n"
	"    raftfs local create N DIR   create an N-node cluster's files, start nothing\n"
	"                                (edit DIR/n*/raftfs.ini, then `up`)\n"
	"    raftfs local up N DIR       create (if new) and start an N-node cluster\n"
	"    raftfs local down DIR       stop every node (SIGTERM, SIGKILL after 10 s),\n"
	"                                once each mount committed what it had\n"
	"                                acknowledged (fsync of its root, up to 10 s);\n"
	"                                exits 1 when a drain failed or timed out\n"
	"                                (the nodes are stopped all the same)\n"
	"    raftfs local kill DIR ID    SIGKILL node ID\n"
	"    raftfs local stop DIR ID    SIGTERM node ID and wait for it to exit\n"
	"    raftfs local start DIR ID   start node ID again, wait until it answers at\n"
	"                                its address (its mount follows once it has\n"
	"                                replayed its log)\n"
	"    raftfs local status DIR     which nodes run, and their raftfs status\n"
	"    raftfs local addr DIR ID    print node ID's address (host:port)\n"
	"    raftfs local add DIR        start one more node and add it to the running\n"
	"                                cluster (raftfs member add), as the next id\n"
	"    raftfs local remove DIR ID  remove node ID from the cluster (raftfs member\n"
	"                                remove), then stop it\n"
	"\n"
	"DESCRIPTION\n"
	"    Each node is a separate `raftfs node` process on 127.0.0.1, with its\n"
	"    own config file DIR/nID/raftfs.ini, data directory DIR/nID/data and\n"
	"    log file DIR/nID/node.log. Ports are free ports picked when the\n"
	"    cluster is created and kept in the config files, and each cluster has\n"
	"    a random name, so several clusters run side by side. The ports stay\n"
	"    claimed (files in /tmp/raftfs-ports, or $RAFTFS_PORT_DIR) for as long\n"
	"    as DIR names them, stopped nodes' too: no other cluster draws them;\n"
	"    removing DIR frees them. `up` returns once\n"
	"    every node answers and a leader is elected (or fails, naming the\n"
	"    node and showing the logs' tails). `up` on an existing DIR starts\n"
	"    its stopped nodes. A node that cannot listen because another process\n"
	"    took its port is moved to another port if the cluster never ran;\n"
	"    otherwise `up` and `start` fail and say so.\n"
	"\n"
	"    The nodes run the filesystem: node ID is mounted at DIR/nID and keeps\n"
	"    its config, data and log in DIR/nodeID; `up` returns once every\n"
	"    mount answers, `down` unmounts. With RAFTFS_LOCAL_SM=kv when the\n"
	"    cluster is created, the nodes run the kv test state machine instead\n"
	"    (no mounts; node files in DIR/nID).\n"
	"\n"
	"    `add` writes the new node's config (join = true, [peers] = the members\n"
	"    now and itself), starts it, makes it a learner, waits until it caught\n"
	"    up and is a voter, and (filesystem) until its mount answers. `remove`\n"
	"    works on a dead node too (replace one: kill, remove, add); a removed\n"
	"    node is skipped by `up`, `status` and `raftfs verify DIR` from then\n"
	"    on.\n"
	"\n"
	"EXIT STATUS\n"
	"    0 on success, 1 on failure, 2 for bad usage.\n";

/* The last lines node id wrote in its last run (since local_start's mark),
 * at most 10, on stderr. */
static void show_log_tail(const char *dir, int id)
{
	char path[4200], line[1024], *lines[10] = {0};
	int n = 0;
	FILE *f;

	local_node_dir(dir, id, path, sizeof(path) - 16);
	strcat(path, "/node.log");
	f = fopen(path, "r");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, LOCAL_START_MARK, strlen(LOCAL_START_MARK)))
			for (; n > 0; n--) {
				free(lines[(n - 1) % 10]);
				lines[(n - 1) % 10] = NULL;
			}
		free(lines[n % 10]);
		lines[n % 10] = strdup(line);
		n++;
	}
	fclose(f);
	fprintf(stderr, "--- %s (last lines)\n", path);
	for (int i = n > 10 ? n - 10 : 0; i < n; i++)
		fputs(lines[i % 10] ? lines[i % 10] : "", stderr);
	for (int i = 0; i < 10; i++)
		free(lines[i]);
}

/* Node id's status, if what answers at its address is that node of this
 * cluster (another process may hold the port: a node of another cluster
 * that drew the same port). NULL otherwise. */
static Transportpb__NodeStatus *fetch_own(const char *dir, const char *name, int id,
					  unsigned timeout_ms)
{
	Transportpb__NodeStatus *ns;
	char addr[128], err[512];

	if (local_addr(dir, id, addr, sizeof(addr), err, sizeof(err)) < 0 ||
	    cli_fetch_status(addr, timeout_ms, &ns, err, sizeof(err)) < 0)
		return NULL;
	if (ns->id != (uint64_t)id || strcmp(ns->cluster, name)) {
		transportpb__node_status__free_unpacked(ns, NULL);
		return NULL;
	}
	return ns;
}

static void nap_ms(long ms)
{
	struct timespec ts = {0, ms * 1000 * 1000};

	nanosleep(&ts, NULL);
}

/* Waits until node id answers as itself: 0, -ESRCH if its process exited
 * first, -ETIMEDOUT at the deadline. */
static int wait_listening(const char *dir, const char *name, int id, long long deadline)
{
	for (;;) {
		Transportpb__NodeStatus *ns = fetch_own(dir, name, id, 500);

		if (ns) {
			transportpb__node_status__free_unpacked(ns, NULL);
			return 0;
		}
		if (!local_alive(dir, id))
			return -ESRCH;
		if (mono_ms() > deadline)
			return -ETIMEDOUT;
		nap_ms(20);
	}
}

/* Waits until some node of the cluster reports itself leader, healthy. */
static int wait_leader(const char *dir, const char *name, int n, unsigned timeout_ms)
{
	long long deadline = mono_ms() + timeout_ms;

	while (mono_ms() < deadline) {
		for (int id = 1; id <= n; id++) {
			Transportpb__NodeStatus *ns =
			    local_removed(dir, id) ? NULL : fetch_own(dir, name, id, 500);
			char addr[128], err[512];
			int leader;

			if (!ns)
				continue;
			leader = ns->healthy && !strcmp(ns->role, "leader");
			if (leader &&
			    local_addr(dir, id, addr, sizeof(addr), err, sizeof(err)) == 0)
				printf("leader: node %d at %s (term %llu)\n", id, addr,
				       (unsigned long long)ns->term);
			transportpb__node_status__free_unpacked(ns, NULL);
			if (leader)
				return 0;
		}
		nap_ms(20);
	}
	return -ETIMEDOUT;
}

/* How long `down` lets the mounts commit what they acknowledged before it
 * stops the nodes: more than one proposal timeout (5 s by default), after
 * which a mount without a quorum has failed whatever it still waited for. */
#define DRAIN_MS 10000

/* The child of drain_mounts for node id: fsync of its mount's root, which
 * a mount answers once everything it acknowledged before (write-behind
 * metadata, pipelined writes, files closed behind) is committed, with the
 * first failure of any of it (fs/fuse_close.c). Exits 0, or 1 when that
 * failed. A mount already dead (ENOTCONN) or not there has nothing to
 * drain; one whose node dies during the fsync lost what it had not
 * committed, and that is a failure like any other. */
static void drain_one(const char *dir, int id)
{
	char mnt[PATH_MAX];
	int fd;

	local_mount_path(dir, id, mnt, sizeof(mnt));
	if (!local_is_fuse(mnt))
		_exit(0);
	fd = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		_exit(0);
	if (fsync(fd) < 0) {
		fprintf(stderr,
			"raftfs local down: node %d's mount: a change it had acknowledged "
			"failed to commit: %s (its log names it)\n",
			id, strerror(errno));
		_exit(1);
	}
	_exit(0);
}

/* Before the nodes stop: every mount commits what it acknowledged, all
 * nodes still up. A node commits its own backlog when it is stopped
 * (fuse_mount_stop), but only while a quorum of the others still runs:
 * stopped all at once, a leader that left first took with it a mkdir
 * another node had answered behind and flushed at its SIGTERM (held for
 * company by the plug), lost with EIO. Children, one per mount, so a
 * mount that does not answer holds none of the others, and down stops
 * waiting after DRAIN_MS whatever they do. False when a mount's drain
 * failed (a change it had acknowledged did not commit) or did not end in
 * time, or a child could not be started: the nodes are stopped all the
 * same, but `down` says so in its exit status. */
static bool drain_mounts(const char *dir, int n)
{
	long long deadline = mono_ms() + DRAIN_MS;
	bool ok = true;
	int left = 0;
	pid_t *kids;

	if (!local_is_fs(dir))
		return true; /* no mounts */
	/* Reaped here: with SIGCHLD ignored (inherited from whoever ran us)
	 * the kernel would reap the children itself and waitpid would never
	 * see one end, failing every drain after DRAIN_MS. */
	signal(SIGCHLD, SIG_DFL);
	kids = calloc((size_t)n + 1, sizeof(*kids));
	if (!kids) {
		fprintf(stderr, "raftfs local down: mounts not drained: out of memory\n");
		return false;
	}
	fflush(NULL);
	for (int i = 1; i <= n; i++) {
		kids[i] = -1;
		if (!local_alive(dir, i))
			continue;
		kids[i] = fork();
		if (kids[i] == 0)
			drain_one(dir, i);
		if (kids[i] > 0)
			left++;
		else {
			fprintf(stderr, "raftfs local down: node %d's mount not drained: fork: %s\n",
				i, strerror(errno));
			ok = false;
		}
	}
	while (left > 0 && mono_ms() < deadline) {
		for (int i = 1; i <= n; i++) {
			int st;

			if (kids[i] <= 0 || waitpid(kids[i], &st, WNOHANG) != kids[i])
				continue;
			/* drain_one said why when it exits 1. */
			if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
				ok = false;
			kids[i] = -1;
			left--;
		}
		if (left > 0)
			nap_ms(10);
	}
	for (int i = 1; i <= n; i++) {
		if (kids[i] <= 0)
			continue;
		fprintf(stderr,
			"raftfs local down: node %d's mount did not commit what it acknowledged "
			"within %d s: stopping it anyway\n",
			i, DRAIN_MS / 1000);
		kill(kids[i], SIGKILL);
		/* Not waited for: one stuck in the kernel is reaped by init. */
		waitpid(kids[i], NULL, WNOHANG);
		ok = false;
	}
	free(kids);
	return ok;
}

/* SIGTERM to every node at once, then waits for each (SIGKILL after 10 s),
 * then detaches what they left mounted. */
static void stop_all(const char *dir, int n)
{
	for (int i = 1; i <= n; i++)
		if (local_pid(dir, i) > 0)
			kill(local_pid(dir, i), SIGTERM);
	for (int i = 1; i <= n; i++)
		local_signal(dir, i, SIGTERM, 10000, true);
	for (int i = 1; i <= n; i++)
		local_unmount(dir, i);
}

/* Says why node id is not up (rc from wait_listening or local_wait_mount;
 * what: the timeout that passed), with the tail of its log: how it ended
 * if it exited. */
static void report_start_failure(const char *dir, int id, int rc, const char *what)
{
	char addr[640], err[512], how[128];

	if (local_addr(dir, id, addr, sizeof(addr), err, sizeof(err)) < 0)
		snprintf(addr, sizeof(addr), "no address: %s", err);
	if (rc == -ESRCH)
		local_exit_desc(dir, id, how, sizeof(how));
	/* The port only when it is really held: a node exits at start for
	 * many reasons (its config, its data directory, its mount). */
	if (rc == -ESRCH && local_port_taken(dir, id))
		fprintf(stderr,
			"raftfs local: node %d exited during start: another process holds its "
			"port (%s; the node %s)\n",
			id, addr, how);
	else if (rc == -ESRCH)
		fprintf(stderr, "raftfs local: node %d exited during start: it %s\n", id, how);
	else
		fprintf(stderr, "raftfs local: node %d at %s: %s\n", id, addr, what);
	show_log_tail(dir, id);
}

/* Starts the nodes (those already running stay) and waits until each
 * answers at its address. 0, or the negative errno of wait_listening with
 * *failed the first node that is not up. */
static int start_all(const char *dir, const char *name, int n, int *failed)
{
	long long deadline = mono_ms() + 30000;
	char err[600];
	int rc;

	for (int id = 1; id <= n; id++) {
		if (local_removed(dir, id))
			continue;
		if (local_start(dir, id, err, sizeof(err)) < 0) {
			fprintf(stderr, "raftfs local: node %d: %s\n", id, err);
			*failed = id;
			return -EIO;
		}
	}
	for (int id = 1; id <= n; id++) {
		if (local_removed(dir, id))
			continue;
		rc = wait_listening(dir, name, id, deadline);
		if (rc < 0) {
			*failed = id;
			return rc;
		}
	}
	return 0;
}

/* A new cluster whose node could not listen because another process took
 * its port between the choice (local_create) and the node's bind — a
 * cluster created at the same moment by another `local up` draws from the
 * same range: stops the nodes and moves each such node to a new port.
 * Returns true if it moved one. */
static bool move_clashing(const char *dir, int n)
{
	bool moved = false;
	char err[600];

	for (int id = 1; id <= n; id++) {
		if (local_alive(dir, id) || !local_port_taken(dir, id))
			continue;
		if (!moved)
			stop_all(dir, n);
		if (local_move_node(dir, n, id, err, sizeof(err)) < 0) {
			fprintf(stderr, "raftfs local up: %s\n", err);
			return false;
		}
		fprintf(stderr,
			"raftfs local up: node %d could not listen (another process took its "
			"port): moved to another port, starting again\n",
			id);
		moved = true;
	}
	return moved;
}

/* No node of the cluster has a data directory yet: nothing refers to
 * their addresses but the config files. */
static bool never_ran(const char *dir, int n)
{
	for (int id = 1; id <= n; id++) {
		char path[4200];
		struct stat st;

		local_node_dir(dir, id, path, sizeof(path) - 8);
		strcat(path, "/data");
		if (stat(path, &st) == 0)
			return false;
	}
	return true;
}

static int up(int n, const char *dir)
{
	char err[600], name[128];
	int have = local_count(dir, err, sizeof(err)), failed = 0, rc;
	long long deadline;
	bool fresh;

	if (have < 0 && local_create(dir, n, err, sizeof(err)) < 0) {
		fprintf(stderr, "raftfs local up: %s\n", err);
		return 1;
	}
	if (have > 0 && have != n) {
		fprintf(stderr, "raftfs local up: %s holds a %d-node cluster, not %d\n", dir, have,
			n);
		return 1;
	}
	if (local_name(dir, name, sizeof(name)) < 0) {
		fprintf(stderr, "raftfs local up: %s/cluster: no cluster name\n", dir);
		return 1;
	}
	/* Only a cluster that never ran may change its addresses. */
	fresh = never_ran(dir, n);
	for (int tries = 0;; tries++) {
		rc = start_all(dir, name, n, &failed);
		if (rc != -ESRCH || !fresh || tries == 5 || !move_clashing(dir, n))
			break;
	}
	if (rc == -EIO)
		return 1;
	if (rc < 0) {
		report_start_failure(dir, failed, rc, "did not answer at its address within 30 s");
		return 1;
	}
	if (wait_leader(dir, name, n, 30000) < 0) {
		fprintf(stderr, "raftfs local up: no leader elected within 30 s\n");
		for (int id = 1; id <= n; id++)
			show_log_tail(dir, id);
		return 1;
	}
	deadline = mono_ms() + 30000;
	for (int id = 1; id <= n; id++) {
		long long left = deadline - mono_ms();

		if (local_removed(dir, id))
			continue;
		rc = local_wait_mount(dir, id, left > 0 ? (unsigned)left : 0);
		if (rc < 0) {
			report_start_failure(dir, id, rc, "its mount did not answer within 30 s");
			return 1;
		}
	}
	for (int id = 1; id <= n; id++) {
		char addr[128], nd[4096], mnt[4096];

		if (local_removed(dir, id))
			continue;
		/* Alive at the end too: a node that died after it answered (the
		 * others elect a leader without it) is a failed start. */
		if (!local_alive(dir, id)) {
			report_start_failure(dir, id, -ESRCH, "after it answered");
			return 1;
		}
		local_node_dir(dir, id, nd, sizeof(nd));
		local_mount_path(dir, id, mnt, sizeof(mnt));
		if (local_addr(dir, id, addr, sizeof(addr), err, sizeof(err)) == 0)
			printf("node %d: %s  pid %d  log %s/node.log%s%s\n", id, addr,
			       (int)local_pid(dir, id), nd, local_is_fs(dir) ? "  mount " : "",
			       local_is_fs(dir) ? mnt : "");
	}
	return 0;
}

/* local start: node id again, answering at its address within 60 s (a
 * node that exits at start, e.g. because another process took its port,
 * is an error, not a silent success). */
static int start_one(const char *dir, int id)
{
	char err[600], name[128];
	int rc;

	if (local_start(dir, id, err, sizeof(err)) < 0) {
		fprintf(stderr, "raftfs local start: %s\n", err);
		return 1;
	}
	if (local_name(dir, name, sizeof(name)) < 0) {
		fprintf(stderr, "raftfs local start: %s/cluster: no cluster name\n", dir);
		return 1;
	}
	rc = wait_listening(dir, name, id, mono_ms() + 60000);
	if (rc < 0) {
		report_start_failure(dir, id, rc, "did not answer at its address within 60 s");
		return 1;
	}
	return 0;
}

static int status(const char *dir, int n)
{
	int healthy = 1;

	for (int id = 1; id <= n; id++) {
		Transportpb__NodeStatus *ns;
		char addr[128], err[600];
		pid_t pid = local_pid(dir, id);

		if (local_addr(dir, id, addr, sizeof(addr), err, sizeof(err)) < 0) {
			fprintf(stderr, "raftfs local status: %s\n", err);
			healthy = 0;
			continue;
		}
		if (local_removed(dir, id)) {
			printf("node %d: %s  removed from the cluster%s\n", id, addr,
			       pid > 0 ? " (still running)" : "");
			continue;
		}
		if (pid <= 0) {
			printf("node %d: %s  stopped\n", id, addr);
			healthy = 0;
			continue;
		}
		if (cli_fetch_status(addr, 1000, &ns, err, sizeof(err)) < 0) {
			printf("node %d: %s  pid %d  not answering: %s\n", id, addr, (int)pid, err);
			healthy = 0;
			continue;
		}
		printf("node %d: %s  pid %d  %s  term %llu  leader %llu  commit %llu  applied %llu"
		       "  %s\n",
		       id, addr, (int)pid, ns->role, (unsigned long long)ns->term,
		       (unsigned long long)ns->leader, (unsigned long long)ns->commit,
		       (unsigned long long)ns->applied, ns->healthy ? "healthy" : ns->error);
		healthy &= ns->healthy;
		transportpb__node_status__free_unpacked(ns, NULL);
	}
	return healthy ? 0 : 1;
}

/* The address of a running member of the cluster other than not_id, for
 * raftfs member requests. 0 or -ENOENT. */
static int live_member(const char *dir, int n, int not_id, char *addr, size_t len, int *who)
{
	char err[600];

	for (int id = 1; id <= n; id++) {
		if (id == not_id || local_removed(dir, id) || local_pid(dir, id) <= 0)
			continue;
		if (local_addr(dir, id, addr, len, err, sizeof(err)) == 0) {
			*who = id;
			return 0;
		}
	}
	return -ENOENT;
}

/* local add: a node of the next id joins the running cluster. */
static int add(const char *dir, int n)
{
	config_peer members[CONFIG_MAX_PEERS];
	Transportpb__Response *resp = NULL;
	char via[128], addr[128], err[600], name[128];
	size_t nm = 0;
	int like, id, rc;

	if (live_member(dir, n, 0, via, sizeof(via), &like) < 0) {
		fprintf(stderr, "raftfs local add: no node of %s runs (raftfs local up first)\n",
			dir);
		return 1;
	}
	rc = cli_member_call(via, TRANSPORTPB__MEMBER_REQUEST__OP__LIST, 0, NULL, 0, 10000, &resp,
			     err, sizeof(err));
	if (rc < 0 || resp->error) {
		fprintf(stderr, "raftfs local add: listing the members through %s: %s\n", via,
			rc < 0 ? err : resp->error_msg);
		if (resp)
			transportpb__response__free_unpacked(resp, NULL);
		return 1;
	}
	for (size_t i = 0; i < resp->n_members && nm < CONFIG_MAX_PEERS; i++) {
		members[nm].id = resp->members[i]->id;
		if (config_parse_addr(resp->members[i]->addr, members[nm].host,
				      sizeof(members[nm].host), &members[nm].port) == 0)
			nm++;
	}
	transportpb__response__free_unpacked(resp, NULL);
	resp = NULL;
	if (local_add_node(dir, like, members, nm, &id, err, sizeof(err)) < 0) {
		fprintf(stderr, "raftfs local add: %s\n", err);
		return 1;
	}
	if (local_addr(dir, id, addr, sizeof(addr), err, sizeof(err)) < 0 ||
	    local_name(dir, name, sizeof(name)) < 0) {
		fprintf(stderr, "raftfs local add: node %d: %s\n", id, err);
		return 1;
	}
	if (start_one(dir, id) != 0)
		return 1;
	printf("node %d: %s  started, joining\n", id, addr);
	fflush(stdout);
	rc = cli_member_call(via, TRANSPORTPB__MEMBER_REQUEST__OP__ADD, (uint64_t)id, addr, 0,
			     300000, &resp, err, sizeof(err));
	if (rc < 0 || resp->error) {
		fprintf(stderr, "raftfs local add: adding node %d: %s (it keeps running: raftfs "
				"local remove %s %d to drop it)\n",
			id, rc < 0 ? err : resp->error_msg, dir, id);
		if (resp)
			transportpb__response__free_unpacked(resp, NULL);
		return 1;
	}
	transportpb__response__free_unpacked(resp, NULL);
	rc = local_wait_mount(dir, id, 60000);
	if (rc < 0) {
		report_start_failure(dir, id, rc, "its mount did not answer within 60 s");
		return 1;
	}
	printf("node %d: %s  voter\n", id, addr);
	return 0;
}

/* local remove: node id leaves the cluster and stops. */
static int remove_node(const char *dir, int n, int id)
{
	Transportpb__Response *resp = NULL;
	char via[128], err[600];
	int who, rc;

	/* Through another node when one runs (the node itself hands its
	 * leadership over first when it leads, so it works too). */
	if (live_member(dir, n, id, via, sizeof(via), &who) < 0 &&
	    live_member(dir, n, 0, via, sizeof(via), &who) < 0) {
		fprintf(stderr, "raftfs local remove: no node of %s runs\n", dir);
		return 1;
	}
	rc = cli_member_call(via, TRANSPORTPB__MEMBER_REQUEST__OP__REMOVE, (uint64_t)id, NULL, 0,
			     60000, &resp, err, sizeof(err));
	if (rc < 0 || resp->error) {
		fprintf(stderr, "raftfs local remove: removing node %d: %s\n", id,
			rc < 0 ? err : resp->error_msg);
		if (resp)
			transportpb__response__free_unpacked(resp, NULL);
		return 1;
	}
	transportpb__response__free_unpacked(resp, NULL);
	if (local_mark_removed(dir, id) < 0)
		fprintf(stderr, "raftfs local remove: marking node %d removed: %s\n", id,
			strerror(errno));
	if (local_signal(dir, id, SIGTERM, 10000, true) < 0)
		fprintf(stderr, "raftfs local remove: node %d did not stop\n", id);
	local_unmount(dir, id);
	printf("node %d: removed\n", id);
	return 0;
}

static int parse_id(const char *s, int n)
{
	char *end;
	long id = strtol(s, &end, 10);

	return (*end || id < 1 || id > n) ? -1 : (int)id;
}

int cli_local_main(int argc, char **argv)
{
	const char *sub, *dir;
	char err[600];
	int n, id = 0;

	if (cli_wants_help(argc, argv)) {
		fputs(usage, stdout);
		return 0;
	}
	if (argc < 3) {
		fputs(usage, stderr);
		return 2;
	}
	sub = argv[1];
	if (!strcmp(sub, "up") || !strcmp(sub, "create")) {
		if (argc != 4 || (n = atoi(argv[2])) < 1) {
			fprintf(stderr, "raftfs local %s: want N DIR\n", sub);
			return 2;
		}
		if (!strcmp(sub, "up"))
			return up(n, argv[3]);
		if (local_create(argv[3], n, err, sizeof(err)) < 0) {
			fprintf(stderr, "raftfs local create: %s\n", err);
			return 1;
		}
		return 0;
	}
	dir = argv[2];
	n = local_count(dir, err, sizeof(err));
	if (n < 0) {
		fprintf(stderr, "raftfs local %s: %s\n", sub, err);
		return 1;
	}
	if (!strcmp(sub, "add")) {
		if (argc != 3) {
			fprintf(stderr, "raftfs local add: want DIR\n");
			return 2;
		}
		return add(dir, n);
	}
	if (!strcmp(sub, "down") || !strcmp(sub, "status")) {
		if (argc != 3) {
			fprintf(stderr, "raftfs local %s: want DIR\n", sub);
			return 2;
		}
		if (!strcmp(sub, "status"))
			return status(dir, n);
		/* Stopped either way; a drain that failed or timed out is
		 * down's failure (something acknowledged may be lost). */
		bool drained = drain_mounts(dir, n);

		stop_all(dir, n);
		return drained ? 0 : 1;
	}
	if (argc != 4 || (id = parse_id(argv[3], n)) < 0) {
		fprintf(stderr, "raftfs local %s: want DIR ID (ID in 1..%d)\n", sub, n);
		return 2;
	}
	if (!strcmp(sub, "kill"))
		return local_signal(dir, id, SIGKILL, 10000, false) < 0;
	if (!strcmp(sub, "stop"))
		return local_signal(dir, id, SIGTERM, 10000, true) < 0;
	if (!strcmp(sub, "start"))
		return start_one(dir, id);
	if (!strcmp(sub, "remove"))
		return remove_node(dir, n, id);
	if (!strcmp(sub, "addr")) {
		char addr[128];

		if (local_addr(dir, id, addr, sizeof(addr), err, sizeof(err)) < 0) {
			fprintf(stderr, "raftfs local addr: %s\n", err);
			return 1;
		}
		printf("%s\n", addr);
		return 0;
	}
	fprintf(stderr, "raftfs local: unknown subcommand '%s'\n\n%s", sub, usage);
	return 2;
}
