/* test_store_crash.c — kill -9 while appending: after every kill the
 * reopened store holds every acknowledged append and at most the one batch
 * that was in flight, whole or not at all.
 *
 * A child process appends batches (sometimes rewriting the last few
 * entries with a new term, as a follower does on a conflict) with
 * store_save(), announcing each batch on a pipe before the call ("intent")
 * and after it returns ("ack"). The parent kills it with SIGKILL after a
 * random number of acks plus a random delay, reads what the child
 * announced, reopens the store and compares the log and hard state with
 * its model: exactly the acknowledged batches, or those plus the batch in
 * flight. Fixed seed; each round's child uses a new, higher term.
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

/* One announcement on the pipe (well under PIPE_BUF: written atomically). */
typedef struct rec {
	uint32_t kind;
	uint32_t count;
	uint64_t first;
	uint64_t term;
} rec;

/* The log and hard state the parent expects. */
typedef struct model {
	uint64_t *terms; /* terms[i] for index i, 1..last */
	uint64_t cap;
	uint64_t last;
	raft_hard_state hs;
} model;

static char *dir;
static pid_t child = -1;
static model acked, alt;

static size_t entry_len(uint64_t index, uint64_t term)
{
	return 1 + (size_t)((index * 2654435761u + term * 40503u) % 1500);
}

static void model_apply(model *m, const rec *r)
{
	uint64_t end = r->first + r->count - 1;
	if (end + 1 > m->cap) {
		m->cap = (end + 1) * 2;
		m->terms = realloc(m->terms, m->cap * sizeof(uint64_t));
		assert_non_null(m->terms);
	}
	for (uint64_t i = r->first; i <= end; i++)
		m->terms[i] = r->term;
	m->last = end; /* anything after the batch was truncated */
	m->hs = (raft_hard_state){.term = r->term, .vote = 1, .commit = end};
}

static void model_copy(model *dst, const model *src)
{
	dst->last = src->last;
	dst->hs = src->hs;
	if (dst->cap < src->cap) {
		dst->cap = src->cap;
		dst->terms = realloc(dst->terms, dst->cap * sizeof(uint64_t));
		assert_non_null(dst->terms);
	}
	if (src->last)
		memcpy(dst->terms, src->terms, (src->last + 1) * sizeof(uint64_t));
}

static void write_rec(int fd, const rec *r)
{
	if (write(fd, r, sizeof(*r)) != (ssize_t)sizeof(*r))
		_exit(4);
}

/* The child: appends forever, announcing each batch. Never returns. */
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
	raft_entry ents[8];
	for (;;) {
		uint64_t last = store_last_index(s);
		uint64_t first = last + 1;
		if (last > 0 && tu_rand(&rng) % 6 == 0) /* rewrite a suffix */
			first = last - tu_rand(&rng) % (last < 5 ? last : 5);
		rec r = {.kind = REC_INTENT,
			 .count = 1 + tu_rand(&rng) % 8,
			 .first = first,
			 .term = term};
		for (uint32_t i = 0; i < r.count; i++)
			tu_entry(&ents[i], first + i, term, entry_len(first + i, term));
		raft_hard_state hs = {.term = term, .vote = 1, .commit = first + r.count - 1};
		write_rec(fd, &r);
		if (store_save(s, &hs, ents, r.count) != 0) {
			fprintf(stderr, "crash child: %s\n", store_errmsg(s));
			_exit(3);
		}
		r.kind = REC_ACK;
		write_rec(fd, &r);
		for (uint32_t i = 0; i < r.count; i++)
			raft_entry_free_contents(&ents[i]);
	}
}

/* Whether the store holds exactly m (log contents and hard state). */
static bool store_matches(store *s, const model *m, char *why, size_t cap)
{
	raft_hard_state hs;
	store_hard_state(s, &hs);
	if (store_first_index(s) != 1 || store_last_index(s) != m->last) {
		snprintf(why, cap, "log %llu..%llu, expected 1..%llu",
			 (unsigned long long)store_first_index(s),
			 (unsigned long long)store_last_index(s), (unsigned long long)m->last);
		return false;
	}
	if (hs.term != m->hs.term || hs.vote != m->hs.vote || hs.commit != m->hs.commit) {
		snprintf(why, cap, "hard state term %llu commit %llu, expected %llu %llu",
			 (unsigned long long)hs.term, (unsigned long long)hs.commit,
			 (unsigned long long)m->hs.term, (unsigned long long)m->hs.commit);
		return false;
	}
	if (m->last == 0)
		return true;
	raft_entry *ents;
	size_t n;
	int rv = store_entries(s, 1, m->last + 1, UINT64_MAX, &ents, &n);
	if (rv != 0) {
		snprintf(why, cap, "read log: %s", store_errmsg(s));
		return false;
	}
	bool ok = n == m->last;
	for (size_t i = 0; ok && i < n; i++) {
		uint64_t idx = i + 1;
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

static void one_round(uint64_t round, uint64_t *rng, unsigned *with_inflight)
{
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	char round_arg[32], fd_arg[16];
	snprintf(round_arg, sizeof(round_arg), "%llu", (unsigned long long)round);
	snprintf(fd_arg, sizeof(fd_arg), "%d", fds[1]);
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
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
	/* The kill moment: after some acks, then a random part of a batch. */
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
		if (r.kind == REC_INTENT) {
			pending = r;
			have_pending = true;
		} else {
			assert_int_equal(r.kind, REC_ACK);
			assert_true(have_pending && r.first == pending.first);
			model_apply(&acked, &r);
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
	char err[512], why_a[256], why_b[256] = "no batch in flight";
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
			 "the batch in flight (%s)",
			 (unsigned long long)round, why_a, why_b);
}

static void test_kill_while_appending(void **state)
{
	uint64_t rng = SEED;
	unsigned with_inflight = 0;
	for (uint64_t round = 0; round < ROUNDS; round++)
		one_round(round, &rng, &with_inflight);
	print_message("%d kills; log ends at %llu; in-flight batch found durable after %u kills\n",
		      ROUNDS, (unsigned long long)acked.last, with_inflight);
	assert_true(acked.last > ROUNDS); /* the children made progress */
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
