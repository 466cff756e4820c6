/* node_bench.c — benchmark of the node runtime on a 3-node loopback cluster
 * of real `raftfs node` processes (the test state machine, RocksDB with
 * synced writes, TCP):
 *   - commit latency p50/p99 and throughput for 1 and 64 concurrent
 *     proposers, with 128 B and 4 KiB commands (puts sent to the leader,
 *     and one proposer through a follower: forwarded);
 *   - linearizable reads (ReadIndex barrier + query), one reader on the
 *     leader and one on a follower (with lease reads, one round trip);
 *   - failover: kill -9 of the leader until the first new commit, through
 *     a follower, over 20 trials: p50/p99/max.
 *
 *   node-bench [--raftfs PATH] [--dir DIR] [--seconds S] [--trials N (0: no failover)]
 * --dir is kept afterwards and must not hold a cluster already.
 * Build in Release (no sanitizers) to measure.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client.h"

static const char *raftfs = RAFTFS_BIN;
static char dir[512];

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

static void node_addr(int id, char *out, size_t len)
{
	char cmd[1024];
	FILE *p;

	snprintf(cmd, sizeof(cmd), "%s local addr %s %d", raftfs, dir, id);
	p = popen(cmd, "r");
	out[0] = '\0';
	if (p) {
		if (fgets(out, (int)len, p))
			out[strcspn(out, "\n")] = '\0';
		pclose(p);
	}
}

/* Status of a node: role is leader? Its leader id into *leader. */
static int node_status(const char *addr, bool *is_leader, uint64_t *leader, bool *healthy)
{
	Transportpb__Request req = TRANSPORTPB__REQUEST__INIT;
	Transportpb__StatusRequest sr = TRANSPORTPB__STATUS_REQUEST__INIT;
	Transportpb__Response *resp;
	char err[256];
	client *c;
	int rc;

	rc = client_connect(addr, 300, &c, err, sizeof(err));
	if (rc < 0)
		return rc;
	req.op_case = TRANSPORTPB__REQUEST__OP_STATUS;
	req.status = &sr;
	rc = client_call(c, &req, &resp, 500, err, sizeof(err));
	client_close(c);
	if (rc < 0)
		return rc;
	if (!resp->status) {
		transportpb__response__free_unpacked(resp, NULL);
		return -EPROTO;
	}
	*is_leader = !strcmp(resp->status->role, "leader");
	*leader = resp->status->leader;
	*healthy = resp->status->healthy;
	transportpb__response__free_unpacked(resp, NULL);
	return 0;
}

/* Waits until every node is healthy and agrees on one leader; its id. */
static int wait_stable(double timeout_ms)
{
	double deadline = now_ms() + timeout_ms;

	while (now_ms() < deadline) {
		uint64_t leaders[4] = {0};
		int ok = 1, self_leader = 0;

		for (int id = 1; id <= 3; id++) {
			char addr[128];
			bool il = false, h = false;

			node_addr(id, addr, sizeof(addr));
			if (node_status(addr, &il, &leaders[id], &h) < 0 || !h)
				ok = 0;
			if (il)
				self_leader = id;
		}
		if (ok && self_leader && leaders[1] == leaders[2] && leaders[2] == leaders[3])
			return self_leader;
		usleep(20000);
	}
	return -1;
}

/* Sends req and waits for the node's answer: its error code (0: done). */
static int call(client *c, Transportpb__Request *req, unsigned timeout_ms)
{
	Transportpb__Response *resp;
	char err[256];
	int rc = client_call(c, req, &resp, timeout_ms + 1000, err, sizeof(err));

	if (rc < 0)
		return rc;
	rc = resp->error;
	transportpb__response__free_unpacked(resp, NULL);
	return rc;
}

static int put(client *c, const char *key, size_t vsize, unsigned timeout_ms)
{
	Transportpb__Request req = TRANSPORTPB__REQUEST__INIT;
	Transportpb__ProposeRequest pr = TRANSPORTPB__PROPOSE_REQUEST__INIT;
	char cmd[8192];
	size_t kl = strlen(key);

	memcpy(cmd, key, kl);
	cmd[kl] = '=';
	memset(cmd + kl + 1, 'v', vsize - kl - 1);
	pr.data.data = (uint8_t *)cmd;
	pr.data.len = vsize;
	pr.timeout_ms = timeout_ms;
	req.op_case = TRANSPORTPB__REQUEST__OP_PROPOSE;
	req.propose = &pr;
	return call(c, &req, timeout_ms);
}

