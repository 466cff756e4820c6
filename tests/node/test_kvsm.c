/* test_kvsm.c — the replicated test state machine: exactly-once through
 * its duplicate table, state rebuilt from its applied log after a restart
 * (a torn last record is cut off), and snapshot/restore. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "kvsm.h"

static char dir_a[64], dir_b[64];

static int setup(void **state)
{
	snprintf(dir_a, sizeof(dir_a), "/tmp/raftfs-test-kvsm-a-XXXXXX");
	snprintf(dir_b, sizeof(dir_b), "/tmp/raftfs-test-kvsm-b-XXXXXX");
	return mkdtemp(dir_a) && mkdtemp(dir_b) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[200];

	snprintf(cmd, sizeof(cmd), "rm -rf %s %s", dir_a, dir_b);
	return system(cmd) == 0 ? 0 : -1;
}

static kvsm *open_sm(const char *dir, node_sm *sm)
{
	char err[256];
	kvsm *k = NULL;

	assert_int_equal(kvsm_open(dir, &k, err, sizeof(err)), 0);
	kvsm_iface(k, sm);
	return k;
}

static int64_t put(node_sm *sm, uint64_t index, uint64_t client, uint64_t seq, uint64_t min,
		   const char *cmd)
{
	envelope env = {client, seq, min};
	int64_t result = -1;

	assert_int_equal(
	    sm->apply(sm->ctx, index, &env, (const uint8_t *)cmd, strlen(cmd), &result), 0);
	return result;
}

static char *get(node_sm *sm, const char *key)
{
	uint8_t *out;
	size_t len;

	assert_int_equal(sm->query(sm->ctx, (const uint8_t *)key, strlen(key), &out, &len), 0);
	return (char *)out;
}

static void test_exactly_once_and_restart(void **state)
{
	node_sm sm;
	kvsm *k = open_sm(dir_a, &sm);
	char *v;

	assert_int_equal(sm.applied_index(sm.ctx), 0);
	assert_int_equal(sm.apply_empty(sm.ctx, 1), 0);
	assert_int_equal(put(&sm, 2, 9, 1, 1, "a=1"), 2);
	assert_int_equal(put(&sm, 3, 9, 2, 1, "a=2"), 3);
	/* A retry of seq 1 after a leader change: the first result, no effect. */
	assert_int_equal(put(&sm, 4, 9, 1, 1, "a=1"), 2);
	v = get(&sm, "a");
	assert_string_equal(v, "2");
	free(v);
	assert_int_equal(sm.applied_index(sm.ctx), 4);
	kvsm_close(k);

	/* Restart: the state, applied index and duplicate table come back. */
	k = open_sm(dir_a, &sm);
	assert_int_equal(sm.applied_index(sm.ctx), 4);
	assert_int_equal(put(&sm, 5, 9, 2, 1, "a=2"), 3);
	v = get(&sm, "a");
	assert_string_equal(v, "2");
	free(v);
	kvsm_close(k);
}

static void test_torn_tail_is_cut(void **state)
{
	char path[128];
	struct stat st;
	node_sm sm;
	kvsm *k = open_sm(dir_a, &sm);

	put(&sm, 1, 5, 1, 1, "x=1");
	put(&sm, 2, 5, 2, 1, "x=2");
	kvsm_close(k);
	/* kill -9 in the middle of writing record 2. */
	snprintf(path, sizeof(path), "%s/kv/applied.log", dir_a);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(truncate(path, st.st_size - 3), 0);
	k = open_sm(dir_a, &sm);
	assert_int_equal(sm.applied_index(sm.ctx), 1);
	/* Re-applied from the Raft log: executed now, exactly once. */
	assert_int_equal(put(&sm, 2, 5, 2, 1, "x=2"), 2);
	kvsm_close(k);
}

/* A snapshot image in memory, written and read back through the node_sm
 * streaming hooks. */
struct mem_image {
	uint8_t *buf;
	size_t len, pos;
};

static int mem_write(void *arg, const void *buf, size_t len)
{
	struct mem_image *m = arg;
	uint8_t *p = realloc(m->buf, m->len + len);

	if (!p)
		return -ENOMEM;
	memcpy(p + m->len, buf, len);
	m->buf = p;
	m->len += len;
	return 0;
}

static ssize_t mem_read(void *arg, void *buf, size_t len)
{
	struct mem_image *m = arg;
	size_t n = m->len - m->pos < len ? m->len - m->pos : len;

	memcpy(buf, m->buf + m->pos, n);
	m->pos += n;
	return (ssize_t)n;
}

static void test_snapshot_restore(void **state)
{
	node_sm a, b;
	kvsm *ka = open_sm(dir_a, &a), *kb = open_sm(dir_b, &b);
	struct mem_image img = {0};
	char *v;

	for (uint64_t i = 1; i <= 20; i++) {
		char cmd[32];

		snprintf(cmd, sizeof(cmd), "k%llu=%llu", (unsigned long long)(i % 5),
			 (unsigned long long)i);
		put(&a, i, 7, i, i, cmd);
	}
	assert_int_equal(a.snapshot(a.ctx, mem_write, &img), 0);
	/* b had a diverging, uncommitted past: restore replaces it whole. */
	put(&b, 1, 8, 1, 1, "zzz=1");
	assert_int_equal(b.restore(b.ctx, 20, mem_read, &img), 0);
	assert_int_equal(b.applied_index(b.ctx), 20);
	v = get(&b, "k3");
	assert_string_equal(v, "18");
	free(v);
	v = get(&b, "zzz");
	assert_string_equal(v, "");
	free(v);
	/* The duplicate table came along. */
	assert_int_equal(put(&b, 21, 7, 20, 20, "k0=20"), 20);
	/* A snapshot that does not end at the index it claims is refused. */
	img.pos = 0;
	assert_int_equal(b.restore(b.ctx, 19, mem_read, &img), -EINVAL);
	free(img.buf);
	kvsm_close(ka);
	kvsm_close(kb);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_exactly_once_and_restart, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_torn_tail_is_cut, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_snapshot_restore, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
