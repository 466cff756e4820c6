/* plug_bench.c — the wake-ups of a mount's plug (fs/fs_plug.h) under a
 * stream of lazy commands: one thread proposes N 64-byte commands GAP
 * microseconds apart (a mkdir stream; busy-waits the last 60 us of each
 * gap) into a plug with the mount's 1 ms linger whose start costs nothing,
 * and prints the entries started, the proposals that had to wake the
 * flusher, and the other threads' (the flusher's) context switches and
 * CPU per command. Usage: plug-bench [N [GAP_US]] (default 3000 200). */
#include <dirent.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "fs_plug.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int started, entries;

static int start(void *ctx, const struct fs_plug_cmd *cmds, unsigned n)
{
	(void)ctx;
	(void)cmds;
	pthread_mutex_lock(&mu);
	started += (int)n;
	entries++;
	pthread_mutex_unlock(&mu);
	return 0;
}

static void fail(void *ctx, void *arg, int err)
{
	(void)ctx;
	(void)arg;
	(void)err;
}

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

/* The context switches and CPU (ns) of this process's threads but self. */
static void others(long self, long *switches, long long *cpu_ns)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;

	*switches = 0;
	*cpu_ns = 0;
	while (d && (e = readdir(d))) {
		char path[300], line[256];
		long v = 0, n = 0;
		long long c = 0;
		FILE *f;

		if (e->d_name[0] == '.' || atol(e->d_name) == self)
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/status", e->d_name);
		if (!(f = fopen(path, "r")))
			continue;
		while (fgets(line, sizeof(line), f)) {
			sscanf(line, "voluntary_ctxt_switches: %ld", &v);
			sscanf(line, "nonvoluntary_ctxt_switches: %ld", &n);
		}
		fclose(f);
		snprintf(path, sizeof(path), "/proc/self/task/%s/schedstat", e->d_name);
		if ((f = fopen(path, "r"))) {
			if (fscanf(f, "%lld", &c) != 1)
				c = 0;
			fclose(f);
		}
		*switches += v + n;
		*cpu_ns += c;
	}
	if (d)
		closedir(d);
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 3000;
	double gap = (argc > 2 ? atof(argv[2]) : 200) / 1e6, t0;
	long self = syscall(SYS_gettid), sw0, sw1;
	long long cpu0, cpu1;
	struct fs_plug *p;
	struct fs_plug_stats st;

	if (n <= 0 || gap < 0 || fs_plug_new(1000, start, fail, NULL, &p)) {
		fprintf(stderr, "usage: plug-bench [N [GAP_US]]\n");
		return 2;
	}
	fs_plug_enable(p, true);
	others(self, &sw0, &cpu0);
	t0 = now_s();
	for (int i = 0; i < n; i++) {
		uint8_t *b = malloc(64);
		double due = t0 + (i + 1) * gap;

		if (!b)
			return 1;
		memset(b, i, 64);
		fs_plug_propose(p, b, 64, NULL, true);
		while (now_s() < due) {
			struct timespec nap = {0, 20000};

			if (due - now_s() > 60e-6)
				nanosleep(&nap, NULL);
		}
	}
	for (;;) {
		pthread_mutex_lock(&mu);
		int k = started;
		pthread_mutex_unlock(&mu);
		if (k == n)
			break;
		usleep(100);
	}
	others(self, &sw1, &cpu1);
	fs_plug_stats(p, &st);
	printf("gap %.0f us: %d commands, %d entries (%.2f each), proposals that woke the "
	       "flusher %.3f, flusher switches %.3f, flusher CPU %.2f us (per command)\n",
	       gap * 1e6, n, entries, (double)n / entries, (double)st.wakes / n,
	       (double)(sw1 - sw0) / n, (cpu1 - cpu0) / 1e3 / n);
	fs_plug_free(p);
	return 0;
}
