/* envelope.h — the runtime's header in front of every proposed command.
 *
 * Entry data of a normal entry = envelope (client id, seq, min_pending) +
 * the application's command bytes. The proposing node matches completion
 * by (client id, seq) when the entry is applied, never by index: a
 * forwarded proposal's index is unknown to the proposer, and an index can
 * be overwritten after a leader change. The state machine deduplicates on
 * the same triple (consensus/dedup.h). An entry with no data is the
 * leader's no-op and carries no envelope.
 */
#ifndef RAFTFS_ENVELOPE_H
#define RAFTFS_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#define ENVELOPE_VERSION 1
#define ENVELOPE_BYTES 25 /* u8 version, u64 client, u64 seq, u64 min_pending (little-endian) */

typedef struct envelope {
	uint64_t client;      /* nonzero, unique per proposing process run */
	uint64_t seq;	      /* per client, increasing from 1 */
	uint64_t min_pending; /* lowest seq of this client still awaiting completion */
} envelope;

/* Writes the header into buf (ENVELOPE_BYTES long). */
void envelope_encode(const envelope *e, uint8_t *buf);

/* Splits entry data into header and command: 0, or -EINVAL if data is too
 * short or of another version. *cmd points into data. */
int envelope_decode(const uint8_t *data, size_t len, envelope *e, const uint8_t **cmd,
		    size_t *cmd_len);

#endif
