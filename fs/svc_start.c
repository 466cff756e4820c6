/* svc_start.c — progress reports to the service manager during a start, and
 * the wait for the log replay. */
#include "svc_start.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime_log.h"
#include "sm_reset.h"
#include "sm_snapshot.h"
#include "svc_notify.h"
#include "test_gate.h"

struct svc_start {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned tick_ms;
	uint64_t extend_us;
	/* Under mu: */
	bool stop;
	node *n;	   /* set once the log replay is waited for */
	uint64_t from, to; /* the replay: applied at its start, the target */
};

/* Bytes as "1.2 GiB", "340.0 MiB", "12.0 KiB". */
static void human(uint64_t b, char *out, size_t len)
{
	const char *unit[] = {"KiB", "MiB", "GiB", "TiB"};
	double v = (double)b / 1024;
	size_t u = 0;

	while (v >= 1024 && u + 1 < sizeof(unit) / sizeof(unit[0])) {
		v /= 1024;
		u++;
	}
	snprintf(out, len, "%.1f %s", v, unit[u]);
}

/* One report: what the start does now, and more time if it moved since
 * *last (a position: image bytes read, or entries applied). */
static void report(struct svc_start *s, uint64_t *last)
{
	char msg[200], size[32];
	uint64_t pos;
	int rc;

	pthread_mutex_lock(&s->mu);
	if (s->n) {
		pos = node_applied(s->n);
		snprintf(msg, sizeof(msg), "STATUS=replaying the log: %llu of %llu entries",
			 (unsigned long long)(pos > s->from ? pos - s->from : 0),
			 (unsigned long long)(s->to - s->from));
	} else if ((pos = sm_snapshot_install_progress())) {
		human(pos, size, sizeof(size));
		snprintf(msg, sizeof(msg), "STATUS=restoring the stored snapshot: %s read", size);
	} else if ((pos = sm_reset_start_progress())) {
		snprintf(msg, sizeof(msg),
			 "STATUS=opening the data directory: %llu entries of the tree dropped "
			 "after a power loss measured or deleted",
			 (unsigned long long)pos);
	} else {
		snprintf(msg, sizeof(msg), "STATUS=opening the data directory");
	}
	pthread_mutex_unlock(&s->mu);
	if (pos != *last) {
		size_t at = strlen(msg);

		snprintf(msg + at, sizeof(msg) - at, "\nEXTEND_TIMEOUT_USEC=%llu",
			 (unsigned long long)s->extend_us);
		*last = pos;
	}
	rc = svc_notify(msg);
	if (rc < 0)
		rlog_write(RLOG_ERR, "telling the service manager the start's progress: %s",
			   strerror(-rc));
}

static void *reporter(void *arg)
{
	struct svc_start *s = arg;
	uint64_t last = 0;
	struct timespec at;

	pthread_mutex_lock(&s->mu);
	while (!s->stop) {
		clock_gettime(CLOCK_MONOTONIC, &at);
		at.tv_sec += s->tick_ms / 1000;
		at.tv_nsec += (long)(s->tick_ms % 1000) * 1000000;
		if (at.tv_nsec >= 1000000000) {
			at.tv_sec++;
			at.tv_nsec -= 1000000000;
		}
		while (!s->stop && pthread_cond_timedwait(&s->cv, &s->mu, &at) != ETIMEDOUT)
			;
		if (s->stop)
			break;
		pthread_mutex_unlock(&s->mu);
		report(s, &last);
		pthread_mutex_lock(&s->mu);
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

int svc_start_begin(unsigned tick_ms, uint64_t extend_us, struct svc_start **out)
{
	const char *sock = getenv("NOTIFY_SOCKET"), *test_tick;
	pthread_condattr_t ca;
	struct svc_start *s;
	int rc;

	*out = NULL;
	if (!sock || !sock[0])
		return 0;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	/* Tests see several ticks in a short replay (tests/reboot). */
	test_tick = test_hook_env("RAFTFS_TEST_START_TICK_MS");
	if (test_tick)
		tick_ms = (unsigned)strtoul(test_tick, NULL, 10);
	s->tick_ms = tick_ms ? tick_ms : 1;
	s->extend_us = extend_us;
	pthread_mutex_init(&s->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cv, &ca);
	pthread_condattr_destroy(&ca);
	rc = pthread_create(&s->thread, NULL, reporter, s);
	if (rc) {
		rlog_write(RLOG_ERR, "start progress reports: a thread: %s", strerror(rc));
		pthread_cond_destroy(&s->cv);
		pthread_mutex_destroy(&s->mu);
		free(s);
		return -rc;
	}
	*out = s;
	return 0;
}

int svc_start_wait_applied(struct svc_start *s, node *n, uint64_t to, const sigset_t *sigs)
{
	struct timespec poll = {0, 20 * 1000 * 1000};
	uint64_t from = node_applied(n);
	struct timespec t0, t1;
	int sig;

	if (from >= to) {
		/* Said too, so a log read after a power loss (tests/deploy,
		 * tests/reboot) tells this case from a replay that never ran:
		 * a snapshot at the saved commit index leaves nothing to replay.
		 * Not for a node that saved none (a new one). */
		if (to)
			rlog_write(RLOG_INFO,
				   "nothing to replay before serving: applied %llu, saved commit "
				   "index %llu",
				   (unsigned long long)from, (unsigned long long)to);
		return 0;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	rlog_write(RLOG_INFO, "replaying the log up to entry %llu (applied %llu) before serving",
		   (unsigned long long)to, (unsigned long long)from);
	if (s) {
		pthread_mutex_lock(&s->mu);
		s->n = n;
		s->from = from;
		s->to = to;
		pthread_mutex_unlock(&s->mu);
	}
	/* Polled: the apply thread has no hook for this, and 20 ms is nothing
	 * beside a replay (signals are taken here meanwhile, so a stop asked
	 * for during a long replay is not held up). */
	while (node_applied(n) < to) {
		if (node_fault(n))
			return node_fault(n);
		sig = sigtimedwait(sigs, NULL, &poll);
		if (sig > 0 && sig != SIGPIPE)
			return sig;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	rlog_write(RLOG_INFO, "replayed the log up to entry %llu in %.0f ms",
		   (unsigned long long)to,
		   (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
	return 0;
}

void svc_start_end(struct svc_start *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	s->stop = true;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
	pthread_join(s->thread, NULL);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
	free(s);
}
