// sm_image.h — what the files of the state machine's snapshot images share
// (fs/sm_image_*.c; the public surface is fs/sm_snapshot.h): the image's
// format, its checksummed writer and reader, the copy-on-write job. Not for
// use outside them.
//
// Image format (all integers little-endian, as this machine writes them):
//   header  "RFSSNAP1" | version u32 | index u64 | dedup_len u64 | dedup table
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
//           delegated directory)
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

#include "sm_snapshot.h"
#include "tree_map.h"

#define SNAP_MAGIC "RFSSNAP1"
#define SNAP_VERSION 1u
#define BUF_BYTES (256u << 10)
#define EXTENT_MAX (1u << 20)
#define XATTR_LIST_MAX_BYTES 65536
#define XATTR_VALUE_MAX_BYTES 65536
#define DEDUP_MAGIC 0x44505552u // DATA/sm/dedup, as sm.c writes it
#define ID_HEX_FMT "%016llx"
#define SPOOL_BUF (256u << 10)
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

// ---- the copy-on-write job (sm_image_make.c begins it, sm_image_cow.c streams it) ----
//
// An image is made in two steps, so that apply pauses only for the first.
// sm_snapshot_begin (apply thread, between two applies) writes everything
// but the contents of regular files (names, attributes, xattrs, symlink
// targets, the duplicate table) into a spool file, with a marker where each
// file's extents go, and starts watching content changes (sm's content
// hook). sm_snapshot_stream (another thread, while apply goes on) copies the
// spool to the sink and reads each file's extents from the live file;
// unless apply was about to change that file before the stream got past
// it: the hook has then copied the file aside first (DATA/snap/cow/<id>,
// holes kept), as it was at the image's index, and the stream reads the
// copy. The hook and the stream hold job->mu around every piece they copy
// or read, so no piece is read half-changed: a file is either unchanged
// since the index, or read from its copy.
//
// Spool records: 'B' len u32 | len image bytes, or 'X' id u64 (the extents of
// file id go here).

struct sm_snap_job {
	struct sm *sm;
	uint64_t index;
	int spool;     // unnamed file in DATA/snap/cow
	uint8_t *sbuf; // spool writes, buffered (begin only)
	size_t sused;
	char cow[PATH_MAX / 2]; // DATA/snap/cow
	struct tree_map files;	// id -> ordinal + 1 of each regular file in the image
	uint64_t n_files;

	pthread_mutex_t mu;	// the hook (apply thread) against the stream
	struct tree_map copied; // under mu: id -> (void *)1 once copied aside
	uint64_t next;		// under mu: ordinal of the file the stream is at
	uint64_t copies;	// under mu: files copied aside
	int err;		// under mu: a failed copy voids the image
};

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
// the job): before apply changes file id, copies it aside if the stream
// has not passed it yet (sm_image_cow.c).
void img_cow_hook(void *arg, uint64_t id);

#endif
