/* test_codec_slice.c — codec_msg_decode_in: a received frame's big entries
 * stay where they arrived (references to the frame's block), and every
 * message decodes as codec_msg_decode decodes it, refusals included. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "blob.h"
#include "codec.h"
#include "frame.h"
#include "raft.pb-c.h"
#include "test_util.h"

/* A frame's block as the transport's reader holds it: a header's room
 * (the bytes before the payload are the frame's, not the message's), then
 * the encoding (payload). */
static uint8_t *frame_block(const uint8_t *enc, size_t len, uint8_t **payload)
{
	uint8_t *block = raft_blob_new(FRAME_HEADER_BYTES + len);

	assert_non_null(block);
	memset(block, 0xee, FRAME_HEADER_BYTES);
	memcpy(block + FRAME_HEADER_BYTES, enc, len);
	*payload = block + FRAME_HEADER_BYTES;
	return block;
}

static bool inside(const uint8_t *p, const uint8_t *buf, size_t len)
{
	return p >= buf && p < buf + len;
}

/* An append with entries below, at and above CODEC_SLICE_MIN_BYTES, one
 * of them (small) with elided data. */
static void make_append(raft_msg *m, const size_t *sizes, size_t n)
{
	*m = (raft_msg){.type = RAFT_MSG_APP, .to = 2, .from = 1, .term = 7, .index = 40,
			.commit = 39, .log_term = 6};
	m->entries = calloc(n, sizeof(raft_entry));
	m->elided = calloc(n, sizeof(raft_elision));
	assert_true(m->entries && m->elided);
	m->n_entries = n;
	for (size_t i = 0; i < n; i++)
		tu_entry(&m->entries[i], 41 + i, 7, sizes[i]);
	m->elided[n - 1] = (raft_elision){.len = 1 << 20, .crc = 0xdeadbeef};
}

/* Big entries are references into the frame, the others copies; the
 * frame's block lives while any is held, and goes with the last. */
static void test_big_entries_referenced(void **state)
{
	(void)state;
	static const size_t sizes[] = {0,	  CODEC_SLICE_MIN_BYTES - 1, 1 << 20, 100,
				       CODEC_SLICE_MIN_BYTES, 70000, 5};
	size_t n = sizeof(sizes) / sizeof(sizes[0]);
	raft_msg m, got;
	uint8_t *enc, *payload;
	size_t len;

	make_append(&m, sizes, n);
	assert_int_equal(codec_msg_encode(&m, 0, &enc, &len), 0);
	uint8_t *block = frame_block(enc, len, &payload);

	assert_int_equal(codec_msg_decode_in(block, payload, len, &got), 0);
	assert_true(got.blob_data);
	assert_non_null(got.elided);
	assert_int_equal(got.elided[n - 1].len, 1 << 20);
	assert_int_equal(got.elided[n - 1].crc, 0xdeadbeef);
	for (size_t i = 0; i < n; i++) {
		bool big = sizes[i] >= CODEC_SLICE_MIN_BYTES;

		assert_int_equal(got.entries[i].len, sizes[i]);
		assert_true(tu_entry_ok(&got.entries[i], 41 + i, 7));
		assert_int_equal(got.entries[i].data && inside(got.entries[i].data, payload, len),
				 big);
	}
	assert_true(raft_blob_shared(block));

	/* A log's reference outlives the message and the reader's own. */
	raft_entry kept = got.entries[2];
	raft_blob_ref(kept.data);
	raft_msg_free_contents(&got);
	assert_true(raft_blob_shared(block));
	raft_blob_release(block);
	assert_true(tu_entry_ok(&kept, 43, 7)); /* ASan: still allocated */
	raft_blob_release(kept.data);	       /* the last: the block goes (no leak) */
	free(enc);
	raft_msg_free_contents(&m);
}

static bool msg_same(const raft_msg *a, const raft_msg *b)
{
	if (a->type != b->type || a->to != b->to || a->from != b->from || a->term != b->term ||
	    a->log_term != b->log_term || a->index != b->index || a->commit != b->commit ||
	    a->reject != b->reject || a->reject_hint != b->reject_hint ||
	    a->full_from != b->full_from || a->n_entries != b->n_entries ||
	    a->context_len != b->context_len || (a->snapshot != NULL) != (b->snapshot != NULL) ||
	    (a->elided != NULL) != (b->elided != NULL))
		return false;
	if (a->context_len && memcmp(a->context, b->context, a->context_len))
		return false;
	for (size_t i = 0; i < a->n_entries; i++) {
		const raft_entry *x = &a->entries[i], *y = &b->entries[i];

		if (x->index != y->index || x->term != y->term || x->type != y->type ||
		    x->len != y->len || (x->len && memcmp(x->data, y->data, x->len)) ||
		    (a->elided && memcmp(&a->elided[i], &b->elided[i], sizeof(a->elided[i]))))
			return false;
	}
	return true;
}

