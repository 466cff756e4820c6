/* envelope.c — encoding of the proposal header (client id, seq). */
#include "envelope.h"

#include <errno.h>

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

void envelope_encode(const envelope *e, uint8_t *buf)
{
	buf[0] = ENVELOPE_VERSION;
	put64(buf + 1, e->client);
	put64(buf + 9, e->seq);
	put64(buf + 17, e->min_pending);
}

int envelope_decode(const uint8_t *data, size_t len, envelope *e, const uint8_t **cmd,
		    size_t *cmd_len)
{
	if (len < ENVELOPE_BYTES || data[0] != ENVELOPE_VERSION)
		return -EINVAL;
	e->client = get64(data + 1);
	e->seq = get64(data + 9);
	e->min_pending = get64(data + 17);
	*cmd = data + ENVELOPE_BYTES;
	*cmd_len = len - ENVELOPE_BYTES;
	return 0;
}