/* A linearizable read of key (ReadIndex barrier, then the query). */
static int get(client *c, const char *key, unsigned timeout_ms)
{
	Transportpb__Request req = TRANSPORTPB__REQUEST__INIT;
	Transportpb__QueryRequest q = TRANSPORTPB__QUERY_REQUEST__INIT;

	q.data.data = (uint8_t *)key;
	q.data.len = strlen(key);
	q.linearizable = true;
	req.op_case = TRANSPORTPB__REQUEST__OP_QUERY;
	req.query = &q;
	return call(c, &req, timeout_ms);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, double p)
{
	size_t i = (size_t)(p * (double)(n - 1) + 0.5);

	return n ? v[i < n ? i : n - 1] : 0;
}

typedef struct worker {
	pthread_t th;
	int id;
	char addr[128];
	size_t vsize;
	bool read; /* linearizable reads instead of puts */
	double end_ms;
	double *lat;
	size_t n, cap;
	int errors;
} worker;

static void *worker_main(void *arg)
{
	worker *w = arg;
	char err[256], key[64];
	client *c;
	unsigned long i = 0;

	if (client_connect(w->addr, 2000, &c, err, sizeof(err)) < 0) {
		fprintf(stderr, "worker %d: %s\n", w->id, err);
		w->errors++;
		return NULL;
	}
	while (now_ms() < w->end_ms) {
		double t0 = now_ms();

		snprintf(key, sizeof(key), "w%d-%lu", w->id, ++i);
		if ((w->read ? get(c, key, 5000) : put(c, key, w->vsize, 5000)) != 0) {
			w->errors++;
			continue;
		}
		if (w->n == w->cap) {
			w->cap = w->cap ? 2 * w->cap : 4096;
			w->lat = realloc(w->lat, w->cap * sizeof(double));
		}
		w->lat[w->n++] = now_ms() - t0;
	}
	client_close(c);
	return NULL;
}

static void throughput(const char *what, const char *addr, int nworkers, size_t vsize, bool read,
		       double seconds)
{
	worker *ws = calloc((size_t)nworkers, sizeof(worker));
	double start = now_ms(), *all;
	size_t total = 0, k = 0;
	int errors = 0;

	for (int i = 0; i < nworkers; i++) {
		ws[i].id = i;
		ws[i].vsize = vsize;
		ws[i].read = read;
		ws[i].end_ms = start + seconds * 1e3;
		snprintf(ws[i].addr, sizeof(ws[i].addr), "%s", addr);
		pthread_create(&ws[i].th, NULL, worker_main, &ws[i]);
	}
	for (int i = 0; i < nworkers; i++) {
		pthread_join(ws[i].th, NULL);
		total += ws[i].n;
		errors += ws[i].errors;
	}
	double elapsed = (now_ms() - start) / 1e3;
	all = malloc((total ? total : 1) * sizeof(double));
	for (int i = 0; i < nworkers; i++) {
		memcpy(all + k, ws[i].lat, ws[i].n * sizeof(double));
		k += ws[i].n;
		free(ws[i].lat);
	}
	qsort(all, total, sizeof(double), cmp_double);
	printf("| %-8s | %2d %s | %5zu B | %9.0f %s/s | p50 %7.3f ms | p99 %7.3f ms | %d "
	       "errors |\n",
	       what, nworkers, read ? "readers  " : "proposers", read ? 0 : vsize, total / elapsed,
	       read ? "reads  " : "commits", pct(all, total, 0.5), pct(all, total, 0.99), errors);
	fflush(stdout);
	free(all);
	free(ws);
}

