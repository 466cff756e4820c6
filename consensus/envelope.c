/* envelope.c — encoding of the proposal header (client id, seq). */
#include "envelope.h"

#include <errno.h>

#include "le64.h"

void envelope_encode(const envelope *e, uint8_t *buf)
{
	buf[0] = ENVELOPE_VERSION;
	le64_put(buf + 1, e->client);
	le64_put(buf + 9, e->seq);
	le64_put(buf + 17, e->min_pending);
}

int envelope_decode(const uint8_t *data, size_t len, envelope *e, const uint8_t **cmd,
		    size_t *cmd_len)
{
	if (len < ENVELOPE_BYTES || data[0] != ENVELOPE_VERSION)
		return -EINVAL;
	e->client = le64_get(data + 1);
	e->seq = le64_get(data + 9);
	e->min_pending = le64_get(data + 17);
	*cmd = data + ENVELOPE_BYTES;
	*cmd_len = len - ENVELOPE_BYTES;
	return 0;
}
