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

#include "pb_scan.h"

#define FIELD_WRITE 17 /* Command.write (fs.proto) */
#define FIELD_DATA 3   /* Write.data */

Fspb__Command *sm_decode(ProtobufCAllocator *a, const uint8_t *cmd, size_t len)
{
	const uint8_t *end = cmd + len;
	pb_field w, d;

	if (len < SM_DECODE_IN_PLACE_MIN || !pb_only_field(cmd, end, FIELD_WRITE, &w) ||
	    !pb_only_field(w.val, w.end, FIELD_DATA, &d) ||
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
	q += pb_put_varint(q, FIELD_WRITE << 3 | PB_WIRE_LEN);
	q += pb_put_varint(q, wlen);
	memcpy(q, w.val, (size_t)(d.at - w.val));
	q += d.at - w.val;
	*q++ = FIELD_DATA << 3 | PB_WIRE_LEN;
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
