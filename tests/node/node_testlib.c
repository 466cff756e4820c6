/* node_testlib.c — helpers of the in-process node tests. */
#include "node_testlib.h"

#include "client.h"

#include <arpa/inet.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

uint16_t test_free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	uint16_t port = 0;

	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

long long test_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void test_one_node_config(node_config *cfg, const char *cluster, const char *dir, uint16_t port)
{
	config_defaults(cfg);
	cfg->id = 1;
	snprintf(cfg->cluster, sizeof(cfg->cluster), "%s", cluster);
	cfg->peers[0].id = 1;
	snprintf(cfg->peers[0].host, sizeof(cfg->peers[0].host), "127.0.0.1");
	cfg->peers[0].port = port;
	cfg->n_peers = 1;
	snprintf(cfg->listen_host, sizeof(cfg->listen_host), "127.0.0.1");
	cfg->listen_port = port;
	snprintf(cfg->data_dir, sizeof(cfg->data_dir), "%s/n1", dir);
}

bool test_await_lead(node *n, long long deadline)
{
	bool leads = false;

	while (test_now_ms() < deadline) {
		node_get_state(n, NULL, &leads);
		if (leads && node_applied(n) >= 1)
			return true;
		test_nap();
	}
	return false;
}

int test_distinct_ports(uint16_t *port, int n)
{
	for (int i = 0; i < n; i++) {
		bool again = true;

		for (int tries = 0; again && tries < 50; tries++) {
			port[i] = test_free_port();
			again = port[i] == 0;
			for (int j = 0; j < i; j++)
				again = again || port[j] == port[i];
		}
		if (again)
			return -1;
	}
	return 0;
}

void test_member_config(node_config *cfg, const char *cluster, const char *dir, int i, int n,
			const uint16_t *port)
{
	test_one_node_config(cfg, cluster, dir, port[i]);
	cfg->id = (uint64_t)i + 1;
	cfg->n_peers = (size_t)n;
	for (int j = 0; j < n; j++) {
		cfg->peers[j].id = (uint64_t)j + 1;
		snprintf(cfg->peers[j].host, sizeof(cfg->peers[j].host), "127.0.0.1");
		cfg->peers[j].port = port[j];
	}
	snprintf(cfg->data_dir, sizeof(cfg->data_dir), "%s/n%d", dir, i + 1);
}

void test_nap(void)
{
	struct timespec ts = {0, 5 * 1000 * 1000};

	nanosleep(&ts, NULL);
}

/* The node at addr's commit, first and last log index, as its status says
 * (all 0 when it does not answer within timeout_ms). */
static void status_indexes(const char *addr, unsigned timeout_ms, uint64_t *commit,
			   uint64_t *first, uint64_t *last)
{
	Transportpb__Request req = TRANSPORTPB__REQUEST__INIT;
	Transportpb__StatusRequest sr = TRANSPORTPB__STATUS_REQUEST__INIT;
	Transportpb__Response *resp = NULL;
	char err[256];
	client *c;

	*commit = *first = *last = 0;
	if (client_connect(addr, timeout_ms, &c, err, sizeof(err)) < 0)
		return;
	req.op_case = TRANSPORTPB__REQUEST__OP_STATUS;
	req.status = &sr;
	if (client_call(c, &req, &resp, timeout_ms, err, sizeof(err)) == 0) {
		if (resp->status) {
			*commit = resp->status->commit;
			*first = resp->status->first_index;
			*last = resp->status->last_index;
		}
		transportpb__response__free_unpacked(resp, NULL);
	}
	client_close(c);
}

uint64_t test_commit_index(const char *addr, unsigned timeout_ms)
{
	uint64_t commit, first, last;

	status_indexes(addr, timeout_ms, &commit, &first, &last);
	return commit;
}

uint64_t test_first_index(const char *addr, unsigned timeout_ms)
{
	uint64_t commit, first, last;

	status_indexes(addr, timeout_ms, &commit, &first, &last);
	return first;
}

uint64_t test_last_index(const char *addr, unsigned timeout_ms)
{
	uint64_t commit, first, last;

	status_indexes(addr, timeout_ms, &commit, &first, &last);
	return last;
}

int test_leading(node *const *first, size_t stride, int n, long long timeout_ms)
{
	long long deadline = test_now_ms() + timeout_ms;

	while (test_now_ms() < deadline) {
		for (int i = 0; i < n; i++) {
			node *nd = *(node *const *)((const char *)first + (size_t)i * stride);
			bool leads = false;

			node_get_state(nd, NULL, &leads);
			if (leads)
				return i;
		}
		test_nap();
	}
	return -1;
}

