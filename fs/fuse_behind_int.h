/* fuse_behind_int.h — what the write-behind files share
 * (fuse_behind_state.c: the tables, the view and the pending commands;
 * fuse_behind_ops.c: the operations answered behind and the reads;
 * fuse_behind_deleg.c: recalls, returns, the returner thread). Not a
 * public API: fuse_behind.h is. */
#ifndef RAFTFS_FUSE_BEHIND_INT_H
#define RAFTFS_FUSE_BEHIND_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "fs_node.h"
#include "fuse_behind.h"
#include "mono_ms.h"

/* Commands in flight before a new write-behind one waits: a fast tar x
 * blocks instead of queueing without limit (each is a few hundred bytes in
 * the node's queues; 1024 cover several commit rounds at full speed). */
#define MAX_PENDING 1024u
/* When a recaller recalls again or revokes, and when a held directory is
 * returned unasked: fuse_grant.h. */

/* Close behind (fs/fuse_close.h): a node none of whose proposals or
 * barriers completed for this long, one outstanding, closes synchronously
 * (fs_node_progressing): a holder cut off from the quorum acknowledges
 * closes for at most this long after its first unanswered proposal. Far
 * above a healthy commit round (0.4-2 ms here), below an election. */
#define CLOSE_LEASE_MS 100

#define BUCKETS 1024

enum dir_state {
	D_HELD,	     /* delegated to this node: write-behind here */
	D_RECALLED,  /* a Recall applied: the returner proposes the Return */
	D_RETURNING, /* Return proposed; synchronous from now on */
	D_GONE,	     /* returned or revoked; kept while commands are pending */
};

/* A directory this mount holds or held, and its pending entry changes. */
struct bh_dir {
	struct bh_dir *next;
	uint64_t id, epoch;
	enum dir_state state;
	unsigned pending; /* write-behind commands changing its entries */
	int64_t mtime_ns; /* the time of the last of them (its mtime/ctime then) */
	/* Its link count in the view while mkdirs/rmdirs in it pend
	 * (nlink_ops of them): the applied count when the first of them was
	 * made, plus theirs. Not the applied count plus their sum: the tree
	 * shows each one as soon as it applied, before its completion. */
	unsigned nlink_ops;
	nlink_t nlink;
};

/* The view of one name of a held directory while commands on it pend: what
 * the last of them leaves there. */
struct bh_name {
	struct bh_name *next;
	uint64_t dir;
	char *name;
	unsigned pending;
	bool present;
	struct stat st; /* when present: the object's predicted attributes */
};

/* An object created, removed or moved by pending commands. */
struct bh_ino {
	struct bh_ino *next;
	uint64_t id;
	unsigned pending;
	bool have_st;	/* created behind: its attributes once everything applied */
	struct stat st; /* (not counting writes in flight: fuse_write_pending) */
	/* Its newest setattr proposed behind while that one pends, and what
	 * that command sets (explicit: cmd_merge.h): the next setattr is
	 * merged into it if it is still held (fuse_behind_setattr). */
	struct bh_op *set_op;
	Fspb__SetAttr set;
	bool dir_st; /* a directory: st is the answer to that setattr */
};

/* One write-behind command in flight. */
struct bh_op {
	struct bh_op *prev, *next; /* in proposal order */
	struct fuse_behind *b;
	uint64_t seq;
	struct bh_dir *dirs[2];
	struct bh_name *names[2];
	struct bh_ino *inos[2];
	int nlink; /* a mkdir (+1) or rmdir (-1) in dirs[0]: one of its nlink_ops */
	char what[96]; /* for the log line of a failure */
};

