/* test_order.c — one node's pipelined proposals apply in the order they were
 * started, each at most once, on every replica, while the network loses
 * forwarded proposals and the leader is cut off or stopped (node.h,
 * "Guarantees"; consensus/README-node.md, "Order").
 *
 * Three in-process nodes over loopback TCP. Two proposer threads (on nodes
 * 1 and 2) keep many proposals in flight each; a message filter drops a
 * share of the Raft messages carrying proposals; a fault thread isolates
 * whoever leads, or stops and restarts node 3 when it leads. At the end all
 * replicas must have executed the same commands in the same order, each
 * proposer's commands in increasing start order, every acknowledged one
 * exactly once, and the completions must report increasing indexes. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "node.h"
#include "raft_types.h"

#define N_NODES 3
#define N_PROPOSERS 2 /* on nodes 1 and 2; node 3 is the one stopped */
#define PER_PROPOSER 3000 /* at least; more until MIN_REFUSED entries were skipped */
#define MAX_PER_PROPOSER 40000
#define MIN_REFUSED 20
#define WINDOW 48
#define DROP_PCT 25

/* ---- a state machine that records what it executed, in order ---- */

struct exec {
	uint32_t proposer, i; /* from the command */
};

struct order_sm {
	pthread_mutex_t mu;
	uint64_t applied;
	dedup *dd;
	struct exec *log;
	size_t n, cap;
};

static uint64_t osm_applied(void *ctx)
{
	struct order_sm *s = ctx;
	uint64_t a;

	pthread_mutex_lock(&s->mu);
	a = s->applied;
	pthread_mutex_unlock(&s->mu);
	return a;
}

static int osm_apply(void *ctx, uint64_t index, const envelope *env, const uint8_t *cmd, size_t len,
		     int64_t *result)
{
	struct order_sm *s = ctx;
	struct exec e;

	if (len != sizeof(e))
		return -22;
	memcpy(&e, cmd, sizeof(e));
	pthread_mutex_lock(&s->mu);
	switch (dedup_check(s->dd, env->client, env->seq, result)) {
	case DEDUP_DUPLICATE:
		break;
	case DEDUP_STALE:
		*result = -1;
		break;
	default:
		if (s->n == s->cap) {
			s->cap = s->cap ? 2 * s->cap : 1024;
			s->log = realloc(s->log, s->cap * sizeof(*s->log));
		}
		s->log[s->n++] = e;
		*result = (int64_t)e.i;
		dedup_record(s->dd, env->client, env->seq, env->min_pending, *result);
		break;
	}
	s->applied = index;
	pthread_mutex_unlock(&s->mu);
	return 0;
}

static int osm_apply_empty(void *ctx, uint64_t index)
{
	struct order_sm *s = ctx;

	pthread_mutex_lock(&s->mu);
	s->applied = index;
	pthread_mutex_unlock(&s->mu);
	return 0;
}

static const dedup *osm_dedup(void *ctx)
{
	return ((struct order_sm *)ctx)->dd;
}

/* ---- the network's faults (filters run on the loop threads) ---- */

static _Atomic uint64_t isolated; /* node id cut off from the others, 0: none */
static _Atomic uint64_t dropped, dropped_props, filter_ctr;

static bool lossy(void *arg, const struct raft_msg *m)
{
	uint64_t iso = atomic_load(&isolated), x;

	(void)arg;
	if (iso && (m->from == iso || m->to == iso))
		return true;
	if (m->type != RAFT_MSG_PROP && m->type != RAFT_MSG_APP)
		return false;
	if (m->type == RAFT_MSG_APP && m->n_entries == 0)
		return false;
	/* splitmix64 of a shared counter: a thread-safe coin. */
	x = atomic_fetch_add(&filter_ctr, 1) * 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x ^= x >> 31;
	if (x % 100 >= DROP_PCT)
		return false;
	atomic_fetch_add(&dropped, 1);
	if (m->type == RAFT_MSG_PROP)
		atomic_fetch_add(&dropped_props, 1);
	return true;
}

