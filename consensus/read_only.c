/* read_only.c — batched ReadIndex requests of a leader. */
#include "read_only.h"

#include <stdlib.h>
#include <string.h>

#include "raft_types.h"

int raft_read_only_add(raft_read_only *ro, uint64_t from, uint64_t index, const void *ctx,
		       size_t ctx_len)
{
	if (ro->head + ro->n == ro->cap) {
		if (ro->head > 0) {
			memmove(ro->q, ro->q + ro->head, ro->n * sizeof(*ro->q));
			ro->head = 0;
		}
		if (ro->n == ro->cap) {
			size_t cap = ro->cap ? 2 * ro->cap : 16;
			raft_read_request *p = realloc(ro->q, cap * sizeof(*p));
			if (!p)
				return RAFT_ENOMEM;
			ro->q = p;
			ro->cap = cap;
		}
	}
	raft_read_request *req = &ro->q[ro->head + ro->n];
	*req = (raft_read_request){.from = from, .index = index, .round = ro->round + 1};
	if (ctx_len) {
		req->ctx = malloc(ctx_len);
		if (!req->ctx)
			return RAFT_ENOMEM;
		memcpy(req->ctx, ctx, ctx_len);
		req->ctx_len = ctx_len;
	}
	ro->n++;
	ro->need_round = true;
	return 0;
}

uint64_t raft_read_only_start_round(raft_read_only *ro)
{
	ro->need_round = false;
	return ++ro->round;
}

bool raft_read_only_pop_confirmed(raft_read_only *ro, uint64_t confirmed, raft_read_request *out)
{
	if (ro->n == 0 || ro->q[ro->head].round > confirmed)
		return false;
	*out = ro->q[ro->head];
	ro->head++;
	ro->n--;
	if (ro->n == 0)
		ro->head = 0;
	return true;
}

void raft_read_only_reset(raft_read_only *ro)
{
	for (size_t i = 0; i < ro->n; i++)
		free(ro->q[ro->head + i].ctx);
	ro->head = 0;
	ro->n = 0;
	ro->round = 0;
	ro->need_round = false;
}

void raft_read_only_destroy(raft_read_only *ro)
{
	raft_read_only_reset(ro);
	free(ro->q);
	memset(ro, 0, sizeof(*ro));
}

void raft_read_only_encode_round(uint64_t round, uint8_t out[8])
{
	for (int i = 0; i < 8; i++)
		out[i] = (uint8_t)(round >> (8 * i));
}

uint64_t raft_read_only_decode_round(const uint8_t *ctx, size_t len)
{
	if ((len != 8 && len != RAFT_BEAT_CTX_LEASE) || !ctx)
		return 0;
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v |= (uint64_t)ctx[i] << (8 * i);
	return v;
}

void raft_read_only_encode_beat(uint64_t round, uint64_t tick, uint8_t out[16])
{
	raft_read_only_encode_round(round, out);
	raft_read_only_encode_round(tick, out + 8);
}

bool raft_read_only_decode_tick(const uint8_t *ctx, size_t len, uint64_t *tick)
{
	uint64_t v = 0;

	if (len != RAFT_BEAT_CTX_LEASE || !ctx)
		return false;
	for (int i = 0; i < 8; i++)
		v |= (uint64_t)ctx[8 + i] << (8 * i);
	*tick = v;
	return true;
}
