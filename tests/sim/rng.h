/* rng.h — the simulator's own seeded PRNG (splitmix64 seeding, xorshift64*),
 * so every schedule replays exactly from its seed on any libc. */
#ifndef RAFTFS_SIM_RNG_H
#define RAFTFS_SIM_RNG_H

#include <stdbool.h>
#include <stdint.h>

typedef struct sim_rng {
	uint64_t s;
} sim_rng;

/* splitmix64: spreads consecutive seeds over the whole state space, so
 * seeds 1, 2, 3 give unrelated streams. */
static inline uint64_t sim_splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* Seeds g; any seed (including 0) gives a valid nonzero state. */
static inline void sim_rng_seed(sim_rng *g, uint64_t seed)
{
	g->s = sim_splitmix64(seed);
	if (g->s == 0)
		g->s = 0x2545f4914f6cdd1dULL;
}

/* Next 64 random bits (xorshift64*). */
static inline uint64_t sim_rng_next(sim_rng *g)
{
	g->s ^= g->s >> 12;
	g->s ^= g->s << 25;
	g->s ^= g->s >> 27;
	return g->s * 0x2545f4914f6cdd1dULL;
}

/* Uniform in [0, n); n must be nonzero. The modulo bias is irrelevant at
 * the ranges the simulator uses. */
static inline uint64_t sim_rng_below(sim_rng *g, uint64_t n)
{
	return sim_rng_next(g) % n;
}

/* True with probability per_mille / 1000. */
static inline bool sim_rng_chance(sim_rng *g, uint32_t per_mille)
{
	return sim_rng_below(g, 1000) < per_mille;
}

#endif
