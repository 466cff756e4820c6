/* sm.c — the test state machine (see sm.h). */
#include "sm.h"

#include <string.h>

static uint64_t mix(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

uint64_t sim_data_value(const uint8_t *data, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a, then a final mix */
	for (size_t i = 0; i < len; i++) {
		h ^= data[i];
		h *= 0x100000001b3ULL;
	}
	return mix(h ^ len);
}

uint64_t sim_chain_next(uint64_t prev, const raft_entry *e)
{
	uint64_t h = mix(prev ^ 0x9e3779b97f4a7c15ULL);
	h = mix(h ^ e->term);
	h = mix(h ^ e->index ^ ((uint64_t)e->type << 56));
	return mix(h ^ sim_data_value(e->data, e->len));
}

void sim_sm_apply(sim_sm *sm, const raft_entry *e)
{
	sm->applied = e->index;
	sm->chain = sim_chain_next(sm->chain, e);
	if (sim_entry_is_write(e)) {
		sm->last_write = e->index;
		sm->value = sim_data_value(e->data, e->len);
	}
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

void sim_sm_encode(const sim_sm *sm, uint8_t out[SIM_SM_ENCODED_LEN])
{
	put64(out, sm->applied);
	put64(out + 8, sm->chain);
	put64(out + 16, sm->last_write);
	put64(out + 24, sm->value);
}

int sim_sm_decode(sim_sm *sm, const uint8_t *data, size_t len)
{
	memset(sm, 0, sizeof(*sm));
	if (len == 0)
		return 0;
	if (len != SIM_SM_ENCODED_LEN)
		return RAFT_ECORRUPT;
	sm->applied = get64(data);
	sm->chain = get64(data + 8);
	sm->last_write = get64(data + 16);
	sm->value = get64(data + 24);
	return 0;
}
