// sm_image.h — what the files of the state machine's snapshot images share
// (fs/sm_image_*.c; the public surface is fs/sm_snapshot.h): the image's
// format, its checksummed writer and reader, the copy-on-write job. Not for
// use outside them.
//
// Image format (all integers little-endian, as this machine writes them):
//   header  "RFSSNAP1" | version u32 | index u64 | dedup_len u64 | dedup table
//           | [version 2: n u32 | n x (node u32 | bound u64): the id
//           high-water marks, fs/sm_id_hw.h; version 1 images, made before
//           them, still install]
//   'D'     id u64 | parent u64 | name_len u16 | name | attrs
//           directories, each after its parent (the root: id 1, parent 0, "")
//   'F'     id u64 | attrs | [symlink: target_len u32 | target]
//           | n_links u32 | n_links x (parent u64 | name_len u16 | name)
//           | [regular: extents (offset u64 | len u64 | bytes), ended by len 0]
//           every other object; an orphan (open but unlinked) has no link
//   'E'     end | checksum u64 (FNV-1a 64 of every byte before it)
//   attrs = mode u32 | uid u32 | gid u32 | rdev u64 | size u64 | mtime_ns i64
//           | ctime_ns i64 (replicated) | n_xattrs u32 | n x (name_len u16 |
//           name | value_len u32 | value)   (user-visible xattrs,
//           trusted.raftfs.released of an orphan, trusted.raftfs.deleg of a
//           delegated directory, trusted.raftfs.starts of the root:
//           fs/sm_starts.h; an older binary installs it as any xattr)
//
// Installing builds DATA/snap/new/{tree,ids,sm} from the image, then
// DATA/snap/INSTALL (durable) says "the new state wins": tree/, ids/ and sm/
// are moved to DATA/snap/old/ and the new ones into place. Recovery after a
// crash: with the marker, finish the moves (each is a rename, redone only if
// not done); without it, drop DATA/snap/new. Either way DATA/snap/old goes.
#ifndef RAFTFS_SM_IMAGE_H
#define RAFTFS_SM_IMAGE_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sm_id_hw.h"
#include "sm_snapshot.h"
#include "tree_map.h"

#define SNAP_MAGIC "RFSSNAP1"
#define SNAP_VERSION 2u // written; 1 is still read
#define BUF_BYTES (256u << 10)
#define EXTENT_MAX (1u << 20)
#define XATTR_LIST_MAX_BYTES 65536
#define XATTR_VALUE_MAX_BYTES 65536
#define DEDUP_MAGIC 0x44505552u // DATA/sm/dedup, as sm.c writes it
#define ID_HEX_FMT "%016llx"
#define FNV_OFFSET 0xcbf29ce484222325ULL

// The image as it is written: buffered, hashed (FNV-1a 64), handed to sink
// a buffer at a time; the first failure sticks in err.
struct img_writer {
	sm_snap_sink sink;
	void *arg;
	uint8_t *buf; // BUF_BYTES
	size_t used;
	uint64_t hash;
	int err;
};

// The image as it is read back: from src, hashed, the first failure (or
// -EBADMSG for a short image) sticking in err.
struct img_reader {
	sm_snap_source src;
	void *arg;
	uint8_t *buf; // BUF_BYTES
	size_t pos, len;
	uint64_t hash;
	int err;
};

// ---- the copy-on-write job (begun in sm_image_make.c, metadata in sm_image_meta.c,
// contents in sm_image_cow.c) ----
//
// An image is exactly the state at the index of its begin, although apply
// goes on while it is made. sm_snapshot_begin (apply thread, between two
// applies) records only the index and the duplicate table and installs two
// hooks: O(1), the one pause of apply. sm_snapshot_stream (another thread)
// then walks the tree as it is now: directories breadth first, each
// listing giving its children's names (so names and parents are the ones
// at the index), then every other object, found in DATA/ids, with its
// extents. What apply changes before the walk got there was saved first:
//
//  * metadata (sm's meta hook, before a command changes an object's
//    attributes or xattrs, a directory's entries, or deletes an object):
//    if the walk has not taken that object yet, its pre-image (attrs,
//    xattrs, symlink target; a directory's listing) goes to the job's
//    spool, and the walk takes the pre-image instead of the live object.
//    An object created after the index is noted (born) and skipped: no
//    listing the walk reads names it (its directory changed, so the walk
//    reads that directory's pre-image), only DATA/ids does.
//  * contents (sm's content hook, before a write, truncate, fallocate or
//    the Release that deletes a file's data, with the range that changes):
//    if the walk has not streamed those bytes yet, the part of the range
//    within the file's size at the index that is not saved already is
//    copied aside to the same offsets of DATA/snap/cow/<id> (holes kept);
//    a file about to be deleted gets a last link DATA/snap/cow/<id>.live
//    instead (its data changes no more). The walk reads each byte below
//    the size at the index from the copy if it was saved, else from the
//    live file (or its last link), which holds it unchanged: every change
//    below that size was saved first. So a big file written while an
//    image is made costs only the bytes overwritten, not a copy of it all.
//
// The hooks and the walk take or save an object under job->mu, so an
// object is either taken live before its first change or saved before it;
// a hook waiting for mu goes before the walk's next object (hooks_waiting),
// so apply waits at most for the one object the walk is reading.
//
// A capture (what the walk takes of one object, live or pre-image):
//   blob_len u32 | blob = attrs [| symlink: target_len u32 | target]
//   directories: n u32 | n x (id u64 | type u32 | name_len u16 | name)
// In the spool a pre-image is len u64 | capture.

// Bits of job->done per id.
#define IMG_DONE_META 1u // its record's metadata is taken (the hook saves nothing)
#define IMG_DONE_DATA 2u // its extents are streamed (nothing to copy aside)

