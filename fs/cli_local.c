/* cli_local.c — raftfs local: run an N-node cluster on loopback as
 * separate processes (fs/local_cluster.h has the layout). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "local_cluster.h"

static const char usage[] =
	"NAME\n"
	"    raftfs local - run a raftfs cluster on this machine\n"
	"\n"
	"SYNOPSIS\n"
	"    raftfs local create N DIR   create an N-node cluster's files, start nothing\n"
	"                                (edit DIR/n*/raftfs.ini, then `up`)\n"
	"    raftfs local up N DIR       create (if new) and start an N-node cluster\n"
	"    raftfs local down DIR       stop every node (SIGTERM, SIGKILL after 10 s)\n"
	"    raftfs local kill DIR ID    SIGKILL node ID\n"
	"    raftfs local stop DIR ID    SIGTERM node ID and wait for it to exit\n"
	"    raftfs local start DIR ID   start node ID again\n"
	"    raftfs local status DIR     which nodes run, and their raftfs status\n"
	"    raftfs local addr DIR ID    print node ID's address (host:port)\n"
	"\n"
	"DESCRIPTION\n"
	"    Each node is a separate `raftfs node` process on 127.0.0.1, with its\n"
	"    own config file DIR/nID/raftfs.ini, data directory DIR/nID/data and\n"
	"    log file DIR/nID/node.log. Ports are free ports picked when the\n"
	"    cluster is created and kept in the config files, and each cluster has\n"
	"    a random name, so several clusters run side by side. `up` returns once\n"
	"    a leader is elected (or fails after 30 s, showing the logs' tails).\n"
	"    `up` on an existing DIR starts its stopped nodes.\n"
	"\n"
	"    The nodes run the filesystem: node ID is mounted at DIR/nID and keeps\n"
	"    its config, data and log in DIR/nodeID; `up` returns once every\n"
	"    mount answers, `down` unmounts. With RAFTFS_LOCAL_SM=kv when the\n"
	"    cluster is created, the nodes run the kv test state machine instead\n"
	"    (no mounts; node files in DIR/nID).\n"
	"\n"
	"EXIT STATUS\n"
	"    0 on success, 1 on failure, 2 for bad usage.\n";

static long long mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

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

/* Waits until some node reports itself leader, healthy. */
static int wait_leader(const char *dir, int n, unsigned timeout_ms)
{
	long long deadline = mono_ms() + timeout_ms;

	while (mono_ms() < deadline) {
		struct timespec ts = {0, 20 * 1000 * 1000};

		for (int id = 1; id <= n; id++) {
			Transportpb__NodeStatus *ns;
			char addr[128], err[512];
			int leader;

			if (local_addr(dir, id, addr, sizeof(addr), err, sizeof(err)) < 0 ||
			    local_pid(dir, id) <= 0 ||
			    cli_fetch_status(addr, 500, &ns, err, sizeof(err)) < 0)
				continue;
			leader = ns->healthy && !strcmp(ns->role, "leader");
			if (leader)
				printf("leader: node %d at %s (term %llu)\n", id, addr,
				       (unsigned long long)ns->term);
			transportpb__node_status__free_unpacked(ns, NULL);
			if (leader)
				return 0;
		}
		nanosleep(&ts, NULL);
	}
	return -ETIMEDOUT;
}

static int up(int n, const char *dir)
{
	char err[600];
	int have = local_count(dir, err, sizeof(err));

	if (have < 0 && local_create(dir, n, err, sizeof(err)) < 0) {
		fprintf(stderr, "raftfs local up: %s\n", err);
		return 1;
	}
	if (have > 0 && have != n) {
		fprintf(stderr, "raftfs local up: %s holds a %d-node cluster, not %d\n", dir, have,
			n);
		return 1;
	}
	for (int id = 1; id <= n; id++)
		if (local_start(dir, id, err, sizeof(err)) < 0) {
			fprintf(stderr, "raftfs local up: node %d: %s\n", id, err);
			return 1;
		}
	if (wait_leader(dir, n, 30000) < 0) {
		fprintf(stderr, "raftfs local up: no leader elected within 30 s\n");
		for (int id = 1; id <= n; id++)
			show_log_tail(dir, id);
		return 1;
	}
	if (local_wait_mounts(dir, n, 30000) < 0) {
		fprintf(stderr, "raftfs local up: the mounts did not answer within 30 s\n");
		for (int id = 1; id <= n; id++)
			show_log_tail(dir, id);
		return 1;
	}
	for (int id = 1; id <= n; id++) {
		char addr[128], nd[4096], mnt[4096];

		local_node_dir(dir, id, nd, sizeof(nd));
		local_mount_path(dir, id, mnt, sizeof(mnt));
		if (local_addr(dir, id, addr, sizeof(addr), err, sizeof(err)) == 0)
			printf("node %d: %s  pid %d  log %s/node.log%s%s\n", id, addr,
			       (int)local_pid(dir, id), nd, local_is_fs(dir) ? "  mount " : "",
			       local_is_fs(dir) ? mnt : "");
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

	if (argc < 3 || cli_wants_help(argc, argv)) {
		fputs(usage, argc < 3 ? stderr : stdout);
		return argc < 3 ? 2 : 0;
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
	if (!strcmp(sub, "down") || !strcmp(sub, "status")) {
		if (argc != 3) {
			fprintf(stderr, "raftfs local %s: want DIR\n", sub);
			return 2;
		}
		if (!strcmp(sub, "status"))
			return status(dir, n);
		for (int i = 1; i <= n; i++)
			if (local_pid(dir, i) > 0)
				kill(local_pid(dir, i), SIGTERM);
		for (int i = 1; i <= n; i++)
			local_signal(dir, i, SIGTERM, 10000, true);
		for (int i = 1; i <= n; i++)
			local_unmount(dir, i);
		return 0;
	}
	if (argc != 4 || (id = parse_id(argv[3], n)) < 0) {
		fprintf(stderr, "raftfs local %s: want DIR ID (ID in 1..%d)\n", sub, n);
		return 2;
	}
	if (!strcmp(sub, "kill"))
		return local_signal(dir, id, SIGKILL, 10000, false) < 0;
	if (!strcmp(sub, "stop"))
		return local_signal(dir, id, SIGTERM, 10000, true) < 0;
	if (!strcmp(sub, "start")) {
		if (local_start(dir, id, err, sizeof(err)) < 0) {
			fprintf(stderr, "raftfs local start: %s\n", err);
			return 1;
		}
		return 0;
	}
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
