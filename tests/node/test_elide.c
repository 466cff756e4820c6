/* test_elide.c — a follower filling in the data a leader left out of an
 * append (consensus/node_elide.c): it takes its pending copy only when the
 * client id is its own, the seq is pending, the length is the leader's and
 * the CRC-32C of the leader's envelope followed by its copy is the
 * leader's; otherwise it cuts the append before that entry and tells the
 * transport it lacked it (transport_lacks, recorded here: the transport
 * below is the mocked layer). No sockets, no threads: a zeroed node with a
 * made-up pending list. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "blob.h"
#include "crc32c.h"
#include "envelope.h"
#include "node_internal.h"

#define CLIENT 77
#define CMD_BYTES (70u << 10)

/* transport_lacks as node_elide_fill calls it (the mocked layer). */
static uint64_t lacks_from, lacks_index;
static int lacks_calls;

void transport_lacks(transport *t, uint64_t id, uint64_t index)
{
	(void)t;
	lacks_from = id;
	lacks_index = index;
	lacks_calls++;
}

void transport_elided(const transport *t, uint64_t *ents, uint64_t *bytes)
{
	(void)t;
	*ents = *bytes = 0;
}

struct fix {
	node *n;
	proposal *p[3]; /* seqs 3, 5, 6 pending */
	uint8_t cmd[CMD_BYTES];
};

static int setup(void **state)
{
	struct fix *f = calloc(1, sizeof(*f));
	const uint64_t seqs[] = {3, 5, 6};

	assert_non_null(f);
	f->n = calloc(1, sizeof(*f->n));
	assert_non_null(f->n);
	f->n->client_id = CLIENT;
	pthread_mutex_init(&f->n->mu, NULL);
	for (size_t i = 0; i < CMD_BYTES; i++)
		f->cmd[i] = (uint8_t)(i * 31 + 7);
	for (size_t i = 0; i < 3; i++) {
		proposal *p = calloc(1, sizeof(*p));
		envelope env = {CLIENT, seqs[i], 3};

		assert_non_null(p);
		p->seq = seqs[i];
		p->len = ENVELOPE_BYTES + CMD_BYTES;
		p->data = raft_blob_new(p->len); /* node_start's kind */
		assert_non_null(p->data);
		envelope_encode(&env, p->data);
		memcpy(p->data + ENVELOPE_BYTES, f->cmd, CMD_BYTES);
		p->data[ENVELOPE_BYTES] = (uint8_t)i; /* each command its own */
		node_pending_append(f->n, p);
		f->p[i] = p;
	}
	lacks_calls = 0;
	lacks_from = lacks_index = 0;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fix *f = *state;

	for (size_t i = 0; i < 3; i++) {
		raft_blob_release(f->p[i]->data);
		free(f->p[i]);
	}
	pthread_mutex_destroy(&f->n->mu);
	free(f->n);
	free(f);
	return 0;
}

/* An append from node 2 of entries 10, 11, 12: 11 is elided as the leader
 * would send it for pending proposal k (its envelope, with the leader's
 * min_pending, and the whole length and CRC), the leader having logged
 * the try of min_pending min (the pending one's: 3); blob: the entries'
 * data in shared blocks, as codec_msg_decode makes them. */
