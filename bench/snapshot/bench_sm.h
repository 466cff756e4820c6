/* bench_sm.h — what the snapshot benches share: commands applied straight
 * to a state machine (no cluster), and the removal of a bench's tree. */
#ifndef RAFTFS_BENCH_SM_H
#define RAFTFS_BENCH_SM_H

#include <stddef.h>
#include <stdint.h>

#include "fs.pb-c.h"

struct sm;

/* Applies c as the next entry, stamped with a clock that moves 1 µs per
 * command: 0, or -1 with a line on stderr naming the op and the failure
 * (also when the command's result is an errno). */
int bench_apply(struct sm *sm, Fspb__Command *c);

/* An empty regular file name in directory parent, with id ino. */
int bench_create(struct sm *sm, uint64_t parent, const char *name, uint64_t ino);

/* len bytes of data at off of file ino. */
int bench_write(struct sm *sm, uint64_t ino, uint64_t off, const void *data, size_t len);

/* Removes the tree at path (what a run made), ignoring errors. */
void bench_rm_tree(const char *path);

#endif