int test_kv_cluster_new(struct test_kv_member *m, int n, const char *cluster, char *dir,
			test_kv_tune_fn tune)
{
	uint16_t port[CONFIG_MAX_PEERS];
	const char *why = "no free port";
	char err[256];

	memset(m, 0, (size_t)n * sizeof(*m));
	snprintf(dir, 64, "/tmp/%s.XXXXXX", cluster);
	if (n > CONFIG_MAX_PEERS || !mkdtemp(dir)) {
		fprintf(stderr, "%s: no cluster directory\n", cluster);
		dir[0] = '\0';
		return -1;
	}
	setenv("RAFTFS_TEST_STALL", "1", 1);
	if (test_distinct_ports(port, n) != 0)
		goto failed;
	for (int i = 0; i < n; i++) {
		node_config *c = &m[i].cfg;

		test_member_config(c, cluster, dir, i, n, port);
		c->snapshot_entries = 0;
		c->election_ticks = 50;
		why = err;
		if (kvsm_open(c->data_dir, &m[i].k, err, sizeof(err)) != 0)
			goto failed;
		kvsm_iface(m[i].k, &m[i].inner);
		m[i].sm = m[i].inner;
		if (tune)
			tune(&m[i], i);
		if (node_new(c, &m[i].sm, &m[i].n, err, sizeof(err)) != 0)
			goto failed;
	}
	return 0;
failed:
	fprintf(stderr, "%s setup in %s: %s\n", cluster, dir, why);
	test_kv_cluster_stop(m, n, dir);
	return -1;
}

int test_kv_cluster_launch(struct test_kv_member *m, int n, const char *cluster, char *dir)
{
	for (int i = 0; i < n; i++)
		if (node_launch(m[i].n) != 0) {
			fprintf(stderr, "%s setup in %s: node_launch failed\n", cluster, dir);
			test_kv_cluster_stop(m, n, dir);
			return -1;
		}
	return 0;
}

int test_kv_cluster_start(struct test_kv_member *m, int n, const char *cluster, char *dir,
			  test_kv_tune_fn tune)
{
	if (test_kv_cluster_new(m, n, cluster, dir, tune) != 0)
		return -1;
	return test_kv_cluster_launch(m, n, cluster, dir);
}

int test_kv_node_start(struct test_kv_member *m, const char *cluster, char *dir,
		       test_kv_tune_fn tune)
{
	uint16_t port = test_free_port();
	const char *why = "no free port";
	char err[256];

	memset(m, 0, sizeof(*m));
	snprintf(dir, 64, "/tmp/%s.XXXXXX", cluster);
	if (!mkdtemp(dir)) {
		fprintf(stderr, "%s: no node directory\n", cluster);
		dir[0] = '\0';
		return -1;
	}
	if (!port)
		goto failed;
	test_one_node_config(&m->cfg, cluster, dir, port);
	m->cfg.snapshot_entries = 0;
	why = err;
	if (kvsm_open(m->cfg.data_dir, &m->k, err, sizeof(err)) != 0)
		goto failed;
	kvsm_iface(m->k, &m->inner);
	m->sm = m->inner;
	if (tune)
		tune(m, 0);
	if (node_new(&m->cfg, &m->sm, &m->n, err, sizeof(err)) != 0)
		goto failed;
	why = "node_launch failed";
	if (node_launch(m->n) != 0)
		goto failed;
	return 0;
failed:
	fprintf(stderr, "%s setup in %s: %s\n", cluster, dir, why);
	test_kv_cluster_stop(m, 1, dir);
	return -1;
}

void test_gate_wait(struct test_gate *g)
{
	pthread_mutex_lock(&g->mu);
	while (g->closed)
		pthread_cond_wait(&g->cv, &g->mu);
	pthread_mutex_unlock(&g->mu);
}

void test_gate_open(struct test_gate *g)
{
	pthread_mutex_lock(&g->mu);
	g->closed = false;
	pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->mu);
}

void test_gate_close(struct test_gate *g)
{
	pthread_mutex_lock(&g->mu);
	g->closed = true;
	pthread_mutex_unlock(&g->mu);
}

int test_kv_cluster_stop(struct test_kv_member *m, int n, char *dir)
{
	char cmd[96];
	int rc = 0;

	for (int i = 0; i < n; i++) {
		if (m[i].n) {
			node_stop(m[i].n);
			node_free(m[i].n);
		}
		if (m[i].k)
			kvsm_close(m[i].k);
	}
	memset(m, 0, (size_t)n * sizeof(*m));
	if (dir[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		rc = system(cmd) == 0 ? 0 : -1;
		dir[0] = '\0';
	}
	return rc;
}

void test_on_put(void *arg, int status, int64_t result, uint64_t index)
{
	(void)result;
	(void)index;
	atomic_store((atomic_int *)arg, status == 0 ? 1 : -1);
}

void test_on_count(void *arg, int status, int64_t result, uint64_t index)
{
	(void)result;
	(void)index;
	atomic_fetch_add((atomic_int *)arg + (status == 0 ? 0 : 1), 1);
}

int test_put_wait(node *n, const char *kv, long long ms)
{
	static atomic_int done;
	long long deadline = test_now_ms() + ms;

	atomic_store(&done, 0);
	if (node_start(n, kv, strlen(kv), 30000, test_on_put, &done, NULL, NULL) != 0)
		return -1;
	while (atomic_load(&done) == 0 && test_now_ms() < deadline)
		test_nap();
	return atomic_load(&done);
}

int test_hold_next_save(const node_config *cfg, const char *kind, unsigned ms, char *path,
			size_t cap)
{
	char tmp[4200];
	FILE *f;

	snprintf(path, cap, "%s/stall-%s", cfg->data_dir, kind);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f)
		return -1;
	fprintf(f, "%u\n", ms);
	if (fclose(f) != 0)
		return -1;
	return rename(tmp, path);
}
