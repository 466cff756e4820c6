/* test_sm_decode.c — a command decoded for apply with a big write's data left
 * in the entry (fs/sm_decode.c): the same command as protobuf-c's plain
 * unpack in every field and for every byte string, good or bad, the data
 * pointing into the entry only for writes of SM_DECODE_IN_PLACE_MIN bytes
 * or more. Equality is checked by packing both results again. */
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sm_decode.h"

/* A packed write command of n data bytes (and other fields around it),
 * malloc'd; *len its length. */
static uint8_t *write_cmd(size_t n, bool append, size_t *len)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Write w = FSPB__WRITE__INIT;
	uint8_t *data = malloc(n ? n : 1);

	assert_non_null(data);
	for (size_t i = 0; i < n; i++)
		data[i] = (uint8_t)(i * 13 + 5);
	w.ino = 0x1234567890ull;
	w.offset = 3ull << 40;
	w.data.data = data;
	w.data.len = n;
	w.append = append;
	c.uid = 1000;
	c.gid = 1001;
	c.time_ns = 1700000000123456789ll;
	c.node = 3;
	c.op_case = FSPB__COMMAND__OP_WRITE;
	c.write = &w;
	*len = fspb__command__get_packed_size(&c);
	uint8_t *out = malloc(*len);
	assert_non_null(out);
	assert_int_equal(fspb__command__pack(&c, out), *len);
	free(data);
	return out;
}

/* Packed again (NULL: NULL), malloc'd; *len its length. */
static uint8_t *repack(const Fspb__Command *c, size_t *len)
{
	*len = 0;
	if (!c)
		return NULL;
	*len = fspb__command__get_packed_size(c);
	uint8_t *out = malloc(*len ? *len : 1);
	assert_non_null(out);
	fspb__command__pack(c, out);
	return out;
}

/* sm_decode and the plain unpack of cmd[0..len) agree; returns whether the
 * write's data was left in cmd. */
static bool same_as_plain(const uint8_t *cmd, size_t len)
{
	Fspb__Command *plain = fspb__command__unpack(NULL, len, cmd);
	Fspb__Command *c = sm_decode(NULL, cmd, len);
	size_t pl, cl;
	uint8_t *pp = repack(plain, &pl), *cp = repack(c, &cl);
	bool in_place = false;

	assert_int_equal(plain == NULL, c == NULL);
	assert_int_equal(pl, cl);
	if (pl)
		assert_memory_equal(pp, cp, pl);
	if (c && c->op_case == FSPB__COMMAND__OP_WRITE && c->write->data.len) {
		uintptr_t at = (uintptr_t)c->write->data.data;

		in_place = at >= (uintptr_t)cmd && at < (uintptr_t)cmd + len;
	}
	free(pp);
	free(cp);
	fspb__command__free_unpacked(plain, NULL);
	sm_decode_free(c, cmd, len);
	return in_place;
}

/* Big writes: the data is the entry's own bytes; small ones are copied. */
static void test_big_write_in_place(void **state)
{
	const size_t sizes[] = {SM_DECODE_IN_PLACE_MIN, SM_DECODE_IN_PLACE_MIN + 1, 1u << 20};

	(void)state;
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		for (int append = 0; append <= 1; append++) {
			size_t len;
			uint8_t *cmd = write_cmd(sizes[i], append, &len);
			Fspb__Command *c = sm_decode(NULL, cmd, len);

			assert_non_null(c);
			assert_int_equal(c->op_case, FSPB__COMMAND__OP_WRITE);
			assert_int_equal(c->write->data.len, sizes[i]);
			assert_true(c->write->data.data > cmd && c->write->data.data < cmd + len);
			assert_int_equal(c->write->data.data[7], (uint8_t)(7 * 13 + 5));
			assert_int_equal(c->write->append, append);
			sm_decode_free(c, cmd, len);
			assert_true(same_as_plain(cmd, len));
			free(cmd);
		}
	}
	size_t len;
	uint8_t *cmd = write_cmd(SM_DECODE_IN_PLACE_MIN - 1, false, &len);
	assert_false(same_as_plain(cmd, len));
	free(cmd);
	cmd = write_cmd(0, true, &len);
	assert_false(same_as_plain(cmd, len));
	free(cmd);
}

/* Other commands are the plain unpack's. */
static void test_other_commands(void **state)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Mkdir m = FSPB__MKDIR__INIT;
	uint8_t buf[256];

	(void)state;
	m.parent = 1;
	m.name = "d";
	m.mode = 0755;
	c.op_case = FSPB__COMMAND__OP_MKDIR;
	c.mkdir = &m;
	size_t len = fspb__command__pack(&c, buf);
	assert_false(same_as_plain(buf, len));
	assert_false(same_as_plain(buf, 0));
}

/* Every byte of the write's framing (the fields before the data, the data's
 * tag and length) and of its end changed to every value, and every cut of
 * those: the two decoders agree on all, good or bad. */
