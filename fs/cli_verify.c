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
#include "mono_ms.h"

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

/* At most this many lines are kept (and printed) per pair: two mounts
 * that differ everywhere (a mount lost, a tree not applied) would
 * otherwise hold a line per object of the whole tree in memory. The
 * count of all differences is still exact, and what was not kept is
 * said per pair. tree_verify.c keeps the same number for --trees. */
#define MAX_LINES_PER_PAIR VERIFY_MAX_LINES

/* The differences of one round, kept per pair so that they print pair by
 * pair (as when each mount was compared with the first in turn) although
 * one walk finds them all at once. */
struct diffs {
	char **mounts;
	int n;
	int count;	/* of all pairs */
	bool oom;	/* a line could not be kept */
	char ***lines;	/* per other mount */
	size_t *nlines; /* per other mount */
	size_t *ntotal; /* per other mount: kept or not */
};

static void note_diff(void *arg, int other, const char *msg)
{
	struct diffs *d = arg;
	size_t k = d->nlines[other];
	char **more = d->lines[other], *s;

	d->count++;
	d->ntotal[other]++;
	if (k == MAX_LINES_PER_PAIR)
		return;
	if (!(k & (k - 1))) /* 0 or a power of two: full */
		more = realloc(more, (k ? 2 * k : 1) * sizeof(*more));
	if (more)
		d->lines[other] = more;
	if (!more || asprintf(&s, "%s vs %s: %s", d->mounts[0], d->mounts[other], msg) < 0) {
		d->oom = true;
		return;
	}
	d->lines[other][d->nlines[other]++] = s;
}

static void forget_lines(struct diffs *d)
{
	for (int i = 0; i < d->n; i++) {
		for (size_t k = 0; k < d->nlines[i]; k++)
			free(d->lines[i][k]);
		free(d->lines[i]);
		d->lines[i] = NULL;
		d->nlines[i] = 0;
		d->ntotal[i] = 0;
	}
	d->count = 0;
	d->oom = false;
}

/* Compares every mount with the first, reading each mount once; the
 * number of differences (or of unreadable trees), kept in d. */
static int compare_all(struct diffs *d)
{
	int rc;

	forget_lines(d);
	rc = tree_compare_each((const char *const *)d->mounts, d->n, TREE_CMP_MOUNT, note_diff, d);
	/* An unreadable tree is reported as differences too. */
	return rc < 0 && d->count == 0 ? 1 : d->count;
}

/* The comparison holds a descriptor per mount per directory level
 * (tree_compare.h): allow as deep a tree as the hard limit does. */
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
	struct diffs d = {0};
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
	d.mounts = mounts;
	d.n = n;
	d.lines = calloc((size_t)n, sizeof(*d.lines));
	d.nlines = calloc((size_t)n, sizeof(*d.nlines));
	d.ntotal = calloc((size_t)n, sizeof(*d.ntotal));
	if (!d.lines || !d.nlines || !d.ntotal) {
		fprintf(stderr, "raftfs verify: out of memory\n");
		status = 1;
		goto out;
	}
	/* Until the deadline a round only asks whether the mounts are
	 * identical yet, and stops at the first difference (while they
	 * converge there is one early on: no need to read the rest); the
	 * round at the deadline lists them all. */
	deadline = mono_ms() + (long long)(wait_s * 1000);
	for (;;) {
		struct timespec ts = {0, 100 * 1000 * 1000};

		if (mono_ms() >= deadline) {
			diffs = compare_all(&d);
			break;
		}
		if (tree_differ((const char *const *)mounts, n, TREE_CMP_MOUNT) == 0) {
			diffs = 0;
			break;
		}
		nanosleep(&ts, NULL);
	}
	for (int k = 1; k < n; k++) {
		for (size_t l = 0; l < d.nlines[k]; l++)
			printf("%s\n", d.lines[k][l]);
		if (d.ntotal[k] > d.nlines[k] && !d.oom)
			printf("%s vs %s: %zu more difference%s not shown\n", mounts[0], mounts[k],
			       d.ntotal[k] - d.nlines[k], d.ntotal[k] - d.nlines[k] == 1 ? "" : "s");
	}
	if (d.oom)
		printf("(some differences not shown: out of memory)\n");
	if (diffs)
		printf("%d difference%s\n", diffs, diffs == 1 ? "" : "s");
	else
		printf("%d mounts identical\n", n);
	status = diffs ? 1 : 0;
out:
	if (d.lines && d.nlines && d.ntotal)
		forget_lines(&d);
	free(d.lines);
	free(d.nlines);
	free(d.ntotal);
	for (int k = 0; k < n; k++)
		free(mounts[k]);
	free(mounts);
	return status;
}
