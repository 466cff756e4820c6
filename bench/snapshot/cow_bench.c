/* cow_bench.c — what a snapshot image costs the applies of a big file being
 * written (fs/sm_image_cow.c): a file of M MiB, half written, an image
 * begun and streamed at a transfer's pace (a sink throttled to R MiB/s, as
 * a follower's connection takes it), while this thread applies the other
 * half in 1 MiB writes, each followed by a 4 KiB overwrite of a small file
 * (another mount's small write, waiting behind the apply thread). Prints
 * the first write's apply after begin (the copy-on-write pause) and the
 * small writes' latency percentiles while the image streams. Usage:
 *   cow-bench [--mib M] [--sink-mibs R] [--dir DIR]
 * DIR (default /var/tmp) holds a temp data dir, removed after. */
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench_sm.h"
#include "fs.pb-c.h"
#include "sm.h"
#include "sm_snapshot.h"

#define BIG_ID ((1ULL << 48) | 1)
#define SMALL_ID ((1ULL << 48) | 2)


static double ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* The image goes nowhere, at most mibs MiB/s. */
struct streamer {
	struct sm_snap_job *job;
	double mibs, t0, bytes;
	int rc;
	int done; /* atomic */
};

static int paced_sink(void *arg, const void *buf, size_t len)
{
	struct streamer *s = arg;
	double due;

	(void)buf;
	s->bytes += (double)len;
	due = s->t0 + s->bytes / (s->mibs * 1048576.0) * 1e3;
	while (ms() < due)
		usleep(1000);
	return 0;
}

static void *stream_main(void *arg)
{
	struct streamer *s = arg;

	s->t0 = ms();
	s->rc = sm_snapshot_stream(s->job, paced_sink, s);
	__atomic_store_n(&s->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	unsigned mib = 256;
	double sink_mibs = 200;
	const char *base = "/var/tmp";
	char dir[4096];
	struct streamer st = {0};
	struct sm *sm = NULL;
	uint8_t *big = malloc(1u << 20), small[4096];
	double *lat, first = 0, t, t_begin;
	size_t n = 0;
	uint64_t index;
	pthread_t th;
	int rc = 1;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--mib"))
			mib = (unsigned)strtoul(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--sink-mibs"))
			sink_mibs = strtod(argv[i + 1], NULL);
		else if (!strcmp(argv[i], "--dir"))
			base = argv[i + 1];
	}
	lat = calloc(mib, sizeof(*lat));
	snprintf(dir, sizeof(dir), "%s/cow-bench.XXXXXX", base);
	if (!big || !lat || mib < 2 || !mkdtemp(dir)) {
		fprintf(stderr, "cow-bench: setting up in %s failed\n", base);
		return 1;
	}
	memset(big, 'b', 1u << 20);
	memset(small, 's', sizeof(small));
	if (sm_open(dir, 1, &sm) || bench_create(sm, SM_ROOT_ID, "big", BIG_ID) || bench_create(sm, SM_ROOT_ID, "small", SMALL_ID) ||
	    bench_write(sm, SMALL_ID, 0, small, sizeof(small)))
		goto out;
	for (unsigned i = 0; i < mib / 2; i++)
		if (bench_write(sm, BIG_ID, (uint64_t)i << 20, big, 1u << 20))
			goto out;
	t_begin = ms();
	if (sm_snapshot_begin(sm, &st.job, &index))
		goto out;
	t_begin = ms() - t_begin;
	st.mibs = sink_mibs;
	pthread_create(&th, NULL, stream_main, &st);
	bool applied = true;
	for (unsigned i = mib / 2; applied && i < mib; i++) {
		t = ms();
		if (!(applied = !bench_write(sm, BIG_ID, (uint64_t)i << 20, big, 1u << 20)))
			break;
		if (i == mib / 2)
			first = ms() - t;
		t = ms();
		if (!(applied = !bench_write(sm, SMALL_ID, (uint64_t)(i % 64) * 4096, small,
					     sizeof(small))))
			break;
		/* The first small write also counts the big write's wait (the
		 * copy-on-write pause); the others only their own. */
		if (!__atomic_load_n(&st.done, __ATOMIC_ACQUIRE))
			lat[n++] = ms() - t + (i == mib / 2 ? first : 0);
	}
	pthread_join(th, NULL);
	sm_snapshot_end(st.job);
	qsort(lat, n, sizeof(*lat), cmp_double);
	printf("%u MiB file, image begun at %u MiB (begin %.1f ms), streamed at <= %.0f MiB/s: "
	       "first 1 MiB write after begin %.1f ms; %zu small writes while it streamed: "
	       "p50 %.2f p99 %.2f max %.2f ms; stream %s\n",
	       mib, mib / 2, t_begin, sink_mibs, first, n, n ? lat[n / 2] : 0,
	       n ? lat[n * 99 / 100] : 0, n ? lat[n - 1] : 0, st.rc ? "FAILED" : "ok");
	rc = st.rc || !applied ? 1 : 0;
out:
	if (rc)
		fprintf(stderr, "cow-bench: failed in %s\n", dir);
	sm_close(sm);
	bench_rm_tree(dir);
	free(big);
	free(lat);
	return rc;
}
