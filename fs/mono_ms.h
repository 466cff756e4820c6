/* mono_ms.h — the monotonic clock in milliseconds, for deadlines and
 * durations within one process (not wall time, and not comparable between
 * processes or machines). One definition for fs/, which had a copy of it in
 * every file that waits for something. */
#ifndef RAFTFS_MONO_MS_H
#define RAFTFS_MONO_MS_H

#include <stdint.h>
#include <time.h>

static inline int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