static void failover(int trials)
{
	double *t = calloc((size_t)trials, sizeof(double));
	int done = 0;

	for (int trial = 0; trial < trials; trial++) {
		char addr[128], err[256], key[64];
		int leader = wait_stable(30000), target;
		client *c;
		double t0, t1 = -1;

		if (leader < 0) {
			fprintf(stderr, "failover trial %d: cluster not stable\n", trial);
			break;
		}
		target = leader % 3 + 1;
		node_addr(target, addr, sizeof(addr));
		if (client_connect(addr, 2000, &c, err, sizeof(err)) < 0) {
			fprintf(stderr, "failover trial %d: %s\n", trial, err);
			break;
		}
		snprintf(key, sizeof(key), "warm-%d", trial);
		put(c, key, 128, 2000);
		t0 = now_ms();
		run("%s local kill %s %d", raftfs, dir, leader);
		for (int i = 0; t1 < 0 && now_ms() - t0 < 10000; i++) {
			snprintf(key, sizeof(key), "fo-%d-%d", trial, i);
			if (put(c, key, 128, 3000) == 0)
				t1 = now_ms();
		}
		client_close(c);
		if (t1 < 0) {
			fprintf(stderr, "failover trial %d: no commit within 10 s\n", trial);
			break;
		}
		t[done++] = t1 - t0;
		run("%s local start %s %d", raftfs, dir, leader);
	}
	qsort(t, (size_t)done, sizeof(double), cmp_double);
	printf(
	    "| failover (kill -9 leader -> first commit) | %d trials | p50 %.0f ms | p99 %.0f ms "
	    "| max %.0f ms |\n",
	    done, pct(t, (size_t)done, 0.5), pct(t, (size_t)done, 0.99), done ? t[done - 1] : 0);
	free(t);
}

int main(int argc, char **argv)
{
	double seconds = 5;
	int trials = 20, leader, keep = 0;
	char addr[128], faddr[128];

	snprintf(dir, sizeof(dir), "/tmp/raftfs-node-bench.%d", (int)getpid());
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--raftfs") && i + 1 < argc)
			raftfs = argv[++i];
		else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
			snprintf(dir, sizeof(dir), "%s", argv[++i]), keep = 1;
		else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
			seconds = atof(argv[++i]);
		else if (!strcmp(argv[i], "--trials") && i + 1 < argc)
			trials = atoi(argv[++i]);
		else {
			fprintf(stderr,
				"usage: node-bench [--raftfs PATH] [--dir DIR] [--seconds S] "
				"[--trials N]\n");
			return 2;
		}
	}
	if (keep) {
		char marker[600];

		/* `local up` on a cluster's directory starts that cluster
		 * again with its log and data: a second run would measure on
		 * the first one's leftovers (the directory is kept). */
		snprintf(marker, sizeof(marker), "%s/cluster", dir);
		if (access(marker, F_OK) == 0) {
			fprintf(stderr,
				"node-bench: %s already holds a cluster (a kept --dir of an earlier "
				"run?): give a new directory\n",
				dir);
			return 2;
		}
	}
	signal(SIGPIPE, SIG_IGN);
	/* The replicated test state machine: no FUSE mounts involved. */
	setenv("RAFTFS_LOCAL_SM", "kv", 1);
	if (run("%s local up 3 %s >/dev/null", raftfs, dir) != 0) {
		fprintf(stderr, "node-bench: could not start the cluster in %s\n", dir);
		return 1;
	}
	leader = wait_stable(30000);
	node_addr(leader, addr, sizeof(addr));
	node_addr(leader % 3 + 1, faddr, sizeof(faddr));
	printf("3-node loopback cluster in %s, leader node %d (%s)\n\n", dir, leader, addr);
	throughput("leader", addr, 1, 128, false, seconds);
	throughput("follower", faddr, 1, 128, false, seconds);
	throughput("leader", addr, 1, 0, true, seconds);
	throughput("follower", faddr, 1, 0, true, seconds);
	throughput("leader", addr, 1, 4096, false, seconds);
	throughput("leader", addr, 64, 128, false, seconds);
	throughput("leader", addr, 64, 4096, false, seconds);
	if (trials > 0)
		failover(trials);
	run("%s local down %s", raftfs, dir);
	if (!keep)
		run("rm -rf %s", dir);
	return 0;
}
