/* node_stages.c — per-stage time accounting of a node's own proposals. */
#include "node_stages.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime_log.h"

void node_stages_init(node_stages *s)
{
	const char *e = getenv("RAFTFS_STAGES");

	memset(s, 0, sizeof(*s));
	s->on = e && *e && strcmp(e, "0") != 0;
}

/* The bucket of a time of us microseconds (node_stages.h). */
static unsigned bucket_of(uint64_t us)
{
	unsigned b = 0;

	while (us && b < NODE_STAGE_BUCKETS - 1) {
		us >>= 1;
		b++;
	}
	return b;
}

void node_stages_add(node_stages *s, node_stage st, uint64_t from, uint64_t to)
{
	if (!s->on || !from || !to || to < from)
		return;
	atomic_fetch_add(&s->sum_ns[st], to - from);
	atomic_fetch_add(&s->n[st], 1);
	atomic_fetch_add(&s->hist[st][bucket_of((to - from) / 1000)], 1);
}

uint64_t node_stages_quantile(const node_stages *s, node_stage st, double q)
{
	uint64_t total = 0, seen = 0, want;

	for (unsigned b = 0; b < NODE_STAGE_BUCKETS; b++)
		total += atomic_load(&s->hist[st][b]);
	if (!total)
		return 0;
	/* The smallest count that is at least q of the total (at least 1). */
	want = (uint64_t)(q * (double)total);
	if ((double)want < q * (double)total)
		want++;
	if (want == 0)
		want = 1;
	for (unsigned b = 0; b < NODE_STAGE_BUCKETS - 1; b++) {
		seen += atomic_load(&s->hist[st][b]);
		if (seen >= want)
			return (uint64_t)1 << b;
	}
	return UINT64_MAX;
}

/* Writes "<=N" (">N" for the last bucket, "-" with no times) for quantile
 * q of st. */
static int print_bound(char *out, size_t len, const node_stages *s, node_stage st, double q)
{
	uint64_t us = node_stages_quantile(s, st, q);

	if (us == 0)
		return snprintf(out, len, "-");
	if (us == UINT64_MAX)
		return snprintf(out, len, ">%llu",
				(unsigned long long)((uint64_t)1 << (NODE_STAGE_BUCKETS - 2)));
	return snprintf(out, len, "<=%llu", (unsigned long long)us);
}

void node_stages_print(const node_stages *s, uint64_t node_id)
{
	static const char *names[NODE_STAGE_COUNT] = {"queue",	 "persist", "commit",
						      "handoff", "apply",   "reply"};
	char line[1024], p50[32], p99[32];
	size_t off = 0;

	if (!s->on)
		return;
	for (int i = 0; i < NODE_STAGE_COUNT && off < sizeof(line); i++) {
		uint64_t n = atomic_load(&s->n[i]);
		double mean = n ? (double)atomic_load(&s->sum_ns[i]) / (double)n / 1e3 : 0;
		int w;

		print_bound(p50, sizeof(p50), s, (node_stage)i, 0.5);
		print_bound(p99, sizeof(p99), s, (node_stage)i, 0.99);
		w = snprintf(line + off, sizeof(line) - off, " %s %.1f (p50 %s p99 %s)", names[i],
			     mean, p50, p99);
		if (w > 0)
			off += (size_t)w;
	}
	rlog_write(RLOG_INFO,
		   "node %llu stages of %llu own proposals, mean us (p50, p99 as bucket bounds):%s",
		   (unsigned long long)node_id,
		   (unsigned long long)atomic_load(&s->n[NODE_STAGE_REPLY]), line);
}
