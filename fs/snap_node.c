/* snap_node.c — node_sm snapshot hooks of the filesystem: images streamed
 * to and from the runtime, counted and timed. */
#include "snap_node.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#include "sm_snapshot.h"

/* Counts the bytes going through to the runtime's sink. */
struct counting_sink {
	sm_snap_sink sink;
	void *arg;
	uint64_t bytes;
};

static int count_put(void *arg, const void *buf, size_t len)
{
	struct counting_sink *c = arg;

	c->bytes += len;
	return c->sink(c->arg, buf, len);
}

struct counting_source {
	sm_snap_source src;
	void *arg;
	uint64_t bytes;
};

static ssize_t count_get(void *arg, void *buf, size_t len)
{
	struct counting_source *c = arg;
	ssize_t n = c->src(c->arg, buf, len);

	if (n > 0)
		c->bytes += (uint64_t)n;
	return n;
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

int snap_node_snapshot(struct sm *sm, sm_snap_sink sink, void *arg)
{
	struct counting_sink c = {sink, arg, 0};
	double t0 = now_ms();
	uint64_t index = 0;
	int rc;

	fprintf(stderr, "fs: snapshot image at %llu: making\n",
		(unsigned long long)sm_applied_index(sm));
	rc = sm_snapshot_make(sm, count_put, &c, &index);
	if (rc)
		return rc;
	t0 = now_ms() - t0;
	test_delay();
	fprintf(stderr, "fs: snapshot image at %llu: %llu bytes in %.1f ms (apply paused)\n",
		(unsigned long long)index, (unsigned long long)c.bytes, t0);
	return 0;
}

/* A copy-on-write image under way, with what the log lines report. */
struct snap_node_job {
	struct sm_snap_job *job;
	uint64_t index;
};

int snap_node_begin(struct sm *sm, void **job)
{
	struct snap_node_job *j = calloc(1, sizeof(*j));
	double t0 = now_ms();
	int rc;

	if (!j)
		return -ENOMEM;
	rc = sm_snapshot_begin(sm, &j->job, &j->index);
	if (rc) {
		free(j);
		return rc;
	}
	/* "making" until the "streamed" line: tests look for it. */
	fprintf(stderr,
		"fs: snapshot image at %llu: making (begun in %.1f ms, apply paused; metadata "
		"and contents stream while apply goes on)\n",
		(unsigned long long)j->index, now_ms() - t0);
	*job = j;
	return 0;
}

int snap_node_stream(void *job, sm_snap_sink sink, void *arg)
{
	struct snap_node_job *j = job;
	struct counting_sink c = {sink, arg, 0};
	double t0 = now_ms();
	int rc = sm_snapshot_stream(j->job, count_put, &c);

	if (rc)
		return rc;
	test_delay();
	fprintf(stderr,
		"fs: snapshot image at %llu: %llu bytes streamed in %.1f ms (apply "
		"going on)\n",
		(unsigned long long)j->index, (unsigned long long)c.bytes, now_ms() - t0);
	return 0;
}

void snap_node_end(void *job)
{
	struct snap_node_job *j = job;

	if (!j)
		return;
	sm_snapshot_end(j->job);
	free(j);
}

int snap_node_restore(struct sm *sm, uint64_t index, sm_snap_source src, void *arg)
{
	struct counting_source c = {src, arg, 0};
	double t0 = now_ms();
	int rc;

	fprintf(stderr, "fs: snapshot image at %llu: installing\n", (unsigned long long)index);
	rc = sm_snapshot_install(sm, count_get, &c);
	if (rc)
		return rc;
	if (sm_applied_index(sm) != index) {
		fprintf(stderr, "fs: snapshot for index %llu held index %llu\n",
			(unsigned long long)index, (unsigned long long)sm_applied_index(sm));
		return -EINVAL;
	}
	fprintf(stderr, "fs: snapshot image at %llu (%llu bytes) installed in %.1f ms\n",
		(unsigned long long)index, (unsigned long long)c.bytes, now_ms() - t0);
	return 0;
}
