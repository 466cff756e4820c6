/* tree_verify.c — the nodes' data directories compared at one applied index. */
#include "tree_verify.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "config.h"
#include "local_cluster.h"
#include "tree_compare.h"
#include "mono_ms.h"

/* Differences kept for printing; more are counted only. */
#define MAX_LINES VERIFY_MAX_LINES
#define STATUS_TIMEOUT_MS 1000

/* Where a node's state machine stands. */
struct pos {
	int id;  /* the node */
	bool ok; /* it answered */
	uint64_t commit, applied;
	char err[256];
};

struct lines {
	char **v;
	int *pair; /* per line: the index in p of the node compared with p[0] */
	size_t n;
	size_t total;
	const struct pos *p; /* the nodes compared */
};

static void read_positions(const char *dir, int n, struct pos *p)
{
	for (int i = 0; i < n; i++) {
		Transportpb__NodeStatus *ns;
		char addr[128];

		p[i].ok = false;
		if (local_addr(dir, p[i].id, addr, sizeof(addr), p[i].err, sizeof(p[i].err)) < 0 ||
		    cli_fetch_status(addr, STATUS_TIMEOUT_MS, &ns, p[i].err, sizeof(p[i].err)) < 0)
			continue;
		p[i].ok = true;
		p[i].commit = ns->commit;
		p[i].applied = ns->applied;
		transportpb__node_status__free_unpacked(ns, NULL);
	}
}

/* Every node answered, applied all it knows committed, at the same index. */
static bool settled(const struct pos *p, int n)
{
	for (int i = 0; i < n; i++)
		if (!p[i].ok || p[i].applied != p[i].commit || p[i].applied != p[0].applied)
			return false;
	return true;
}

static bool same_positions(const struct pos *x, const struct pos *y, int n)
{
	for (int i = 0; i < n; i++)
		if (x[i].ok != y[i].ok || x[i].commit != y[i].commit ||
		    x[i].applied != y[i].applied)
			return false;
	return true;
}

static void keep_line(void *arg, int other, const char *msg)
{
	struct lines *l = arg;
	char *s;

	l->total++;
	if (l->n == MAX_LINES ||
	    asprintf(&s, "node%d vs node%d: %s", l->p[0].id, l->p[other].id, msg) < 0)
		return;
	l->pair[l->n] = other;
	l->v[l->n++] = s;
}

static void free_lines(struct lines *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	l->n = l->total = 0;
}

/* Compares the first node's data dir with every other's, reading the
 * first once; the differences in l. */
static void compare_nodes(const char *dir, const struct pos *p, int n, struct lines *l)
{
	char(*data)[4096] = calloc((size_t)n, sizeof(*data));
	const char **roots = calloc((size_t)n, sizeof(*roots));

	l->p = p;
	if (!data || !roots) {
		l->total++;
		if (l->n < MAX_LINES && (l->v[l->n] = strdup("trees not compared: out of memory")))
			l->pair[l->n++] = 1;
		goto out;
	}
	for (int i = 0; i < n; i++) {
		local_node_dir(dir, p[i].id, data[i], sizeof(data[i]) - 8);
		strcat(data[i], "/data");
		roots[i] = data[i];
	}
	tree_compare_each(roots, n, TREE_CMP_DATA, keep_line, l);
out:
	free(data);
	free(roots);
}

/* The kept lines, pair by pair (each node's differences with the first
 * together). */
static void print_lines(FILE *out, const struct lines *l, int n)
{
	for (int k = 1; k < n; k++)
		for (size_t i = 0; i < l->n; i++)
			if (l->pair[i] == k)
				fprintf(out, "%s\n", l->v[i]);
}

static void print_positions(FILE *out, const struct pos *p, int n)
{
	for (int i = 0; i < n; i++) {
		if (p[i].ok)
			fprintf(out, "  node %d: commit %llu applied %llu\n", p[i].id,
				(unsigned long long)p[i].commit, (unsigned long long)p[i].applied);
		else
			fprintf(out, "  node %d: no status: %s\n", p[i].id, p[i].err);
	}
}

int tree_verify_nodes(const char *dir, double wait_s, FILE *out)
{
	long long deadline = mono_ms() + (long long)(wait_s * 1000);
	struct lines l = {0};
	struct pos *before, *after;
	char err[600];
	int ids[CONFIG_MAX_PEERS];
	int n, rc = 1, rounds = 0;

	/* Nodes removed from the cluster (raftfs local remove) are left out. */
	n = local_members(dir, ids, CONFIG_MAX_PEERS, err, sizeof(err));
	if (n < 0) {
		fprintf(stderr, "raftfs verify --trees: %s\n", err);
		return -1;
	}
	if (!local_is_fs(dir)) {
		fprintf(stderr, "raftfs verify --trees: %s is not a filesystem cluster\n", dir);
		return -1;
	}
	before = calloc((size_t)n, sizeof(*before));
	after = calloc((size_t)n, sizeof(*after));
	l.v = calloc(MAX_LINES, sizeof(*l.v));
	l.pair = calloc(MAX_LINES, sizeof(*l.pair));
	if (!before || !after || !l.v || !l.pair) {
		fprintf(stderr, "raftfs verify --trees: out of memory\n");
		rc = -1;
		goto out;
	}
	for (int i = 0; i < n; i++)
		before[i].id = after[i].id = ids[i];
	for (;;) {
		struct timespec ts = {0, 50 * 1000 * 1000};

		read_positions(dir, n, before);
		if (settled(before, n)) {
			rounds++;
			compare_nodes(dir, before, n, &l);
			read_positions(dir, n, after);
			if (same_positions(before, after, n))
				break;
			free_lines(&l); /* something was applied meanwhile */
		}
		if (mono_ms() >= deadline) {
			fprintf(
			    out,
			    "the nodes did not hold still at one applied index (%d comparison%s "
			    "overtaken by applies):\n",
			    rounds, rounds == 1 ? "" : "s");
			print_positions(out, rounds ? after : before, n);
			goto out;
		}
		nanosleep(&ts, NULL);
	}
	print_lines(out, &l, n);
	if (l.total)
		fprintf(out, "%zu difference%s at index %llu\n", l.total, l.total == 1 ? "" : "s",
			(unsigned long long)before[0].applied);
	else
		fprintf(out, "%d nodes' trees identical at index %llu\n", n,
			(unsigned long long)before[0].applied);
	rc = l.total ? 1 : 0;
out:
	if (l.v)
		free_lines(&l);
	free(l.v);
	free(l.pair);
	free(before);
	free(after);
	return rc;
}
