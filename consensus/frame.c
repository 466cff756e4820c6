/* frame.c — length-prefixed framing of the transport byte stream. */
#include "frame.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void frame_header(uint8_t hdr[FRAME_HEADER_BYTES], uint8_t type, size_t payload_len)
{
	uint32_t l = (uint32_t)(payload_len + 1);

	hdr[0] = (uint8_t)(l >> 24);
	hdr[1] = (uint8_t)(l >> 16);
	hdr[2] = (uint8_t)(l >> 8);
	hdr[3] = (uint8_t)l;
	hdr[4] = type;
}

void frame_reader_init(frame_reader *fr, size_t max_frame)
{
	memset(fr, 0, sizeof(*fr));
	fr->max_frame = max_frame;
}

void frame_reader_init_shared(frame_reader *fr, size_t max_frame, const frame_buf_ops *ops)
{
	frame_reader_init(fr, max_frame);
	fr->ops = ops;
}

static void buf_release(frame_reader *fr, uint8_t *buf)
{
	if (fr->ops && buf)
		fr->ops->release(buf);
	else
		free(buf);
}

void frame_reader_free(frame_reader *fr)
{
	buf_release(fr, fr->buf);
	memset(fr, 0, sizeof(*fr));
}

/* Moves the unconsumed bytes into a new buffer of ncap bytes. */
static int move_to_new(frame_reader *fr, size_t ncap)
{
	size_t rest = fr->len - fr->start;
	uint8_t *nb = fr->ops ? fr->ops->alloc(ncap) : malloc(ncap);

	if (!nb)
		return -ENOMEM;
	if (rest)
		memcpy(nb, fr->buf + fr->start, rest);
	buf_release(fr, fr->buf);
	fr->buf = nb;
	fr->cap = ncap;
	fr->start = 0;
	fr->len = rest;
	return 0;
}

int frame_reader_space(frame_reader *fr, size_t min, uint8_t **space, size_t *cap)
{
	size_t want = min, rest = fr->len - fr->start;

	/* A big frame is read in as few calls as the socket allows. */
	if (rest >= 4) {
		const uint8_t *p = fr->buf + fr->start;
		uint32_t l = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];

		if (l <= fr->max_frame && (size_t)l + 4 > rest + want)
			want = (size_t)l + 4 - rest;
	}
	if (fr->ops && fr->buf && fr->ops->held(fr->buf)) {
		/* Parts of it are referenced (decoded entries): what is
		 * left goes to a buffer of its own, just big enough. */
		if (move_to_new(fr, rest + want) < 0)
			return -ENOMEM;
	} else if (fr->ops && rest + want > fr->cap) {
		if (move_to_new(fr, rest + want) < 0)
			return -ENOMEM;
	} else {
		/* Slide consumed bytes out before growing, so the buffer
		 * stays about one frame large however long the connection
		 * lives. */
		if (fr->start > 0) {
			memmove(fr->buf, fr->buf + fr->start, rest);
			fr->len = rest;
			fr->start = 0;
		}
		if (fr->len + want > fr->cap) {
			size_t ncap = fr->cap ? fr->cap : 4096;
			uint8_t *nb;

			while (ncap < fr->len + want)
				ncap *= 2;
			nb = realloc(fr->buf, ncap);
			if (!nb)
				return -ENOMEM;
			fr->buf = nb;
			fr->cap = ncap;
		}
	}
	*space = fr->buf + fr->len;
	*cap = fr->cap - fr->len;
	return 0;
}

void frame_reader_commit(frame_reader *fr, size_t n)
{
	fr->len += n;
}

int frame_reader_feed(frame_reader *fr, const void *data, size_t n)
{
	uint8_t *space;
	size_t cap;

	if (n == 0)
		return 0;
	if (frame_reader_space(fr, n, &space, &cap) < 0)
		return -ENOMEM;
	memcpy(space, data, n);
	frame_reader_commit(fr, n);
	return 0;
}

int frame_reader_next(frame_reader *fr, uint8_t *type, const uint8_t **payload, size_t *len)
{
	size_t avail = fr->len - fr->start;
	const uint8_t *p = fr->buf + fr->start;
	uint32_t l;

	if (avail < 4)
		return 0;
	l = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
	/* Checked before waiting for the body, so an oversized length is
	 * refused at once instead of being buffered. */
	if (l == 0 || l > fr->max_frame)
		return -EMSGSIZE;
	if (avail < (size_t)l + 4)
		return 0;
	if (p[4] == 0 || p[4] > FRAME_TYPE_MAX)
		return -EPROTO;
	*type = p[4];
	*payload = p + FRAME_HEADER_BYTES;
	*len = l - 1;
	fr->start += (size_t)l + 4;
	return 1;
}
