/* kvsm.h — the replicated test state machine: an append-only list of every
 * applied command, with a key/value view ("key=value" commands), kept in
 * DATA/kv/applied.log.
 *
 * It exists to test the node runtime before (and beside) the filesystem:
 * every node's applied.log must end up byte-identical, and every
 * acknowledged command must appear in it exactly once as applied (retries
 * show up as records marked duplicate). One record per applied entry is
 * appended with a single write() and a checksum, so after kill -9 the log is
 * a prefix of what was applied; the applied index and the duplicate table
 * are rebuilt from it at start, so they are always in step with the state.
 * (Not fsynced: a power loss may drop the tail, which is then re-applied
 * from the Raft log.) Its snapshot is the applied log itself; restoring one
 * replaces the file atomically (rename) and rebuilds the rest from it.
 */
#ifndef RAFTFS_KVSM_H
#define RAFTFS_KVSM_H

#include <stdio.h>

#include "node.h"

typedef struct kvsm kvsm;

/* Opens (creating) the state machine in data_dir/kv. 0 or a negative errno
 * with the reason in err. */
int kvsm_open(const char *data_dir, kvsm **out, char *err, size_t errlen);
void kvsm_close(kvsm *k);

/* The node_sm table over k (ctx = k). Queries: "key" answers the key's
 * value (empty if absent). */
void kvsm_iface(kvsm *k, node_sm *out);

/* Prints the applied records of data_dir/kv/applied.log, one per line:
 * "index kind client seq result command" (kind: new, dup, stale, empty).
 * Readable while a node runs. 0 or a negative errno. */
int kvsm_dump(const char *data_dir, FILE *out, char *err, size_t errlen);

#endif
