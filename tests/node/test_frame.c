/* test_frame.c — framing of the transport byte stream: whole, split and
 * coalesced frames, and every malformed length or type refused. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "frame.h"

static size_t make_frame(uint8_t *out, uint8_t type, const char *payload)
{
	size_t n = strlen(payload);

	frame_header(out, type, n);
	memcpy(out + FRAME_HEADER_BYTES, payload, n);
	return FRAME_HEADER_BYTES + n;
}

static void test_header_layout(void **state)
{
	uint8_t h[FRAME_HEADER_BYTES];

	frame_header(h, FRAME_RAFT, 0x10203);
	/* Big-endian length of type byte + payload, then the type. */
	assert_int_equal(h[0], 0x00);
	assert_int_equal(h[1], 0x01);
	assert_int_equal(h[2], 0x02);
	assert_int_equal(h[3], 0x04);
	assert_int_equal(h[4], FRAME_RAFT);
}

static void test_byte_by_byte(void **state)
{
	uint8_t buf[64];
	size_t n = make_frame(buf, FRAME_REQUEST, "hello");
	frame_reader fr;
	const uint8_t *p;
	uint8_t type;
	size_t len;

	frame_reader_init(&fr, 1024);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(frame_reader_next(&fr, &type, &p, &len), 0);
		assert_int_equal(frame_reader_feed(&fr, buf + i, 1), 0);
	}
	assert_int_equal(frame_reader_next(&fr, &type, &p, &len), 1);
	assert_int_equal(type, FRAME_REQUEST);
	assert_int_equal(len, 5);
	assert_memory_equal(p, "hello", 5);
	assert_int_equal(frame_reader_next(&fr, &type, &p, &len), 0);
	frame_reader_free(&fr);
}

static void test_coalesced_and_empty_payload(void **state)
{
	uint8_t buf[256];
	size_t n = 0;
	frame_reader fr;
	const uint8_t *p;
	uint8_t type;
	size_t len;

	n += make_frame(buf + n, FRAME_HELLO, "a");
	n += make_frame(buf + n, FRAME_RAFT, "");
	n += make_frame(buf + n, FRAME_RESPONSE, "xyz");
	frame_reader_init(&fr, 1024);
	/* All three frames plus half of a fourth in one read. */
	n += make_frame(buf + n, FRAME_RAFT, "tail") - 3;
	assert_int_equal(frame_reader_feed(&fr, buf, n), 0);
	assert_int_equal(frame_reader_next(&fr, &type, &p, &len), 1);
	assert_int_equal(type, FRAME_HELLO);
	assert_int_equal(len, 1);
	assert_int_equal(frame_reader_next(&fr, &type, &p, &len), 1);
	assert_int_equal(type, FRAME_RAFT);
	assert_int_equal(len, 0);
	assert_int_equal(frame_reader_next(&fr, &type, &p, &len), 1);
	assert_int_equal(type, FRAME_RESPONSE);
	assert_memory_equal(p, "xyz", 3);
	assert_int_equal(frame_reader_next(&fr, &type, &p, &len), 0);
	assert_int_equal(frame_reader_feed(&fr, "ail", 3), 0);
	assert_int_equal(frame_reader_next(&fr, &type, &p, &len), 1);
	assert_memory_equal(p, "tail", 4);
	frame_reader_free(&fr);
}

static int next_after(const uint8_t *bytes, size_t n, size_t max)
{
	frame_reader fr;
	const uint8_t *p;
	uint8_t type;
	size_t len;
	int rc;

	frame_reader_init(&fr, max);
	assert_int_equal(frame_reader_feed(&fr, bytes, n), 0);
	rc = frame_reader_next(&fr, &type, &p, &len);
	frame_reader_free(&fr);
	return rc;
}

