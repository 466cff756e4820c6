/* fuse_fs_impl.h — what the FUSE operation files (fuse_fs.c, fuse_ops.c,
 * fuse_io.c) share: the mount's state, pending requests, replies and
 * barriers. Not a public API. */
#ifndef RAFTFS_FUSE_FS_IMPL_H
#define RAFTFS_FUSE_FS_IMPL_H

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "fs.pb-c.h"
#include "fuse_ops.h"

#define OPEN_BUCKETS 1024

struct fuse_write;

/* Handles open on this mount, per id: an unlinked file is released only when
 * its last local handle closes. */
struct open_count {
	struct open_count *next;
	uint64_t id;
	unsigned count;
	int fd; /* a read fd of the file, for stat after a Release */
};

struct fuse_fs {
	struct fs_node *fsn;
	struct sm *sm;
	struct fuse_inval *inv;
	struct fuse_ops_cfg cfg;
	struct fuse_session *se;
	const char *test_hang_mkdir; /* RAFTFS_TEST_HANG_MKDIR (fuse_ops.c), or NULL */
	/* RAFTFS_TEST_LOOKUP_GATE=FILE: a lookup that read its attributes
	 * waits while FILE exists, after making FILE.reached, so that a test
	 * can have a grant apply between a lookup's fences and its reply
	 * (tests/mount/mount_grant_slip.sh); or NULL. */
	const char *test_lookup_gate;
	/* RAFTFS_TEST_LIST_GATE=FILE: a listing read waits while FILE exists
	 * before its final fence, so that a test can have a subdirectory it
	 * read granted to another node there
	 * (tests/mount/mount_grant_listed.sh); or NULL. */
	const char *test_list_gate;
	atomic_bool degraded; /* no quorum seen: reads do not wait for barriers */
	atomic_bool probing;  /* a background barrier is in flight */
	/* A lookup, getattr or listing came since the returner last looked:
	 * the mount is in use, so the directories it holds are not returned
	 * after the short idle time (fuse_grant_idle, fuse_behind_deleg.c). */
	atomic_bool used;
	pthread_mutex_t mu;
	struct open_count *open[OPEN_BUCKETS];
	struct fuse_write *wr; /* writes in flight (fuse_write.h): made by init */
	struct fuse_behind *bh; /* write-behind metadata (fuse_behind.h): made by init */
	/* Entry changes refused because a delegation was granted between
	 * their recall and their apply: the retrier recalls and proposes them
	 * again (fuse_fs.c). */
	pthread_mutex_t rmu;
	pthread_cond_t rcv;
	struct pending *retry_head;
	bool retry_stop;
	bool retrier_running;
	pthread_t retrier;
};

enum reply_kind { RP_NONE, RP_ENTRY, RP_ATTR, RP_CREATE };

/* A request waiting for its command(s) to be applied. */
struct pending {
	struct fuse_fs *fs;
	fuse_req_t req;
	enum reply_kind kind;
	uint64_t id;	  /* entry/attr/create: the object answered about */
	uint64_t parent;  /* entry/create: where the name is, if id is gone */
	char *name;	  /* owned */
	uint64_t release; /* after success: release it if it became an orphan */
	struct fuse_file_info fi;
	bool existing;	  /* create: opening a file another mount created */
	bool truncated;	  /* create: that file was truncated (O_TRUNC) */
	atomic_int parts; /* commands still in flight */
	atomic_int err;	  /* the first error of any part */
	uint8_t *cmd;	  /* an entry change: its command packed, for a retry */
	size_t cmd_len;
	unsigned tries;
	struct pending *next; /* in the retrier's queue */
};

/* The mount state of a request. */
struct fuse_fs *ffs_of(fuse_req_t req);

/* Notes that a read request came (fuse_fs.used): a load, and a store
 * only when the flag was clear, so the FUSE threads do not bounce its
 * cache line at every stat. */
static inline void ffs_note_use(struct fuse_fs *fs)
{
	if (!atomic_load_explicit(&fs->used, memory_order_relaxed))
		atomic_store_explicit(&fs->used, true, memory_order_relaxed);
}

