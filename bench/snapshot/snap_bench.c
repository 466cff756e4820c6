/* snap_bench.c — snapshot image costs of the filesystem state machine: for a
 * tree of N small files and for one of large files, how long beginning an
 * image takes (the apply pause), how long streaming it takes while this
 * thread goes on applying (a create + 1 KiB write of a new file and a chmod
 * of an existing object per round: how long each apply took meanwhile, the
 * median and the longest), its size, and how long installing it into
 * another data dir takes. Usage:
 *   snap-bench [--small N] [--large-mib M] [--large-files K] [--dir DIR] [--no-applies]
 * DIR (default a temp dir under /tmp, removed after) holds the data dirs. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
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

static int no_applies; /* --no-applies: the stream runs alone */

static double ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int mkdir_cmd(struct sm *sm, uint64_t parent, const char *name, uint64_t ino)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Mkdir m = FSPB__MKDIR__INIT;

	m.parent = parent;
	m.name = (char *)name;
	m.ino = ino;
	m.mode = 0755;
	c.op_case = FSPB__COMMAND__OP_MKDIR;
	c.mkdir = &m;
	return bench_apply(sm, &c);
}

static int setattr_cmd(struct sm *sm, uint64_t ino, uint32_t mode)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__SetAttr m = FSPB__SET_ATTR__INIT;

	m.ino = ino;
	m.valid = SM_SET_MODE;
	m.mode = mode;
	c.op_case = FSPB__COMMAND__OP_SETATTR;
	c.setattr = &m;
	return bench_apply(sm, &c);
}

struct streamer {
	struct sm_snap_job *job;
	int fd;
	int rc;
	int done; /* atomic */
};

