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

void node_stages_add(node_stages *s, node_stage st, uint64_t from, uint64_t to)
{
	if (!s->on || !from || !to || to < from)
		return;
	atomic_fetch_add(&s->sum_ns[st], to - from);
	atomic_fetch_add(&s->n[st], 1);
}

void node_stages_print(const node_stages *s, uint64_t node_id)
{
	static const char *names[NODE_STAGE_COUNT] = {"queue",	 "persist", "commit",
						      "handoff", "apply",   "reply"};
	char line[512];
	size_t off = 0;

	if (!s->on)
		return;
	for (int i = 0; i < NODE_STAGE_COUNT && off < sizeof(line); i++) {
		uint64_t n = atomic_load(&s->n[i]);
		double mean = n ? (double)atomic_load(&s->sum_ns[i]) / (double)n / 1e3 : 0;
		int w = snprintf(line + off, sizeof(line) - off, " %s %.1f", names[i], mean);

		if (w > 0)
			off += (size_t)w;
	}
	rlog_write(RLOG_INFO, "node %llu stages of %llu own proposals, mean us:%s",
		   (unsigned long long)node_id, (unsigned long long)atomic_load(&s->n[NODE_STAGE_REPLY]),
		   line);
}
