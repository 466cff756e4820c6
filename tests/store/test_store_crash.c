/* test_store_crash.c — kill -9 while appending: after every kill the
 * reopened store holds every acknowledged append and at most the one batch
 * that was in flight, whole or not at all.
 *
 * A child process appends batches (sometimes rewriting the last few
 * entries with a new term, as a follower does on a conflict) with
 * store_save(), and now and then installs a snapshot of its own log and
 * compacts behind it, or installs a "received" snapshot beyond its log
 * that replaces the log. It announces each operation on a pipe before the
 * call ("intent") and after it returns ("ack"). The parent kills it with
 * SIGKILL after a random number of acks plus a random delay, reads what the
 * child announced, reopens the store and compares log bounds, compaction
 * point, entries, hard state and snapshot with its model: exactly the
 * acknowledged operations, or those plus the one in flight. Fixed seed;
 * each round's child uses a new, higher term.
 *
 * The child is this program exec'd again with --child: a plain fork of a
 * process that has used RocksDB inherits its background thread pool's
 * bookkeeping without the threads, and can hang waiting for them. A pipe
 * silent for longer than CHILD_SILENCE_MS fails the test instead of
 * hanging it.
 */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "store.h"
#include "test_util.h"

#define ROUNDS 70
#define SEED 0x5eed5eedull
#define CHILD_SILENCE_MS 20000

enum { REC_INTENT = 1, REC_ACK = 2 };

typedef enum {
	OP_APPEND = 1, /* entries [a, a + count) of term, with hard state */
	OP_SNAP_LOCAL, /* snapshot of the log at a (term = its term): log kept */
	OP_COMPACT,    /* compact through a */
	OP_SNAP_RECV,  /* snapshot at a of term beyond the log: log replaced */
} op_kind;

/* One announcement on the pipe (well under PIPE_BUF: written atomically). */
typedef struct rec {
	uint32_t phase;
	uint32_t op;
	uint64_t a;
	uint64_t count;
	uint64_t term;
} rec;

/* What the parent expects the store to hold. */
typedef struct model {
	uint64_t *terms; /* terms[i] for index i, compact+1..last */
	uint64_t cap;
	uint64_t compact, compact_term; /* the compaction point */
	uint64_t last;
	uint64_t snap_index, snap_term;
	raft_hard_state hs;
} model;

static char *dir;
static pid_t child = -1;
static model acked, alt;

/* One entry in eight is large enough for the value log (store/vlog.h), so
 * kills also land between its data and the records naming it. */
static size_t entry_len(uint64_t index, uint64_t term)
{
	size_t h = (size_t)((index * 2654435761u + term * 40503u) % 12000);

	return h < 1500 ? (64u << 10) + h : 1 + h % 1500;
}

static void model_grow(model *m, uint64_t index)
{
	if (index + 1 > m->cap) {
		m->cap = (index + 1) * 2;
		m->terms = realloc(m->terms, m->cap * sizeof(uint64_t));
		assert_non_null(m->terms);
	}
}

static void model_apply(model *m, const rec *r)
{
	switch (r->op) {
	case OP_APPEND: {
		uint64_t end = r->a + r->count - 1;
		model_grow(m, end);
		for (uint64_t i = r->a; i <= end; i++)
			m->terms[i] = r->term;
		m->last = end; /* anything after the batch was truncated */
		m->hs = (raft_hard_state){.term = r->term, .vote = 1, .commit = end};
		break;
	}
	case OP_SNAP_LOCAL:
		m->snap_index = r->a;
		m->snap_term = r->term;
		break;
	case OP_COMPACT:
		m->compact = r->a;
		m->compact_term = m->terms[r->a];
		break;
	case OP_SNAP_RECV:
		model_grow(m, r->a);
		m->snap_index = m->compact = m->last = r->a;
		m->snap_term = m->compact_term = m->terms[r->a] = r->term;
		break;
	default:
		fail_msg("unknown operation %u on the pipe", r->op);
	}
}

