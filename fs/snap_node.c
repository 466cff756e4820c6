/* snap_node.c — node_sm snapshot hooks of the filesystem: images made into
 * and installed from memory buffers, timed. */
#include "snap_node.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#include "sm_snapshot.h"

struct mem_sink {
	uint8_t *buf;
	size_t len, cap;
};

static int mem_put(void *arg, const void *buf, size_t len)
{
	struct mem_sink *m = arg;

	if (m->len + len > m->cap) {
		size_t cap = m->cap ? m->cap : 1 << 20;
		uint8_t *p;

		while (cap < m->len + len)
			cap *= 2;
		p = realloc(m->buf, cap);
		if (!p)
			return -ENOMEM;
		m->buf = p;
		m->cap = cap;
	}
	memcpy(m->buf + m->len, buf, len);
	m->len += len;
	return 0;
}

struct mem_source {
	const uint8_t *data;
	size_t len, pos;
};

static ssize_t mem_get(void *arg, void *buf, size_t len)
{
	struct mem_source *m = arg;
	size_t n = m->len - m->pos < len ? m->len - m->pos : len;

	memcpy(buf, m->data + m->pos, n);
	m->pos += n;
	return (ssize_t)n;
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Test hook: RAFTFS_TEST_SNAP_DELAY_MS stretches snapshot creation (before
 * the image is handed to the runtime to store), so a test can kill -9 the
 * node while it is making one. */
static void test_delay(void)
{
	const char *e = getenv("RAFTFS_TEST_SNAP_DELAY_MS");
	long ms = e ? strtol(e, NULL, 10) : 0;

	if (ms > 0) {
		struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};

		nanosleep(&ts, NULL);
	}
}

int snap_node_snapshot(struct sm *sm, uint8_t **out, size_t *len)
{
	struct mem_sink m = {0};
	double t0 = now_ms();
	uint64_t index = 0;
	int rc;

	fprintf(stderr, "fs: snapshot image at %llu: making\n",
		(unsigned long long)sm_applied_index(sm));
	rc = sm_snapshot_make(sm, mem_put, &m, &index);
	if (rc) {
		free(m.buf);
		return rc;
	}
	t0 = now_ms() - t0;
	test_delay();
	fprintf(stderr, "fs: snapshot image at %llu: %zu bytes in %.1f ms (apply paused)\n",
		(unsigned long long)index, m.len, t0);
	*out = m.buf;
	*len = m.len;
	return 0;
}

int snap_node_restore(struct sm *sm, uint64_t index, const uint8_t *data, size_t len)
{
	struct mem_source m = {data, len, 0};
	double t0 = now_ms();
	int rc;

	fprintf(stderr, "fs: snapshot image at %llu (%zu bytes): installing\n",
		(unsigned long long)index, len);
	rc = sm_snapshot_install(sm, mem_get, &m);

	if (rc)
		return rc;
	if (sm_applied_index(sm) != index) {
		fprintf(stderr, "fs: snapshot for index %llu held index %llu\n",
			(unsigned long long)index, (unsigned long long)sm_applied_index(sm));
		return -EINVAL;
	}
	fprintf(stderr, "fs: snapshot image at %llu (%zu bytes) installed in %.1f ms\n",
		(unsigned long long)index, len, now_ms() - t0);
	return 0;
}
