/* test_codec.c — consensus/codec: every record survives a round trip, out
 * of range values are refused, and no input makes a decoder crash or leak
 * (thousands of random, truncated and bit-flipped inputs, fixed seed; run
 * under ASan/UBSan). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "codec.h"
#include "raft.pb-c.h"
#include "test_util.h"

#define SEED 0xC0DEC0DEull

/* ---- round trips ---- */

static void test_entry_round_trip(void **state)
{
	uint8_t data[] = {1, 2, 3, 0, 255};
	raft_entry cases[] = {
	    {.term = 5, .index = 7, .type = RAFT_ENTRY_NORMAL, .len = 5, .data = data},
	    {.term = 1, .index = 1, .type = RAFT_ENTRY_NORMAL},
	    {.term = UINT64_MAX,
	     .index = UINT64_MAX,
	     .type = RAFT_ENTRY_CONF_CHANGE,
	     .len = 1,
	     .data = data},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t buf[64];
		size_t n = codec_entry_size(&cases[i]);
		assert_true(n <= sizeof(buf));
		assert_int_equal(codec_entry_pack(&cases[i], buf), n);
		raft_entry e;
		assert_int_equal(codec_entry_decode(buf, n, &e), 0);
		assert_true(e.term == cases[i].term && e.index == cases[i].index &&
			    e.type == cases[i].type && e.len == cases[i].len);
		if (e.len)
			assert_memory_equal(e.data, cases[i].data, e.len);
		else
			assert_null(e.data);
		raft_entry_free_contents(&e);
	}
}

static void test_states_round_trip(void **state)
{
	uint8_t buf[256];
	raft_hard_state hs = {.term = 9, .vote = 3, .commit = UINT64_MAX}, hs2;
	size_t n = codec_hard_state_pack(&hs, buf);
	assert_int_equal(n, codec_hard_state_size(&hs));
	assert_int_equal(codec_hard_state_decode(buf, n, &hs2), 0);
	assert_memory_equal(&hs, &hs2, sizeof(hs));

	uint64_t voters[] = {1, 2, 300000}, learners[] = {UINT64_MAX};
	uint8_t book[] = "1 h:1\n";
	raft_conf_state css[] = {
	    {.voters = voters, .n_voters = 3, .learners = learners, .n_learners = 1},
	    {.n_voters = 0},
	    {.voters = voters, .n_voters = 1, .context = book, .context_len = sizeof(book) - 1}};
	for (size_t i = 0; i < 3; i++) {
		raft_conf_state cs;
		n = codec_conf_state_pack(&css[i], buf);
		assert_int_equal(n, codec_conf_state_size(&css[i]));
		assert_int_equal(codec_conf_state_decode(buf, n, &cs), 0);
		assert_int_equal(cs.n_voters, css[i].n_voters);
		assert_int_equal(cs.n_learners, css[i].n_learners);
		if (cs.n_voters)
			assert_memory_equal(cs.voters, css[i].voters, cs.n_voters * 8);
		if (cs.n_learners)
			assert_memory_equal(cs.learners, css[i].learners, cs.n_learners * 8);
		/* The application's bytes (node_members.h) travel along. */
		assert_int_equal(cs.context_len, css[i].context_len);
		if (cs.context_len)
			assert_memory_equal(cs.context, css[i].context, cs.context_len);
		raft_conf_state_free_contents(&cs);

		raft_snapshot_meta m = {.index = 40 + i, .term = 2, .conf = css[i]}, m2;
		n = codec_snapshot_meta_pack(&m, buf);
		assert_int_equal(n, codec_snapshot_meta_size(&m));
		assert_int_equal(codec_snapshot_meta_decode(buf, n, &m2), 0);
		assert_int_equal(m2.index, 40 + i);
		assert_int_equal(m2.term, 2);
		assert_int_equal(m2.conf.n_voters, css[i].n_voters);
		raft_conf_state_free_contents(&m2.conf);
	}

	raft_conf_change ccs[] = {
	    {RAFT_CONF_ADD_LEARNER, 7, (uint8_t *)"10.0.0.7:7000", 13},
	    {RAFT_CONF_REMOVE_NODE, 2, NULL, 0},
	};
	for (size_t i = 0; i < 2; i++) {
		raft_conf_change cc;
		n = codec_conf_change_pack(&ccs[i], buf);
		assert_int_equal(n, codec_conf_change_size(&ccs[i]));
		assert_int_equal(codec_conf_change_decode(buf, n, &cc), 0);
		assert_int_equal(cc.type, ccs[i].type);
		assert_int_equal(cc.node_id, ccs[i].node_id);
		assert_int_equal(cc.context_len, ccs[i].context_len);
		if (cc.context_len)
			assert_memory_equal(cc.context, ccs[i].context, cc.context_len);
		raft_conf_change_free_contents(&cc);
	}
}