static void model_copy(model *dst, const model *src)
{
	uint64_t *terms = dst->terms;
	uint64_t cap = dst->cap;
	if (cap < src->cap) {
		cap = src->cap;
		terms = realloc(terms, cap * sizeof(uint64_t));
		assert_non_null(terms);
	}
	if (src->last)
		memcpy(terms, src->terms, (src->last + 1) * sizeof(uint64_t));
	*dst = *src;
	dst->terms = terms;
	dst->cap = cap;
}

static void write_rec(int fd, const rec *r)
{
	if (write(fd, r, sizeof(*r)) != (ssize_t)sizeof(*r))
		_exit(4);
}

/* Runs one announced operation in the child; exits on failure. */
static void child_op(store *s, int fd, rec *r)
{
	raft_entry ents[8];
	int rv = 0;
	r->phase = REC_INTENT;
	write_rec(fd, r);
	if (r->op == OP_APPEND) {
		for (uint32_t i = 0; i < r->count; i++)
			tu_entry(&ents[i], r->a + i, r->term, entry_len(r->a + i, r->term));
		raft_hard_state hs = {.term = r->term, .vote = 1, .commit = r->a + r->count - 1};
		rv = store_save(s, &hs, ents, r->count);
		for (uint32_t i = 0; i < r->count; i++)
			raft_entry_free_contents(&ents[i]);
	} else if (r->op == OP_COMPACT) {
		rv = store_compact(s, r->a);
	} else {
		uint64_t voters[] = {1, 2, 3};
		raft_snapshot_meta m = {
		    .index = r->a, .term = r->term, .conf = {voters, 3, NULL, 0}};
		char data[64];
		int len = snprintf(data, sizeof(data), "snapshot %llu", (unsigned long long)r->a);
		rv = store_snapshot_begin(s, &m);
		if (rv == 0)
			rv = store_snapshot_write(s, 0, data, (size_t)len);
		if (rv == 0)
			rv = store_snapshot_install(s);
	}
	if (rv != 0) {
		fprintf(stderr, "crash child: operation %u at %llu: %s\n", r->op,
			(unsigned long long)r->a, store_errmsg(s));
		_exit(3);
	}
	r->phase = REC_ACK;
	write_rec(fd, r);
}

/* The child: appends forever, now and then snapshotting and compacting,
 * announcing each operation. Never returns. */
static void child_main(const char *path, int fd, uint64_t round)
{
	store *s;
	char err[512];
	if (store_open(path, &s, err, sizeof(err)) != 0) {
		fprintf(stderr, "crash child: %s\n", err);
		_exit(2);
	}
	uint64_t rng = SEED ^ (round * 0x9E3779B97F4A7C15ull) ^ 1;
	uint64_t term = round + 1;
	for (;;) {
		uint64_t first = store_first_index(s), last = store_last_index(s), t;
		raft_snapshot_meta snap;
		if (store_snapshot_meta(s, &snap, NULL) != 0)
			_exit(3);
		raft_conf_state_free_contents(&snap.conf);
		uint64_t dice = tu_rand(&rng) % 24;
		if (dice == 0 && last > snap.index && store_term(s, last, &t) == 0) {
			rec r = {.op = OP_SNAP_LOCAL, .a = last, .term = t};
			child_op(s, fd, &r);
			uint64_t upto = last - tu_rand(&rng) % 3;
			if (upto >= first) {
				rec c = {.op = OP_COMPACT, .a = upto};
				child_op(s, fd, &c);
			}
		} else if (dice == 1) {
			rec r = {
			    .op = OP_SNAP_RECV, .a = last + 1 + tu_rand(&rng) % 4, .term = term};
			child_op(s, fd, &r);
		} else {
			uint64_t from = last + 1;
			if (last >= first && tu_rand(&rng) % 6 == 0) /* rewrite a suffix */
				from = last - tu_rand(&rng) %
						  (last - first + 1 < 5 ? last - first + 1 : 5);
			rec r = {.op = OP_APPEND,
				 .a = from,
				 .count = 1 + tu_rand(&rng) % 8,
				 .term = term};
			child_op(s, fd, &r);
		}
	}
}