static void test_malformed(void **state)
{
	static const uint8_t zero_len[] = {0, 0, 0, 0, 1};
	static const uint8_t huge[] = {0xff, 0xff, 0xff, 0xff};
	static const uint8_t just_over[] = {0, 0, 0x04, 0x01};
	static const uint8_t at_max[] = {0, 0, 0x04, 0x00, FRAME_RAFT};
	static const uint8_t type0[] = {0, 0, 0, 1, 0};
	static const uint8_t type9[] = {0, 0, 0, 2, 9, 'x'};

	assert_int_equal(next_after(zero_len, sizeof(zero_len), 1024), -EMSGSIZE);
	/* An oversized length is refused from the header alone. */
	assert_int_equal(next_after(huge, sizeof(huge), 1024), -EMSGSIZE);
	assert_int_equal(next_after(just_over, sizeof(just_over), 1024), -EMSGSIZE);
	assert_int_equal(next_after(at_max, sizeof(at_max), 1024), 0); /* waits for the body */
	assert_int_equal(next_after(type0, sizeof(type0), 1024), -EPROTO);
	assert_int_equal(next_after(type9, sizeof(type9), 1024), -EPROTO);
}

static void test_random_garbage_never_crashes(void **state)
{
	uint64_t x = 88172645463325252ull;
	int errors = 0, frames = 0;

	for (int round = 0; round < 2000; round++) {
		frame_reader fr;
		uint8_t buf[64];
		const uint8_t *p;
		uint8_t type;
		size_t len, n;
		int rc;

		frame_reader_init(&fr, 64);
		for (int chunk = 0; chunk < 4; chunk++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			n = x % sizeof(buf);
			for (size_t i = 0; i < n; i++) {
				x ^= x << 13, x ^= x >> 7, x ^= x << 17;
				/* Small leading bytes, so some lengths are plausible. */
				buf[i] = (uint8_t)(i % 5 < 3 ? x % 3 : x);
			}
			assert_int_equal(frame_reader_feed(&fr, buf, n), 0);
			while ((rc = frame_reader_next(&fr, &type, &p, &len)) == 1) {
				assert_true(type >= 1 && type <= FRAME_TYPE_MAX);
				assert_true(len < 64);
				frames++;
			}
			if (rc < 0) {
				errors++;
				break;
			}
		}
		frame_reader_free(&fr);
	}
	/* The generator makes both kinds; the checks above are what matters. */
	assert_true(errors > 0);
	assert_true(frames > 0);
}

/* Reading in place (frame_reader_space/commit, what the transport does):
 * once a frame's length is known the space offered covers its rest, so a
 * 1 MiB frame needs no more reads than the socket hands over; the frame
 * and the one behind it come out whole. */
static void test_read_in_place(void **state)
{
	const size_t big = (1u << 20) + 3;
	uint8_t *stream = malloc(FRAME_HEADER_BYTES + big + 16);
	size_t total, off = 0, reads = 0;
	frame_reader fr;
	const uint8_t *p;
	uint8_t type;
	size_t len;

	assert_non_null(stream);
	frame_header(stream, FRAME_RAFT, big);
	for (size_t i = 0; i < big; i++)
		stream[FRAME_HEADER_BYTES + i] = (uint8_t)(i * 7);
	total = FRAME_HEADER_BYTES + big;
	total += make_frame(stream + total, FRAME_HELLO, "next");
	frame_reader_init(&fr, 2u << 20);
	while (off < total) {
		uint8_t *space;
		size_t cap, n;

		assert_int_equal(frame_reader_space(&fr, 16, &space, &cap), 0);
		assert_true(cap >= 16);
		/* The first read takes 16 bytes; after that the whole rest of
		 * the big frame fits in the space offered. */
		if (reads == 1)
			assert_true(cap >= FRAME_HEADER_BYTES + big - 16);
		n = total - off < cap ? total - off : cap;
		if (reads == 0)
			n = 16;
		memcpy(space, stream + off, n);
		frame_reader_commit(&fr, n);
		off += n;
		reads++;
	}
	assert_int_equal(reads, 2);
	assert_int_equal(frame_reader_next(&fr, &type, &p, &len), 1);
	assert_int_equal(type, FRAME_RAFT);
	assert_int_equal(len, big);
	assert_memory_equal(p, stream + FRAME_HEADER_BYTES, big);
	assert_int_equal(frame_reader_next(&fr, &type, &p, &len), 1);
	assert_int_equal(type, FRAME_HELLO);
	assert_int_equal(len, 4);
	assert_memory_equal(p, "next", 4);
	assert_int_equal(frame_reader_next(&fr, &type, &p, &len), 0);
	frame_reader_free(&fr);
	free(stream);
}

