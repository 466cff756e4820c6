/* store_bench.c — append throughput and latency of the RocksDB store with
 * sync on, next to the raw fsync latency of the same disk.
 *
 * usage: store-bench [DIR]
 *
 * Works in a new temporary directory under DIR (default /tmp) and removes
 * it afterwards. For entries of 128 B, 4 KiB and 64 KiB in batches of 1,
 * 16 and 256, each on a fresh store, it times store_save() (hard state +
 * batch in one synced WriteBatch, as the node runtime calls it once per
 * Ready) and prints entries/s, MiB/s and the p50/p99 latency per batch.
 * The baseline is a 4 KiB write + fdatasync() to a plain file in the same
 * directory (appending, and overwriting in place): no store can commit
 * faster than the disk syncs.
 *
 * usage: store-bench -f [DIR]
 *
 * The value log's two flushes per save, one after the other (as before
 * session 5: RAFTFS_STORE_SERIAL_FLUSH=1) against at once (the value log's
 * fdatasync on its syncer thread while RocksDB syncs its batch), on two
 * stores in the same directory, interleaved round by round (the disk is
 * shared and its speed swings from one minute to the next): saves of the
 * sizes the node makes during a big write (one 256 KiB or 1 MiB entry, or
 * 8 of 1 MiB), with their hard state.
 *
 * usage: store-bench -d [DIR]
 *
 * The value log written through the page cache
 * (RAFTFS_STORE_VLOG_BUFFERED=1, as before session 6) against O_DIRECT,
 * the same rounds as -f, with the process's CPU time per MiB saved (user +
 * system, all threads: the page-cache fills and their write-back at
 * fdatasync are what O_DIRECT removes).
 *
 * usage: store-bench -r [DIR]
 *
 * Value-log spares (a compacted file renamed to be the next one, written
 * over) against none (RAFTFS_STORE_VLOG_SPARES=0: every file new), on two
 * stores in one directory: rounds of 80 MiB in 1 MiB saves, each followed
 * by a local snapshot and a compaction that frees the files behind, as a
 * long write does; the rounds alternate between the stores.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "store.h"

#define BUDGET_BYTES (128ull << 20) /* data written per configuration, roughly */
#define MIN_BATCHES 10
#define MAX_BATCHES 400
#define FSYNC_ROUNDS 200

