/* sm_decode.h — a command decoded for apply with a big write's data left in
 * the entry it came in, not copied out (sm_decode.c says how and why). */
#ifndef RAFTFS_SM_DECODE_H
#define RAFTFS_SM_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "fs.pb-c.h"

/* Writes of at least this many bytes are decoded in place. */
#define SM_DECODE_IN_PLACE_MIN (64u << 10)

/* fspb__command__unpack(a, len, cmd), the same command in every field,
 * except that a write's data of at least SM_DECODE_IN_PLACE_MIN bytes
 * points into cmd: cmd must outlive the command, which is freed with
 * sm_decode_free. NULL when the bytes do not decode (or a allocated
 * nothing), as the plain unpack. */
Fspb__Command *sm_decode(ProtobufCAllocator *a, const uint8_t *cmd, size_t len);

/* Frees c (from sm_decode of cmd[0..len), or NULL) with the system
 * allocator, leaving alone the data it points to in cmd. */
void sm_decode_free(Fspb__Command *c, const uint8_t *cmd, size_t len);

#endif
