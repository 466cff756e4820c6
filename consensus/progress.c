/* progress.c — per-follower replication progress and flow control. */
#include "progress.h"

#include <stdlib.h>
#include <string.h>

int raft_progress_init(raft_progress *pr, size_t max_inflight, uint64_t max_bytes)
{
	memset(pr, 0, sizeof(*pr));
	pr->ins.size = max_inflight ? max_inflight : 1;
	pr->ins.max_bytes = max_bytes;
	pr->ins.buf = calloc(pr->ins.size, sizeof(uint64_t));
	pr->ins.bytes = calloc(pr->ins.size, sizeof(uint64_t));
	if (!pr->ins.buf || !pr->ins.bytes) {
		raft_progress_destroy(pr);
		return RAFT_ENOMEM;
	}
	return 0;
}

void raft_progress_destroy(raft_progress *pr)
{
	free(pr->ins.buf);
	free(pr->ins.bytes);
	pr->ins.buf = NULL;
	pr->ins.bytes = NULL;
}

static void inflights_reset(raft_inflights *in)
{
	in->start = 0;
	in->count = 0;
	in->in_bytes = 0;
}

void raft_progress_reset(raft_progress *pr, uint64_t match, uint64_t next)
{
	pr->match = match;
	pr->next = next;
	pr->state = RAFT_PROGRESS_PROBE;
	pr->pending_snapshot = 0;
	pr->probe_sent = false;
	pr->recent_active = false;
	inflights_reset(&pr->ins);
}

static void reset_state(raft_progress *pr, raft_progress_state s)
{
	pr->probe_sent = false;
	pr->pending_snapshot = 0;
	pr->state = s;
	inflights_reset(&pr->ins);
}

void raft_progress_become_probe(raft_progress *pr)
{
	/* Coming back from a snapshot, the follower has at least the
	 * snapshot (if it was applied): probe right after it. */
	if (pr->state == RAFT_PROGRESS_SNAPSHOT) {
		uint64_t pending = pr->pending_snapshot;
		reset_state(pr, RAFT_PROGRESS_PROBE);
		pr->next = (pr->match + 1 > pending + 1) ? pr->match + 1 : pending + 1;
	} else {
		reset_state(pr, RAFT_PROGRESS_PROBE);
		pr->next = pr->match + 1;
	}
}

void raft_progress_become_replicate(raft_progress *pr)
{
	reset_state(pr, RAFT_PROGRESS_REPLICATE);
	pr->next = pr->match + 1;
}

void raft_progress_become_snapshot(raft_progress *pr, uint64_t snap_index)
{
	reset_state(pr, RAFT_PROGRESS_SNAPSHOT);
	pr->pending_snapshot = snap_index;
}

bool raft_progress_maybe_update(raft_progress *pr, uint64_t n)
{
	bool updated = false;
	if (pr->match < n) {
		pr->match = n;
		updated = true;
		pr->probe_sent = false;
	}
	if (pr->next < n + 1)
		pr->next = n + 1;
	return updated;
}

void raft_progress_sent_entries(raft_progress *pr, uint64_t last, uint64_t bytes)
{
	pr->next = last + 1;
	raft_inflights *in = &pr->ins;
	if (in->count < in->size) {
		size_t at = (in->start + in->count) % in->size;
		in->buf[at] = last;
		in->bytes[at] = bytes;
		in->in_bytes += bytes;
		in->count++;
	}
}

bool raft_progress_maybe_decr_to(raft_progress *pr, uint64_t rejected, uint64_t match_hint)
{
	if (pr->state == RAFT_PROGRESS_REPLICATE) {
		/* A rejection at or below match is stale (reordered). */
		if (rejected <= pr->match)
			return false;
		/* Pipelined appends after match are lost: restart from match. */
		pr->next = pr->match + 1;
		return true;
	}
	/* Not replicating: only the reply to the append we last sent counts. */
	if (pr->next - 1 != rejected)
		return false;
	uint64_t next = rejected < match_hint + 1 ? rejected : match_hint + 1;
	if (next < pr->match + 1)
		next = pr->match + 1;
	if (next < 1)
		next = 1;
	pr->next = next;
	pr->probe_sent = false;
	return true;
}

bool raft_progress_is_paused(const raft_progress *pr)
{
	switch (pr->state) {
	case RAFT_PROGRESS_PROBE:
		return pr->probe_sent;
	case RAFT_PROGRESS_REPLICATE:
		return raft_inflights_full(&pr->ins);
	case RAFT_PROGRESS_SNAPSHOT:
		return true;
	}
	return true;
}

bool raft_inflights_full(const raft_inflights *in)
{
	return in->count == in->size || (in->max_bytes && in->in_bytes >= in->max_bytes);
}

static void free_first(raft_inflights *in)
{
	in->in_bytes -= in->bytes[in->start];
	in->start = (in->start + 1) % in->size;
	in->count--;
}

void raft_inflights_free_le(raft_inflights *in, uint64_t index)
{
	while (in->count > 0 && in->buf[in->start] <= index)
		free_first(in);
	if (in->count == 0)
		in->start = 0;
}

void raft_inflights_free_first(raft_inflights *in)
{
	if (in->count > 0)
		free_first(in);
}

const char *raft_progress_state_name(raft_progress_state s)
{
	switch (s) {
	case RAFT_PROGRESS_PROBE:
		return "probe";
	case RAFT_PROGRESS_REPLICATE:
		return "replicate";
	case RAFT_PROGRESS_SNAPSHOT:
		return "snapshot";
	}
	return "?";
}
