/* raft_types.c — copying, freeing and naming of the shared Raft records. */
#include "raft_types.h"

#include "blob.h"

#include <stdlib.h>
#include <string.h>

const char *raft_strerror(int code)
{
	switch (code) {
	case 0: return "success";
	case RAFT_ECOMPACTED: return "requested index is compacted";
	case RAFT_EUNAVAILABLE: return "requested index is beyond the log";
	case RAFT_ESNAP_OUT_OF_DATE: return "snapshot is older than the current one";
	case RAFT_ESNAP_TEMP_UNAVAILABLE: return "snapshot temporarily unavailable";
	case RAFT_EPROPOSAL_DROPPED: return "proposal dropped (no leader, or leadership in transfer)";
	case RAFT_ENOMEM: return "out of memory";
	case RAFT_ECORRUPT: return "corrupt record";
	case RAFT_EINVAL: return "invalid argument";
	case RAFT_EIO: return "I/O error";
	case RAFT_ESTEP_PEER_NOT_FOUND: return "peer not found";
	default:
		if (code < 0 && code > -4096)
			return strerror(-code);
		return "unknown error";
	}
}

const char *raft_msg_type_name(raft_msg_type t)
{
	static const char *const names[RAFT_MSG_TYPE_COUNT] = {
		"MsgHup", "MsgBeat", "MsgProp", "MsgApp", "MsgAppResp",
		"MsgVote", "MsgVoteResp", "MsgSnap", "MsgHeartbeat",
		"MsgHeartbeatResp", "MsgUnreachable", "MsgSnapStatus",
		"MsgCheckQuorum", "MsgTransferLeader", "MsgTimeoutNow",
		"MsgReadIndex", "MsgReadIndexResp", "MsgPreVote",
		"MsgPreVoteResp",
	};
	if ((unsigned)t < RAFT_MSG_TYPE_COUNT)
		return names[t];
	return "MsgUnknown";
}

static void *dup_bytes(const void *src, size_t len)
{
	if (len == 0)
		return NULL;
	void *p = malloc(len);
	if (p)
		memcpy(p, src, len);
	return p;
}

int raft_entry_copy(raft_entry *dst, const raft_entry *src)
{
	*dst = *src;
	dst->data = dup_bytes(src->data, src->len);
	if (src->len && !dst->data) {
		memset(dst, 0, sizeof(*dst));
		return RAFT_ENOMEM;
	}
	return 0;
}

int raft_conf_state_copy(raft_conf_state *dst, const raft_conf_state *src)
{
	memset(dst, 0, sizeof(*dst));
	dst->voters = dup_bytes(src->voters, src->n_voters * sizeof(uint64_t));
	dst->learners = dup_bytes(src->learners, src->n_learners * sizeof(uint64_t));
	dst->context = dup_bytes(src->context, src->context_len);
	if ((src->n_voters && !dst->voters) || (src->n_learners && !dst->learners) ||
	    (src->context_len && !dst->context)) {
		raft_conf_state_free_contents(dst);
		return RAFT_ENOMEM;
	}
	dst->n_voters = src->n_voters;
	dst->n_learners = src->n_learners;
	dst->context_len = src->context_len;
	return 0;
}

int raft_snapshot_copy(raft_snapshot *dst, const raft_snapshot *src)
{
	memset(dst, 0, sizeof(*dst));
	dst->meta.index = src->meta.index;
	dst->meta.term = src->meta.term;
	if (raft_conf_state_copy(&dst->meta.conf, &src->meta.conf) != 0)
		return RAFT_ENOMEM;
	dst->data = dup_bytes(src->data, src->len);
	if (src->len && !dst->data) {
		raft_snapshot_free_contents(dst);
		return RAFT_ENOMEM;
	}
	dst->len = src->len;
	return 0;
}

int raft_msg_copy(raft_msg *dst, const raft_msg *src)
{
	*dst = *src;
	dst->entries = NULL;
	dst->n_entries = 0;
	dst->snapshot = NULL;
	dst->context = NULL;
	dst->context_len = 0;
	dst->elided = NULL;
	dst->blob_data = false;

	if (src->n_entries) {
		dst->entries = calloc(src->n_entries, sizeof(raft_entry));
		if (!dst->entries)
			goto oom;
		for (size_t i = 0; i < src->n_entries; i++) {
			if (raft_entry_copy(&dst->entries[i], &src->entries[i]) != 0)
				goto oom;
			dst->n_entries = i + 1;
		}
	}
	if (src->snapshot) {
		dst->snapshot = calloc(1, sizeof(raft_snapshot));
		if (!dst->snapshot || raft_snapshot_copy(dst->snapshot, src->snapshot) != 0)
			goto oom;
	}
	if (src->context_len) {
		dst->context = dup_bytes(src->context, src->context_len);
		if (!dst->context)
			goto oom;
		dst->context_len = src->context_len;
	}
	if (src->elided && src->n_entries) {
		dst->elided = dup_bytes(src->elided, src->n_entries * sizeof(*src->elided));
		if (!dst->elided)
			goto oom;
	}
	return 0;
oom:
	raft_msg_free_contents(dst);
	return RAFT_ENOMEM;
}

void raft_entry_free_contents(raft_entry *e)
{
	free(e->data);
	e->data = NULL;
	e->len = 0;
}

void raft_entries_free(raft_entry *ents, size_t n)
{
	if (!ents)
		return;
	for (size_t i = 0; i < n; i++)
		free(ents[i].data);
	free(ents);
}

void raft_entries_release(raft_entry *ents, size_t n, bool shared)
{
	if (!ents)
		return;
	for (size_t i = 0; i < n; i++)
		raft_data_release(ents[i].data, shared);
	free(ents);
}

void raft_conf_state_free_contents(raft_conf_state *cs)
{
	free(cs->voters);
	free(cs->learners);
	free(cs->context);
	memset(cs, 0, sizeof(*cs));
}

void raft_snapshot_free_contents(raft_snapshot *s)
{
	raft_conf_state_free_contents(&s->meta.conf);
	free(s->data);
	memset(s, 0, sizeof(*s));
}

void raft_msg_free_contents(raft_msg *m)
{
	raft_entries_release(m->entries, m->n_entries, m->blob_data);
	if (m->snapshot) {
		raft_snapshot_free_contents(m->snapshot);
		free(m->snapshot);
	}
	free(m->context);
	free(m->elided);
	memset(m, 0, sizeof(*m));
}
