/* raft_bench.c — the Raft core's cost with no I/O: three cores on
 * memory_storage in one thread over the simulator's perfect network.
 *
 *   raft-bench [--entries N] [--outstanding K] [--size B]
 *
 * Without --outstanding it measures K = 1 and K = 256. For each K it keeps
 * K proposals outstanding at the leader (proposing more as the leader
 * applies), delivering messages round by round, and reports committed
 * entries per second and messages sent per committed entry. For
 * instruction counts run a fixed workload under callgrind:
 *   valgrind --tool=callgrind raft-bench --entries 20000 --outstanding 256 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster.h"

typedef struct result {
	uint64_t entries;
	double seconds;
	uint64_t msgs;
	uint64_t readies_rounds;
} result;

static double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t find_leader(sim_cluster *c)
{
	for (uint64_t i = 1; i <= c->opts.n_nodes; i++)
		if (c->nodes[i].r && raft_is_leader(c->nodes[i].r))
			return i;
	return 0;
}

static int run(uint64_t entries, uint64_t outstanding, size_t size, result *out)
{
	sim_opts o;
	sim_opts_default(&o, 3, 42);
	o.no_checks = true;
	o.trace = NULL;
	o.max_inflight = 256;
	o.max_msg_bytes = 1 << 20;
	sim_cluster *c;
	int rc = sim_cluster_new(&o, &c);
	if (rc != 0) {
		fprintf(stderr, "raft-bench: create cluster: %s\n", raft_strerror(rc));
		return 1;
	}
	c->trace = NULL; /* never trace while measuring, whatever SIM_TRACE says */
	uint64_t leader = 0;
	for (int i = 0; i < 1000 && !leader; i++) {
		sim_tick(c);
		leader = find_leader(c);
	}
	if (!leader) {
		fprintf(stderr, "raft-bench: no leader elected in 1000 ticks\n");
		sim_cluster_free(c);
		return 1;
	}
	sim_settle(c);

	uint8_t *data = malloc(size);
	if (!data) {
		sim_cluster_free(c);
		return 1;
	}
	memset(data, 0xab, size);
	sim_node *ln = &c->nodes[leader];
	uint64_t base = ln->sm.applied, proposed = 0;
	uint64_t msgs0 = c->net.msgs_sent, rounds = 0;
	double t0 = now_seconds();
	while (ln->sm.applied - base < entries) {
		uint64_t done = ln->sm.applied - base;
		while (proposed < entries && proposed - done < outstanding) {
			memcpy(data, &proposed, sizeof(proposed) < size ? sizeof(proposed) : size);
			rc = sim_propose(c, leader, data, size, NULL, NULL);
			if (rc != 0) {
				fprintf(stderr, "raft-bench: propose on leader %llu: %s\n",
					(unsigned long long)leader, raft_strerror(rc));
				goto out;
			}
			proposed++;
		}
		rounds++;
		if (!sim_deliver_round(c))
			sim_tick(c); /* idle: only time can make progress */
		if (!c->nodes[leader].r || !raft_is_leader(c->nodes[leader].r)) {
			fprintf(stderr, "raft-bench: leader %llu lost leadership\n",
				(unsigned long long)leader);
			rc = 1;
			goto out;
		}
	}
	out->seconds = now_seconds() - t0;
	out->entries = ln->sm.applied - base;
	out->msgs = c->net.msgs_sent - msgs0;
	out->readies_rounds = rounds;
out:
	free(data);
	sim_cluster_free(c);
	return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
	uint64_t entries = 200000, outstanding = 0;
	size_t size = 128;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--entries") == 0 && i + 1 < argc)
			entries = strtoull(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--outstanding") == 0 && i + 1 < argc)
			outstanding = strtoull(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--size") == 0 && i + 1 < argc)
			size = strtoul(argv[++i], NULL, 10);
		else {
			fprintf(stderr,
				"usage: raft-bench [--entries N] [--outstanding K] [--size B]\n");
			return 2;
		}
	}
	if (entries == 0 || size == 0) {
		fprintf(stderr, "raft-bench: --entries and --size must be positive\n");
		return 2;
	}
	uint64_t ks[2] = {1, 256};
	size_t nk = 2;
	if (outstanding) {
		ks[0] = outstanding;
		nk = 1;
	}
	printf("%-12s %10s %10s %14s %14s %12s\n", "outstanding", "entries", "seconds", "entries/s",
	       "msgs/entry", "rounds");
	for (size_t k = 0; k < nk; k++) {
		result r = {0};
		if (run(entries, ks[k], size, &r) != 0)
			return 1;
		printf("%-12llu %10llu %10.3f %14.0f %14.2f %12llu\n", (unsigned long long)ks[k],
		       (unsigned long long)r.entries, r.seconds, (double)r.entries / r.seconds,
		       (double)r.msgs / (double)r.entries, (unsigned long long)r.readies_rounds);
	}
	return 0;
}