/* Buffers of a shared reader (frame_reader_init_shared), as the test
 * hands them out: one of them marked held stands for a decoded message
 * still referencing a frame in it. */
static const uint8_t *held_buf;
static size_t allocs, last_alloc, releases_of_held;

static uint8_t *t_alloc(size_t n)
{
	allocs++;
	last_alloc = n;
	return malloc(n);
}

static bool t_held(const uint8_t *buf)
{
	return buf == held_buf;
}

static void t_release(uint8_t *buf)
{
	if (buf == held_buf)
		releases_of_held++; /* the holder frees it */
	else
		free(buf);
}

/* A held buffer is never written again: the reader moves what it has not
 * handed out to a new buffer, just big enough for the frame coming (a held
 * one pins its size: not doubled), and releases its own reference. */
static void test_held_buffer_kept(void **state)
{
	static const frame_buf_ops ops = {t_alloc, t_held, t_release};
	/* The second frame fits where the first was: a reader that ignored
	 * the hold would slide it over the first. */
	enum { NA = 5999, NB = 4999, BIG = 200000 };
	uint8_t *stream = malloc(3 * FRAME_HEADER_BYTES + NA + NB + BIG), *kept = malloc(NA);
	char payload[NA + 1];
	size_t at = 0, len, cap;
	frame_reader fr;
	const uint8_t *p, *first;
	uint8_t type, *space;

	assert_true(stream && kept);
	memset(payload, 'a', NA);
	payload[NA] = '\0';
	at += make_frame(stream + at, FRAME_RAFT, payload);
	memset(payload, 'b', NB);
	payload[NB] = '\0';
	at += make_frame(stream + at, FRAME_RAFT, payload);
	frame_header(stream + at, FRAME_RAFT, BIG);
	memset(stream + at + FRAME_HEADER_BYTES, 'c', BIG);
	at += FRAME_HEADER_BYTES + BIG;

	frame_reader_init_shared(&fr, 1u << 20, &ops);
	/* The first frame and 3 bytes of the second's header. */
	assert_int_equal(frame_reader_feed(&fr, stream, FRAME_HEADER_BYTES + NA + 3), 0);
	assert_int_equal(frame_reader_next(&fr, &type, &first, &len), 1);
	assert_int_equal(len, NA);
	memcpy(kept, first, NA);
	held_buf = fr.buf;
	/* The rest of the second frame and the third's header. */
	assert_int_equal(frame_reader_feed(&fr, stream + FRAME_HEADER_BYTES + NA + 3,
					   NB + 2 + FRAME_HEADER_BYTES),
			 0);
	assert_true(fr.buf != held_buf);
	assert_int_equal(releases_of_held, 1);
	assert_memory_equal(first, kept, NA); /* not written over */
	assert_int_equal(frame_reader_next(&fr, &type, &p, &len), 1);
	assert_int_equal(len, NB);
	assert_memory_equal(p, stream + 2 * FRAME_HEADER_BYTES + NA, NB);
	/* The big frame's space: all of it, in a buffer of its size. */
	held_buf = fr.buf;
	assert_int_equal(frame_reader_space(&fr, 64, &space, &cap), 0);
	assert_int_equal(releases_of_held, 2);
	assert_int_equal(last_alloc, FRAME_HEADER_BYTES + BIG);
	assert_int_equal(cap, BIG);
	memcpy(space, stream + at - BIG, BIG);
	frame_reader_commit(&fr, BIG);
	assert_int_equal(frame_reader_next(&fr, &type, &p, &len), 1);
	assert_int_equal(len, BIG);
	assert_memory_equal(p, stream + at - BIG, BIG);
	assert_memory_equal(first, kept, NA);
	assert_int_equal(allocs, 3);
	frame_reader_free(&fr);
	free((void *)held_buf);
	free((uint8_t *)first - FRAME_HEADER_BYTES); /* the first buffer: the first frame's */
	free(kept);
	free(stream);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_header_layout),
	    cmocka_unit_test(test_byte_by_byte),
	    cmocka_unit_test(test_coalesced_and_empty_payload),
	    cmocka_unit_test(test_malformed),
	    cmocka_unit_test(test_random_garbage_never_crashes),
	    cmocka_unit_test(test_read_in_place),
	    cmocka_unit_test(test_held_buffer_kept),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
