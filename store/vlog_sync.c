/* vlog_sync.c — one thread that fdatasyncs the value log file it is handed,
 * while the store's owner writes RocksDB's synced batch (vlog_sync.h). A
 * thread kept for the store's life rather than one per save: a save of
 * big entries comes every few ms during a large write. */
#include "vlog_sync.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

struct vlog_syncer {
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int fd;	   /* under mu: to sync; -1 when nothing is asked */
	bool done; /* under mu: the sync asked last has finished */
	int err;   /* under mu: its result */
	bool stop;
};

static void *syncer_main(void *arg)
{
	vlog_syncer *y = arg;

	pthread_mutex_lock(&y->mu);
	for (;;) {
		while (y->fd < 0 && !y->stop)
			pthread_cond_wait(&y->cv, &y->mu);
		if (y->fd < 0)
			break; /* stop, and nothing left to sync */
		int fd = y->fd, rv;

		pthread_mutex_unlock(&y->mu);
		rv = fdatasync(fd) == 0 ? 0 : -errno;
		pthread_mutex_lock(&y->mu);
		y->fd = -1;
		y->err = rv;
		y->done = true;
		pthread_cond_broadcast(&y->cv);
	}
	pthread_mutex_unlock(&y->mu);
	return NULL;
}

int vlog_syncer_new(vlog_syncer **out)
{
	vlog_syncer *y = calloc(1, sizeof(*y));
	int rv;

	*out = NULL;
	if (!y)
		return -ENOMEM;
	y->fd = -1;
	y->done = true;
	pthread_mutex_init(&y->mu, NULL);
	pthread_cond_init(&y->cv, NULL);
	rv = pthread_create(&y->th, NULL, syncer_main, y);
	if (rv != 0) {
		pthread_cond_destroy(&y->cv);
		pthread_mutex_destroy(&y->mu);
		free(y);
		return -rv;
	}
	pthread_setname_np(y->th, "raft-vlog-sync");
	*out = y;
	return 0;
}

void vlog_syncer_free(vlog_syncer *y)
{
	if (!y)
		return;
	pthread_mutex_lock(&y->mu);
	y->stop = true;
	pthread_cond_broadcast(&y->cv);
	pthread_mutex_unlock(&y->mu);
	pthread_join(y->th, NULL);
	pthread_cond_destroy(&y->cv);
	pthread_mutex_destroy(&y->mu);
	free(y);
}

void vlog_syncer_start(vlog_syncer *y, int fd)
{
	pthread_mutex_lock(&y->mu);
	y->fd = fd;
	y->done = false;
	pthread_cond_broadcast(&y->cv);
	pthread_mutex_unlock(&y->mu);
}

int vlog_syncer_wait(vlog_syncer *y)
{
	int rv;

	pthread_mutex_lock(&y->mu);
	while (!y->done)
		pthread_cond_wait(&y->cv, &y->mu);
	rv = y->err;
	pthread_mutex_unlock(&y->mu);
	return rv;
}
