/* le64.h — 64-bit integers in byte buffers, little-endian whatever the host,
 * so that bytes written on one machine read the same on another. */
#ifndef RAFTFS_LE64_H
#define RAFTFS_LE64_H

#include <stdint.h>

/* Writes v at p[0..7]; returns p + 8, where the next field goes. */
static inline uint8_t *le64_put(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		*p++ = (uint8_t)(v >> (8 * i));
	return p;
}

/* Reads the value le64_put() wrote at p. */
static inline uint64_t le64_get(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

#endif