static void expect_msg_equal(const raft_msg *a, const raft_msg *b)
{
	assert_int_equal(a->type, b->type);
	assert_true(a->to == b->to && a->from == b->from && a->term == b->term &&
		    a->log_term == b->log_term && a->index == b->index && a->commit == b->commit &&
		    a->reject == b->reject && a->reject_hint == b->reject_hint);
	assert_int_equal(a->n_entries, b->n_entries);
	for (size_t i = 0; i < a->n_entries; i++) {
		assert_true(a->entries[i].index == b->entries[i].index &&
			    a->entries[i].term == b->entries[i].term &&
			    a->entries[i].type == b->entries[i].type &&
			    a->entries[i].len == b->entries[i].len);
		if (a->entries[i].len)
			assert_memory_equal(a->entries[i].data, b->entries[i].data,
					    a->entries[i].len);
	}
	assert_int_equal(a->context_len, b->context_len);
	if (a->context_len)
		assert_memory_equal(a->context, b->context, a->context_len);
	assert_int_equal(a->snapshot != NULL, b->snapshot != NULL);
	if (a->snapshot) {
		assert_int_equal(a->snapshot->meta.index, b->snapshot->meta.index);
		assert_int_equal(a->snapshot->meta.term, b->snapshot->meta.term);
		assert_int_equal(a->snapshot->meta.conf.n_voters, b->snapshot->meta.conf.n_voters);
		assert_int_equal(a->snapshot->len, b->snapshot->len);
		if (a->snapshot->len)
			assert_memory_equal(a->snapshot->data, b->snapshot->data, a->snapshot->len);
	}
}

/* A few messages of every shape; entries of 0 bytes up to 200 KiB, so
 * the entry length prefix takes one to three varint bytes. */
static void make_msgs(raft_msg *msgs, size_t *n)
{
	static uint64_t voters[] = {1, 2, 3};
	static raft_snapshot snap = {
	    .meta = {.index = 100, .term = 4, .conf = {voters, 3, NULL, 0}},
	    .data = (uint8_t *)"descriptor",
	    .len = 10};
	size_t k = 0;
	msgs[k++] = (raft_msg){.type = RAFT_MSG_APP,
			       .to = 2,
			       .from = 1,
			       .term = 4,
			       .log_term = 3,
			       .index = 10,
			       .commit = 9};
	msgs[k - 1].n_entries = 4;
	msgs[k - 1].entries = calloc(4, sizeof(raft_entry));
	assert_non_null(msgs[k - 1].entries);
	tu_entry(&msgs[k - 1].entries[0], 11, 4, 0);
	tu_entry(&msgs[k - 1].entries[1], 12, 4, 100);
	tu_entry(&msgs[k - 1].entries[2], 13, 4, 200 * 1024);
	tu_entry(&msgs[k - 1].entries[3], 14, 4, 127);
	msgs[k - 1].entries[3].type = RAFT_ENTRY_CONF_CHANGE;
	msgs[k++] = (raft_msg){.type = RAFT_MSG_APP_RESP,
			       .to = 1,
			       .from = 2,
			       .term = 4,
			       .index = 9,
			       .reject = true,
			       .reject_hint = 7,
			       .log_term = 2};
	msgs[k++] = (raft_msg){.type = RAFT_MSG_SNAP, .to = 3, .from = 1, .term = 4};
	msgs[k - 1].snapshot = calloc(1, sizeof(raft_snapshot));
	assert_non_null(msgs[k - 1].snapshot);
	assert_int_equal(raft_snapshot_copy(msgs[k - 1].snapshot, &snap), 0);
	msgs[k++] = (raft_msg){.type = RAFT_MSG_READ_INDEX,
			       .to = 1,
			       .from = 3,
			       .term = 4,
			       .context = (uint8_t *)strdup("ctx-123"),
			       .context_len = 7};
	msgs[k++] = (raft_msg){.type = RAFT_MSG_PRE_VOTE_RESP, .to = UINT64_MAX, .term = 1};
	msgs[k++] = (raft_msg){.type = RAFT_MSG_HUP};
	*n = k;
}