/* Open handles: count one more (keeping a dup of fd) / one less (the count
 * left); whether id is open here; stat of an id released while open here.
 * ffs_open_inc is -ESTALE, counting nothing, for an orphan this mount holds
 * no handle on (its name went before this open; this node released it or
 * is about to): the open must then fail with ESTALE. */
int ffs_open_inc(struct fuse_fs *fs, uint64_t id, int fd);
/* ffs_open_inc for an open holding a pin on id (fs_release_pin): counts the
 * handle even on an orphan, which the pin kept this node from releasing. */
int ffs_open_pinned(struct fuse_fs *fs, uint64_t id, int fd);
unsigned ffs_open_dec(struct fuse_fs *fs, uint64_t id);
bool ffs_is_open(struct fuse_fs *fs, uint64_t id);
int ffs_orphan_stat(struct fuse_fs *fs, uint64_t id, struct stat *st);

/* The orphan rule (README): proposes Release of id if its last name is gone
 * and this mount holds no handle on it. */
void ffs_maybe_release(struct fuse_fs *fs, uint64_t id);

/* Replies: an entry for st (counting the kernel's reference), the attributes
 * of id. */
void ffs_fill_entry(struct fuse_fs *fs, struct fuse_entry_param *e, const struct stat *st);
void ffs_reply_entry_st(struct fuse_fs *fs, fuse_req_t req, const struct stat *st);
void ffs_reply_attr_id(struct fuse_fs *fs, fuse_req_t req, uint64_t id);

/* A pending request (replies ENOMEM itself and returns NULL on failure). */
struct pending *ffs_pending_new(fuse_req_t req, enum reply_kind kind);
/* One part of p completed with err (0 or a positive errno); the last
 * answers the request. */
void ffs_part_done(void *arg, int err);
/* Proposes one more part of p (p->parts must count it already). */
void ffs_propose_part(struct pending *p, const Fspb__Command *c);
/* Proposes c as the only part of a new pending request. */
void ffs_submit(fuse_req_t req, Fspb__Command *c, enum reply_kind kind, uint64_t id,
		uint64_t parent, const char *name, uint64_t release);

/* A command with the caller's uid/gid and the proposer's clock. */
void ffs_cmd_init(Fspb__Command *c, fuse_req_t req);
/* Starts the command that makes a new object under parent: a fresh *id, the
 * caller's identity and clock (ffs_cmd_init), and a set-gid parent's group
 * (directories also get the bit in *mode). 0, or replies the error and
 * returns it (negative). */
int ffs_new_node_cmd(struct fuse_fs *fs, fuse_req_t req, uint64_t parent, Fspb__Command *c,
		     uint64_t *id, uint32_t *mode);

/* Stops the retrier (fuse_fs.c): what it still has is answered EIO. Before
 * the session goes (op_destroy); fuse_fs_free does it too. */
void ffs_retry_stop(struct fuse_fs *fs);

/* Whether this node hands out ids without waiting (sm_id_known.h): until
 * then its first create waits for a barrier (ffs_new_node_cmd), which the
 * write-behind paths must not do under their locks (the apply thread
 * takes them): they leave such a create to the synchronous path. */
bool ffs_ids_known_now(struct fuse_fs *fs);

/* Read barrier on this thread (see fuse_fs.c): 0 or a positive errno. */
int ffs_barrier(struct fuse_fs *fs);

/* Sets direct I/O on an O_APPEND or write-only handle being opened or
 * created (fuse_io.c says why: whole appends, fewer requests). */
void ffs_direct_writes(struct fuse_file_info *fi);

/* The file operations (fuse_io.c; flush, release and fsync: fuse_close.c). */
void ffs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void ffs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		struct fuse_file_info *fi);
void ffs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
void ffs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
	       struct fuse_file_info *fi);
void ffs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void ffs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void ffs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
void ffs_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
		   struct fuse_file_info *fi);
void ffs_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info *fi);
void ffs_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
			 struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
			 struct fuse_file_info *fi_out, size_t len, int flags);

#endif