static void test_damaged_agree(void **state)
{
	size_t len;
	uint8_t *cmd = write_cmd(SM_DECODE_IN_PLACE_MIN + 100, true, &len);
	const size_t head = 48, tail = 8;

	(void)state;
	for (size_t at = 0; at < head + tail; at++) {
		size_t pos = at < head ? at : len - tail + (at - head);
		uint8_t keep = cmd[pos];

		for (unsigned v = 0; v < 256; v++) {
			cmd[pos] = (uint8_t)v;
			(void)same_as_plain(cmd, len);
		}
		cmd[pos] = keep;
	}
	for (size_t cut = 0; cut < head; cut++)
		(void)same_as_plain(cmd, cut);
	for (size_t cut = len - tail; cut <= len; cut++)
		(void)same_as_plain(cmd, cut);
	free(cmd);
}

/* A field twice (two commands packed back to back: protobuf merges them,
 * the later write's fields winning) is left to the plain unpack. */
static void test_repeated_write_plain(void **state)
{
	size_t la, lb;
	uint8_t *a = write_cmd(SM_DECODE_IN_PLACE_MIN, false, &la);
	uint8_t *b = write_cmd(SM_DECODE_IN_PLACE_MIN * 2, true, &lb);
	uint8_t *ab = malloc(la + lb);

	(void)state;
	assert_non_null(ab);
	memcpy(ab, a, la);
	memcpy(ab + la, b, lb);
	assert_false(same_as_plain(ab, la + lb));
	free(ab);
	free(a);
	free(b);
}

static size_t varint_len(const uint8_t *p)
{
	size_t n = 1;

	while (p[n - 1] & 0x80)
		n++;
	return n;
}

static uint64_t varint_at(const uint8_t *p, size_t n)
{
	uint64_t v = 0;

	for (size_t i = 0; i < n; i++)
		v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
	return v;
}

/* The bytes v takes at the least. */
static unsigned varint_width(uint64_t v)
{
	unsigned w = 1;

	while (v >>= 7)
		w++;
	return w;
}

/* cmd with its varint at cmd[at..at+n) replaced by v written in width
 * bytes (padded with continuation bytes: the same number, which
 * protobuf-c refuses as a tag or a length in more than 5); malloc'd,
 * *out_len its length. */
static uint8_t *respell(const uint8_t *cmd, size_t len, size_t at, size_t n, uint64_t v,
			unsigned width, size_t *out_len)
{
	uint8_t *out = malloc(len - n + width);

	assert_non_null(out);
	memcpy(out, cmd, at);
	for (unsigned i = 0; i < width; i++, v >>= 7)
		out[at + i] = (uint8_t)((v & 0x7f) | (i + 1 < width ? 0x80 : 0));
	memcpy(out + at + width, cmd + at + n, len - at - n);
	*out_len = len - n + width;
	return out;
}

/* Each of the four varints sm_decode writes again (the write's tag and
 * length, the data's tag and length) padded to 1..10 bytes: sm_decode
 * accepts exactly what the plain unpack accepts (an old node, which
 * decodes plainly, must refuse what a new one refuses). */
static void test_padded_varints_agree(void **state)
{
	size_t len, at = 0, spots[4], widths[4];
	uint8_t *cmd = write_cmd(SM_DECODE_IN_PLACE_MIN + 10, false, &len);
	int found = 0;

	(void)state;
	/* The Command's fields, then the Write's: find both tags and lengths. */
	while (at < len && found < 2) {
		size_t tl = varint_len(cmd + at), ll;
		uint64_t tag = varint_at(cmd + at, tl), n;

		if ((tag & 7) == 0) {
			at += tl + varint_len(cmd + at + tl);
			continue;
		}
		assert_int_equal(tag & 7, 2);
		ll = varint_len(cmd + at + tl);
		n = varint_at(cmd + at + tl, ll);
		if ((found == 0 && tag >> 3 == 17) || (found == 1 && tag >> 3 == 3)) {
			spots[2 * found] = at;
			widths[2 * found] = tl;
			spots[2 * found + 1] = at + tl;
			widths[2 * found + 1] = ll;
			at += tl + ll; /* into the Write, or past the data */
			if (found++ == 1)
				break;
			continue;
		}
		at += tl + ll + n;
	}
	assert_int_equal(found, 2);
	for (int v = 0; v < 4; v++)
		for (unsigned width = (unsigned)widths[v]; width <= 10; width++) {
			size_t wl;
			uint8_t *w = respell(cmd, len, spots[v], widths[v],
					     varint_at(cmd + spots[v], widths[v]), width, &wl);

			/* The write's length must count the widened data header. */
			if (v >= 2) {
				uint64_t wlen = varint_at(w + spots[1], widths[1]) + width - widths[v];
				size_t l2;
				uint8_t *w2 = respell(w, wl, spots[1], widths[1], wlen,
						      varint_width(wlen), &l2);

				free(w);
				w = w2;
				wl = l2;
			}
			(void)same_as_plain(w, wl);
			free(w);
		}
	free(cmd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_big_write_in_place),
	    cmocka_unit_test(test_other_commands),
	    cmocka_unit_test(test_damaged_agree),
	    cmocka_unit_test(test_repeated_write_plain),
	    cmocka_unit_test(test_padded_varints_agree),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
