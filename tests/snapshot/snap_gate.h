// A snapshot stream held on a leash: the test hands out one image piece at a time, so applies
// and pieces interleave piece by piece (not exactly: the stream may read the next piece while
// the test applies, so any interleaving must give a correct image).
#ifndef RAFTFS_TESTS_SNAP_GATE_H
#define RAFTFS_TESTS_SNAP_GATE_H

#include <pthread.h>
#include <stdbool.h>

#include "sm_snapshot.h"

// The stream's sink: each piece (a buffer of the image writer) waits for a
// token; the image goes to fd.
struct snap_gate {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int tokens;
	bool open;  // the stream ended: nobody waits any more
	int pieces; // pieces written
	int fd;
	struct sm_snap_job *job;
	int rc; // the stream's result, once open
	pthread_t th;
};

// Starts streaming job into fd (an open image file) on a thread of its own;
// no piece goes out until snap_gate_step. Asserts on failure.
void snap_gate_start(struct snap_gate *g, struct sm_snap_job *job, int fd);

// Lets the stream write one more piece and waits until it reached the sink (or ended).
void snap_gate_step(struct snap_gate *g);

// Whether the stream has ended.
bool snap_gate_done(struct snap_gate *g);

// Lets the stream run to its end, joins it and returns its result.
int snap_gate_finish(struct snap_gate *g);

#endif
