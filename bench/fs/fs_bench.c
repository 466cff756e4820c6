/* fs_bench.c — per-operation throughput and p50/p99 latency of a directory:
 * create+write 4 KiB+close, mkdir, stat, rename, unlink, 64 MiB sequential
 * write and read, 4 KiB write+fsync, and tar x of a tarball; with -j, also
 * creates and sequential writes from several processes at once. Run it on a
 * raftfs mount and on a plain directory (or passthrough_ll) for ratios. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char usage[] =
    "usage: fs-bench [-n N] [-j JOBS] [-t TARBALL] [-p PHASES] [-v] [-L FILE] [-k] [-D]\n"
    "                [-S CMD] [-F N] DIR\n"
    "  Runs each operation N times (default 500) in a fresh DIR/fs-bench.<pid>\n"
    "  (removed afterwards) and prints ops/s, p50 and p99 latency. With -t,\n"
    "  also times `tar xf TARBALL` into it. With -j JOBS > 1, then also runs\n"
    "  JOBS processes at once, each making N files of 4 KiB and writing\n"
    "  64/JOBS MiB sequentially, and prints the total rates.\n"
    "  -p PHASES: only these, comma-separated, of create,mkdir,stat,rename,\n"
    "  unlink,seq,fsync (rename also runs create and mkdir, unlink rename).\n"
    "  -v: each latency line also shows p99.9, the maximum, how many\n"
    "  operations took over 1, 10 and 50 ms, and the share of the phase's\n"
    "  time spent in those over 1 ms (where a mean is made of stalls).\n"
    "  -L FILE: every latency to FILE, one 'phase index microseconds start' a\n"
    "  line, start the operation's wall clock in seconds (when in a run the\n"
    "  stalls come, to set beside the nodes' logs).\n"
    "  -k: keep DIR/fs-bench.<pid> (profile a phase without the clean-up).\n"
    "  After each phase (untimed) the directory is fsync'ed, so no phase is\n"
    "  measured with the previous one's write-behind tail; -v shows how long\n"
    "  that took ('tail'); -D skips that (each phase then also pays for\n"
    "  what the one before left to apply, as fs-bench did before).\n"
    "  -S CMD: runs `sh -c CMD` (untimed) before the first phase with\n"
    "  FS_BENCH_PHASE=start and after each phase's drain with FS_BENCH_PHASE\n"
    "  set to its first word (create, mkdir, ...): per-phase measurements of\n"
    "  the nodes (bench/fs/cpu_per_file.sh).\n"
    "  -F N: the write+fsync phase makes N write+fsync pairs (default: N of\n"
    "  -n, at most 200, as always; 2,000 or more give a p99 worth reading).\n";

enum phase {
	PH_CREATE = 1,
	PH_MKDIR = 2,
	PH_STAT = 4,
	PH_RENAME = 8,
	PH_UNLINK = 16,
	PH_SEQ = 32,
	PH_FSYNC = 64,
	PH_ALL = 127
};

static bool verbose, keep, no_drain;
static FILE *lat_log;
static double *lat_at;	      /* -L: each timed operation's wall-clock start */
static const char *drain_dir; /* fsync'ed after each phase */
static const char *hook;      /* -S: run after each phase */

static void die(const char *what, const char *path);
static double now_s(void);

/* Waits, untimed, until what the last phase left in flight is done: fsync
 * of the working directory (on raftfs, fsyncdir returns once every change
 * the mount answered early — write-behind, fs/fuse_behind.h — applied on
 * its node). Without it one phase's tail is measured in the next one: 500
 * mkdirs answered in 60 ms are applied by three nodes while rename and
 * unlink run, and which row pays depends on timing (bench/fs/README.md,
 * "Metadata rows"). The seconds it took. */
static double drain(void)
{
	double t0 = now_s();
	int fd;

	if (no_drain)
		return 0;
	fd = open(drain_dir, O_RDONLY | O_DIRECTORY);

	if (fd < 0 || fsync(fd) < 0)
		die("fsync of the directory", drain_dir);
	close(fd);
	return now_s() - t0;
}

/* -S: runs the hook with FS_BENCH_PHASE set to the first word of what (a
 * shell command: its failure stops the run, as a measurement would be
 * wrong without it). */
static void run_hook(const char *what)
{
	char name[64];
	int st;

	if (!hook)
		return;
	snprintf(name, sizeof(name), "%.*s", (int)strcspn(what, " +"), what);
	if (setenv("FS_BENCH_PHASE", name, 1) < 0)
		die("setenv FS_BENCH_PHASE for phase", name);
	fflush(stdout);
	st = system(hook);
	if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st)) {
		fprintf(stderr, "fs-bench: -S %s after phase %s failed (status %d)\n", hook, name,
			st);
		exit(1);
	}
}

