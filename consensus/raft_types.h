/* raft_types.h — plain C records shared by the Raft core, its storage and
 * the transport: entries, hard state, membership, snapshots and messages.
 *
 * These mirror proto/raft.proto; consensus/codec.c converts at the edges.
 * Ownership rule for every struct here: the struct owns what its pointers
 * point to, and raft_*_free_contents() releases it (never the struct itself).
 */
#ifndef RAFTFS_RAFT_TYPES_H
#define RAFTFS_RAFT_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Error codes: functions return 0 or one of these (all negative), or a
 * negative errno where noted. raft_strerror() names them. */
enum {
	RAFT_ECOMPACTED = -1000,         /* index is below the first available (compacted) */
	RAFT_EUNAVAILABLE = -1001,       /* index is beyond the last entry */
	RAFT_ESNAP_OUT_OF_DATE = -1002,  /* snapshot older than what is there */
	RAFT_ESNAP_TEMP_UNAVAILABLE = -1003, /* snapshot being made; ask again later */
	RAFT_EPROPOSAL_DROPPED = -1004,  /* no leader known, or leadership being transferred */
	RAFT_ENOMEM = -1005,
	RAFT_ECORRUPT = -1006,           /* a stored or received record failed to decode */
	RAFT_EINVAL = -1007,
	RAFT_EIO = -1008,
	RAFT_ESTEP_PEER_NOT_FOUND = -1009,
};
const char *raft_strerror(int code);

typedef enum {
	RAFT_ENTRY_NORMAL = 0,
	RAFT_ENTRY_CONF_CHANGE = 1,
} raft_entry_type;

typedef struct raft_entry {
	uint64_t term;
	uint64_t index;
	raft_entry_type type;
	uint32_t len;
	uint8_t *data; /* owned; NULL when len == 0 */
} raft_entry;

/* What an append left out of one entry's data (raftpb.Entry elided_len,
 * elided_crc): the whole data's length and CRC-32C, of which the entry
 * holds only the start (a forwarder's own bytes, consensus/README-node.md).
 * len 0: nothing. */
typedef struct raft_elision {
	uint32_t len, crc;
} raft_elision;

typedef struct raft_hard_state {
	uint64_t term;
	uint64_t vote; /* 0 = none */
	uint64_t commit;
} raft_hard_state;

typedef struct raft_conf_state {
	uint64_t *voters; /* owned */
	size_t n_voters;
	uint64_t *learners; /* owned */
	size_t n_learners;
	/* The application's bytes about these members, carried wherever the
	 * membership is stored or sent (store, snapshot metadata); the core
	 * never reads them. raftfs: every member's address (node_members.h). */
	uint8_t *context; /* owned; NULL when context_len == 0 */
	size_t context_len;
} raft_conf_state;

typedef struct raft_snapshot_meta {
	uint64_t index;
	uint64_t term;
	raft_conf_state conf;
} raft_snapshot_meta;

/* A snapshot as the core sees it: metadata plus bytes it never interprets. */
typedef struct raft_snapshot {
	raft_snapshot_meta meta;
	uint8_t *data; /* owned; may be NULL */
	size_t len;
} raft_snapshot;

/* Same numbering as raftpb.MessageType. */
typedef enum {
	RAFT_MSG_HUP = 0,
	RAFT_MSG_BEAT = 1,
	RAFT_MSG_PROP = 2,
	RAFT_MSG_APP = 3,
	RAFT_MSG_APP_RESP = 4,
	RAFT_MSG_VOTE = 5,
	RAFT_MSG_VOTE_RESP = 6,
	RAFT_MSG_SNAP = 7,
	RAFT_MSG_HEARTBEAT = 8,
	RAFT_MSG_HEARTBEAT_RESP = 9,
	RAFT_MSG_UNREACHABLE = 10,
	RAFT_MSG_SNAP_STATUS = 11,
	RAFT_MSG_CHECK_QUORUM = 12,
	RAFT_MSG_TRANSFER_LEADER = 13,
	RAFT_MSG_TIMEOUT_NOW = 14,
	RAFT_MSG_READ_INDEX = 15,
	RAFT_MSG_READ_INDEX_RESP = 16,
	RAFT_MSG_PRE_VOTE = 17,
	RAFT_MSG_PRE_VOTE_RESP = 18,
	RAFT_MSG_TYPE_COUNT
} raft_msg_type;

const char *raft_msg_type_name(raft_msg_type t);

typedef struct raft_msg {
	raft_msg_type type;
	uint64_t to;
	uint64_t from;
	uint64_t term;
	uint64_t log_term;
	uint64_t index;
	raft_entry *entries; /* owned array, each entry owns its data */
	size_t n_entries;
	uint64_t commit;
	raft_snapshot *snapshot; /* owned; NULL unless type == RAFT_MSG_SNAP */
	bool reject;
	uint64_t reject_hint;
	uint8_t *context; /* owned; NULL when context_len == 0 */
	size_t context_len;
	/* Wire only, APP_RESP: the index of an entry whose elided data this
	 * follower did not have (0: none); the core ignores it. */
	uint64_t full_from;
	/* Wire only, APP: owned array beside entries, what of each entry's
	 * data was left out (NULL: nothing). Set by the transport on its own
	 * copy of an append and by codec_msg_decode; the follower fills the
	 * entries in or cuts the append (node_elide.c) before the core sees
	 * it, and the core never sets it: a log entry (raft_entry) has no
	 * room to carry an elision, so none leaks into a log or a resend. */
	raft_elision *elided;
	/* Each entry holds a reference to a shared block (blob.h) instead of
	 * owning its data; freeing the message releases them. Set on the
	 * core's appends (raft_log_entries) and on PROP messages made with
	 * raft_propose_refs. Never set on a copy (raft_msg_copy owns its
	 * data). */
	bool blob_data;
} raft_msg;

/* Deep copies. Return 0 or RAFT_ENOMEM (dst is then left empty). */
int raft_entry_copy(raft_entry *dst, const raft_entry *src);
int raft_conf_state_copy(raft_conf_state *dst, const raft_conf_state *src);
int raft_snapshot_copy(raft_snapshot *dst, const raft_snapshot *src);
int raft_msg_copy(raft_msg *dst, const raft_msg *src);

void raft_entry_free_contents(raft_entry *e);
/* Frees each entry's data and then the array itself. */
void raft_entries_free(raft_entry *ents, size_t n);
/* Frees the array of n entries and lets go of their data: shared, each
 * entry holds a reference to a block (blob.h), released; otherwise its own
 * copy, freed (raft_entries_free). A message's entries and an apply
 * batch's are one or the other. */
void raft_entries_release(raft_entry *ents, size_t n, bool shared);
void raft_conf_state_free_contents(raft_conf_state *cs);
void raft_snapshot_free_contents(raft_snapshot *s);
void raft_msg_free_contents(raft_msg *m);

/* Bytes an entry counts for against message and batch caps. */
static inline uint64_t raft_entry_size(const raft_entry *e)
{
	return (uint64_t)e->len + 24;
}

#endif
