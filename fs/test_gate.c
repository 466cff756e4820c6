// test_gate.c — test hooks' switches and gates (test_gate.h).
#include "test_gate.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "runtime_log.h"

static atomic_bool stopping;

// The names test_hook_env warned about: a process reads a handful of hooks
// (some at every use), each warned about once.
#define WARNED_MAX 16
static const char *warned[WARNED_MAX];
static int n_warned;
static pthread_mutex_t warned_mu = PTHREAD_MUTEX_INITIALIZER;

const char *test_hook_env(const char *name)
{
	const char *v = getenv(name);
	bool first = true;

	if (!v)
		return NULL;
	pthread_mutex_lock(&warned_mu);
	for (int i = 0; i < n_warned && first; i++)
		first = strcmp(warned[i], name) != 0;
	if (first && n_warned < WARNED_MAX)
		warned[n_warned++] = name;
	pthread_mutex_unlock(&warned_mu);
	if (first)
		rlog_write(RLOG_ERR, "WARNING: test hook %s=%s is on (tests only)", name, v);
	return v;
}

void test_gate_stop(void)
{
	atomic_store(&stopping, true);
}

static void mark_reached(const char *gate)
{
	char reached[4096];
	int fd;

	snprintf(reached, sizeof(reached), "%s.reached", gate);
	if ((fd = open(reached, O_CREAT | O_WRONLY | O_CLOEXEC, 0644)) >= 0)
		close(fd);
}

void test_gate_wait(const char *gate)
{
	struct timespec nap = {0, 5 * 1000 * 1000}, start, now;

	if (!gate || atomic_load(&stopping) || access(gate, F_OK) != 0)
		return;
	mark_reached(gate);
	clock_gettime(CLOCK_MONOTONIC, &start);
	while (access(gate, F_OK) == 0 && !atomic_load(&stopping)) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec - start.tv_sec >= TEST_GATE_MAX_S) {
			rlog_write(RLOG_ERR,
				   "WARNING: test gate %s still there after %d s: going on", gate,
				   TEST_GATE_MAX_S);
			return;
		}
		nanosleep(&nap, NULL);
	}
}

bool test_gate_closed(const char *gate)
{
	if (!gate || atomic_load(&stopping) || access(gate, F_OK) != 0)
		return false;
	mark_reached(gate);
	return true;
}