// A growable byte buffer (a capture, as the walk takes it).
struct img_buf {
	uint8_t *data;
	size_t len, cap;
	int err; // -ENOMEM sticks
};

struct sm_snap_job {
	struct sm *sm;
	uint64_t index;
	uint8_t *dedup; // the duplicate table at index, serialized
	size_t dedup_len;
	struct sm_id_hw hw; // every node's id high-water mark, at begin (>= at index)
	int spool;		// unnamed file in DATA/snap/cow: pre-images
	char cow[PATH_MAX / 2]; // DATA/snap/cow

	pthread_mutex_t mu; // the hooks (apply thread) against the walk
	pthread_cond_t cv;  // a hook is done (the walk waits for hooks_waiting == 0)
	int hooks_waiting;  // atomic: hooks waiting for mu
	// Under mu:
	struct tree_map born;	// id -> 1: created after the index, not in the image
	struct tree_map done;	// id -> IMG_DONE_* bits
	struct tree_map pre;	// id -> spool offset + 1 of its pre-image
	struct tree_map saved; // id -> struct img_cow_file *: what its content hook saved
	uint64_t stream_id;    // the file whose extents the walk streams (0: none)
	uint64_t stream_off;   // ... and how far: bytes below are in the image
	uint64_t spool_end;
	struct img_buf hbuf;   // the hook's capture
	char *xbuf, *vbuf;     // listxattr names, one value (captures)
	uint64_t pres, copies; // pre-images saved, files with bytes copied aside
	uint64_t copied_bytes; // bytes copied aside
	bool finished;	       // the walk is over: the hooks do nothing
	int err;	       // a failed pre-image or copy voids the image
};

// The job's lock: the walk's side (waits while a hook is waiting), the
// hooks' side (goes first), and the release of either.
void img_lock_walk(struct sm_snap_job *j);
void img_lock_hook(struct sm_snap_job *j);
void img_unlock(struct sm_snap_job *j);

// Appends to b (b->err set on failure); img_buf_free frees its data.
void img_buf_put(struct img_buf *b, const void *data, size_t len);
void img_buf_free(struct img_buf *b);

// Under the walk's lock: what the image holds of object id at the index,
// into out (replaced): its pre-image if a hook saved one, else its live
// state; marks it taken. *skip (and 0) if it was created after the index
// or is taken already. 0 or a negative errno.
int img_take(struct sm_snap_job *j, uint64_t id, struct img_buf *out, bool *skip);

// The ids the hooks saved a pre-image of that the walk has not taken
// (objects deleted since the index before the walk got to them), into a
// malloc'd array *ids of *n. Under the walk's lock. 0 or -ENOMEM.
int img_untaken(struct sm_snap_job *j, uint64_t **ids, size_t *n);

// sm's meta hook while an image is made (arg the job): object id is about
// to change (created: about to be made). Saves its pre-image unless the
// walk has taken it already (sm_image_meta.c).
void img_meta_hook(void *arg, uint64_t id, bool created);

// Writes the extents of regular file id below size (its size at the index,
// from its capture) to w, ending with a zero length: each byte from the copy
// aside if its hook saved it, else from the live file; then it counts as
// streamed. data holds EXTENT_MAX bytes (sm_image_cow.c).
int img_stream_extents(struct sm_snap_job *j, struct img_writer *w, uint8_t *data, uint64_t id,
		       uint64_t size);

// Frees what the content hook saved (the job's saved map); under the walk's
// lock or once nothing runs.
void img_cow_free(struct sm_snap_job *j);

// FNV-1a 64 of data, continued from h.
uint64_t img_fnv(uint64_t h, const void *data, size_t len);

// Writing: img_w_flush hands what is buffered to the sink; the others
// append (integers in this machine's order, a name as u16 length + bytes).
void img_w_flush(struct img_writer *w);
void img_w_put(struct img_writer *w, const void *data, size_t len);
void img_w_u8(struct img_writer *w, uint8_t v);
void img_w_u16(struct img_writer *w, uint16_t v);
void img_w_u32(struct img_writer *w, uint32_t v);
void img_w_u64(struct img_writer *w, uint64_t v);
void img_w_name(struct img_writer *w, const char *name);

// Reading: img_r_get_raw reads len bytes (hashed unless !hashed); the
// others read hashed values (0 once r->err is set). img_r_name reads a
// name (1..255 bytes, or empty if may_be_empty; no '/', not . or ..) into
// out[256]. Each returns or sets r->err.
int img_r_fill(struct img_reader *r);
int img_r_get_raw(struct img_reader *r, void *out, size_t len, bool hashed);
int img_r_get(struct img_reader *r, void *out, size_t len);
uint8_t img_r_u8(struct img_reader *r);
uint16_t img_r_u16(struct img_reader *r);
uint32_t img_r_u32(struct img_reader *r);
uint64_t img_r_u64(struct img_reader *r);
int img_r_name(struct img_reader *r, char *out, bool may_be_empty);

// Removes path and everything under it (absent is fine; failures logged).
void img_rm_tree(const char *path);
// fsync of a file or directory by path: 0 or -errno.
int img_fsync_path(const char *path);
// A monotonic clock in ms, for the logged timings.
double img_now_ms(void);
// Whether path exists (lstat).
bool img_exists(const char *path);

// The content hook of an image being streamed (sm_set_content_hook, arg
// the job): before apply changes [off, off + len) of file id, copies aside
// what of it the image still needs; before the file is deleted, links it
// aside (sm_image_cow.c).
void img_cow_hook(void *arg, uint64_t id, uint64_t off, uint64_t len, bool gone);

#endif
