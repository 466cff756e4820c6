/* crc32c.c — CRC-32C: the SSE4.2 crc32 instruction where the CPU has it,
 * else table-driven, eight bytes per step ("slicing-by-8"): eight 256-entry
 * tables let each 64-bit word be folded with eight lookups and no carried
 * dependency between them, several times faster than the byte-at-a-time
 * loop on the multi-KiB values the raft log holds. */
#include "crc32c.h"

#include <pthread.h>
#include <string.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

#define CRC32C_POLY 0x82F63B78u /* reflected Castagnoli polynomial */

static uint32_t table[8][256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;
static bool use_hw;

static void table_init(void)
{
#if defined(__x86_64__)
	__builtin_cpu_init();
	use_hw = __builtin_cpu_supports("sse4.2");
#endif
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ CRC32C_POLY : c >> 1;
		table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xff];
}

uint32_t crc32c_extend_sw(uint32_t crc, const void *buf, size_t len)
{
	pthread_once(&table_once, table_init);
	const uint8_t *p = buf;
	uint32_t c = ~crc;

	for (; len && ((uintptr_t)p & 7); len--)
		c = (c >> 8) ^ table[0][(c ^ *p++) & 0xff];
	for (; len >= 8; len -= 8, p += 8) {
		uint32_t lo, hi;
		memcpy(&lo, p, 4);
		memcpy(&hi, p + 4, 4);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
		lo = __builtin_bswap32(lo);
		hi = __builtin_bswap32(hi);
#endif
		lo ^= c;
		c = table[7][lo & 0xff] ^ table[6][(lo >> 8) & 0xff] ^ table[5][(lo >> 16) & 0xff] ^
		    table[4][lo >> 24] ^ table[3][hi & 0xff] ^ table[2][(hi >> 8) & 0xff] ^
		    table[1][(hi >> 16) & 0xff] ^ table[0][hi >> 24];
	}
	for (; len; len--)
		c = (c >> 8) ^ table[0][(c ^ *p++) & 0xff];
	return ~c;
}

#if defined(__x86_64__)
/* Bytes per lane of the three-lane loop below. */
#define LANE 8192

/* shift[k][v]: the CRC register after LANE zero bytes, starting from byte
 * value v in byte k of the register and zeros elsewhere. The register
 * update is linear over GF(2) with zero input, so shifting any register
 * by LANE bytes is the XOR of four lookups (lane_shift). */
static uint32_t shift[4][256];
static pthread_once_t shift_once = PTHREAD_ONCE_INIT;

__attribute__((target("sse4.2"))) static uint32_t zeros_hw(uint32_t c, size_t len)
{
	uint64_t r = c;

	for (; len >= 8; len -= 8)
		r = _mm_crc32_u64(r, 0);
	return (uint32_t)r;
}

static void shift_init(void)
{
	for (int k = 0; k < 4; k++)
		for (uint32_t v = 0; v < 256; v++)
			shift[k][v] = zeros_hw(v << (8 * k), LANE);
}

static uint32_t lane_shift(uint32_t c)
{
	return shift[0][c & 0xff] ^ shift[1][(c >> 8) & 0xff] ^ shift[2][(c >> 16) & 0xff] ^
	       shift[3][c >> 24];
}

/* The crc32 instruction computes the same reflected Castagnoli CRC, eight
 * bytes per instruction, one per cycle but three cycles of latency: one
 * chain uses a third of it. Long buffers run three chains over three
 * adjacent lanes and join them (register of A then B = shifted A xor B
 * from zero), about three times as fast on the MiB-sized entries the value
 * log checksums on the loop thread. */
__attribute__((target("sse4.2"))) static uint32_t extend_hw(uint32_t crc, const uint8_t *p,
							     size_t len)
{
	uint64_t c = ~crc;

	for (; len && ((uintptr_t)p & 7); len--)
		c = _mm_crc32_u8((uint32_t)c, *p++);
	if (len >= 3 * LANE)
		pthread_once(&shift_once, shift_init);
	for (; len >= 3 * LANE; len -= 3 * LANE, p += 3 * LANE) {
		uint64_t c1 = 0, c2 = 0;

		for (size_t i = 0; i < LANE; i += 8) {
			uint64_t a, b, d;

			memcpy(&a, p + i, 8);
			memcpy(&b, p + LANE + i, 8);
			memcpy(&d, p + 2 * LANE + i, 8);
			c = _mm_crc32_u64(c, a);
			c1 = _mm_crc32_u64(c1, b);
			c2 = _mm_crc32_u64(c2, d);
		}
		c = lane_shift((uint32_t)c) ^ (uint32_t)c1;
		c = lane_shift((uint32_t)c) ^ (uint32_t)c2;
	}
	for (; len >= 8; len -= 8, p += 8) {
		uint64_t v;

		memcpy(&v, p, 8);
		c = _mm_crc32_u64(c, v);
	}
	for (; len; len--)
		c = _mm_crc32_u8((uint32_t)c, *p++);
	return ~(uint32_t)c;
}
#endif

uint32_t crc32c_extend(uint32_t crc, const void *buf, size_t len)
{
	pthread_once(&table_once, table_init);
#if defined(__x86_64__)
	if (use_hw)
		return extend_hw(crc, buf, len);
#endif
	return crc32c_extend_sw(crc, buf, len);
}

bool crc32c_hw(void)
{
	pthread_once(&table_once, table_init);
	return use_hw;
}
