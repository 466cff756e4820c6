/* cmd_merge.h — two commands of one object made back to back as one, with
 * exactly the result of applying them one after the other (fs/apply.c):
 * what a mount's plug (fs_plug.h) merges before they become log entries. */
#ifndef RAFTFS_CMD_MERGE_H
#define RAFTFS_CMD_MERGE_H

#include <stddef.h>

#include <stdbool.h>
#include <stdint.h>

#include "fs.pb-c.h"

/* Rewrites s (a SetAttr stamped with time_ns, the command's clock) so that
 * it no longer depends on that clock: ATIME_NOW/MTIME_NOW become explicit
 * times (the proposer already put its clock in atime_ns/mtime_ns). Applied,
 * it does the same. */
void setattr_explicit(Fspb__SetAttr *s, int64_t time_ns);

/* Whether a and b (explicit, of one object, without a size) can be merged
 * by setattr_merge. A size change (truncate) stays its own command:
 * it changes the content, which the snapshot hooks save per command. */
bool setattr_mergeable(const Fspb__SetAttr *a, const Fspb__SetAttr *b);

/* a := a then b, as one command whose clock is b's (its ctime): later
 * fields win, and a mode a set keeps what b's chown would clear of it
 * (set-user-id, set-group-id when group-executable: apply.c's
 * plan_setattr; not of a directory, dir). Both explicit (setattr_explicit)
 * and mergeable. */
void setattr_merge(Fspb__SetAttr *a, const Fspb__SetAttr *b, bool dir);

/* Whether Write command b, proposed right after Write command a, can be
 * merged by write_merge: the same file and caller (set-id clearing depends
 * on it), neither an append, b starting where a ends, both with data, max_len
 * bytes at most together, and ending far below apply.c's size limit (so that
 * neither could fail alone with EFBIG). */
bool write_mergeable(const Fspb__Command *a, const Fspb__Command *b, size_t max_len);

/* a's data then b's as one Write command: *out is b (caller, clock: its
 * mtime and ctime) with *w as its Write, whose data is copied into buf (the
 * caller's, a's and b's lengths together). */
void write_merge(const Fspb__Command *a, const Fspb__Command *b, Fspb__Command *out,
		 Fspb__Write *w, uint8_t *buf);

#endif
