/* codec_slice.c — a received message decoded with its big entries' data
 * left in the frame it arrived in (codec.h, codec_msg_decode_in).
 *
 * protobuf-c copies every bytes field out of the buffer it unpacks: on
 * each follower's loop, every MiB an append carries was copied once more
 * after the socket's copy into the frame (3.8 % of a sequential write's
 * cluster CPU, bench/fs/README.md "Session 13 (seqw4)"). Here protobuf-c
 * unpacks a copy of the message without those entries' data (the bytes
 * around it, the lengths shortened to match), and each such entry's data
 * then points into the frame, a reference to the frame's block (blob.h,
 * raft_blob_slice). Everything else is the plain unpack's, from the same
 * bytes; a shape the scan does not follow (pb_scan.h) takes the plain
 * decode, which decides, so a message never decodes differently. */
#include "codec.h"

#include <stdlib.h>
#include <string.h>

#include "blob.h"
#include "pb_scan.h"

#define MSG_ENTRIES 7 /* raftpb.Message.entries */
#define ENTRY_DATA 4  /* raftpb.Entry.data */

/* Big entries left in place per message at most; later ones are copied
 * (an append holds a few: max_frame_bytes / CODEC_SLICE_MIN_BYTES). */
#define SLICES_MAX 64

/* A raft_blob_slice back pointer's bytes, just before the data. */
#define BACK_BYTES 8

typedef struct slice {
	size_t k;	  /* which entry of the message */
	pb_field ent, dat; /* the entry's field, its data field */
} slice;

/* The message with every slice's data field emptied, at out: its length,
 * at most len less the slices' data (no tag or length written is longer
 * than the one it replaces, and a data field of CODEC_SLICE_MIN_BYTES had
 * a tag and a length of 4 bytes or more, the empty one has 2). */
static size_t squeeze(const uint8_t *buf, size_t len, const slice *s, size_t n, uint8_t *out)
{
	const uint8_t *from = buf;
	uint8_t *q = out;

	for (size_t i = 0; i < n; i++) {
		const pb_field *e = &s[i].ent, *d = &s[i].dat;
		size_t before = (size_t)(d->at - e->val), after = (size_t)(e->end - d->end);

		memcpy(q, from, (size_t)(e->at - from));
		q += e->at - from;
		q += pb_put_varint(q, MSG_ENTRIES << 3 | PB_WIRE_LEN);
		q += pb_put_varint(q, before + 2 + after);
		memcpy(q, e->val, before);
		q += before;
		*q++ = ENTRY_DATA << 3 | PB_WIRE_LEN;
		*q++ = 0;
		memcpy(q, d->end, after);
		q += after;
		from = e->end;
	}
	memcpy(q, from, (size_t)(buf + len - from));
	q += buf + len - from;
	return (size_t)(q - out);
}

/* The entries of buf worth leaving in place, into s: how many. Each one's
 * data is CODEC_SLICE_MIN_BYTES or more, its entry has one data field, and
 * BACK_BYTES before it lie in buf and in no other slice's data. false:
 * the message does not scan. */
static bool find_slices(const uint8_t *buf, size_t len, slice *s, size_t *n)
{
	const uint8_t *p = buf, *end = buf + len, *free_from = buf;
	size_t k = 0;
	pb_field f, d;

	*n = 0;
	while (p < end) {
		if (!pb_next_field(&p, end, &f))
			return false;
		if (f.num != MSG_ENTRIES)
			continue;
		if (f.wire != PB_WIRE_LEN)
			return false;
		if (*n < SLICES_MAX && pb_only_field(f.val, f.end, ENTRY_DATA, &d) &&
		    (size_t)(d.end - d.val) >= CODEC_SLICE_MIN_BYTES &&
		    (size_t)(d.val - free_from) >= BACK_BYTES) {
			s[(*n)++] = (slice){k, f, d};
			free_from = d.end;
		}
		k++;
	}
	return true;
}

int codec_msg_decode_in(const uint8_t *block, uint8_t *buf, size_t len, raft_msg *out)
{
	slice s[SLICES_MAX];
	size_t n, cut = 0;
	uint8_t *sq;
	int rv;

	if (!find_slices(buf, len, s, &n) || n == 0)
		return codec_msg_decode(buf, len, out);
	for (size_t i = 0; i < n; i++)
		cut += (size_t)(s[i].dat.end - s[i].dat.val);
	if (!(sq = malloc(len - cut)))
		return RAFT_ENOMEM;
	rv = codec_msg_decode(sq, squeeze(buf, len, s, n, sq), out);
	free(sq);
	/* Not decoded as blocks (a MSG_SNAP), or refused: the plain decode
	 * decides (the two differ only in the emptied data). */
	if (rv != 0 || !out->blob_data) {
		if (rv == 0)
			raft_msg_free_contents(out);
		return codec_msg_decode(buf, len, out);
	}
	for (size_t i = 0; i < n; i++) {
		raft_entry *e = &out->entries[s[i].k];
		size_t dlen = (size_t)(s[i].dat.end - s[i].dat.val);

		/* codec_msg_decode checked elided_len against the emptied
		 * data: against the real data here, as the plain decode does. */
		if (out->elided && out->elided[s[i].k].len && out->elided[s[i].k].len <= dlen) {
			raft_msg_free_contents(out);
			return RAFT_ECORRUPT;
		}
		e->data = (uint8_t *)s[i].dat.val;
		e->len = (uint32_t)dlen;
		raft_blob_slice(block, e->data);
	}
	return 0;
}