static void test_msg_round_trip(void **state)
{
	raft_msg msgs[8];
	size_t n;
	make_msgs(msgs, &n);
	for (size_t i = 0; i < n; i++) {
		for (size_t headroom = 0; headroom <= 16; headroom += 16) {
			uint8_t *buf;
			size_t len;
			assert_int_equal(codec_msg_encode(&msgs[i], headroom, &buf, &len), 0);
			memset(buf, 0xab, headroom); /* the caller's to use */
			raft_msg got;
			assert_int_equal(codec_msg_decode(buf + headroom, len, &got), 0);
			expect_msg_equal(&msgs[i], &got);
			raft_msg_free_contents(&got);

			/* protobuf-c itself reads the hand-appended entries alike. */
			Raftpb__Message *pb = raftpb__message__unpack(NULL, len, buf + headroom);
			assert_non_null(pb);
			assert_int_equal(pb->n_entries, msgs[i].n_entries);
			for (size_t e = 0; e < pb->n_entries; e++)
				assert_int_equal(pb->entries[e]->data.len, msgs[i].entries[e].len);
			raftpb__message__free_unpacked(pb, NULL);
			free(buf);
		}
		raft_msg_free_contents(&msgs[i]);
	}
}

/* codec_msg_encode_segs: its pieces, written one after the other, are the
 * bytes codec_msg_encode gives, whatever the number of pieces allowed; big
 * entries' data is not copied (its pieces point at the entries' own data)
 * and small entries' is. */
