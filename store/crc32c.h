/* crc32c.h — CRC-32C (Castagnoli), the checksum on every value the store writes. */
#ifndef RAFTFS_CRC32C_H
#define RAFTFS_CRC32C_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Continues a CRC-32C over buf: crc32c_extend(0, ...) starts one, and
 * crc32c_extend(crc32c_extend(0, a), b) equals the CRC of a followed by b,
 * so a record's key and value can be covered without copying them together.
 * Uses the SSE4.2 crc32 instruction when the CPU has it (checked once at
 * run time), the table-driven code otherwise: the same values either way.
 * Thread-safe (the choice and the tables are made once, under
 * pthread_once). */
uint32_t crc32c_extend(uint32_t crc, const void *buf, size_t len);

/* The table-driven implementation alone, whatever the CPU (for tests and
 * benchmarks comparing the two). */
uint32_t crc32c_extend_sw(uint32_t crc, const void *buf, size_t len);

/* True when crc32c_extend uses the CPU's crc32 instruction. */
bool crc32c_hw(void);

#endif