struct fuse_behind {
	struct fuse_fs *fs;
	uint32_t self;
	struct fs_deleg_sink sink;
	/* Decide-and-propose is one step under `order`, for the FUSE threads
	 * and the returner alike: a command predicted under a delegation is
	 * proposed before that delegation's Return. Completions never take it. */
	pthread_mutex_t order;
	pthread_mutex_t mu; /* everything below */
	pthread_cond_t cv;  /* a command completed or a delegation changed */
	/* A directory was recalled, or stop: the returner's own, so that it
	 * is not woken by every completion (two context switches and the
	 * order lock, taken from the FUSE threads, per command). */
	pthread_cond_t rcv;
	struct bh_dir *dirs[BUCKETS];
	struct bh_name *names[BUCKETS];
	struct bh_ino *inos[BUCKETS];
	struct bh_op *head, *tail;
	uint64_t next_seq;
	unsigned count;
	int err; /* the first failure not yet reported (positive errno) */
	bool stop;
	pthread_t returner;
	struct fuse_grant *grant; /* when to ask for a directory (grant on demand) */
	struct bh_fh *fhs;	  /* handles of fuse_behind_create not closed yet */
	/* Flushes of such handles, and those answered before the commit
	 * (fuse_behind_close_early; logged at the end with RAFTFS_STAGES). */
	uint64_t flushes, flushed_early;
	/* Changes that waited for room under MAX_PENDING, and how long in
	 * all (ns; logged likewise): where a caller's stalls come from. */
	uint64_t full_waits, full_wait_ns;
	/* Directories this mount recalled from other nodes and returned
	 * unasked (idle; logged likewise), and its idle time for that
	 * (fuse_grant_idle; RAFTFS_DELEG_IDLE_MS). fuse_behind_deleg.c. */
	_Atomic uint64_t recalled, idle_returned;
	int64_t idle_ms;
	/* Held directories listings showed, recalled together on the first
	 * look at one (fuse_listed.h), and how many were (logged likewise). */
	struct fuse_listed *listed;
	_Atomic uint64_t recalled_ahead;
};

/* A handle of a file created behind (fuse_behind_create, fuse_behind_fd). */
struct bh_fh {
	struct bh_fh *prev, *next; /* in b->fhs: freed at unmount if never released */
	uint64_t ino;
	int fd;
	/* Close behind: the directory it was created in and that
	 * delegation's epoch; moved: renamed, linked or changed
	 * synchronously since (its close then waits). */
	uint64_t dir, epoch;
	bool moved;
	/* The node's unit opened just before its creation was proposed
	 * (fs_node_unit_begin): its close keeps every command since in one
	 * log entry (fs_node_flush_unit), or waits for their commit. */
	uint64_t mark;
};

/* ---- fuse_behind_state.c ---- */

/* Waits on b->cv (under b->mu) for at most ms milliseconds. */
void bh_wait_ms(struct fuse_behind *b, int64_t ms);
/* Flushes commands the node holds back before waiting on b->cv; drops and
 * retakes b->mu. */
void bh_flush_held(struct fuse_behind *b);

/* The tables, under b->mu. */
struct bh_dir *bh_dir_find(struct fuse_behind *b, uint64_t id);
struct bh_dir *bh_dir_add(struct fuse_behind *b, uint64_t id, uint64_t epoch, enum dir_state st);
void bh_dir_put(struct fuse_behind *b, struct bh_dir *d);
/* The directory if this mount holds it for write-behind, or NULL. */
struct bh_dir *bh_dir_held(struct fuse_behind *b, uint64_t id);
struct bh_name *bh_name_find(struct fuse_behind *b, uint64_t dir, const char *name);
struct bh_ino *bh_ino_find(struct fuse_behind *b, uint64_t id);
/* The entry of id, added if missing (NULL: no memory); freed once nothing
 * pends on it. */
struct bh_ino *bh_ino_get(struct fuse_behind *b, uint64_t id);

/* The view, under b->mu. */
bool bh_ino_busy(struct fuse_behind *b, uint64_t ino, bool entries);
int bh_view_lookup(struct fuse_behind *b, uint64_t parent, const char *name, struct stat *st);
int bh_view_empty(struct fuse_behind *b, uint64_t dir);

/* Pending commands: a completion (also the undo of one not proposed),
 * a new one, what it changes, its proposal. */
void bh_op_done(void *arg, int err);
struct bh_op *bh_op_new(struct fuse_behind *b, const char *verb, uint64_t dir, const char *name);
int bh_op_touch(struct fuse_behind *b, struct bh_op *op, int i, struct bh_dir *d, const char *name,
		const struct stat *st, uint64_t ino, int64_t t);
/* op (touching d as dirs[0]) adds (+1, mkdir) or removes (-1, rmdir) a
 * subdirectory of d: d's link count in the view (fuse_behind_getattr). */
void bh_op_nlink(struct fuse_behind *b, struct bh_op *op, struct bh_dir *d, int delta);
int bh_op_propose(struct fuse_behind *b, struct bh_op *op, Fspb__Command *c);

/* Whether write-behind may be used now at all. */
bool bh_behind_on(struct fuse_behind *b);
/* bh_begin takes the order lock and b->mu once there is room for one more
 * command; bh_end drops both. */
void bh_begin(struct fuse_behind *b);
void bh_end(struct fuse_behind *b);

#endif