static void test_msg_encode_segs(void **state)
{
	(void)state;
	raft_msg m = {
	    .type = RAFT_MSG_APP, .to = 2, .from = 1, .term = 7, .index = 40, .commit = 39};
	/* Below and at the threshold, and more big ones than some runs have
	 * room for. */
	static const size_t sizes[] = {
	    0, 1 << 20,	  100,	CODEC_SEG_MIN_BYTES - 1, CODEC_SEG_MIN_BYTES, 300 * 1024,
	    5, 64 * 1024, 70000};
	size_t n = sizeof(sizes) / sizeof(sizes[0]), big = 0;

	m.entries = calloc(n, sizeof(raft_entry));
	assert_non_null(m.entries);
	m.n_entries = n;
	for (size_t i = 0; i < n; i++) {
		tu_entry(&m.entries[i], 41 + i, 7, sizes[i]);
		big += sizes[i] >= CODEC_SEG_MIN_BYTES;
	}
	uint8_t *want;
	size_t want_len;
	assert_int_equal(codec_msg_encode(&m, 0, &want, &want_len), 0);
	for (size_t max = 1; max <= 2 * n + 3; max++) {
		codec_seg segs[32];
		uint8_t *buf, *cat = malloc(8 + want_len);
		size_t len, ns, at = 0, from_entries = 0;

		assert_non_null(cat);
		assert_int_equal(codec_msg_encode_segs(&m, 8, &buf, &len, segs, max, &ns), 0);
		assert_int_equal(len, want_len);
		assert_true(ns >= 1 && ns <= max);
		assert_ptr_equal(segs[0].data, buf); /* the headroom comes first */
		/* Where the buffer's next piece starts. */
		const uint8_t *next = buf;
		for (size_t k = 0; k < ns; k++) {
			memcpy(cat + at, segs[k].data, segs[k].len);
			at += segs[k].len;
			/* Odd pieces are a big entry's own data, even ones the
			 * buffer's next bytes. */
			if (k % 2 == 0) {
				assert_ptr_equal(segs[k].data, next);
				next += segs[k].len;
				continue;
			}
			bool own = false;
			for (size_t i = 0; i < n; i++)
				own |= segs[k].data == m.entries[i].data &&
				       segs[k].len == m.entries[i].len &&
				       m.entries[i].len >= CODEC_SEG_MIN_BYTES;
			assert_true(own);
			from_entries++;
		}
		assert_int_equal(at, 8 + want_len);
		assert_memory_equal(cat + 8, want, want_len);
		size_t room = (max - 1) / 2;
		assert_int_equal(from_entries, big < room ? big : room);
		free(buf);
		free(cat);
	}
	free(want);
	raft_msg_free_contents(&m);
}

/* A forwarder's own bytes (consensus/README-node.md): an append's
 * m->elided sends elided_len/elided_crc, only for the entries it names;
 * they decode as sent, into out->elided (none without them); a message or
 * a log record that must not carry them is refused, by the encoder too;
 * full_from goes both ways. */
