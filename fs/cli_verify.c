/* cli_verify.c — raftfs verify: are the mounts (or the nodes' trees) of a
 * cluster identical? */
#include <errno.h>
#include <stdio.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "config.h"
#include "local_cluster.h"
#include "tree_compare.h"
#include "tree_verify.h"

static const char usage[] =
    "NAME\n"
    "    raftfs verify - compare the mounts of a raftfs cluster\n"
    "\n"
    "SYNOPSIS\n"
    "    raftfs verify [--wait SECONDS] DIR\n"
    "    raftfs verify [--wait SECONDS] MOUNT MOUNT...\n"
    "    raftfs verify [--wait SECONDS] --trees DIR\n"
    "\n"
    "DESCRIPTION\n"
    "    DIR is the directory of a `raftfs local` cluster: its mounts DIR/n1,\n"
    "    DIR/n2, ... are compared. Otherwise every MOUNT is compared with the\n"
    "    first. Every difference in paths, types, ids (inode numbers), modes,\n"
    "    owners, sizes, link counts, mtimes, ctimes, symlink targets, xattrs\n"
    "    and content is listed, one per line, with its path relative to the\n"
    "    roots (trees of any depth, paths longer than PATH_MAX too). atime is\n"
    "    not replicated and not compared. Whatever cannot be read counts as a\n"
    "    difference.\n"
    "\n"
    "    Nodes apply commands at their own pace: with --wait, the comparison\n"
    "    is repeated until the mounts are identical or SECONDS have passed,\n"
    "    and the differences of the last round are listed.\n"
    "\n"
    "    --trees compares the nodes' data directories DIR/node<i>/data instead\n"
    "    (the plain tree with the ids and replicated ctimes kept in xattrs,\n"
    "    the hard-link index DATA/ids, the orphans and which nodes released\n"
    "    them), at one applied index: every node must report applied ==\n"
    "    commit == N before and after its tree is read, or the round is\n"
    "    repeated (within --wait). A difference found then is a divergence.\n"
    "\n"
    "EXIT STATUS\n"
    "    0 if identical, 1 if they differ or could not be read, 2 for bad usage.\n";

struct diffs {
	const char *a, *b;
	bool quiet;
	int count;
};

static void print_diff(void *arg, const char *msg)
{
	struct diffs *d = arg;

	d->count++;
	if (!d->quiet)
		printf("%s vs %s: %s\n", d->a, d->b, msg);
}

static long long mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Compares every mount with the first; the number of differences (or of
 * unreadable trees). */
static int compare_all(char **mounts, int n, bool quiet)
{
	int total = 0;

	for (int i = 1; i < n; i++) {
		struct diffs d = {mounts[0], mounts[i], quiet, 0};
		int rc = tree_compare(mounts[0], mounts[i], TREE_CMP_MOUNT, print_diff, &d);

		/* An unreadable tree is reported as differences too. */
		total += rc < 0 && d.count == 0 ? 1 : d.count;
	}
	return total;
}

/* The comparison holds two descriptors per directory level (tree_compare.h):
 * allow as deep a tree as the hard limit does. */
static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int cli_verify_main(int argc, char **argv)
{
	char **mounts = NULL, err[600];
	long long deadline;
	double wait_s = 0;
	bool trees = false;
	int i = 1, n, diffs, status;

	if (cli_wants_help(argc, argv)) {
		fputs(usage, stdout);
		return 0;
	}
	raise_fd_limit();
	if (i + 1 < argc && !strcmp(argv[i], "--wait")) {
		char *end;

		wait_s = strtod(argv[i + 1], &end);
		if (*end || wait_s < 0) {
			fprintf(stderr, "raftfs verify: --wait %s: not a number of seconds\n",
				argv[i + 1]);
			return 2;
		}
		i += 2;
	}
	if (i < argc && !strcmp(argv[i], "--trees")) {
		trees = true;
		i++;
	}
	if (i >= argc || (trees && argc - i != 1)) {
		fputs(usage, stderr);
		return 2;
	}
	if (trees) {
		status = tree_verify_nodes(argv[i], wait_s, stdout);
		return status < 0 ? 1 : status;
	}
	if (argc - i == 1) {
		int ids[CONFIG_MAX_PEERS];

		/* A node removed from the cluster (raftfs local remove) no
		 * longer follows it: its mount is not compared. */
		n = local_members(argv[i], ids, CONFIG_MAX_PEERS, err, sizeof(err));
		if (n < 0) {
			fprintf(stderr, "raftfs verify: %s\n", err);
			return 1;
		}
		mounts = calloc((size_t)n, sizeof(*mounts));
		for (int k = 0; mounts && k < n; k++)
			if (asprintf(&mounts[k], "%s/n%d", argv[i], ids[k]) < 0)
				mounts[k] = NULL;
	} else {
		n = argc - i;
		mounts = calloc((size_t)n, sizeof(*mounts));
		for (int k = 0; mounts && k < n; k++)
			mounts[k] = strdup(argv[i + k]);
	}
	for (int k = 0; mounts && k < n; k++)
		if (!mounts[k]) {
			fprintf(stderr, "raftfs verify: out of memory\n");
			return 1;
		}
	if (!mounts) {
		fprintf(stderr, "raftfs verify: out of memory\n");
		return 1;
	}
	deadline = mono_ms() + (long long)(wait_s * 1000);
	for (;;) {
		struct timespec ts = {0, 100 * 1000 * 1000};

		diffs = compare_all(mounts, n, true);
		if (diffs == 0 || mono_ms() >= deadline)
			break;
		nanosleep(&ts, NULL);
	}
	if (diffs)
		diffs = compare_all(mounts, n, false);
	if (diffs)
		printf("%d difference%s\n", diffs, diffs == 1 ? "" : "s");
	else
		printf("%d mounts identical\n", n);
	status = diffs ? 1 : 0;
	for (int k = 0; k < n; k++)
		free(mounts[k]);
	free(mounts);
	return status;
}
