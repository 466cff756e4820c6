/* sm_decode.c — a command decoded for apply, a big write's data left where
 * it is.
 *
 * protobuf-c copies every bytes field out of the buffer it unpacks: for a
 * write of a MiB, a MiB copied on every node before the pwrite copies it
 * again (3.5 % of a sequential write's cluster CPU in session 12's
 * profile). sm_decode unpacks a copy of the command without the write's
 * data — the bytes around it, the write's length shortened to match — and
 * points the data at the command's own bytes. Everything else is the plain
 * unpack's, from the same bytes, so every node (old ones unpack plainly)
 * applies the same command; a shape the scan does not follow (the write
 * field or its data field more than once, a length past the end, a wire
 * type protobuf does not have) takes the plain unpack, which decides. */
#include "sm_decode.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FIELD_WRITE 17 /* Command.write (fs.proto) */
#define FIELD_DATA 3   /* Write.data */
#define WIRE_LEN 2     /* length-delimited */

/* At most max_bytes bytes: protobuf-c 1.4.1 reads a tag or a length in at
 * most 5 (VARINT_TAG_LEN) and a value in 10, and refuses longer ones; a
 * shape it refuses must fall back to the plain unpack here too, or an old
 * node would refuse a command a new one applies. */
#define VARINT_TAG_LEN 5
#define VARINT_VALUE_LEN 10

static bool read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v, unsigned max_bytes)
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

static size_t put_varint(uint8_t *out, uint64_t v)
{
	size_t n = 0;

	for (; v >= 0x80; v >>= 7)
		out[n++] = (uint8_t)(v | 0x80);
	out[n++] = (uint8_t)v;
	return n;
}

/* One field: from its tag (at) to its end; val: a length-delimited
 * field's bytes. */
struct field {
	uint64_t num;
	unsigned wire;
	const uint8_t *at, *val, *end;
};

/* The field at *p (< end), *p moved past it: false when it is not one
 * protobuf would read. */
static bool next_field(const uint8_t **p, const uint8_t *end, struct field *f)
{
	uint64_t tag, n;

	f->at = *p;
	if (!read_varint(p, end, &tag, VARINT_TAG_LEN) || tag >> 3 == 0)
		return false;
	f->num = tag >> 3;
	f->wire = (unsigned)(tag & 7);
	f->val = NULL;
	switch (f->wire) {
	case 0:
		if (!read_varint(p, end, &n, VARINT_VALUE_LEN))
			return false;
		break;
	case 1:
		if (end - *p < 8)
			return false;
		*p += 8;
		break;
	case WIRE_LEN:
		if (!read_varint(p, end, &n, VARINT_TAG_LEN) || n > INT32_MAX ||
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
static bool only_field(const uint8_t *p, const uint8_t *end, uint64_t num, struct field *out)
{
	struct field f;
	int seen = 0;

	while (p < end) {
		if (!next_field(&p, end, &f))
			return false;
		if (f.num == num) {
			*out = f;
			seen++;
		}
	}
	return seen == 1 && out->wire == WIRE_LEN;
}

Fspb__Command *sm_decode(ProtobufCAllocator *a, const uint8_t *cmd, size_t len)
{
	const uint8_t *end = cmd + len;
	struct field w, d;

	if (len < SM_DECODE_IN_PLACE_MIN || !only_field(cmd, end, FIELD_WRITE, &w) ||
	    !only_field(w.val, w.end, FIELD_DATA, &d) ||
	    (size_t)(d.end - d.val) < SM_DECODE_IN_PLACE_MIN)
		return fspb__command__unpack(a, len, cmd);
	/* The command as it would be with empty data: what comes before the
	 * write, the write (its tag, new length, its fields before the data,
	 * the data's tag and length 0, its fields after), what comes after. */
	size_t wlen = (size_t)(d.at - w.val) + 2 + (size_t)(w.end - d.end);
	size_t slen = (size_t)(w.at - cmd) + 2 + 10 + wlen + (size_t)(end - w.end);
	uint8_t *s = malloc(slen), *q = s;

	if (!s)
		return fspb__command__unpack(a, len, cmd);
	memcpy(q, cmd, (size_t)(w.at - cmd));
	q += w.at - cmd;
	q += put_varint(q, FIELD_WRITE << 3 | WIRE_LEN);
	q += put_varint(q, wlen);
	memcpy(q, w.val, (size_t)(d.at - w.val));
	q += d.at - w.val;
	*q++ = FIELD_DATA << 3 | WIRE_LEN;
	*q++ = 0;
	memcpy(q, d.end, (size_t)(w.end - d.end));
	q += w.end - d.end;
	memcpy(q, w.end, (size_t)(end - w.end));
	q += end - w.end;
	Fspb__Command *c = fspb__command__unpack(a, (size_t)(q - s), s);
	free(s);
	/* A later field of the oneof may have replaced the write. */
	if (c && c->op_case == FSPB__COMMAND__OP_WRITE && !c->write->data.len) {
		c->write->data.data = (uint8_t *)d.val;
		c->write->data.len = (size_t)(d.end - d.val);
	}
	return c;
}

void sm_decode_free(Fspb__Command *c, const uint8_t *cmd, size_t len)
{
	if (!c)
		return;
	uintptr_t at = c->op_case == FSPB__COMMAND__OP_WRITE ? (uintptr_t)c->write->data.data : 0;

	if (at >= (uintptr_t)cmd && at < (uintptr_t)cmd + len) {
		c->write->data.data = NULL;
		c->write->data.len = 0;
	}
	fspb__command__free_unpacked(c, NULL);
}