static void test_msg_elided(void **state)
{
	(void)state;
	raft_msg m = {
	    .type = RAFT_MSG_APP, .to = 2, .from = 1, .term = 7, .index = 40, .commit = 39};
	static const size_t sizes[] = {25, 70000, 100};
	raft_elision el[3] = {{.len = 1 << 20, .crc = 0xdeadbeef}};
	raft_msg out;
	uint8_t *buf, rec[256];
	size_t len, n;
	codec_seg segs[8];

	m.entries = calloc(3, sizeof(raft_entry));
	assert_non_null(m.entries);
	m.n_entries = 3;
	for (size_t i = 0; i < 3; i++)
		tu_entry(&m.entries[i], 41 + i, 7, sizes[i]);
	m.elided = el;
	assert_int_equal(codec_msg_encode_segs(&m, 5, &buf, &len, segs, 8, &n), 0);
	uint8_t *cat = malloc(5 + len);
	size_t at = 0;
	assert_non_null(cat);
	for (size_t k = 0; k < n; k++) {
		memcpy(cat + at, segs[k].data, segs[k].len);
		at += segs[k].len;
	}
	assert_int_equal(codec_msg_decode(cat + 5, len, &out), 0);
	assert_int_equal(out.n_entries, 3);
	assert_non_null(out.elided);
	assert_int_equal(out.elided[0].len, 1 << 20);
	assert_int_equal(out.elided[0].crc, 0xdeadbeef);
	assert_true(tu_entry_ok(&out.entries[0], 41, 7) && out.entries[0].len == 25);
	for (size_t i = 1; i < 3; i++) {
		assert_int_equal(out.elided[i].len, 0);
		assert_int_equal(out.elided[i].crc, 0);
		assert_true(tu_entry_ok(&out.entries[i], 41 + i, 7));
	}
	raft_msg_free_contents(&out);
	free(buf);
	free(cat);

	/* Refused where the decoder would refuse it: not in an append, or
	 * naming no more than the entry holds. */
	m.type = RAFT_MSG_PROP;
	assert_int_equal(codec_msg_encode(&m, 0, &buf, &len), RAFT_EINVAL);
	m.type = RAFT_MSG_APP;
	el[1].len = 70000;
	assert_int_equal(codec_msg_encode(&m, 0, &buf, &len), RAFT_EINVAL);
	el[1].len = 0;

	/* Without m->elided nothing is elided, nor allocated for it. */
	m.elided = NULL;
	assert_int_equal(codec_msg_encode(&m, 0, &buf, &len), 0);
	assert_int_equal(codec_msg_decode(buf, len, &out), 0);
	assert_null(out.elided);
	raft_msg_free_contents(&out);
	free(buf);
	/* A log record has no room for them. */
	n = codec_entry_pack(&m.entries[0], rec);
	assert_int_equal(n, codec_entry_size(&m.entries[0]));
	raft_entry e;
	assert_int_equal(codec_entry_decode(rec, n, &e), 0);
	raft_entry_free_contents(&e);

	/* A record with elided data is refused: a log's entries are whole. */
	Raftpb__Entry pe = RAFTPB__ENTRY__INIT;
	pe.index = 3;
	pe.data.len = 25;
	pe.data.data = m.entries[0].data;
	pe.elided_len = 1000;
	n = protobuf_c_message_pack(&pe.base, rec);
	assert_int_equal(codec_entry_decode(rec, n, &e), RAFT_ECORRUPT);
	assert_null(e.data);

	/* In a message: only an append's normal entry, longer than what came
	 * and not longer than any frame. */
	Raftpb__Entry *pes[1] = {&pe};
	Raftpb__Message pm = RAFTPB__MESSAGE__INIT;
	pm.n_entries = 1;
	pm.entries = pes;
	struct {
		int type, etype;
		uint32_t elided_len;
		int rv;
	} cases[] = {
	    {RAFTPB__MESSAGE_TYPE__MSG_APP, RAFTPB__ENTRY_TYPE__ENTRY_NORMAL, 1000, 0},
	    {RAFTPB__MESSAGE_TYPE__MSG_PROP, RAFTPB__ENTRY_TYPE__ENTRY_NORMAL, 1000, RAFT_ECORRUPT},
	    {RAFTPB__MESSAGE_TYPE__MSG_APP, RAFTPB__ENTRY_TYPE__ENTRY_CONF_CHANGE, 1000,
	     RAFT_ECORRUPT},
	    {RAFTPB__MESSAGE_TYPE__MSG_APP, RAFTPB__ENTRY_TYPE__ENTRY_NORMAL, 25, RAFT_ECORRUPT},
	    /* No frame holds more (CODEC_ELIDED_MAX_BYTES): absurd. */
	    {RAFTPB__MESSAGE_TYPE__MSG_APP, RAFTPB__ENTRY_TYPE__ENTRY_NORMAL,
	     (uint32_t)CODEC_ELIDED_MAX_BYTES, 0},
	    {RAFTPB__MESSAGE_TYPE__MSG_APP, RAFTPB__ENTRY_TYPE__ENTRY_NORMAL,
	     (uint32_t)CODEC_ELIDED_MAX_BYTES + 1, RAFT_ECORRUPT},
	    {RAFTPB__MESSAGE_TYPE__MSG_APP, RAFTPB__ENTRY_TYPE__ENTRY_NORMAL, UINT32_MAX,
	     RAFT_ECORRUPT},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		pm.type = cases[i].type;
		pe.type = cases[i].etype;
		pe.elided_len = cases[i].elided_len;
		n = protobuf_c_message_pack(&pm.base, rec);
		assert_int_equal(codec_msg_decode(rec, n, &out), cases[i].rv);
		if (cases[i].rv == 0)
			assert_int_equal(out.elided[0].len, cases[i].elided_len);
		else
			assert_null(out.entries);
		raft_msg_free_contents(&out);
	}

	/* full_from: an append response names the entry lacked. */
	raft_msg r = {.type = RAFT_MSG_APP_RESP, .to = 1, .from = 2, .term = 7, .index = 40,
		      .full_from = 41};
	assert_int_equal(codec_msg_encode(&r, 0, &buf, &len), 0);
	assert_int_equal(codec_msg_decode(buf, len, &out), 0);
	assert_int_equal(out.full_from, 41);
	raft_msg_free_contents(&out);
	free(buf);
	raft_msg_free_contents(&m);
}