/* Ends the result line of phase what: drains, with -v shows how long that
 * took, then runs the -S hook. */
static void end_line(const char *what)
{
	double t = drain();

	if (verbose)
		printf("  tail %.1f ms", t * 1e3);
	printf("\n");
	fflush(stdout);
	run_hook(what);
}

/* The -p list as phase bits, with what each needs run before it; 0 if a
 * name is unknown. */
static unsigned parse_phases(const char *list)
{
	static const char *const names[] = {"create", "mkdir", "stat", "rename",
					    "unlink", "seq",   "fsync"};
	unsigned bits = 0;
	char buf[256], *save = NULL;

	snprintf(buf, sizeof(buf), "%s", list);
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		unsigned i = 0;

		while (i < 7 && strcmp(t, names[i]))
			i++;
		if (i == 7)
			return 0;
		bits |= 1u << i;
	}
	if (bits & PH_UNLINK)
		bits |= PH_RENAME;
	if (bits & PH_RENAME)
		bits |= PH_CREATE | PH_MKDIR;
	return bits;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Starts timing operation i: notes its wall-clock start for -L (the
 * nodes log wall-clock times) and returns the monotonic one. */
static double op_begin(int i)
{
	struct timespec ts;

	if (lat_at) {
		clock_gettime(CLOCK_REALTIME, &ts);
		lat_at[i] = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
	}
	return now_s();
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Prints one result line from n latencies (seconds) over total seconds. */
static void report(const char *what, double *lat, int n, double total)
{
	int slow = 0, slow10 = 0, slow50 = 0;
	double stalled = 0;

	if (lat_log)
		for (int i = 0; i < n; i++)
			fprintf(lat_log, "%s %d %.1f %.6f\n", what, i, lat[i] * 1e6, lat_at[i]);
	qsort(lat, (size_t)n, sizeof(*lat), cmp_double);
	printf("%-28s %7d ops %10.0f ops/s  p50 %8.3f ms  p99 %8.3f ms", what, n, n / total,
	       lat[n / 2] * 1e3, lat[(int)(n * 0.99)] * 1e3);
	if (verbose) {
		for (int i = 0; i < n; i++) {
			slow += lat[i] > 1e-3;
			slow10 += lat[i] > 10e-3;
			slow50 += lat[i] > 50e-3;
			stalled += lat[i] > 1e-3 ? lat[i] : 0;
		}
		/* The rate is often made by a few stalls, not by the typical
		 * operation: how many, and how much of the phase they took. */
		printf("  p99.9 %8.3f ms  max %8.3f ms  >1ms %d  >10ms %d  >50ms %d  in>1ms %.0f%%",
		       lat[(int)(n * 0.999)] * 1e3, lat[n - 1] * 1e3, slow, slow10, slow50,
		       total > 0 ? 100 * stalled / total : 0.0);
	}
	end_line(what);
}

static void die(const char *what, const char *path)
{
	fprintf(stderr, "fs-bench: %s %s: %s\n", what, path, strerror(errno));
	exit(1);
}

/* One job of -j: n creates of 4 KiB files in its own directory, or mib
 * MiB written sequentially to its own file. */
static void job(const char *dir, int n, int mib, const char *block)
{
	char path[4400];
	int fd;

	if (mkdir(dir, 0755) < 0)
		die("mkdir", dir);
	for (int i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/f%d", dir, i);
		fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0644);
		if (fd < 0 || write(fd, block, 4096) != 4096 || close(fd) < 0)
			die("create+write", path);
	}
	if (mib) {
		snprintf(path, sizeof(path), "%s/big", dir);
		fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
		if (fd < 0)
			die("open", path);
		for (int i = 0; i < mib; i++)
			if (write(fd, block, 1 << 20) != 1 << 20)
				die("write", path);
		if (close(fd) < 0)
			die("close", path);
	}
}

/* Runs jobs processes of job() at once; the wall time, or -1 if one failed. */
static double run_jobs(const char *base, const char *tag, int jobs, int n, int mib,
		       const char *block)
{
	char dir[4200];
	double t0 = now_s();
	int failed = 0, st;

	for (int j = 0; j < jobs; j++) {
		pid_t pid = fork();

		if (pid < 0)
			die("fork for", base);
		if (pid == 0) {
			snprintf(dir, sizeof(dir), "%s/%s%d", base, tag, j);
			job(dir, n, mib, block);
			_exit(0);
		}
	}
	while (wait(&st) > 0)
		failed |= !WIFEXITED(st) || WEXITSTATUS(st);
	return failed ? -1 : now_s() - t0;
}