/* Both decoders on bytes[0..len): the same answer, the same message. */
static void expect_same_decode(const uint8_t *bytes, size_t len, size_t *ok)
{
	raft_msg plain, in;
	uint8_t *payload, *block = frame_block(bytes, len, &payload);
	int rp = codec_msg_decode(bytes, len, &plain);
	int ri = codec_msg_decode_in(block, payload, len, &in);

	assert_int_equal(ri, rp);
	if (rp == 0) {
		assert_true(msg_same(&plain, &in));
		raft_msg_free_contents(&plain);
		raft_msg_free_contents(&in);
		(*ok)++;
	}
	raft_blob_release(block);
}

/* Every cut, and changes of every byte outside the big entries' data,
 * decode as the plain decoder decodes them (or are refused by both). */
static void test_same_as_plain_decode(void **state)
{
	(void)state;
	static const size_t sizes[] = {3, CODEC_SLICE_MIN_BYTES, 20, CODEC_SLICE_MIN_BYTES + 9, 8};
	static const uint8_t vals[] = {0x00, 0x01, 0x02, 0x0a, 0x12, 0x22, 0x7f, 0x80, 0xff};
	size_t n = sizeof(sizes) / sizeof(sizes[0]), ok = 0, cases = 0;
	raft_msg m;
	uint8_t *enc, *mut;
	size_t len;

	make_append(&m, sizes, n);
	assert_int_equal(codec_msg_encode(&m, 0, &enc, &len), 0);
	assert_non_null(mut = malloc(len));
	/* Where each big entry's data is in the encoding. */
	const uint8_t *lo[8] = {0}, *hi[8] = {0};
	for (size_t i = 0; i < n; i++) {
		if (sizes[i] < CODEC_SLICE_MIN_BYTES)
			continue;
		lo[i] = memmem(enc, len, m.entries[i].data, 64);
		assert_non_null(lo[i]);
		hi[i] = lo[i] + sizes[i];
	}
	for (size_t at = 0; at < len; at++) {
		/* Inside a big entry's data (past its first bytes) a change is
		 * data: cuts and changes there only now and then. */
		bool data = false;
		for (size_t i = 0; i < n; i++)
			data |= lo[i] && enc + at >= lo[i] + 16 && enc + at < hi[i];
		if (!data || at % 4099 == 0) {
			expect_same_decode(enc, at, &ok);
			cases++;
		}
		if (data && at % 997)
			continue;
		for (size_t v = 0; v < sizeof(vals) + 2; v++) {
			memcpy(mut, enc, len);
			mut[at] = v < sizeof(vals) ? vals[v] : (uint8_t)(enc[at] ^ (v == sizeof(vals) ? 1 : 0x80));
			expect_same_decode(mut, len, &ok);
			cases++;
		}
	}
	expect_same_decode(enc, len, &ok);
	print_message("%zu cases, %zu decoded\n", cases, ok);
	assert_true(ok > 100 && ok < cases);
	free(mut);
	free(enc);
	raft_msg_free_contents(&m);
}

/* An elision no longer than the data that came is refused when that data
 * is left in place too (the plain decoder compares it with the real
 * length). The encoder will not write one: protobuf-c packs it. */
static void test_elision_not_longer_refused(void **state)
{
	(void)state;
	uint8_t *data = calloc(1, CODEC_SLICE_MIN_BYTES);
	Raftpb__Entry e = RAFTPB__ENTRY__INIT, *ents[] = {&e};
	Raftpb__Message pb = RAFTPB__MESSAGE__INIT;

	assert_non_null(data);
	e.index = 5;
	e.term = 2;
	e.data = (ProtobufCBinaryData){CODEC_SLICE_MIN_BYTES, data};
	pb.type = RAFTPB__MESSAGE_TYPE__MSG_APP;
	pb.to = 2;
	pb.from = 1;
	pb.n_entries = 1;
	pb.entries = ents;
	for (uint64_t el = CODEC_SLICE_MIN_BYTES - 1; el <= CODEC_SLICE_MIN_BYTES + 1; el++) {
		size_t len, ok = 0;
		uint8_t *buf;

		e.elided_len = el;
		len = protobuf_c_message_get_packed_size(&pb.base);
		assert_non_null(buf = malloc(len));
		protobuf_c_message_pack(&pb.base, buf);
		expect_same_decode(buf, len, &ok);
		assert_int_equal(ok, el > CODEC_SLICE_MIN_BYTES);
		free(buf);
	}
	free(data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_big_entries_referenced),
	    cmocka_unit_test(test_same_as_plain_decode),
	    cmocka_unit_test(test_elision_not_longer_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