static double now_sec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* The q-quantile of n sorted samples. */
static double quantile(const double *sorted, size_t n, double q)
{
	size_t i = (size_t)(q * (double)(n - 1) + 0.5);
	return sorted[i < n ? i : n - 1];
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

/* 4 KiB write + fdatasync, FSYNC_ROUNDS times: appending (the file grows,
 * so the sync also writes the inode's size) or overwriting one preallocated
 * block (data only, like RocksDB's preallocated WAL). */
static int bench_fsync_one(const char *dir, bool append)
{
	char path[2048];
	snprintf(path, sizeof(path), "%s/fsync-probe", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0) {
		fprintf(stderr, "store-bench: open %s: %s\n", path, strerror(errno));
		return -errno;
	}
	char block[4096];
	memset(block, 'f', sizeof(block));
	double lat[FSYNC_ROUNDS];
	int rv = 0;
	if (!append &&
	    (pwrite(fd, block, sizeof(block), 0) != (ssize_t)sizeof(block) || fsync(fd) != 0))
		rv = -EIO;
	for (int i = 0; rv == 0 && i < FSYNC_ROUNDS; i++) {
		double t0 = now_sec();
		off_t off = append ? (off_t)i * (off_t)sizeof(block) : 0;
		if (pwrite(fd, block, sizeof(block), off) != (ssize_t)sizeof(block) ||
		    fdatasync(fd) != 0)
			rv = -EIO;
		lat[i] = now_sec() - t0;
	}
	if (rv != 0)
		fprintf(stderr, "store-bench: write+fdatasync %s: %s\n", path, strerror(errno));
	close(fd);
	unlink(path);
	if (rv != 0)
		return rv;
	qsort(lat, FSYNC_ROUNDS, sizeof(double), cmp_double);
	printf("raw disk, 4 KiB %s + fdatasync, %d rounds: p50 %.3f ms, p99 %.3f ms\n",
	       append ? "append   " : "overwrite", FSYNC_ROUNDS,
	       quantile(lat, FSYNC_ROUNDS, 0.5) * 1e3, quantile(lat, FSYNC_ROUNDS, 0.99) * 1e3);
	return 0;
}

static int bench_fsync(const char *dir)
{
	int rv = bench_fsync_one(dir, true);
	if (rv == 0)
		rv = bench_fsync_one(dir, false);
	printf("\n");
	return rv;
}

static int bench_append(const char *dir, size_t entry_len, size_t batch)
{
	char path[2048];
	snprintf(path, sizeof(path), "%s/store-%zu-%zu", dir, entry_len, batch);
	store *s;
	char err[512];
	if (store_open(path, &s, err, sizeof(err)) != 0) {
		fprintf(stderr, "store-bench: %s\n", err);
		return -1;
	}
	uint64_t batch_bytes = (uint64_t)entry_len * batch;
	size_t rounds = (size_t)(BUDGET_BYTES / batch_bytes);
	rounds = rounds < MIN_BATCHES ? MIN_BATCHES : rounds > MAX_BATCHES ? MAX_BATCHES : rounds;

	raft_entry *ents = calloc(batch, sizeof(*ents));
	uint8_t *data = malloc(entry_len);
	double *lat = calloc(rounds, sizeof(double));
	int rv = ents && data && lat ? 0 : -ENOMEM;
	for (size_t i = 0; data && i < entry_len; i++)
		data[i] = (uint8_t)(i * 131 + 17); /* not all zero: RocksDB compresses */

	uint64_t index = 1;
	double total = 0;
	for (size_t r = 0; rv == 0 && r < rounds; r++) {
		for (size_t i = 0; i < batch; i++)
			ents[i] = (raft_entry){.term = 1,
					       .index = index + i,
					       .len = (uint32_t)entry_len,
					       .data = data};
		raft_hard_state hs = {.term = 1, .vote = 1, .commit = index - 1};
		double t0 = now_sec();
		rv = store_save(s, &hs, ents, batch);
		lat[r] = now_sec() - t0;
		total += lat[r];
		index += batch;
	}
	if (rv != 0) {
		fprintf(stderr, "store-bench: append: %s\n",
			rv == -ENOMEM ? "out of memory" : store_errmsg(s));
	} else {
		qsort(lat, rounds, sizeof(double), cmp_double);
		double entries = (double)rounds * (double)batch;
		printf("| %6zu B | %5zu | %7zu | %11.0f | %8.1f | %8.3f | %8.3f |\n", entry_len,
		       batch, rounds, entries / total,
		       entries * (double)entry_len / total / (1 << 20),
		       quantile(lat, rounds, 0.5) * 1e3, quantile(lat, rounds, 0.99) * 1e3);
		fflush(stdout);
	}
	free(ents);
	free(data);
	free(lat);
	store_close(s);
	nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return rv;
}

#define AB_ROUNDS 12
#define AB_ROUND_BYTES (16ull << 20)

/* One round: saves of batch entries of entry_len until AB_ROUND_BYTES are
 * written to s from *index on; the time of each save goes to lat[]. */
static int ab_round(store *s, raft_entry *ents, size_t batch, uint64_t *index, double *lat,
		    size_t *n_lat, double *total)
{
	uint64_t bytes = 0;

	while (bytes < AB_ROUND_BYTES) {
		for (size_t i = 0; i < batch; i++) {
			ents[i].index = *index + i;
			bytes += ents[i].len;
		}
		raft_hard_state hs = {.term = 1, .vote = 1, .commit = *index - 1};
		double t0 = now_sec();
		int rv = store_save(s, &hs, ents, batch);
		double t = now_sec() - t0;

		if (rv != 0) {
			fprintf(stderr, "store-bench: save: %s\n", store_errmsg(s));
			return rv;
		}
		lat[(*n_lat)++] = t;
		*total += t;
		*index += batch;
	}
	return 0;
}

/* The process's CPU time so far, all threads, in seconds. */
static double cpu_sec(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* Two stores, the first opened with env=1 (labels[0]) and the second
 * without (labels[1]), AB_ROUNDS rounds each, alternating which goes
 * first; cpu: also print CPU ms per MiB saved. */
static int bench_ab(const char *dir, size_t entry_len, size_t batch, const char *env,
		    const char *const labels[2], bool cpu)
{
	store *s[2] = {NULL, NULL};
	char path[2048], err[512];
	size_t per_round = (size_t)(AB_ROUND_BYTES / ((uint64_t)entry_len * batch)) + 1;
	size_t cap = per_round * AB_ROUNDS;
	double *lat[2] = {calloc(cap, sizeof(double)), calloc(cap, sizeof(double))};
	double total[2] = {0, 0}, bytes[2] = {0, 0}, cpu_s[2] = {0, 0};
	size_t n_lat[2] = {0, 0};
	uint64_t index[2] = {1, 1};
	raft_entry *ents = calloc(batch, sizeof(*ents));
	uint8_t *data = malloc(entry_len);
	int rv = lat[0] && lat[1] && ents && data ? 0 : -ENOMEM;

	for (size_t i = 0; data && i < entry_len; i++)
		data[i] = (uint8_t)(i * 131 + 17);
	for (size_t i = 0; ents && i < batch; i++)
		ents[i] = (raft_entry){.term = 1, .len = (uint32_t)entry_len, .data = data};
	for (int m = 0; rv == 0 && m < 2; m++) {
		snprintf(path, sizeof(path), "%s/ab-%d", dir, m);
		if (m == 0)
			setenv(env, "1", 1);
		rv = store_open(path, &s[m], err, sizeof(err));
		unsetenv(env);
		if (rv != 0)
			fprintf(stderr, "store-bench: %s\n", err);
	}
	for (int r = 0; rv == 0 && r < 2 * AB_ROUNDS; r++) {
		int m = (r / 2 + r) % 2; /* 0 1, 1 0, 0 1, ... */
		size_t before = n_lat[m];
		double c0 = cpu_sec();

		rv = ab_round(s[m], ents, batch, &index[m], lat[m], &n_lat[m], &total[m]);
		cpu_s[m] += cpu_sec() - c0;
		bytes[m] += (double)(n_lat[m] - before) * (double)batch * (double)entry_len;
	}
	for (int m = 0; rv == 0 && m < 2; m++) {
		qsort(lat[m], n_lat[m], sizeof(double), cmp_double);
		printf("| %7zu B | %5zu | %-10s | %5zu | %8.1f | %8.3f | %8.3f |", entry_len, batch,
		       labels[m], n_lat[m], bytes[m] / total[m] / (1 << 20),
		       quantile(lat[m], n_lat[m], 0.5) * 1e3,
		       quantile(lat[m], n_lat[m], 0.99) * 1e3);
		if (cpu)
			printf(" %7.2f |", cpu_s[m] * 1e3 / (bytes[m] / (1 << 20)));
		printf("\n");
	}
	fflush(stdout);
	for (int m = 0; m < 2; m++) {
		store_close(s[m]);
		free(lat[m]);
		snprintf(path, sizeof(path), "%s/ab-%d", dir, m);
		nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	}
	free(ents);
	free(data);
	return rv;
}

#define RC_ROUNDS 6
#define RC_ROUND_SAVES 80

/* A local snapshot at the last index and a compaction through it: the
 * files behind it go (to the spares, if kept). */
static int snap_and_compact(store *s)
{
	uint64_t voter = 1, last = store_last_index(s);
	raft_snapshot_meta m = {.index = last, .term = 1};
	int rv;

	m.conf.voters = &voter;
	m.conf.n_voters = 1;
	rv = store_snapshot_begin(s, &m);
	if (rv == 0)
		rv = store_snapshot_write(s, 0, "x", 1);
	if (rv == 0)
		rv = store_snapshot_install_local(s);
	if (rv == 0)
		rv = store_compact(s, last);
	if (rv != 0)
		fprintf(stderr, "store-bench: snapshot and compact at %llu: %s\n",
			(unsigned long long)last, store_errmsg(s));
	return rv;
}

/* Spares (mode 1) against none (mode 0). */
static int bench_recycle_ab(const char *dir)
{
	const size_t entry_len = 1u << 20;
	store *s[2] = {NULL, NULL};
	char path[2048], err[512];
	size_t cap = (size_t)RC_ROUNDS * RC_ROUND_SAVES;
	double *lat[2] = {calloc(cap, sizeof(double)), calloc(cap, sizeof(double))};
	double total[2] = {0, 0};
	size_t n_lat[2] = {0, 0};
	uint64_t index[2] = {1, 1};
	raft_entry e = {.term = 1, .len = (uint32_t)entry_len};
	uint8_t *data = malloc(entry_len);
	int rv = lat[0] && lat[1] && data ? 0 : -ENOMEM;

	for (size_t i = 0; data && i < entry_len; i++)
		data[i] = (uint8_t)(i * 131 + 17);
	e.data = data;
	for (int m = 0; rv == 0 && m < 2; m++) {
		snprintf(path, sizeof(path), "%s/rc-%d", dir, m);
		if (m == 0)
			setenv("RAFTFS_STORE_VLOG_SPARES", "0", 1);
		rv = store_open(path, &s[m], err, sizeof(err));
		unsetenv("RAFTFS_STORE_VLOG_SPARES");
		if (rv != 0)
			fprintf(stderr, "store-bench: %s\n", err);
	}
	for (int r = 0; rv == 0 && r < 2 * RC_ROUNDS; r++) {
		int m = (r / 2 + r) % 2;

		for (int i = 0; rv == 0 && i < RC_ROUND_SAVES; i++) {
			raft_hard_state hs = {.term = 1, .vote = 1, .commit = index[m] - 1};
			double t0 = now_sec(), t;

			e.index = index[m]++;
			rv = store_save(s[m], &hs, &e, 1);
			t = now_sec() - t0;
			lat[m][n_lat[m]++] = t;
			total[m] += t;
		}
		if (rv != 0)
			fprintf(stderr, "store-bench: save: %s\n", store_errmsg(s[m]));
		else
			rv = snap_and_compact(s[m]);
	}
	for (int m = 0; rv == 0 && m < 2; m++) {
		qsort(lat[m], n_lat[m], sizeof(double), cmp_double);
		printf("| 1048576 B | %-9s | %5zu | %8.1f | %8.3f | %8.3f |\n",
		       m ? "spares" : "no spares", n_lat[m],
		       (double)n_lat[m] * (double)entry_len / total[m] / (1 << 20),
		       quantile(lat[m], n_lat[m], 0.5) * 1e3,
		       quantile(lat[m], n_lat[m], 0.99) * 1e3);
	}
	for (int m = 0; m < 2; m++) {
		store_close(s[m]);
		free(lat[m]);
		snprintf(path, sizeof(path), "%s/rc-%d", dir, m);
		nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	}
	free(data);
	return rv;
}

int main(int argc, char **argv)
{
	bool ab = argc >= 2 && strcmp(argv[1], "-f") == 0;
	bool rc = argc >= 2 && strcmp(argv[1], "-r") == 0;
	bool direct = argc >= 2 && strcmp(argv[1], "-d") == 0;

	if (ab || rc || direct) {
		argv++;
		argc--;
	}
	if (argc > 2 || (argc == 2 && argv[1][0] == '-')) {
		fprintf(stderr,
			"usage: %s [-f|-r|-d] [DIR]   (works in a temporary directory under "
			"DIR, default /tmp; -f: serial against parallel flushes; -r: value-log "
			"spares against none; -d: value log through the page cache against "
			"O_DIRECT)\n",
			argv[0]);
		return 2;
	}
	char dir[1024];
	int n = snprintf(dir, sizeof(dir), "%s/raftfs-store-bench-XXXXXX",
			 argc == 2 ? argv[1] : "/tmp");
	if (n < 0 || (size_t)n >= sizeof(dir)) {
		fprintf(stderr, "store-bench: directory name too long: %s\n", argv[1]);
		return 1;
	}
	if (!mkdtemp(dir)) {
		fprintf(stderr, "store-bench: mkdtemp %s: %s\n", dir, strerror(errno));
		return 1;
	}
	printf("store-bench in %s\n", dir);
	int rv = bench_fsync(dir);
	if (rc) {
		printf("| entry     | files     | saves | MiB/s    | p50 (ms) | p99 (ms) |\n"
		       "|----------:|-----------|------:|---------:|---------:|---------:|\n");
		if (rv == 0)
			rv = bench_recycle_ab(dir);
		nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
		return rv == 0 ? 0 : 1;
	}
	if (ab || direct) {
		static const size_t ab_sizes[][2] = {{256u << 10, 1}, {1u << 20, 1}, {1u << 20, 8}};
		static const char *const flushes[2] = {"serial", "parallel"};
		static const char *const writes[2] = {"page cache", "O_DIRECT"};

		if (ab)
			printf(
			    "| entry     | batch | flushes    | saves | MiB/s    | p50 (ms) | p99 "
			    "(ms) |\n"
			    "|----------:|------:|------------|------:|---------:|---------:|------"
			    "---:|\n");
		else
			printf(
			    "| entry     | batch | value log  | saves | MiB/s    | p50 (ms) | p99 "
			    "(ms) | CPU ms/MiB |\n"
			    "|----------:|------:|------------|------:|---------:|---------:|------"
			    "---:|-----------:|\n");
		for (size_t i = 0; rv == 0 && i < 3; i++)
			rv = ab ? bench_ab(dir, ab_sizes[i][0], ab_sizes[i][1],
					   "RAFTFS_STORE_SERIAL_FLUSH", flushes, false)
				: bench_ab(dir, ab_sizes[i][0], ab_sizes[i][1],
					   "RAFTFS_STORE_VLOG_BUFFERED", writes, true);
		nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
		return rv == 0 ? 0 : 1;
	}
	static const size_t sizes[] = {128, 4096, 65536};
	static const size_t batches[] = {1, 16, 256};
	if (rv == 0)
		printf("| entry    | batch | batches |   entries/s |    MiB/s | p50 (ms) | p99 "
		       "(ms) |\n"
		       "|---------:|------:|--------:|------------:|---------:|---------:|---------"
		       ":|\n");
	for (size_t i = 0; rv == 0 && i < 3; i++)
		for (size_t j = 0; rv == 0 && j < 3; j++)
			rv = bench_append(dir, sizes[i], batches[j]);
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return rv == 0 ? 0 : 1;
}