static void *stream_main(void *arg)
{
	struct streamer *s = arg;

	s->rc = sm_snapshot_stream(s->job, sm_snap_fd_sink, &s->fd);
	__atomic_store_n(&s->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* The tree's objects are ids [first, end): what the applies while the
 * image streams chmod, one after another from a random start. */
struct objs {
	uint64_t first, end, *next_new;
};

/* Applies rounds (a new file created and written in a new directory
 * dname, an existing object chmod'ed) until s is done (s NULL: for
 * until_ms); the latency of each apply into lat (up to cap), their count
 * into *n. */
static int apply_during(struct sm *sm, struct streamer *s, double until_ms, const char *dname,
			struct objs *o, double *lat, size_t cap, size_t *n)
{
	uint64_t dir = (*o->next_new)++, next = o->first + (uint64_t)rand() % (o->end - o->first);
	static const uint8_t data[1024];
	double t0 = ms(), end = t0 + until_ms;
	int rc = mkdir_cmd(sm, SM_ROOT_ID, dname, dir);

	*n = 0;
	if (!rc)
		lat[(*n)++] = ms() - t0;
	for (long i = 0; !rc && !no_applies &&
			 (s ? !__atomic_load_n(&s->done, __ATOMIC_ACQUIRE) : ms() < end);
	     i++) {
		uint64_t id = (*o->next_new)++;
		char name[32];

		snprintf(name, sizeof(name), "w%ld", i);
		for (int k = 0; k < 3 && !rc; k++) {
			t0 = ms();
			rc = k == 0   ? bench_create(sm, dir, name, id)
			     : k == 1 ? bench_write(sm, id, 0, data, sizeof(data))
				      : setattr_cmd(sm, next, 0700 | (uint32_t)(i & 077));
			if (*n < cap)
				lat[(*n)++] = ms() - t0;
		}
		if (++next == o->end)
			next = o->first;
	}
	return rc;
}

/* Makes an image of sm into path (begin: the apply pause; stream: while
 * this thread applies), installs it into a fresh data dir, and prints one
 * result line. */
static int measure(const char *label, struct sm *sm, const char *base, struct objs *o)
{
	char img[4200], dst[4200];
	struct streamer s = {.fd = -1};
	struct sm *to;
	struct stat st;
	uint64_t index;
	double t0, t_begin, t_stream, t_install;
	size_t cap = 1u << 20, n = 0;
	double *lat = malloc(cap * sizeof(*lat)), *base_lat = NULL;
	size_t bn = 0;
	pthread_t th;
	int rc;

	snprintf(img, sizeof(img), "%s/image", base);
	snprintf(dst, sizeof(dst), "%s/dst", base);
	s.fd = open(img, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (s.fd < 0 || !lat) {
		free(lat);
		return s.fd < 0 ? -errno : -ENOMEM;
	}
	sync();
	t0 = ms();
	rc = sm_snapshot_begin(sm, &s.job, &index);
	t_begin = ms() - t0;
	if (rc) {
		close(s.fd);
		free(lat);
		return rc;
	}
	t0 = ms();
	rc = pthread_create(&th, NULL, stream_main, &s);
	if (rc) {
		rc = -rc;
		s.rc = 0;
	} else {
		rc = apply_during(sm, &s, 0, "during", o, lat, cap, &n);
		pthread_join(th, NULL);
	}
	t_stream = ms() - t0;
	sm_snapshot_end(s.job);
	close(s.fd);
	if (!rc)
		rc = s.rc;
	/* The same applies for as long without an image: what they cost anyway. */
	if (!rc) {
		base_lat = malloc(cap * sizeof(*base_lat));
		rc = base_lat ? apply_during(sm, NULL, t_stream, "without", o, base_lat, cap, &bn)
			      : -ENOMEM;
		if (!rc)
			qsort(base_lat, bn, sizeof(*base_lat), cmp_double);
	}
	if (rc) {
		free(lat);
		free(base_lat);
		return rc;
	}
	qsort(lat, n, sizeof(*lat), cmp_double);
	stat(img, &st);
	bench_rm_tree(dst);
	rc = sm_open(dst, 2, &to);
	if (rc) {
		free(lat);
		free(base_lat);
		return rc;
	}
	sync(); /* the install's own syncfs should not pay for the image file */
	s.fd = open(img, O_RDONLY | O_CLOEXEC);
	t0 = ms();
	rc = sm_snapshot_install(to, sm_snap_fd_source, &s.fd);
	t_install = ms() - t0;
	close(s.fd);
	sm_close(to);
	bench_rm_tree(dst);
	unlink(img);
	if (!rc)
		printf("| %-28s | %8.1f | %8.1f | %7zu | %6.3f | %6.2f | %8.2f | %12lld | %10.1f "
		       "|\n",
		       label, t_begin, t_stream, n, n ? lat[n / 2] : 0.0, n ? lat[n * 99 / 100] : 0.0,
		       n ? lat[n - 1] : 0.0, (long long)st.st_size, t_install);
	if (!rc)
		printf("| %-28s | %8s | %8.1f | %7zu | %6.3f | %6.2f | %8.2f | %12s | %10s |\n",
		       "  (same applies, no image)", "-", t_stream, bn, bn ? base_lat[bn / 2] : 0.0,
		       bn ? base_lat[bn * 99 / 100] : 0.0, bn ? base_lat[bn - 1] : 0.0, "-", "-");
	fflush(stdout);
	free(lat);
	free(base_lat);
	return rc;
}

int main(int argc, char **argv)
{
	long small = 10000, large_mib = 1024, large_files = 16;
	const char *dir = NULL;
	char base[4096], src[4200], name[64];
	static uint8_t chunk[256 << 10];
	struct sm *sm;
	uint64_t ino = (1ULL << 48) | 100; /* ids as node 1 allocates them */
	struct objs objs = {.first = ino, .next_new = &ino};
	int rc = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--small") && i + 1 < argc)
			small = strtol(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--large-mib") && i + 1 < argc)
			large_mib = strtol(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--large-files") && i + 1 < argc)
			large_files = strtol(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
			dir = argv[++i];
		else if (!strcmp(argv[i], "--no-applies"))
			no_applies = 1;
		else {
			fprintf(stderr,
				"usage: snap-bench [--small N] [--large-mib M] [--large-files K] "
				"[--dir DIR] [--no-applies]\n");
			return 2;
		}
	}
	snprintf(base, sizeof(base), "%s/snap-bench-XXXXXX", dir ? dir : "/tmp");
	if (!mkdtemp(base)) {
		perror("snap-bench: mkdtemp");
		return 1;
	}
	for (size_t i = 0; i < sizeof(chunk); i++)
		chunk[i] = (uint8_t)(i * 7 + i / 251);
	printf("| tree | begin ms (apply paused) | stream ms | applies meanwhile | p50 ms | p99 "
	       "ms | max ms | image bytes | install ms |\n");
	printf("|---|---|---|---|---|---|---|---|---|\n");

	snprintf(src, sizeof(src), "%s/small", base);
	if (sm_open(src, 1, &sm))
		return 1;
	for (long d = 0; d < 100 && !rc; d++) {
		uint64_t dino = ino++;

		snprintf(name, sizeof(name), "d%ld", d);
		rc = mkdir_cmd(sm, SM_ROOT_ID, name, dino);
		for (long f = 0; f < small / 100 && !rc; f++) {
			snprintf(name, sizeof(name), "f%ld", f);
			rc = bench_create(sm, dino, name, ino);
			if (!rc)
				rc = bench_write(sm, ino, 0, chunk, 1024);
			ino++;
		}
	}
	snprintf(name, sizeof(name), "%ld small files (1 KiB)", small);
	if (!rc)
		objs.end = ino;
	if (!rc)
		rc = measure(name, sm, base, &objs);
	sm_close(sm);

	snprintf(src, sizeof(src), "%s/large", base);
	if (!rc && large_files > 0 && sm_open(src, 1, &sm) == 0) {
		objs.first = ino;
		for (long f = 0; f < large_files && !rc; f++) {
			uint64_t id = ino++;

			snprintf(name, sizeof(name), "big%ld", f);
			rc = bench_create(sm, SM_ROOT_ID, name, id);
			for (long off = 0; off < large_mib * 1048576 / large_files && !rc;
			     off += sizeof(chunk))
				rc = bench_write(sm, id, (uint64_t)off, chunk, sizeof(chunk));
		}
		snprintf(name, sizeof(name), "%ld files, %ld MiB in all", large_files, large_mib);
		objs.end = ino;
		if (!rc)
			rc = measure(name, sm, base, &objs);
		sm_close(sm);
	}
	bench_rm_tree(base);
	if (rc)
		fprintf(stderr, "snap-bench: failed: %s\n", strerror(rc < 0 ? -rc : rc));
	return rc ? 1 : 0;
}
