/* write_pace.h — how many bytes of big writes a mount may have in flight:
 * a window that follows the queueing delay its writes see (LEDBAT, RFC
 * 6817), so a big writer keeps the depth an idle pipeline needs and yields
 * to other mounts' commands when the log queues (fs/fuse_write.c,
 * "Pacing"). Pure arithmetic with time as an argument: no locking (the
 * caller's), no clock. Header-only: the state is a few integers and the
 * functions are called once per write. */
#ifndef RAFTFS_WRITE_PACE_H
#define RAFTFS_WRITE_PACE_H

#include <stddef.h>
#include <stdint.h>

/* Writes smaller than this do not count: small ones are held back for
 * company (fs_plug.h), and their latency says nothing of the queue. */
#define WRITE_PACE_MIN_BYTES (256u << 10)

/* The lowest latency of the last one to two periods is the pipeline's own:
 * a machine that got slower is followed, late. */
#define WRITE_PACE_PERIOD_NS 60000000000ll

struct write_pace {
	size_t window;		     /* bytes allowed in flight; 0: no pacing */
	size_t floor, max;	     /* the window stays within [floor, max] */
	int64_t target;		     /* queueing delay aimed at, ns */
	int64_t base_now, base_prev; /* lowest latency this period and the last; 0: none */
	int64_t since;		     /* when this period began */
};

/* Starts at start bytes (clamped to [floor, max]); target_ns <= 0 turns
 * pacing off (window 0). */
static inline void write_pace_init(struct write_pace *p, size_t start, size_t floor, size_t max,
				   int64_t target_ns)
{
	*p = (struct write_pace){.floor = floor, .max = max, .target = target_ns};
	if (target_ns > 0)
		p->window = start < floor ? floor : start > max ? max : start;
}

/* The pipeline's own latency as known at now (0: nothing seen yet). */
static inline int64_t write_pace_base(const struct write_pace *p)
{
	return p->base_prev && (!p->base_now || p->base_prev < p->base_now) ? p->base_prev
									    : p->base_now;
}

/* A write of bytes took lat ns from proposal to apply, done at now: the
 * window moves toward the target, in proportion to how far off it is, by
 * at most half the write's bytes (LEDBAT's gain: about its own size per
 * round trip when far off, little near the target). */
static inline void write_pace_sample(struct write_pace *p, size_t bytes, int64_t lat, int64_t now)
{
	int64_t queued, step;

	if (!p->window || bytes < WRITE_PACE_MIN_BYTES || lat <= 0)
		return;
	if (now - p->since > WRITE_PACE_PERIOD_NS) {
		p->base_prev = p->base_now;
		p->base_now = 0;
		p->since = now;
	}
	if (!p->base_now || lat < p->base_now)
		p->base_now = lat;
	queued = lat - write_pace_base(p);
	step = (int64_t)(bytes / 2) * (p->target - queued) / p->target;
	if (step < -(int64_t)(bytes / 2))
		step = -(int64_t)(bytes / 2);
	if (step < 0 && p->window < p->floor + (size_t)-step)
		p->window = p->floor;
	else if (step > 0 && p->window + (size_t)step > p->max)
		p->window = p->max;
	else
		p->window = (size_t)((int64_t)p->window + step);
}

#endif
