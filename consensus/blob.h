/* blob.h — entry data of a batch in one shared, reference-counted allocation.
 *
 * The log and the in-memory storage copy the entries they keep, except a
 * proposal made in a block of its own (raft_blob_new, raft_propose_refs:
 * the node's), which a leader's log takes by reference. Copying a batch's
 * data into one block instead of one malloc per entry halves the
 * allocator's work on the hot path; each entry's data still frees on its
 * own (the block goes when its last entry does), so truncation and
 * compaction work entry by entry as before. Append messages, a follower's
 * forwarded proposals and the node's apply queue take references instead
 * of copies (raft_blob_ref).
 */
#ifndef RAFTFS_BLOB_H
#define RAFTFS_BLOB_H

#include "raft_types.h"

/* Copies src[0..n) into dst[0..n) (structs as is), their data into one new
 * block. Entries without data get data NULL. RAFT_ENOMEM leaves dst
 * untouched. */
int raft_blob_copy_entries(raft_entry *dst, const raft_entry *src, size_t n);

/* Drops one entry's reference to its block (data from
 * raft_blob_copy_entries or raft_blob_new, or NULL). */
void raft_blob_release(uint8_t *data);

/* Frees one entry's data: shared, a block (raft_blob_release), else a
 * malloc'd copy (free). */
void raft_data_release(uint8_t *data, bool shared);

/* Takes one more reference to the block of data (from
 * raft_blob_copy_entries or raft_blob_new, or NULL), released by
 * raft_blob_release: a message or the apply queue holds an entry without
 * copying its data. References are atomic, so the holder may release on
 * another thread. */
void raft_blob_ref(uint8_t *data);

/* A block for one entry's data of len (> 0) bytes, one reference (the
 * caller's), or NULL out of memory: a proposal made in one
 * (raft_propose_refs) is taken into the log, or into the message that
 * forwards it to the leader, by reference instead of by copy. */
uint8_t *raft_blob_new(size_t len);

/* Makes data, which lies in the bytes of buf's block (buf from
 * raft_blob_new) at buf + 8 or later, one more reference to that block,
 * released by raft_blob_release(data) like any other: a received frame's
 * big entries are referenced where they arrived instead of copied out
 * (codec_msg_decode_in). The 8 bytes before data are overwritten with the
 * block's address, so they must belong to nothing else still read (not
 * to another slice's data). */
void raft_blob_slice(const uint8_t *buf, uint8_t *data);

/* Whether a reference other than the caller's is held to data's block:
 * its bytes must not change then (the log, a message, the persist or
 * apply thread may be reading them). Only the thread that takes new
 * references can trust a false answer. */
bool raft_blob_shared(const uint8_t *data);

#endif