/* Whether the store holds exactly m: log bounds, compaction point,
 * entries, hard state and snapshot. */
static bool store_matches(store *s, const model *m, char *why, size_t cap)
{
	raft_hard_state hs;
	store_hard_state(s, &hs);
	uint64_t t = 0;
	if (store_first_index(s) != m->compact + 1 || store_last_index(s) != m->last) {
		snprintf(why, cap, "log %llu..%llu, expected %llu..%llu",
			 (unsigned long long)store_first_index(s),
			 (unsigned long long)store_last_index(s),
			 (unsigned long long)m->compact + 1, (unsigned long long)m->last);
		return false;
	}
	if (store_term(s, m->compact, &t) != 0 || t != m->compact_term) {
		snprintf(why, cap, "term of the compaction point %llu: %llu, expected %llu",
			 (unsigned long long)m->compact, (unsigned long long)t,
			 (unsigned long long)m->compact_term);
		return false;
	}
	if (hs.term != m->hs.term || hs.vote != m->hs.vote || hs.commit != m->hs.commit) {
		snprintf(why, cap, "hard state term %llu commit %llu, expected %llu %llu",
			 (unsigned long long)hs.term, (unsigned long long)hs.commit,
			 (unsigned long long)m->hs.term, (unsigned long long)m->hs.commit);
		return false;
	}
	raft_snapshot_meta snap;
	uint64_t snap_len;
	char data[64], want[64] = "";
	size_t n;
	if (store_snapshot_meta(s, &snap, &snap_len) != 0 ||
	    store_snapshot_read(s, 0, data, sizeof(data), &n) != 0) {
		snprintf(why, cap, "snapshot: %s", store_errmsg(s));
		return false;
	}
	raft_conf_state_free_contents(&snap.conf);
	if (m->snap_index)
		snprintf(want, sizeof(want), "snapshot %llu", (unsigned long long)m->snap_index);
	if (snap.index != m->snap_index || snap.term != m->snap_term || n != strlen(want) ||
	    memcmp(data, want, n) != 0) {
		snprintf(why, cap,
			 "snapshot at %llu term %llu (%zu bytes), expected %llu term %llu",
			 (unsigned long long)snap.index, (unsigned long long)snap.term, n,
			 (unsigned long long)m->snap_index, (unsigned long long)m->snap_term);
		return false;
	}
	if (m->last == m->compact)
		return true;
	raft_entry *ents;
	int rv = store_entries(s, m->compact + 1, m->last + 1, UINT64_MAX, &ents, &n);
	if (rv != 0) {
		snprintf(why, cap, "read log: %s", store_errmsg(s));
		return false;
	}
	bool ok = n == m->last - m->compact;
	for (size_t i = 0; ok && i < n; i++) {
		uint64_t idx = m->compact + 1 + i;
		ok = tu_entry_ok(&ents[i], idx, m->terms[idx]) &&
		     ents[i].len == entry_len(idx, m->terms[idx]);
		if (!ok)
			snprintf(why, cap, "entry %llu: term %llu, expected %llu (or bad data)",
				 (unsigned long long)idx, (unsigned long long)ents[i].term,
				 (unsigned long long)m->terms[idx]);
	}
	raft_entries_free(ents, n);
	return ok;
}