static void append_of(struct fix *f, raft_msg *m, size_t k, uint64_t min, bool blob)
{
	proposal *p = f->p[k];
	envelope env = {CLIENT, p->seq, min};
	uint8_t *whole = malloc(p->len);

	assert_non_null(whole);
	envelope_encode(&env, whole);
	memcpy(whole + ENVELOPE_BYTES, p->data + ENVELOPE_BYTES, p->len - ENVELOPE_BYTES);
	memset(m, 0, sizeof(*m));
	m->type = RAFT_MSG_APP;
	m->from = 2;
	m->n_entries = 3;
	m->entries = calloc(3, sizeof(raft_entry));
	assert_non_null(m->entries);
	for (size_t i = 0; i < 3; i++) {
		raft_entry *e = &m->entries[i];

		e->index = 10 + i;
		e->term = 4;
		e->type = RAFT_ENTRY_NORMAL;
		e->len = i == 1 ? ENVELOPE_BYTES : 8;
		e->data = blob ? raft_blob_new(e->len) : calloc(1, e->len);
		assert_non_null(e->data);
		memset(e->data, 0, e->len);
	}
	m->blob_data = blob;
	memcpy(m->entries[1].data, whole, ENVELOPE_BYTES);
	m->elided = calloc(3, sizeof(*m->elided));
	assert_non_null(m->elided);
	m->elided[1] = (raft_elision){(uint32_t)p->len, crc32c_extend(0, whole, p->len)};
	free(whole);
}

/* The leader logged an older try (min_pending 1), entries of copies. */
static void append_for(struct fix *f, raft_msg *m, size_t k)
{
	append_of(f, m, k, 1, false);
}

/* The append was cut before entry 11, which the transport heard of. */
static void assert_lacked(struct fix *f, raft_msg *m)
{
	assert_int_equal(m->n_entries, 1);
	assert_int_equal(m->entries[0].index, 10);
	assert_int_equal(lacks_calls, 1);
	assert_int_equal(lacks_from, 2);
	assert_int_equal(lacks_index, 11);
	assert_int_equal(f->n->elide_lacked, 1);
	assert_int_equal(f->n->elide_filled, 0);
	raft_msg_free_contents(m);
}

static void accepts_own_pending_copy(void **state)
{
	struct fix *f = *state;
	raft_msg m;
	envelope env;
	const uint8_t *cmd;
	size_t cmd_len;

	append_for(f, &m, 1);
	uint32_t crc = m.elided[1].crc;
	node_elide_fill(f->n, &m);
	assert_int_equal(m.n_entries, 3);
	assert_int_equal(lacks_calls, 0);
	assert_int_equal(f->n->elide_filled, 1);
	assert_int_equal(m.entries[1].len, f->p[1]->len);
	assert_null(m.elided);
	assert_int_equal(crc32c_extend(0, m.entries[1].data, m.entries[1].len), crc);
	/* The leader's envelope (its min_pending), the pending command. */
	assert_int_equal(envelope_decode(m.entries[1].data, m.entries[1].len, &env, &cmd, &cmd_len), 0);
	assert_int_equal(env.min_pending, 1);
	assert_int_equal(env.seq, 5);
	assert_memory_equal(cmd, f->p[1]->data + ENVELOPE_BYTES, CMD_BYTES);
	raft_msg_free_contents(&m);
}

/* The leader logged the try still pending (the same envelope), decoded
 * into shared blocks: the entry takes a reference to the proposal's block
 * instead of a copy, and lets it go with the message. */
static void shares_pending_block(void **state)
{
	struct fix *f = *state;
	raft_msg m;

	append_of(f, &m, 1, 3, true);
	uint32_t crc = m.elided[1].crc;
	assert_false(raft_blob_shared(f->p[1]->data));
	node_elide_fill(f->n, &m);
	assert_int_equal(m.n_entries, 3);
	assert_int_equal(f->n->elide_filled, 1);
	assert_ptr_equal(m.entries[1].data, f->p[1]->data);
	assert_true(raft_blob_shared(f->p[1]->data));
	assert_int_equal(m.entries[1].len, f->p[1]->len);
	assert_int_equal(crc32c_extend(0, m.entries[1].data, m.entries[1].len), crc);
	raft_msg_free_contents(&m);
	assert_false(raft_blob_shared(f->p[1]->data));
}

/* An older try's envelope in a message of shared blocks: a copy, in a
 * block of its own (the message releases it as one). */
