/* snap_node.h — the filesystem state machine's snapshot hooks for the node
 * runtime (node_sm.snapshot / node_sm.restore in consensus/node.h), over
 * the images of fs/sm_snapshot.h, streamed. */
#ifndef RAFTFS_FS_SNAP_NODE_H
#define RAFTFS_FS_SNAP_NODE_H

#include <stddef.h>
#include <stdint.h>

#include "sm.h"
#include "sm_snapshot.h"

/* node_sm.snapshot: writes an image of sm at its applied index through
 * sink(arg, buf, len), piece by piece (never the whole image at once; the
 * runtime streams the pieces into its store). Apply thread, between two
 * applies: apply waits for the whole image (the pause is logged with its
 * duration). 0 or a negative errno (or the sink's code). */
int snap_node_snapshot(struct sm *sm, sm_snap_sink sink, void *arg);

/* node_sm.snapshot_begin: starts a copy-on-write image of sm at its
 * applied index (fs/sm_snapshot.h): apply pauses only while the metadata
 * is captured (logged with its duration). *job is for the two below.
 * Apply thread, between two applies. 0 or a negative errno. */
int snap_node_begin(struct sm *sm, void **job);

/* node_sm.snapshot_stream: writes the image of job through sink while
 * apply goes on (the runtime's snapshot thread). 0 or a negative errno
 * (or the sink's code). */
int snap_node_stream(void *job, sm_snap_sink sink, void *arg);

/* node_sm.snapshot_end: frees job (NULL allowed). Apply thread, between
 * two applies, or once apply stopped. */
void snap_node_end(void *job);

/* node_sm.restore: replaces sm's state by the image read from
 * src(arg, buf, len), which must be of `index` (Raft §7). Apply thread.
 * 0, -EBADMSG for a corrupt image, the source's code if it failed (the
 * state is untouched either way), or another negative errno. */
int snap_node_restore(struct sm *sm, uint64_t index, sm_snap_source src, void *arg);

#endif
