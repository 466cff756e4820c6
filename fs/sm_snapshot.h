// Snapshot images of the filesystem state machine: make one, install one beside the live tree.
#ifndef RAFTFS_FS_SM_SNAPSHOT_H
#define RAFTFS_FS_SM_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "sm.h"

// An image is one self-contained byte stream (format at the top of
// sm_image.h; made in sm_image_make.c and sm_image_cow.c, installed by
// sm_image_install.c): the applied index, the duplicate table, every directory
// (parent before child), every other object with all its names (hard links
// stay links; an orphan has none), attributes, replicated ctime, user
// xattrs, symlink target and the data extents of regular files (holes stay
// holes), and last a 64-bit checksum of everything before it. It is
// streamed, never held whole in memory, so a multi-GB tree costs disk, not
// heap.

// Where an image is written to: fn is called with consecutive pieces of it.
// Returns 0 or a negative errno (stops the image).
typedef int (*sm_snap_sink)(void *arg, const void *buf, size_t len);

// Where an image is read from: fn fills buf with up to len bytes and returns
// the count (0 at the end) or a negative errno.
typedef ssize_t (*sm_snap_source)(void *arg, void *buf, size_t len);

// Writes an image of sm as of sm_applied_index() to sink: begin, stream and
// end below, in one go. The caller must hold apply still for the duration
// (call it on the apply thread, between two applies); reads may go on
// concurrently. *index is the image's index. -EBUSY if a command is
// half-applied (redo pending) or an image job is under way, sm_fault() if
// faulty.
int sm_snapshot_make(struct sm *sm, sm_snap_sink sink, void *arg, uint64_t *index);

// An image made while apply goes on (copy-on-write): apply pauses only for
// sm_snapshot_begin, which records everything but the contents of regular
// files; the contents are read by sm_snapshot_stream from the live files,
// except for a file apply is about to change first, which is copied aside
// (DATA/snap/cow) just before (sm's content hook), so the image is exactly
// the state at the index of begin.
struct sm_snap_job;

// Apply thread, between two applies: starts an image of sm as of
// sm_applied_index() (*index), spooled to an unnamed file in DATA/snap/cow
// and watched by sm's content hook until sm_snapshot_end. The metadata
// costs O(number of objects) here; file contents cost nothing until
// streamed or changed. On success *out is the job (end it with
// sm_snapshot_end). -EBUSY if a command is half-applied or a job exists,
// sm_fault() if faulty, or another negative errno.
int sm_snapshot_begin(struct sm *sm, struct sm_snap_job **out, uint64_t *index);

// Any one thread (not the apply thread: apply may go on meanwhile), once per
// job: writes the image to sink. 0, the sink's code, or a negative errno
// (also when a copy aside failed).
int sm_snapshot_stream(struct sm_snap_job *job, sm_snap_sink sink, void *arg);

// Apply thread, between two applies (or while nothing applies): stops
// watching, drops the copies and frees job (NULL is allowed). Whether or
// not it was streamed. sm_snapshot_install refuses (-EBUSY) until then.
void sm_snapshot_end(struct sm_snap_job *job);

// Replaces the whole state of the open state machine sm by the image read
// from src (Raft §7: a follower too far behind installs the leader's
// snapshot). The image is checked (checksum, structure) while it is built
// into DATA/snap/new beside the live tree; then a durable marker is written
// and tree/, ids/ and sm/ are swapped in by renames, under sm's write lock,
// and the in-memory tables are reloaded. A crash at any instant leaves
// either the old state or (once the marker is durable) the new one, which
// sm_snapshot_recover() completes. The node-local id counter is kept.
// Call on the apply thread. Returns 0, -EBADMSG for a corrupt or truncated
// image (the live state is untouched), or another negative errno.
int sm_snapshot_install(struct sm *sm, sm_snap_source src, void *arg);

// Test hook: hook(sm, arg) is called by sm_snapshot_install once the new
// state is swapped in, with the tree's write lock still held (what a FUSE
// thread that does not take that lock, e.g. one allocating an id, may see
// then). NULL removes it. Not thread-safe: set it while no install runs.
void sm_snapshot_set_swap_hook(void (*hook)(struct sm *sm, void *arg), void *arg);

// Bytes of images read by sm_snapshot_install in this process so far, for
// progress reports while a big image is installed (fs/svc_start.h). Any
// thread.
uint64_t sm_snapshot_install_progress(void);

// Completes or discards an interrupted install in data_dir: to be called
// before sm_open. 0 or a negative errno.
int sm_snapshot_recover(const char *data_dir);

// An sm_snap_sink / sm_snap_source over a file descriptor (arg: int *).
int sm_snap_fd_sink(void *arg, const void *buf, size_t len);
ssize_t sm_snap_fd_source(void *arg, void *buf, size_t len);

#endif
