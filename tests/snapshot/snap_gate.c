// A snapshot stream held on a leash (snap_gate.h).
#include "snap_gate.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

static int gated_sink(void *arg, const void *buf, size_t len)
{
	struct snap_gate *g = arg;

	pthread_mutex_lock(&g->mu);
	while (!g->open && g->tokens == 0)
		pthread_cond_wait(&g->cv, &g->mu);
	if (!g->open)
		g->tokens--;
	g->pieces++;
	pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->mu);
	return sm_snap_fd_sink(&g->fd, buf, len);
}

static void *stream_main(void *arg)
{
	struct snap_gate *g = arg;
	int rc = sm_snapshot_stream(g->job, gated_sink, g);

	pthread_mutex_lock(&g->mu);
	g->rc = rc;
	g->open = true; // done: the applier waits for nothing more
	pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->mu);
	return NULL;
}

void snap_gate_start(struct snap_gate *g, struct sm_snap_job *job, int fd)
{
	pthread_mutex_init(&g->mu, NULL);
	pthread_cond_init(&g->cv, NULL);
	g->tokens = 0;
	g->open = false;
	g->pieces = 0;
	g->fd = fd;
	g->job = job;
	g->rc = 0;
	assert_int_equal(pthread_create(&g->th, NULL, stream_main, g), 0);
}

void snap_gate_step(struct snap_gate *g)
{
	pthread_mutex_lock(&g->mu);
	int want = g->pieces + 1;

	g->tokens++;
	pthread_cond_broadcast(&g->cv);
	while (!g->open && g->pieces < want)
		pthread_cond_wait(&g->cv, &g->mu);
	pthread_mutex_unlock(&g->mu);
}

bool snap_gate_done(struct snap_gate *g)
{
	pthread_mutex_lock(&g->mu);
	bool done = g->open;

	pthread_mutex_unlock(&g->mu);
	return done;
}

int snap_gate_finish(struct snap_gate *g)
{
	pthread_mutex_lock(&g->mu);
	g->open = true;
	pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->mu);
	assert_int_equal(pthread_join(g->th, NULL), 0);
	pthread_mutex_destroy(&g->mu);
	pthread_cond_destroy(&g->cv);
	return g->rc;
}
