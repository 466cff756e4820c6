/* crc32c.h — CRC-32C (Castagnoli), the checksum on every value the store writes. */
#ifndef RAFTFS_CRC32C_H
#define RAFTFS_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continues a CRC-32C over buf: crc32c_extend(0, ...) starts one, and
 * crc32c_extend(crc32c_extend(0, a), b) equals the CRC of a followed by b,
 * so a record's key and value can be covered without copying them together.
 * Thread-safe (the tables are built once, under pthread_once). */
uint32_t crc32c_extend(uint32_t crc, const void *buf, size_t len);

#endif
