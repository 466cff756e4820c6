/* fuse_grant.h — when a mount should ask for the delegation of a directory
 * it did not make (grant on demand, fs/README-sm.md "Delegations"): after
 * it changed the directory's entries synchronously several times in a
 * short while (cp or tar x into an existing tree, a program filling a
 * directory another node made), and not soon after its delegation of that
 * directory was recalled — two mounts working in one directory then settle
 * on neither holding it instead of passing it back and forth. Pure
 * bookkeeping: the caller proposes the Grant; time comes in as an
 * argument. */
#ifndef RAFTFS_FUSE_GRANT_H
#define RAFTFS_FUSE_GRANT_H

#include <stdbool.h>
#include <stdint.h>

/* This many synchronous entry changes of one directory nobody holds ... */
#define FUSE_GRANT_AFTER 8u
/* ... within this many milliseconds: ask for it. */
#define FUSE_GRANT_WINDOW_MS 2000
/* After a recall of this mount's delegation of a directory, it does not
 * ask again for this long, doubled at each further recall up to the max. */
#define FUSE_GRANT_BACKOFF_MS 2000
#define FUSE_GRANT_BACKOFF_MAX_MS 60000
/* Directories remembered at most (older quiet ones are dropped first). */
#define FUSE_GRANT_DIRS_MAX 4096u

struct fuse_grant;

/* 0 or -ENOMEM. */
int fuse_grant_new(struct fuse_grant **out);
void fuse_grant_free(struct fuse_grant *g);

/* This mount is about to change dir's entries synchronously (nobody holds
 * it) at now_ms: true when it should propose a Grant of dir now (then the
 * count starts again). Thread-safe. */
bool fuse_grant_note(struct fuse_grant *g, uint64_t dir, int64_t now_ms);

/* This mount's delegation of dir was recalled at now_ms: no Grant of it is
 * asked for during the back-off. Thread-safe, does not block (apply
 * thread). */
void fuse_grant_recalled(struct fuse_grant *g, uint64_t dir, int64_t now_ms);

#endif