static void copies_older_try_into_block(void **state)
{
	struct fix *f = *state;
	raft_msg m;
	envelope env;
	const uint8_t *cmd;
	size_t cmd_len;

	append_of(f, &m, 1, 1, true);
	node_elide_fill(f->n, &m);
	assert_int_equal(m.n_entries, 3);
	assert_int_equal(f->n->elide_filled, 1);
	assert_ptr_not_equal(m.entries[1].data, f->p[1]->data);
	assert_false(raft_blob_shared(f->p[1]->data));
	assert_false(raft_blob_shared(m.entries[1].data));
	assert_int_equal(envelope_decode(m.entries[1].data, m.entries[1].len, &env, &cmd, &cmd_len), 0);
	assert_int_equal(env.min_pending, 1);
	assert_memory_equal(cmd, f->p[1]->data + ENVELOPE_BYTES, CMD_BYTES);
	raft_msg_free_contents(&m);
}

/* A mismatch in a message of shared blocks cuts it as with copies: the
 * cut entries' blocks released, nothing kept of the proposal's. */
static void refuses_crc_mismatch_shared(void **state)
{
	struct fix *f = *state;
	raft_msg m;

	append_of(f, &m, 1, 3, true);
	f->p[1]->data[ENVELOPE_BYTES + 100] ^= 1; /* another command, same seq */
	node_elide_fill(f->n, &m);
	assert_false(raft_blob_shared(f->p[1]->data));
	assert_lacked(f, &m);
}

static void refuses_other_client(void **state)
{
	struct fix *f = *state;
	raft_msg m;

	append_for(f, &m, 1);
	f->n->client_id = CLIENT + 1; /* this node restarted: another run */
	node_elide_fill(f->n, &m);
	assert_lacked(f, &m);
}

static void refuses_seq_not_pending(void **state)
{
	struct fix *f = *state;
	raft_msg m;

	append_for(f, &m, 1);
	/* Seq 3 proposed the same command: only the seq tells them apart (the
	 * CRC would match, the leader's envelope being the one used). */
	memcpy(f->p[0]->data + ENVELOPE_BYTES, f->p[1]->data + ENVELOPE_BYTES, CMD_BYTES);
	node_pending_unlink(f->n, f->p[1]); /* answered meanwhile */
	node_elide_fill(f->n, &m);
	assert_lacked(f, &m);
}

static void refuses_length_mismatch(void **state)
{
	struct fix *f = *state;
	raft_msg m;

	append_for(f, &m, 1);
	m.elided[1].len--; /* shorter: the copy would not fit */
	node_elide_fill(f->n, &m);
	assert_lacked(f, &m);
}

static void refuses_absurd_length(void **state)
{
	struct fix *f = *state;
	raft_msg m;

	append_for(f, &m, 1);
	m.elided[1].len = UINT32_MAX; /* refused before any allocation */
	node_elide_fill(f->n, &m);
	assert_lacked(f, &m);
}

static void refuses_crc_mismatch(void **state)
{
	struct fix *f = *state;
	raft_msg m;

	append_for(f, &m, 1);
	f->p[1]->data[ENVELOPE_BYTES + 100] ^= 1; /* another command, same seq */
	node_elide_fill(f->n, &m);
	assert_lacked(f, &m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(accepts_own_pending_copy, setup, teardown),
		cmocka_unit_test_setup_teardown(shares_pending_block, setup, teardown),
		cmocka_unit_test_setup_teardown(copies_older_try_into_block, setup, teardown),
		cmocka_unit_test_setup_teardown(refuses_crc_mismatch_shared, setup, teardown),
		cmocka_unit_test_setup_teardown(refuses_other_client, setup, teardown),
		cmocka_unit_test_setup_teardown(refuses_seq_not_pending, setup, teardown),
		cmocka_unit_test_setup_teardown(refuses_length_mismatch, setup, teardown),
		cmocka_unit_test_setup_teardown(refuses_absurd_length, setup, teardown),
		cmocka_unit_test_setup_teardown(refuses_crc_mismatch, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