/* ---- the cluster ---- */

struct member {
	node_config cfg;
	struct order_sm sm;
	node_sm iface;
	node *n;
};

struct proposer;

struct fx {
	char dir[64];
	struct member m[N_NODES];
	int victim; /* the member stopped and restarted (no proposer on it) */
	_Atomic bool done;
};

static uint16_t free_port_base(void)
{
	for (int tries = 0; tries < 200; tries++) {
		uint16_t base = (uint16_t)(20000 + (getpid() * 11 + tries * 137) % 30000);
		int ok = 1;

		for (int i = 0; i < N_NODES && ok; i++) {
			struct sockaddr_in a = {.sin_family = AF_INET,
						.sin_port = htons((uint16_t)(base + i)),
						.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
			int fd = socket(AF_INET, SOCK_STREAM, 0);

			ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
			if (fd >= 0)
				close(fd);
		}
		if (ok)
			return base;
	}
	return 0;
}

static void sm_reset(struct order_sm *s)
{
	dedup_free(s->dd);
	free(s->log);
	pthread_mutex_destroy(&s->mu);
	memset(s, 0, sizeof(*s));
}

static void member_start(struct fx *f, int i)
{
	struct member *m = &f->m[i];
	char err[256] = "";

	/* A fresh, empty state machine: the node replays its whole log (the
	 * log is never compacted without snapshot hooks). */
	sm_reset(&m->sm);
	pthread_mutex_init(&m->sm.mu, NULL);
	m->sm.dd = dedup_new();
	assert_non_null(m->sm.dd);
	m->iface = (node_sm){.ctx = &m->sm,
			     .applied_index = osm_applied,
			     .apply = osm_apply,
			     .apply_empty = osm_apply_empty,
			     .dedup_table = osm_dedup};
	if (node_new(&m->cfg, &m->iface, &m->n, err, sizeof(err)) != 0)
		fail_msg("node_new %d: %s", i + 1, err);
	node_set_msg_filter(m->n, lossy, NULL);
	assert_int_equal(node_launch(m->n), 0);
}

static void member_stop(struct fx *f, int i)
{
	if (f->m[i].n) {
		node_stop(f->m[i].n);
		node_free(f->m[i].n);
		f->m[i].n = NULL;
	}
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	uint16_t base = free_port_base();

	assert_non_null(f);
	assert_int_not_equal(base, 0);
	snprintf(f->dir, sizeof(f->dir), "/tmp/order.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	for (int i = 0; i < N_NODES; i++) {
		node_config *c = &f->m[i].cfg;

		config_defaults(c);
		c->id = (uint64_t)i + 1;
		snprintf(c->cluster, sizeof(c->cluster), "order");
		for (int j = 0; j < N_NODES; j++) {
			c->peers[j].id = (uint64_t)j + 1;
			snprintf(c->peers[j].host, sizeof(c->peers[j].host), "127.0.0.1");
			c->peers[j].port = (uint16_t)(base + j);
		}
		c->n_peers = N_NODES;
		snprintf(c->listen_host, sizeof(c->listen_host), "127.0.0.1");
		c->listen_port = (uint16_t)(base + i);
		snprintf(c->data_dir, sizeof(c->data_dir), "%s/n%d", f->dir, i + 1);
		c->proposal_timeout_ms = 20000;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char cmd[128];

	atomic_store(&isolated, 0);
	for (int i = 0; i < N_NODES; i++) {
		member_stop(f, i);
		sm_reset(&f->m[i].sm);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", f->dir);
	free(f);
	return 0;
}

/* ---- proposers ---- */

struct slot {
	struct proposer *p;
	uint32_t i;
};

struct proposer {
	struct fx *f;
	int k, member;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int inflight, completed;
	int started;
	int status[MAX_PER_PROPOSER];
	uint64_t index[MAX_PER_PROPOSER];
	uint32_t last_ok; /* last i completed successfully, +1 */
	bool out_of_order;
	struct slot slots[MAX_PER_PROPOSER];
};

static struct proposer proposers[N_PROPOSERS];

/* Own entries of the proposers' nodes skipped as early so far. */
static uint64_t refused_total(void)
{
	uint64_t sum = 0;

	for (int k = 0; k < N_PROPOSERS; k++)
		sum += node_refused(proposers[k].f->m[proposers[k].member].n);
	return sum;
}

static void on_done(void *arg, int status, int64_t result, uint64_t index)
{
	struct slot *s = arg;
	struct proposer *p = s->p;

	pthread_mutex_lock(&p->mu);
	p->status[s->i] = status;
	p->index[s->i] = index;
	if (status == 0) {
		/* Successful completions come in start order. */
		if (s->i + 1 <= p->last_ok || result != (int64_t)s->i)
			p->out_of_order = true;
		p->last_ok = s->i + 1;
	}
	p->inflight--;
	p->completed++;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

static void *propose_main(void *arg)
{
	struct proposer *p = arg;
	node *n = p->f->m[p->member].n;

	/* Enough proposals to see several lost and resent. */
	for (uint32_t i = 0; i < MAX_PER_PROPOSER &&
			     (i < PER_PROPOSER || refused_total() < MIN_REFUSED);
	     i++) {
		struct exec e = {(uint32_t)p->k, i};

		pthread_mutex_lock(&p->mu);
		p->started++;
		pthread_mutex_unlock(&p->mu);
		pthread_mutex_lock(&p->mu);
		while (p->inflight >= WINDOW)
			pthread_cond_wait(&p->cv, &p->mu);
		p->inflight++;
		pthread_mutex_unlock(&p->mu);
		p->slots[i] = (struct slot){p, i};
		if (node_start(n, &e, sizeof(e), 0, on_done, &p->slots[i], NULL, NULL) != 0)
			on_done(&p->slots[i], -1, 0, 0);
	}
	pthread_mutex_lock(&p->mu);
	while (p->completed < p->started)
		pthread_cond_wait(&p->cv, &p->mu);
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

static void pause_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

static int leader_of(struct fx *f)
{
	for (int i = 0; i < N_NODES; i++) {
		bool lead = false;

		if (f->m[i].n)
			node_get_state(f->m[i].n, NULL, &lead);
		if (lead)
			return i;
	}
	return -1;
}

/* Faults on a schedule (not synchronisation): every 300 ms, the leader is
 * cut off for 400 ms, or, every other time the victim leads, the victim is
 * stopped and restarted. Only this thread changes the victim's node. */
static void *fault_main(void *arg)
{
	struct fx *f = arg;
	int round = 0;

	while (!atomic_load(&f->done)) {
		int l;

		pause_ms(300);
		l = leader_of(f);
		if (l < 0)
			continue;
		if (l == f->victim && round % 2 == 0) {
			member_stop(f, l);
			pause_ms(200);
			member_start(f, l);
		} else {
			atomic_store(&isolated, (uint64_t)l + 1);
			pause_ms(400);
			atomic_store(&isolated, 0);
		}
		round++;
	}
	return NULL;
}

/* Waits until every node applied at least index (bounded). */
static void await_applied(struct fx *f, uint64_t index)
{
	for (int t = 0; t < 3000; t++) {
		int ok = 0;

		for (int i = 0; i < N_NODES; i++)
			ok += node_applied(f->m[i].n) >= index;
		if (ok == N_NODES)
			return;
		pause_ms(10);
	}
	fail_msg("replicas did not apply index %llu in 30 s", (unsigned long long)index);
}

static void test_order_under_faults(void **state)
{
	struct fx *f = *state;
	struct proposer *pr = proposers;
	pthread_t pt[N_PROPOSERS], ft;
	uint64_t max_index = 0, refused = 0;
	int ok_total = 0;

	for (int i = 0; i < N_NODES; i++)
		member_start(f, i);
	while ((f->victim = leader_of(f)) < 0)
		pause_ms(10);
	assert_int_equal(pthread_create(&ft, NULL, fault_main, f), 0);
	/* The proposers start on the followers: their proposals are
	 * forwarded, which is where they get lost. */
	for (int k = 0; k < N_PROPOSERS; k++) {
		pr[k].f = f;
		pr[k].k = k;
		pr[k].member = (f->victim + 1 + k) % N_NODES;
		pthread_mutex_init(&pr[k].mu, NULL);
		pthread_cond_init(&pr[k].cv, NULL);
	}
	for (int k = 0; k < N_PROPOSERS; k++)
		assert_int_equal(pthread_create(&pt[k], NULL, propose_main, &pr[k]), 0);
	for (int k = 0; k < N_PROPOSERS; k++)
		pthread_join(pt[k], NULL);
	atomic_store(&f->done, true);
	pthread_join(ft, NULL);
	atomic_store(&isolated, 0);

	for (int k = 0; k < N_PROPOSERS; k++) {
		uint64_t last = 0;
		int ok = 0;

		assert_false(pr[k].out_of_order);
		/* Completions in start order carry increasing indexes. */
		for (int i = 0; i < pr[k].started; i++) {
			if (pr[k].status[i] != 0)
				continue;
			assert_true(pr[k].index[i] > last);
			last = pr[k].index[i];
			ok++;
		}
		if (last > max_index)
			max_index = last;
		ok_total += ok;
		refused += node_refused(f->m[pr[k].member].n);
		printf("proposer on node %d: %d/%d applied, %llu own entries skipped as early\n",
		       pr[k].member + 1, ok, pr[k].started,
		       (unsigned long long)node_refused(f->m[pr[k].member].n));
	}
	printf("%llu messages dropped, %llu of them forwarded proposals\n",
	       (unsigned long long)atomic_load(&dropped),
	       (unsigned long long)atomic_load(&dropped_props));
	/* The faults did lose forwarded proposals, and most commands made it. */
	assert_true(refused >= MIN_REFUSED);
	assert_true(ok_total > N_PROPOSERS * PER_PROPOSER / 2);

	await_applied(f, max_index);
	/* Every replica executed the same commands in the same order... */
	for (int i = 1; i < N_NODES; i++) {
		struct order_sm *a = &f->m[0].sm, *b = &f->m[i].sm;
		size_t n;

		pthread_mutex_lock(&a->mu);
		pthread_mutex_lock(&b->mu);
		n = a->n < b->n ? a->n : b->n;
		assert_true(n > 0);
		assert_memory_equal(a->log, b->log, n * sizeof(struct exec));
		pthread_mutex_unlock(&b->mu);
		pthread_mutex_unlock(&a->mu);
	}
	/* ...each proposer's in start order, each once, every acknowledged
	 * one among them. */
	{
		struct order_sm *s = &f->m[0].sm;
		int64_t last[N_PROPOSERS];
		static int seen[N_PROPOSERS][MAX_PER_PROPOSER];

		for (int k = 0; k < N_PROPOSERS; k++)
			last[k] = -1;
		pthread_mutex_lock(&s->mu);
		for (size_t j = 0; j < s->n; j++) {
			struct exec e = s->log[j];

			assert_true(e.proposer < N_PROPOSERS && e.i < MAX_PER_PROPOSER);
			assert_true((int64_t)e.i > last[e.proposer]);
			last[e.proposer] = e.i;
			seen[e.proposer][e.i]++;
		}
		pthread_mutex_unlock(&s->mu);
		for (int k = 0; k < N_PROPOSERS; k++)
			for (int i = 0; i < pr[k].started; i++)
				if (pr[k].status[i] == 0)
					assert_int_equal(seen[k][i], 1);
	}
	for (int k = 0; k < N_PROPOSERS; k++) {
		pthread_mutex_destroy(&pr[k].mu);
		pthread_cond_destroy(&pr[k].cv);
	}
}

int main(void)
{
	/* As raftfs does: a peer closing its end must not kill the process
	 * writing to it (the transport gets EPIPE instead). */
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_order_under_faults, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
