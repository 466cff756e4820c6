/* pb_scan.h — walking the fields of an encoded protobuf message without
 * unpacking it, to find a big bytes field that a decoder then leaves where
 * it is instead of letting protobuf-c copy it (codec_msg_decode_in, sm_decode).
 *
 * The walk accepts only what protobuf-c 1.4.1 would read: a tag or a
 * length of at most 5 bytes, a varint value of at most 10, a length within
 * the message, wire types 0, 1, 2 and 5. Anything else answers false, and
 * the caller leaves the decision to protobuf-c's own unpack, so a message
 * the scan would treat differently never decodes differently. Used by
 * consensus/codec_slice.c and fs/sm_decode.c (two libraries, hence inline). */
#ifndef RAFTFS_PB_SCAN_H
#define RAFTFS_PB_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PB_WIRE_LEN 2 /* length-delimited */

/* One field: from its tag (at) to its end; val: a length-delimited
 * field's bytes (NULL for the other wire types). */
typedef struct pb_field {
	uint64_t num;
	unsigned wire;
	const uint8_t *at, *val, *end;
} pb_field;

/* A varint of at most max_bytes bytes: protobuf-c 1.4.1 reads a tag or a length in at
 * most 5 (PB_VARINT_TAG_LEN) and a value in 10, and refuses longer ones. */
#define PB_VARINT_TAG_LEN 5
#define PB_VARINT_VALUE_LEN 10

static inline bool pb_read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v,
				  unsigned max_bytes)
{
	uint64_t x = 0;

	for (unsigned s = 0; s < 7 * max_bytes && s < 64 && *p < end; s += 7) {
		uint8_t b = *(*p)++;

		x |= (uint64_t)(b & 0x7f) << s;
		if (!(b & 0x80)) {
			*v = x;
			return true;
		}
	}
	return false;
}

/* Writes v as a varint at out: its length (at most 10). */
static inline size_t pb_put_varint(uint8_t *out, uint64_t v)
{
	size_t n = 0;

	for (; v >= 0x80; v >>= 7)
		out[n++] = (uint8_t)(v | 0x80);
	out[n++] = (uint8_t)v;
	return n;
}

/* The field at *p (< end), *p moved past it: false when it is not one
 * protobuf-c would read. */
static inline bool pb_next_field(const uint8_t **p, const uint8_t *end, pb_field *f)
{
	uint64_t tag, n;

	f->at = *p;
	if (!pb_read_varint(p, end, &tag, PB_VARINT_TAG_LEN) || tag >> 3 == 0)
		return false;
	f->num = tag >> 3;
	f->wire = (unsigned)(tag & 7);
	f->val = NULL;
	switch (f->wire) {
	case 0:
		if (!pb_read_varint(p, end, &n, PB_VARINT_VALUE_LEN))
			return false;
		break;
	case 1:
		if (end - *p < 8)
			return false;
		*p += 8;
		break;
	case PB_WIRE_LEN:
		if (!pb_read_varint(p, end, &n, PB_VARINT_TAG_LEN) || n > INT32_MAX ||
		    n > (uint64_t)(end - *p))
			return false;
		f->val = *p;
		*p += n;
		break;
	case 5:
		if (end - *p < 4)
			return false;
		*p += 4;
		break;
	default:
		return false;
	}
	f->end = *p;
	return true;
}

/* The only field num of the message [p, end), length-delimited: false when
 * it is not there, there more than once, or the message does not scan. */
static inline bool pb_only_field(const uint8_t *p, const uint8_t *end, uint64_t num,
				 pb_field *out)
{
	pb_field f;
	int seen = 0;

	*out = (pb_field){0};
	while (p < end) {
		if (!pb_next_field(&p, end, &f))
			return false;
		if (f.num == num) {
			*out = f;
			seen++;
		}
	}
	return seen == 1 && out->wire == PB_WIRE_LEN;
}

#endif
