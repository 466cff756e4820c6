/* snap_node.h — the filesystem state machine's snapshot hooks for the node
 * runtime (node_sm.snapshot / node_sm.restore in consensus/node.h), over
 * the images of fs/sm_snapshot.h. */
#ifndef RAFTFS_FS_SNAP_NODE_H
#define RAFTFS_FS_SNAP_NODE_H

#include <stddef.h>
#include <stdint.h>

#include "sm.h"

/* node_sm.snapshot: an image of sm at its applied index into *out
 * (malloc'd, the caller frees). Apply thread, between two applies: apply
 * waits for the whole image (the pause is logged with its duration).
 * 0 or a negative errno. */
int snap_node_snapshot(struct sm *sm, uint8_t **out, size_t *len);

/* node_sm.restore: replaces sm's state by the image data[0..len), which
 * must be of `index` (Raft §7). Apply thread. 0, -EBADMSG for a corrupt
 * image (the state is untouched), or another negative errno. */
int snap_node_restore(struct sm *sm, uint64_t index, const uint8_t *data, size_t len);

#endif