/* ---- refusals ---- */

static void test_out_of_range_values_refused(void **state)
{
	uint8_t buf[256];
	size_t n;

	Raftpb__Entry e = RAFTPB__ENTRY__INIT;
	e.index = 3;
	e.type = 2;
	n = protobuf_c_message_pack(&e.base, buf);
	raft_entry re;
	assert_int_equal(codec_entry_decode(buf, n, &re), RAFT_ECORRUPT);
	assert_null(re.data);

	Raftpb__ConfChange cc = RAFTPB__CONF_CHANGE__INIT;
	cc.type = 3;
	n = protobuf_c_message_pack(&cc.base, buf);
	raft_conf_change rcc;
	assert_int_equal(codec_conf_change_decode(buf, n, &rcc), RAFT_ECORRUPT);
	assert_null(rcc.context);

	static const int bad_types[] = {RAFT_MSG_TYPE_COUNT, 1000, -1};
	for (size_t i = 0; i < 3; i++) {
		Raftpb__Message m = RAFTPB__MESSAGE__INIT;
		m.type = bad_types[i];
		n = protobuf_c_message_pack(&m.base, buf);
		raft_msg rm;
		assert_int_equal(codec_msg_decode(buf, n, &rm), RAFT_ECORRUPT);
	}

	/* A message carrying an entry of unknown type, with data to leak. */
	Raftpb__Message m = RAFTPB__MESSAGE__INIT;
	Raftpb__Entry good = RAFTPB__ENTRY__INIT, bad = RAFTPB__ENTRY__INIT;
	good.data.data = (uint8_t *)"abc";
	good.data.len = 3;
	bad.type = 7;
	bad.data = good.data;
	Raftpb__Entry *ents[] = {&good, &bad};
	m.type = RAFTPB__MESSAGE_TYPE__MSG_APP;
	m.n_entries = 2;
	m.entries = ents;
	m.context.data = (uint8_t *)"ctx";
	m.context.len = 3;
	n = protobuf_c_message_pack(&m.base, buf);
	raft_msg rm;
	assert_int_equal(codec_msg_decode(buf, n, &rm), RAFT_ECORRUPT);
	assert_null(rm.entries);
	assert_null(rm.context);

	/* A snapshot only on MSG_SNAP, and always on it. */
	Raftpb__Snapshot snap = RAFTPB__SNAPSHOT__INIT;
	m = (Raftpb__Message)RAFTPB__MESSAGE__INIT;
	m.type = RAFTPB__MESSAGE_TYPE__MSG_APP;
	m.snapshot = &snap;
	n = protobuf_c_message_pack(&m.base, buf);
	assert_int_equal(codec_msg_decode(buf, n, &rm), RAFT_ECORRUPT);
	m.type = RAFTPB__MESSAGE_TYPE__MSG_SNAP;
	n = protobuf_c_message_pack(&m.base, buf);
	assert_int_equal(codec_msg_decode(buf, n, &rm), 0); /* no metadata: index 0 */
	assert_non_null(rm.snapshot);
	assert_int_equal(rm.snapshot->meta.index, 0);
	raft_msg_free_contents(&rm);
	m.snapshot = NULL;
	n = protobuf_c_message_pack(&m.base, buf);
	assert_int_equal(codec_msg_decode(buf, n, &rm), RAFT_ECORRUPT);

	/* The encoder refuses what the decoder would. */
	uint8_t *out;
	size_t len;
	raft_msg bad_msg = {.type = RAFT_MSG_TYPE_COUNT};
	assert_int_equal(codec_msg_encode(&bad_msg, 0, &out, &len), RAFT_EINVAL);
	bad_msg.type = RAFT_MSG_SNAP;
	assert_int_equal(codec_msg_encode(&bad_msg, 0, &out, &len), RAFT_EINVAL);
	assert_null(out);
}