/* -j: creates, then sequential writes, from jobs processes at once. */
static void parallel(const char *base, int jobs, int n, const char *block)
{
	int mib = 64 / jobs ? 64 / jobs : 1;
	double t = run_jobs(base, "jc", jobs, n, 0, block);

	if (t < 0) {
		fprintf(stderr, "fs-bench: a job of -j %d failed (creates)\n", jobs);
		exit(1);
	}
	printf("%-28s %7d ops %10.0f ops/s  (%d jobs)", "create+write 4KiB+close", n * jobs,
	       n * jobs / t, jobs);
	end_line("jobs create");
	t = run_jobs(base, "jw", jobs, 0, mib, block);
	if (t < 0) {
		fprintf(stderr, "fs-bench: a job of -j %d failed (writes)\n", jobs);
		exit(1);
	}
	printf("%-28s %7d MiB %10.1f MiB/s (%d jobs)", "sequential write 1 MiB", mib * jobs,
	       mib * jobs / t, jobs);
	end_line("jobs write");
}

int main(int argc, char **argv)
{
	const char *tarball = NULL;
	char base[4096], path[4200], path2[4200];
	static char block[1 << 20];
	double *lat, t0, total;
	int n = 500, jobs = 1, n_sync = 0, c;
	size_t n_lat;
	unsigned phases = PH_ALL;

	while ((c = getopt(argc, argv, "n:j:t:p:vL:kDS:F:h")) != -1) {
		if (c == 'n')
			n = atoi(optarg);
		else if (c == 'j')
			jobs = atoi(optarg);
		else if (c == 't')
			tarball = optarg;
		else if (c == 'p' && (phases = parse_phases(optarg)) == 0) {
			fprintf(stderr, "fs-bench: unknown phase in -p %s\n", optarg);
			return 2;
		} else if (c == 'v')
			verbose = true;
		else if (c == 'k')
			keep = true;
		else if (c == 'D')
			no_drain = true;
		else if (c == 'S')
			hook = optarg;
		else if (c == 'F')
			n_sync = atoi(optarg);
		else if (c == 'L' && !(lat_log = fopen(optarg, "w"))) {
			fprintf(stderr, "fs-bench: open -L %s: %s\n", optarg, strerror(errno));
			return 2;
		} else if (c != 'p' && c != 'L') { /* the two taken above only on success */
			fputs(usage, c == 'h' ? stdout : stderr);
			return c == 'h' ? 0 : 2;
		}
	}
	if (optind != argc - 1 || n < 1 || jobs < 1 || n_sync < 0) {
		fputs(usage, stderr);
		return 2;
	}
	if (!n_sync)
		n_sync = n < 200 ? n : 200;
	/* Room for the longest phase's latencies. */
	n_lat = (size_t)n * 10 > (size_t)n_sync ? (size_t)n * 10 : (size_t)n_sync;
	lat = calloc(n_lat, sizeof(*lat));
	if (lat_log)
		lat_at = calloc(n_lat, sizeof(*lat_at));
	if (!lat || (lat_log && !lat_at))
		return 1;
	memset(block, 'x', sizeof(block));
	snprintf(base, sizeof(base), "%s/fs-bench.%d", argv[optind], (int)getpid());
	if (mkdir(base, 0755) < 0)
		die("mkdir", base);
	drain_dir = argv[optind];
	drain(); /* the mkdir of base: its tail is nobody's row */
	drain_dir = base;
	run_hook("start");

	/* Every create first (an ext4 without a journal is slow to reuse freed
	 * inodes: see TARGETS.md). */
	if (phases & PH_CREATE) {
		total = now_s();
		for (int i = 0; i < n; i++) {
			int fd;

			snprintf(path, sizeof(path), "%s/f%d", base, i);
			t0 = op_begin(i);
			fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0644);
			if (fd < 0 || write(fd, block, 4096) != 4096 || close(fd) < 0)
				die("create+write", path);
			lat[i] = now_s() - t0;
		}
		report("create+write 4KiB+close", lat, n, now_s() - total);
	}

	if (phases & PH_MKDIR) {
		total = now_s();
		for (int i = 0; i < n; i++) {
			snprintf(path, sizeof(path), "%s/d%d", base, i);
			t0 = op_begin(i);
			if (mkdir(path, 0755) < 0)
				die("mkdir", path);
			lat[i] = now_s() - t0;
		}
		report("mkdir", lat, n, now_s() - total);
	}

	if (phases & PH_STAT) {
		total = now_s();
		for (int i = 0; i < n * 10; i++) {
			struct stat st;

			snprintf(path, sizeof(path), "%s/f%d", base, i % n);
			t0 = op_begin(i);
			if (stat(path, &st) < 0)
				die("stat", path);
			lat[i] = now_s() - t0;
		}
		report("stat", lat, n * 10, now_s() - total);
	}

	if (phases & PH_RENAME) {
		total = now_s();
		for (int i = 0; i < n; i++) {
			snprintf(path, sizeof(path), "%s/f%d", base, i);
			snprintf(path2, sizeof(path2), "%s/d%d/r%d", base, i, i);
			t0 = op_begin(i);
			if (rename(path, path2) < 0)
				die("rename", path);
			lat[i] = now_s() - t0;
		}
		report("rename", lat, n, now_s() - total);
	}

	if (phases & PH_UNLINK) {
		total = now_s();
		for (int i = 0; i < n; i++) {
			snprintf(path, sizeof(path), "%s/d%d/r%d", base, i, i);
			t0 = op_begin(i);
			if (unlink(path) < 0)
				die("unlink", path);
			lat[i] = now_s() - t0;
		}
		report("unlink", lat, n, now_s() - total);
	}

	if (phases & PH_SEQ) {
		const int mib = 64;
		int fd;

		snprintf(path, sizeof(path), "%s/big", base);
		fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
		if (fd < 0)
			die("open", path);
		t0 = now_s();
		for (int i = 0; i < mib; i++)
			if (write(fd, block, sizeof(block)) != (ssize_t)sizeof(block))
				die("write", path);
		if (fsync(fd) < 0 || close(fd) < 0)
			die("fsync", path);
		total = now_s() - t0;
		printf("%-28s %7d MiB %10.1f MiB/s", "sequential write 1 MiB", mib, mib / total);
		end_line("seqwrite");
		fd = open(path, O_RDONLY);
		if (fd < 0)
			die("open", path);
		t0 = now_s();
		for (int i = 0; i < mib; i++)
			if (read(fd, block, sizeof(block)) != (ssize_t)sizeof(block))
				die("read", path);
		close(fd);
		total = now_s() - t0;
		printf("%-28s %7d MiB %10.1f MiB/s", "sequential read 1 MiB", mib, mib / total);
		end_line("seqread");
		unlink(path);
	}

	if (phases & PH_FSYNC) {
		int fd, m = n_sync;

		snprintf(path, sizeof(path), "%s/sync", base);
		fd = open(path, O_CREAT | O_WRONLY, 0644);
		if (fd < 0)
			die("open", path);
		total = now_s();
		for (int i = 0; i < m; i++) {
			t0 = op_begin(i);
			if (pwrite(fd, block, 4096, (off_t)i * 4096) != 4096 || fsync(fd) < 0)
				die("write+fsync", path);
			lat[i] = now_s() - t0;
		}
		report("write 4KiB+fsync", lat, m, now_s() - total);
		close(fd);
		unlink(path);
	}

	if (tarball) {
		pid_t pid;
		int st;

		snprintf(path, sizeof(path), "%s/tar", base);
		if (mkdir(path, 0755) < 0)
			die("mkdir", path);
		t0 = now_s();
		pid = fork();
		if (pid == 0) {
			execlp("tar", "tar", "xf", tarball, "-C", path, (char *)NULL);
			_exit(127);
		}
		if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st))
			die("tar xf into", path);
		printf("%-28s %10.2f s", "tar x", now_s() - t0);
		end_line("tar");
	}
	if (jobs > 1)
		parallel(base, jobs, n, block);
	fflush(stdout);
	/* Clean up with rm -r: not measured. */
	if (!keep) {
		pid_t pid = fork();

		if (pid == 0) {
			execlp("rm", "rm", "-rf", base, (char *)NULL);
			_exit(127);
		}
		if (pid > 0)
			waitpid(pid, NULL, 0);
		/* The deletions applied before this returns: a run that starts
		 * after a settle (compare.sh) must not meet inodes that the
		 * nodes freed during it (TARGETS.md: ext4 without a journal
		 * skips inodes freed in the last minute, at a cost in CPU). */
		drain_dir = argv[optind];
		drain();
	}
	free(lat);
	free(lat_at);
	if (lat_log)
		fclose(lat_log);
	return 0;
}
