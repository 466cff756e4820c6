// sm_id_known.h — whether this node's id counter is known to be past every id it handed out before.
#ifndef RAFTFS_FS_SM_ID_KNOWN_H
#define RAFTFS_FS_SM_ID_KNOWN_H

#include <stdbool.h>

struct sm;

// Ids are (node id << 48) | counter, the counter kept in DATA/sm/next_id.
// A node rebuilt from an empty data directory under its old id starts its
// counter afresh and learns the ids it handed out before only as it
// catches up (its creates in the log raise the counter; an installed
// image's high-water marks, sm_id_hw.h). So its counter is known to be
// past them only once it has applied everything committed before some
// moment after its start (a read barrier passed since: the caller's
// check, fs/fuse_fs.c). That is recorded durably here, as DATA/sm/ids_known,
// and lost with the data directory; from then on the durable reservation
// in next_id keeps the counter past every id handed out.

// Whether DATA/sm/ids_known exists (or was recorded by this process).
// Checked on disk until it is found, then remembered. Any thread.
bool sm_ids_known(struct sm *sm);

// Records that the counter is past every id this node handed out before:
// remembered by this process, and DATA/sm/ids_known created and made
// durable. 0, or the negative errno of the file's creation (logged; the
// process remembers it all the same). Any thread.
int sm_ids_mark_known(struct sm *sm);

#endif