/* ---- malformed input ---- */

/* Each decoder, freeing what it returns; checks a refusal leaves nothing. */
static int dec_entry(const uint8_t *b, size_t n)
{
	raft_entry e;
	int rv = codec_entry_decode(b, n, &e);
	if (rv == 0) {
		assert_true(e.type == RAFT_ENTRY_NORMAL || e.type == RAFT_ENTRY_CONF_CHANGE);
		assert_true((e.len == 0) == (e.data == NULL));
	} else {
		assert_null(e.data);
	}
	raft_entry_free_contents(&e);
	return rv;
}

static int dec_hard_state(const uint8_t *b, size_t n)
{
	raft_hard_state hs;
	return codec_hard_state_decode(b, n, &hs);
}

static int dec_conf_state(const uint8_t *b, size_t n)
{
	raft_conf_state cs;
	int rv = codec_conf_state_decode(b, n, &cs);
	raft_conf_state_free_contents(&cs);
	return rv;
}

static int dec_snapshot_meta(const uint8_t *b, size_t n)
{
	raft_snapshot_meta m;
	int rv = codec_snapshot_meta_decode(b, n, &m);
	raft_conf_state_free_contents(&m.conf);
	return rv;
}

static int dec_conf_change(const uint8_t *b, size_t n)
{
	raft_conf_change cc;
	int rv = codec_conf_change_decode(b, n, &cc);
	if (rv == 0)
		assert_true((unsigned)cc.type <= RAFT_CONF_ADD_LEARNER);
	raft_conf_change_free_contents(&cc);
	return rv;
}

static int dec_msg(const uint8_t *b, size_t n)
{
	raft_msg m;
	int rv = codec_msg_decode(b, n, &m);
	if (rv == 0) {
		/* Anything accepted is a message the core can take, and encodes again. */
		assert_true((unsigned)m.type < RAFT_MSG_TYPE_COUNT);
		assert_true((m.snapshot != NULL) == (m.type == RAFT_MSG_SNAP));
		uint8_t *out;
		size_t len;
		assert_int_equal(codec_msg_encode(&m, 0, &out, &len), 0);
		free(out);
	} else {
		assert_null(m.entries);
		assert_null(m.snapshot);
		assert_null(m.context);
	}
	raft_msg_free_contents(&m);
	return rv;
}

static int (*const decoders[])(const uint8_t *, size_t) = {
    dec_entry, dec_hard_state, dec_conf_state, dec_snapshot_meta, dec_conf_change, dec_msg,
};
#define N_DECODERS (sizeof(decoders) / sizeof(decoders[0]))

typedef struct seed {
	uint8_t *buf;
	size_t len;
} seed;