static void one_round(uint64_t round, uint64_t *rng, unsigned *with_inflight, unsigned *ops)
{
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	char round_arg[32], fd_arg[16];
	snprintf(round_arg, sizeof(round_arg), "%llu", (unsigned long long)round);
	snprintf(fd_arg, sizeof(fd_arg), "%d", fds[1]);
	pid_t parent = getpid();
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		/* If the test dies (a ctest timeout), the endless appender goes too. */
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
			_exit(6);
		close(fds[0]);
		execl("/proc/self/exe", "test_store_crash", "--child", dir, fd_arg, round_arg,
		      (char *)NULL);
		_exit(5);
	}
	close(fds[1]);

	uint64_t kill_after = tu_rand(rng) % 12;
	uint64_t acks = 0;
	rec pending = {0}, r;
	bool have_pending = false, killed = false;
	ssize_t got;
	/* The kill moment: after some acks, then a random part of an operation. */
	if (kill_after == 0) {
		kill(child, SIGKILL);
		killed = true;
	}
	for (;;) {
		struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
		int ready = poll(&pfd, 1, CHILD_SILENCE_MS);
		if (ready < 0 && errno == EINTR)
			continue;
		if (ready == 0)
			fail_msg("round %llu: the child said nothing for %d ms",
				 (unsigned long long)round, CHILD_SILENCE_MS);
		got = read(fds[0], &r, sizeof(r));
		if (got == 0)
			break;
		if (got < 0 && errno == EINTR)
			continue;
		assert_int_equal(got, sizeof(r));
		if (r.phase == REC_INTENT) {
			pending = r;
			have_pending = true;
		} else {
			assert_int_equal(r.phase, REC_ACK);
			assert_true(have_pending && r.op == pending.op && r.a == pending.a);
			model_apply(&acked, &r);
			ops[r.op]++;
			have_pending = false;
			if (!killed && ++acks == kill_after) {
				struct timespec ts = {0, (long)(tu_rand(rng) % 3000) * 1000};
				nanosleep(&ts, NULL);
				kill(child, SIGKILL);
				killed = true;
			}
		}
	}
	close(fds[0]);
	int status;
	assert_int_equal(waitpid(child, &status, 0), child);
	child = -1;
	if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
		fail_msg("round %llu: the child died on its own (status %d)",
			 (unsigned long long)round, status);

	store *s;
	char err[512], why_a[256], why_b[256] = "nothing in flight";
	if (store_open(dir, &s, err, sizeof(err)) != 0)
		fail_msg("round %llu: reopen: %s", (unsigned long long)round, err);
	bool ok = store_matches(s, &acked, why_a, sizeof(why_a));
	if (!ok && have_pending) {
		model_copy(&alt, &acked);
		model_apply(&alt, &pending);
		ok = store_matches(s, &alt, why_b, sizeof(why_b));
		if (ok) {
			model_copy(&acked, &alt);
			(*with_inflight)++;
		}
	}
	store_close(s);
	if (!ok)
		fail_msg("round %llu: store is neither the acknowledged state (%s) nor that plus "
			 "the operation in flight (%s)",
			 (unsigned long long)round, why_a, why_b);
}

static void test_kill_while_appending(void **state)
{
	uint64_t rng = SEED;
	unsigned with_inflight = 0, ops[OP_SNAP_RECV + 1] = {0};
	for (uint64_t round = 0; round < ROUNDS; round++)
		one_round(round, &rng, &with_inflight, ops);
	print_message("%d kills; log %llu..%llu; acknowledged: %u appends, %u local snapshots, "
		      "%u compactions, %u received snapshots; the operation in flight was found "
		      "done after %u kills\n",
		      ROUNDS, (unsigned long long)acked.compact + 1, (unsigned long long)acked.last,
		      ops[OP_APPEND], ops[OP_SNAP_LOCAL], ops[OP_COMPACT], ops[OP_SNAP_RECV],
		      with_inflight);
	/* The children made progress, through every kind of operation. */
	assert_true(ops[OP_APPEND] > ROUNDS && ops[OP_SNAP_LOCAL] > 3 && ops[OP_COMPACT] > 3 &&
		    ops[OP_SNAP_RECV] > 3);
}

static int setup(void **state)
{
	dir = tu_tmpdir("store-crash");
	assert_non_null(dir);
	return 0;
}

static int teardown(void **state)
{
	if (child > 0) {
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
		child = -1;
	}
	tu_rmtree(dir);
	free(dir);
	free(acked.terms);
	free(alt.terms);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 5 && strcmp(argv[1], "--child") == 0)
		child_main(argv[2], atoi(argv[3]), strtoull(argv[4], NULL, 10));
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_kill_while_appending, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
