/* codec.c — protobuf-c encoding of the Raft records (see codec.h).
 *
 * Decoding unpacks with protobuf-c's default (malloc) allocator and then
 * takes ownership of the byte and array fields it produced instead of
 * copying them again: the field is set to NULL before free_unpacked so the
 * unpacked message and the C record never share a pointer. A message
 * (codec_msg_decode) unpacks into shared blocks instead (blob.h), so its
 * entries' data is one and the logs take it by reference.
 */
#include "codec.h"

#include <stdlib.h>
#include <string.h>

#include "blob.h"
#include "raft.pb-c.h"

/* Field 7 of raftpb.Message (repeated Entry), wire type 2 (length-delimited). */
#define MSG_ENTRIES_TAG ((7u << 3) | 2u)

void raft_conf_change_free_contents(raft_conf_change *cc)
{
	free(cc->context);
	memset(cc, 0, sizeof(*cc));
}

static size_t varint_size(uint64_t v)
{
	size_t n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

static size_t varint_pack(uint64_t v, uint8_t *out)
{
	size_t n = 0;
	while (v >= 0x80) {
		out[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	out[n++] = (uint8_t)v;
	return n;
}

/* Takes the bytes of an unpacked field; the unpacked message no longer
 * frees them. blob: unpacked with blob_allocator, the data is a shared
 * block with one reference, the caller's. */
static uint8_t *steal_bytes(ProtobufCBinaryData *bd, size_t *len, bool blob)
{
	uint8_t *p = bd->len ? bd->data : NULL;
	*len = bd->len;
	if (!p) /* a zero-length field never allocates, but be exact */
		raft_data_release(bd->data, blob);
	bd->data = NULL;
	bd->len = 0;
	return p;
}

/* Every allocation of an unpack a shared block (blob.h): a message's entry
 * data, taken from the unpacked message, is then a block that the
 * follower's log (an append's entries) and the leader's (a forwarded
 * proposal's) take by reference where they copied a malloc'd one, one
 * copy of every replicated byte less on each. The message's other parts
 * are the malloc'd copies the rest of the code frees (msg_from_pb). */
static void *blob_alloc(void *arg, size_t size)
{
	(void)arg;
	return raft_blob_new(size);
}

static void blob_free(void *arg, void *p)
{
	(void)arg;
	raft_blob_release(p);
}

static ProtobufCAllocator blob_allocator = {blob_alloc, blob_free, NULL};

/* ---- entries ---- */

static void entry_to_pb(const raft_entry *e, Raftpb__Entry *pb)
{
	raftpb__entry__init(pb);
	pb->term = e->term;
	pb->index = e->index;
	pb->type = (Raftpb__EntryType)e->type;
	pb->data.len = e->len;
	pb->data.data = e->data;
}

/* An entry of an append as sent: el (may be NULL) says what of its data
 * was left out. */
static void wire_entry_to_pb(const raft_entry *e, const raft_elision *el, Raftpb__Entry *pb)
{
	entry_to_pb(e, pb);
	if (el && el->len) {
		pb->elided_len = el->len;
		pb->elided_crc = el->crc;
	}
}

static size_t wire_entry_size(const raft_entry *e, const raft_elision *el)
{
	Raftpb__Entry pb;
	wire_entry_to_pb(e, el, &pb);
	return protobuf_c_message_get_packed_size(&pb.base);
}

static size_t wire_entry_pack(const raft_entry *e, const raft_elision *el, uint8_t *out)
{
	Raftpb__Entry pb;
	wire_entry_to_pb(e, el, &pb);
	return protobuf_c_message_pack(&pb.base, out);
}

size_t codec_entry_size(const raft_entry *e)
{
	Raftpb__Entry pb;
	entry_to_pb(e, &pb);
	return protobuf_c_message_get_packed_size(&pb.base);
}

size_t codec_entry_pack(const raft_entry *e, uint8_t *out)
{
	Raftpb__Entry pb;
	entry_to_pb(e, &pb);
	return protobuf_c_message_pack(&pb.base, out);
}

static bool entry_type_valid(int t)
{
	return t == RAFT_ENTRY_NORMAL || t == RAFT_ENTRY_CONF_CHANGE;
}

/* Moves a validated unpacked entry into *out; blob: unpacked with
 * blob_allocator, its data a shared block. */
static int entry_from_pb(Raftpb__Entry *pb, raft_entry *out, bool blob)
{
	memset(out, 0, sizeof(*out));
	if (!entry_type_valid((int)pb->type) || pb->data.len > UINT32_MAX)
		return RAFT_ECORRUPT;
	out->term = pb->term;
	out->index = pb->index;
	out->type = (raft_entry_type)pb->type;
	size_t len;
	out->data = steal_bytes(&pb->data, &len, blob);
	out->len = (uint32_t)len;
	return 0;
}

int codec_entry_decode(const uint8_t *buf, size_t len, raft_entry *out)
{
	memset(out, 0, sizeof(*out));
	Raftpb__Entry *pb = raftpb__entry__unpack(NULL, len, buf);
	if (!pb)
		return RAFT_ECORRUPT;
	/* A log's entry is whole: elided data is for appends only. */
	int rv = pb->elided_len ? RAFT_ECORRUPT : entry_from_pb(pb, out, false);
	raftpb__entry__free_unpacked(pb, NULL);
	return rv;
}

/* ---- hard state ---- */

static void hard_state_to_pb(const raft_hard_state *hs, Raftpb__HardState *pb)
{
	raftpb__hard_state__init(pb);
	pb->term = hs->term;
	pb->vote = hs->vote;
	pb->commit = hs->commit;
}

size_t codec_hard_state_size(const raft_hard_state *hs)
{
	Raftpb__HardState pb;
	hard_state_to_pb(hs, &pb);
	return protobuf_c_message_get_packed_size(&pb.base);
}

size_t codec_hard_state_pack(const raft_hard_state *hs, uint8_t *out)
{
	Raftpb__HardState pb;
	hard_state_to_pb(hs, &pb);
	return protobuf_c_message_pack(&pb.base, out);
}

int codec_hard_state_decode(const uint8_t *buf, size_t len, raft_hard_state *out)
{
	memset(out, 0, sizeof(*out));
	Raftpb__HardState *pb = raftpb__hard_state__unpack(NULL, len, buf);
	if (!pb)
		return RAFT_ECORRUPT;
	out->term = pb->term;
	out->vote = pb->vote;
	out->commit = pb->commit;
	raftpb__hard_state__free_unpacked(pb, NULL);
	return 0;
}

/* ---- conf state ---- */

static void conf_state_to_pb(const raft_conf_state *cs, Raftpb__ConfState *pb)
{
	raftpb__conf_state__init(pb);
	pb->n_voters = cs->n_voters;
	pb->voters = cs->voters;
	pb->n_learners = cs->n_learners;
	pb->learners = cs->learners;
	pb->context.data = cs->context;
	pb->context.len = cs->context_len;
}

size_t codec_conf_state_size(const raft_conf_state *cs)
{
	Raftpb__ConfState pb;
	conf_state_to_pb(cs, &pb);
	return protobuf_c_message_get_packed_size(&pb.base);
}

size_t codec_conf_state_pack(const raft_conf_state *cs, uint8_t *out)
{
	Raftpb__ConfState pb;
	conf_state_to_pb(cs, &pb);
	return protobuf_c_message_pack(&pb.base, out);
}

/* Takes a non-empty repeated id field of an unpacked message into *ids and
 * *n (untouched when it is empty); the message no longer frees it. */
static void steal_ids(uint64_t **field, size_t *n_field, uint64_t **ids, size_t *n)
{
	if (!*n_field)
		return;
	*ids = *field;
	*n = *n_field;
	*field = NULL;
	*n_field = 0;
}

/* Moves the id arrays of an unpacked conf state into *out (NULL pb: empty). */
static void conf_state_from_pb(Raftpb__ConfState *pb, raft_conf_state *out)
{
	memset(out, 0, sizeof(*out));
	if (!pb)
		return;
	steal_ids(&pb->voters, &pb->n_voters, &out->voters, &out->n_voters);
	steal_ids(&pb->learners, &pb->n_learners, &out->learners, &out->n_learners);
	if (pb->context.len) {
		out->context = pb->context.data;
		out->context_len = pb->context.len;
		pb->context.data = NULL;
		pb->context.len = 0;
	}
}

int codec_conf_state_decode(const uint8_t *buf, size_t len, raft_conf_state *out)
{
	memset(out, 0, sizeof(*out));
	Raftpb__ConfState *pb = raftpb__conf_state__unpack(NULL, len, buf);
	if (!pb)
		return RAFT_ECORRUPT;
	conf_state_from_pb(pb, out);
	raftpb__conf_state__free_unpacked(pb, NULL);
	return 0;
}

/* ---- snapshot metadata ---- */

/* pb->conf_state points at *cs_pb, which the caller provides. */
static void snapshot_meta_to_pb(const raft_snapshot_meta *m, Raftpb__SnapshotMetadata *pb,
				Raftpb__ConfState *cs_pb)
{
	raftpb__snapshot_metadata__init(pb);
	conf_state_to_pb(&m->conf, cs_pb);
	pb->conf_state = cs_pb;
	pb->index = m->index;
	pb->term = m->term;
}

size_t codec_snapshot_meta_size(const raft_snapshot_meta *m)
{
	Raftpb__SnapshotMetadata pb;
	Raftpb__ConfState cs;
	snapshot_meta_to_pb(m, &pb, &cs);
	return protobuf_c_message_get_packed_size(&pb.base);
}

size_t codec_snapshot_meta_pack(const raft_snapshot_meta *m, uint8_t *out)
{
	Raftpb__SnapshotMetadata pb;
	Raftpb__ConfState cs;
	snapshot_meta_to_pb(m, &pb, &cs);
	return protobuf_c_message_pack(&pb.base, out);
}

static void snapshot_meta_from_pb(Raftpb__SnapshotMetadata *pb, raft_snapshot_meta *out)
{
	memset(out, 0, sizeof(*out));
	if (!pb)
		return;
	out->index = pb->index;
	out->term = pb->term;
	conf_state_from_pb(pb->conf_state, &out->conf);
}

int codec_snapshot_meta_decode(const uint8_t *buf, size_t len, raft_snapshot_meta *out)
{
	memset(out, 0, sizeof(*out));
	Raftpb__SnapshotMetadata *pb = raftpb__snapshot_metadata__unpack(NULL, len, buf);
	if (!pb)
		return RAFT_ECORRUPT;
	snapshot_meta_from_pb(pb, out);
	raftpb__snapshot_metadata__free_unpacked(pb, NULL);
	return 0;
}

/* ---- conf change ---- */

static void conf_change_to_pb(const raft_conf_change *cc, Raftpb__ConfChange *pb)
{
	raftpb__conf_change__init(pb);
	pb->type = (Raftpb__ConfChangeType)cc->type;
	pb->node_id = cc->node_id;
	pb->context.len = cc->context_len;
	pb->context.data = cc->context;
}

size_t codec_conf_change_size(const raft_conf_change *cc)
{
	Raftpb__ConfChange pb;
	conf_change_to_pb(cc, &pb);
	return protobuf_c_message_get_packed_size(&pb.base);
}

size_t codec_conf_change_pack(const raft_conf_change *cc, uint8_t *out)
{
	Raftpb__ConfChange pb;
	conf_change_to_pb(cc, &pb);
	return protobuf_c_message_pack(&pb.base, out);
}

int codec_conf_change_decode(const uint8_t *buf, size_t len, raft_conf_change *out)
{
	memset(out, 0, sizeof(*out));
	Raftpb__ConfChange *pb = raftpb__conf_change__unpack(NULL, len, buf);
	if (!pb)
		return RAFT_ECORRUPT;
	int rv = RAFT_ECORRUPT;
	if ((unsigned)pb->type <= RAFT_CONF_ADD_LEARNER) {
		out->type = (raft_conf_change_type)pb->type;
		out->node_id = pb->node_id;
		out->context = steal_bytes(&pb->context, &out->context_len, false);
		rv = 0;
	}
	raftpb__conf_change__free_unpacked(pb, NULL);
	return rv;
}

/* ---- messages ---- */

/* The message without its entries, which codec_msg_encode() appends as
 * field-7 records itself: protobuf-c would need an Entry struct and a
 * pointer per entry, i.e. an allocation per message on the hot path. */
static void msg_to_pb(const raft_msg *m, Raftpb__Message *pb, Raftpb__Snapshot *snap_pb,
		      Raftpb__SnapshotMetadata *meta_pb, Raftpb__ConfState *cs_pb)
{
	raftpb__message__init(pb);
	pb->type = (Raftpb__MessageType)m->type;
	pb->to = m->to;
	pb->from = m->from;
	pb->term = m->term;
	pb->log_term = m->log_term;
	pb->index = m->index;
	pb->commit = m->commit;
	pb->reject = m->reject;
	pb->reject_hint = m->reject_hint;
	pb->context.len = m->context_len;
	pb->context.data = m->context;
	pb->full_from = m->full_from;
	if (m->snapshot) {
		raftpb__snapshot__init(snap_pb);
		snapshot_meta_to_pb(&m->snapshot->meta, meta_pb, cs_pb);
		snap_pb->metadata = meta_pb;
		snap_pb->data.len = m->snapshot->len;
		snap_pb->data.data = m->snapshot->data;
		pb->snapshot = snap_pb;
	}
}

static bool msg_shape_valid(int type, bool has_snapshot)
{
	if ((unsigned)type >= RAFT_MSG_TYPE_COUNT)
		return false;
	return has_snapshot == (type == RAFT_MSG_SNAP);
}

/* Field 4 of raftpb.Entry (data), wire type 2: the last field, so an
 * entry's encoding is its other fields, this tag, the length, the data. */
#define ENTRY_DATA_TAG ((4u << 3) | 2u)

/* Whether entry data of len bytes is left in place (a segment of its own)
 * rather than copied, with room left for it and the segment after it. */
static bool seg_worth(size_t len, size_t n_segs, size_t max_segs)
{
	return len >= CODEC_SEG_MIN_BYTES && n_segs + 2 <= max_segs;
}

/* Whether entry e of m may be sent as cut by el (elision_valid, on the
 * encoder's side). */
static bool elision_fits(const raft_msg *m, const raft_entry *e, const raft_elision *el)
{
	return m->type == RAFT_MSG_APP && e->type == RAFT_ENTRY_NORMAL && el->len > e->len &&
	       el->len <= CODEC_ELIDED_MAX_BYTES;
}

/* Everything of e's encoding before its data: the other fields, the data's
 * tag and length. out has room for codec_entry_size(e). */
static size_t entry_head_pack(const raft_entry *e, const raft_elision *el, uint8_t *out)
{
	raft_entry head = *e;
	size_t n;

	head.data = NULL;
	head.len = 0;
	n = wire_entry_pack(&head, el, out); /* proto3: an empty bytes field is left out */
	n += varint_pack(ENTRY_DATA_TAG, out + n);
	return n + varint_pack(e->len, out + n);
}

int codec_msg_encode_segs(const raft_msg *m, size_t headroom, uint8_t **out, size_t *len,
			  codec_seg *segs, size_t max_segs, size_t *n_segs)
{
	const raft_elision *el = m->elided;

	*out = NULL;
	*len = 0;
	if (n_segs)
		*n_segs = 0;
	if (!msg_shape_valid((int)m->type, m->snapshot != NULL))
		return RAFT_EINVAL;
	for (size_t i = 0; i < m->n_entries; i++)
		if (!entry_type_valid((int)m->entries[i].type) ||
		    (el && el[i].len && !elision_fits(m, &m->entries[i], &el[i])))
			return RAFT_EINVAL;

	Raftpb__Message pb;
	Raftpb__Snapshot snap_pb;
	Raftpb__SnapshotMetadata meta_pb;
	Raftpb__ConfState cs_pb;
	msg_to_pb(m, &pb, &snap_pb, &meta_pb, &cs_pb);

	/* Two passes with the same choices: the size of what is copied into
	 * the buffer, then the packing. */
	size_t total = protobuf_c_message_get_packed_size(&pb.base), copied = total, ns = 1;
	for (size_t i = 0; i < m->n_entries; i++) {
		size_t es = wire_entry_size(&m->entries[i], el ? &el[i] : NULL);
		size_t head = varint_size(MSG_ENTRIES_TAG) + varint_size(es);

		total += head + es;
		copied += head + es;
		if (seg_worth(m->entries[i].len, ns, max_segs)) {
			copied -= m->entries[i].len;
			ns += 2;
		}
	}
	uint8_t *buf = malloc(headroom + copied ? headroom + copied : 1);
	if (!buf)
		return RAFT_ENOMEM;
	uint8_t *p = buf + headroom, *seg_start = buf;
	size_t k = 0;
	p += protobuf_c_message_pack(&pb.base, p);
	for (size_t i = 0; i < m->n_entries; i++) {
		const raft_entry *e = &m->entries[i];
		const raft_elision *ei = el ? &el[i] : NULL;

		p += varint_pack(MSG_ENTRIES_TAG, p);
		p += varint_pack(wire_entry_size(e, ei), p);
		if (!seg_worth(e->len, k + 1, max_segs)) {
			p += wire_entry_pack(e, ei, p);
			continue;
		}
		/* The data is a segment of its own, between two of the buffer. */
		p += entry_head_pack(e, ei, p);
		segs[k++] = (codec_seg){seg_start, (size_t)(p - seg_start)};
		segs[k++] = (codec_seg){e->data, e->len};
		seg_start = p;
	}
	if (max_segs)
		segs[k++] = (codec_seg){seg_start, (size_t)(p - seg_start)};
	if (n_segs)
		*n_segs = k;
	*out = buf;
	*len = total;
	return 0;
}

int codec_msg_encode(const raft_msg *m, size_t headroom, uint8_t **out, size_t *len)
{
	return codec_msg_encode_segs(m, headroom, out, len, NULL, 0, NULL);
}

static int snapshot_from_pb(Raftpb__Snapshot *pb, raft_snapshot **out)
{
	raft_snapshot *s = calloc(1, sizeof(*s));
	if (!s)
		return RAFT_ENOMEM;
	snapshot_meta_from_pb(pb->metadata, &s->meta);
	s->data = steal_bytes(&pb->data, &s->len, false);
	*out = s;
	return 0;
}

/* Elided data only in an append, of a normal entry, longer than what was
 * sent of it and not longer than any frame may be (CODEC_ELIDED_MAX_BYTES). */
static bool elision_valid(const Raftpb__Message *m, const Raftpb__Entry *e)
{
	return !e->elided_len || (m->type == RAFTPB__MESSAGE_TYPE__MSG_APP &&
				  e->type == RAFTPB__ENTRY_TYPE__ENTRY_NORMAL &&
				  e->elided_len > e->data.len &&
				  e->elided_len <= CODEC_ELIDED_MAX_BYTES);
}

/* pb unpacked with blob_allocator when blob (then without a snapshot): its
 * entries' data moves into out as shared blocks (out->blob_data), its
 * context is copied. */
static int msg_from_pb(Raftpb__Message *pb, raft_msg *out, bool blob)
{
	if (!msg_shape_valid((int)pb->type, pb->snapshot != NULL))
		return RAFT_ECORRUPT;
	for (size_t i = 0; i < pb->n_entries; i++)
		if (!entry_type_valid((int)pb->entries[i]->type) ||
		    pb->entries[i]->data.len > UINT32_MAX || !elision_valid(pb, pb->entries[i]))
			return RAFT_ECORRUPT;

	out->type = (raft_msg_type)pb->type;
	out->to = pb->to;
	out->from = pb->from;
	out->term = pb->term;
	out->log_term = pb->log_term;
	out->index = pb->index;
	out->commit = pb->commit;
	out->reject = pb->reject;
	out->reject_hint = pb->reject_hint;
	out->full_from = pb->full_from;
	if (pb->n_entries) {
		out->entries = calloc(pb->n_entries, sizeof(raft_entry));
		if (!out->entries)
			return RAFT_ENOMEM;
		out->n_entries = pb->n_entries;
		out->blob_data = blob;
		for (size_t i = 0; i < pb->n_entries; i++) {
			Raftpb__Entry *e = pb->entries[i];

			entry_from_pb(e, &out->entries[i], blob); /* validated above */
			if (!e->elided_len)
				continue;
			if (!out->elided && !(out->elided = calloc(pb->n_entries, sizeof(*out->elided))))
				return RAFT_ENOMEM;
			out->elided[i] = (raft_elision){e->elided_len, e->elided_crc};
		}
	}
	if (pb->snapshot) {
		int rv = snapshot_from_pb(pb->snapshot, &out->snapshot);
		if (rv != 0)
			return rv;
	}
	if (!blob) {
		out->context = steal_bytes(&pb->context, &out->context_len, false);
	} else if (pb->context.len) {
		if (!(out->context = malloc(pb->context.len)))
			return RAFT_ENOMEM;
		memcpy(out->context, pb->context.data, pb->context.len);
		out->context_len = pb->context.len;
	}
	return 0;
}

int codec_msg_decode(const uint8_t *buf, size_t len, raft_msg *out)
{
	memset(out, 0, sizeof(*out));
	ProtobufCAllocator *a = &blob_allocator;
	Raftpb__Message *pb = raftpb__message__unpack(a, len, buf);
	if (pb && pb->snapshot) {
		/* A snapshot's parts are taken as malloc'd memory by the
		 * decoders it shares (snapshot_from_pb): unpack the rare
		 * MSG_SNAP the plain way. */
		raftpb__message__free_unpacked(pb, a);
		a = NULL;
		pb = raftpb__message__unpack(a, len, buf);
	}
	if (!pb)
		return RAFT_ECORRUPT;
	int rv = msg_from_pb(pb, out, a != NULL);
	raftpb__message__free_unpacked(pb, a);
	if (rv != 0)
		raft_msg_free_contents(out);
	return rv;
}