/* Valid encodings of every record, the material for mutations. */
static size_t make_seeds(seed *seeds)
{
	size_t k = 0;
	uint64_t voters[] = {1, 2, 3}, learners[] = {4};
	raft_conf_state cs = {.voters = voters, .n_voters = 3, .learners = learners, .n_learners = 1};
	raft_entry e;
	tu_entry(&e, 9, 2, 40);
	raft_hard_state hs = {3, 1, 8};
	raft_snapshot_meta sm = {.index = 50, .term = 3, .conf = cs};
	raft_conf_change cc = {RAFT_CONF_ADD_NODE, 4, (uint8_t *)"host:1", 6};

#define SEED_OF(kind, x)                                                                           \
	do {                                                                                       \
		seeds[k].len = codec_##kind##_size(x);                                             \
		seeds[k].buf = malloc(seeds[k].len + 1);                                           \
		assert_non_null(seeds[k].buf);                                                     \
		codec_##kind##_pack(x, seeds[k].buf);                                              \
		k++;                                                                               \
	} while (0)
	SEED_OF(entry, &e);
	SEED_OF(hard_state, &hs);
	SEED_OF(conf_state, &cs);
	SEED_OF(snapshot_meta, &sm);
	SEED_OF(conf_change, &cc);
#undef SEED_OF
	raft_entry_free_contents(&e);

	raft_msg msgs[8];
	size_t n;
	make_msgs(msgs, &n);
	for (size_t i = 0; i < n; i++) {
		/* The 200 KiB entry would make the mutation loops slow; shrink it. */
		for (size_t j = 0; j < msgs[i].n_entries; j++)
			if (msgs[i].entries[j].len > 1000)
				msgs[i].entries[j].len = 1000;
		assert_int_equal(codec_msg_encode(&msgs[i], 0, &seeds[k].buf, &seeds[k].len), 0);
		k++;
		raft_msg_free_contents(&msgs[i]);
	}
	return k;
}

static void expect_ok_or_corrupt(int rv, size_t d, const char *what, size_t i)
{
	if (rv != 0 && rv != RAFT_ECORRUPT)
		fail_msg("decoder %zu on %s #%zu returned %d (%s)", d, what, i, rv,
			 raft_strerror(rv));
}

static void test_malformed_input(void **state)
{
	uint64_t rng = SEED;
	seed seeds[16];
	size_t n_seeds = make_seeds(seeds);
	uint8_t buf[4096];
	size_t cases = 0, accepted = 0;

	for (size_t d = 0; d < N_DECODERS; d++) {
		/* Random bytes: mostly garbage, sometimes a valid tag stream. */
		for (size_t i = 0; i < 3000; i++) {
			size_t len = tu_rand(&rng) % 96;
			for (size_t j = 0; j < len; j++)
				buf[j] = (uint8_t)tu_rand(&rng);
			int rv = decoders[d](buf, len);
			expect_ok_or_corrupt(rv, d, "random bytes", i);
			accepted += rv == 0;
			cases++;
		}
		for (size_t s = 0; s < n_seeds; s++) {
			/* Every truncation of every valid encoding (of any record). */
			for (size_t len = 0; len < seeds[s].len; len++) {
				expect_ok_or_corrupt(decoders[d](seeds[s].buf, len), d,
						     "truncation", len);
				cases++;
			}
			/* Bit flips and byte overwrites, one to four per case. */
			size_t len = seeds[s].len < sizeof(buf) ? seeds[s].len : sizeof(buf);
			for (size_t i = 0; len > 0 && i < 400; i++) {
				memcpy(buf, seeds[s].buf, len);
				int muts = 1 + (int)(tu_rand(&rng) % 4);
				for (int m = 0; m < muts; m++) {
					size_t pos = tu_rand(&rng) % len;
					if (tu_rand(&rng) % 2)
						buf[pos] ^= (uint8_t)(1u << (tu_rand(&rng) % 8));
					else
						buf[pos] = (uint8_t)tu_rand(&rng);
				}
				int rv = decoders[d](buf, len);
				expect_ok_or_corrupt(rv, d, "mutation", i);
				accepted += rv == 0;
				cases++;
			}
		}
	}
	for (size_t s = 0; s < n_seeds; s++)
		free(seeds[s].buf);
	print_message("%zu malformed inputs, %zu decoded to valid values\n", cases, accepted);
	assert_true(cases > 10000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_entry_round_trip),
	    cmocka_unit_test(test_states_round_trip),
	    cmocka_unit_test(test_msg_round_trip),
	    cmocka_unit_test(test_msg_encode_segs),
	    cmocka_unit_test(test_msg_elided),
	    cmocka_unit_test(test_out_of_range_values_refused),
	    cmocka_unit_test(test_malformed_input),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
