/* fz.h — the random-operation tester's shared state: the trees it drives, open handles, the op log. */
#ifndef RAFTFS_TESTS_FUZZ_FZ_H
#define RAFTFS_TESTS_FUZZ_FZ_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#define FZ_MAX_MOUNTS 8
#define FZ_MAX_FDS 8
#define FZ_MAX_ENTRIES 512
#define FZ_PATH 256
#define FZ_LOG 48
#define FZ_DESC 200
#define FZ_MAX_FILE (12u << 20) /* keeps three nodes' trees small */

/* What a run compares (README "Consistency" decides what may be compared across mounts). */
enum fz_mode {
	FZ_MODEL, /* every result against a plain local directory */
	FZ_CHAOS, /* no model: shared names with other processes; only faults fail */
};

/* One open handle: the same open(2) on the mount and on the model. */
struct fz_fd {
	bool used;
	int tfd, mfd;	 /* target (mount) and model descriptors; mfd -1 in chaos mode */
	int mount;	 /* the mount tfd was opened on */
	int flags;	 /* open flags */
	bool dirty;	 /* written since the last sync point of its mount */
	bool is_dir, is_fifo;
	char path[FZ_PATH]; /* the name it was opened by (for the log only) */
};

/* An entry of the tree the next operation picks from. */
struct fz_entry {
	char path[FZ_PATH];
	char type; /* 'f' file, 'd' directory, 'l' symlink, 'p' fifo */
};

struct fz {
	enum fz_mode mode;
	uint64_t seed, rng;
	long op, nops;
	int verbose;
	bool gone_ok; /* a mount that goes away (ENOTCONN) ends the run with status 3 */
	bool linearizable; /* the mounts are linearizable: no sync point but fsync */
	int close_only;	   /* close = behind: switching mounts fsyncs no directory (1), nor opens (2) */
	long known_estale, known_moved; /* divergences tolerated, shown in the summary */
	long seek_checked; /* SEEK_DATA/HOLE answers checked against the model's content */

	int nmounts, cur; /* cur: the mount the last operation went through */
	char tpath[FZ_MAX_MOUNTS][FZ_PATH];
	int troot[FZ_MAX_MOUNTS]; /* O_PATH descriptors of the work directories */
	char mpath[FZ_PATH];
	int mroot;

	struct fz_fd fds[FZ_MAX_FDS];
	struct fz_entry ent[FZ_MAX_ENTRIES];
	int nent;

	char desc[FZ_DESC];	    /* the operation being run */
	char log[FZ_LOG][FZ_DESC]; /* the ones before it */

	const char *durable; /* manifest of fsynced files (chaos and model mode) */
	long ndurable;
	long counts[64]; /* per operation kind */
	long errs[160];	 /* per errno seen from the mount */
	long syncs;
	unsigned char *buf, *buf2; /* FZ_MAX_FILE-sized scratch buffers */
};

/* The result of one call on one side: ret, and errno when ret < 0. */
struct fz_res {
	long ret;
	int err;
};

/* fz_res_of: pairs a call's return value with errno (0 on success). */
struct fz_res fz_res_of(long ret);

/* fz_rand: the next pseudo-random number of the run (splitmix64), so a seed replays a run. */
uint64_t fz_rand(struct fz *z);
/* fz_below: uniform in [0, n). */
uint64_t fz_below(struct fz *z, uint64_t n);
/* fz_size: a write or read size from 1 B to 4 MiB, small ones most often. */
size_t fz_size(struct fz *z);
/* fz_fill: deterministic bytes for a write (a function of the seed and the op number). */
void fz_fill(struct fz *z, unsigned char *b, size_t n);

/* fz_describe: sets the description of the operation about to run (printf-style). */
void fz_describe(struct fz *z, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* fz_fail: reports a mismatch or fault with the op log so far; returns -1. */
int fz_fail(struct fz *z, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* fz_gone: errno says the mount went away (its node was killed) and this
 * run may end so (gone_ok): the caller returns 3, whichever call saw it. */
bool fz_gone(const struct fz *z);
/* fz_check: compares the mount's and the model's results of one call; 0 when
 * they agree (in chaos mode: when the mount's result is no fault), -1 after
 * fz_fail, 3 when the mount went away and gone_ok is set. */
int fz_check(struct fz *z, const char *what, struct fz_res t, struct fz_res m);
/* fz_note: counts the mount's result (errno histogram, chaos faults). */
void fz_note(struct fz *z, struct fz_res t);


/* fz_scan: lists the work tree (the model's; the mount's in chaos mode) into z->ent. */
int fz_scan(struct fz *z);
/* fz_pick: an existing path whose type is in types ("fdlp"), else a random one. */
const char *fz_pick(struct fz *z, const char *types, char *out);
/* fz_newpath: a random path of depth 1-3 over a few short names (collisions wanted). */
const char *fz_newpath(struct fz *z, char *out);

/* fz_path_op: runs one random operation by path (kind chosen by the caller). */
int fz_path_op(struct fz *z, int kind);
/* fz_pick_fd: a random open slot, or -1 when none is open. */
int fz_pick_fd(struct fz *z);
/* fz_fd_op: runs one random operation of the kind on the handle in slot (on its own mount). */
int fz_fd_op(struct fz *z, int kind, int slot);
/* fz_close_all: closes every handle (both sides), comparing close's results. */
int fz_close_all(struct fz *z);
/* fz_sync_fds: fsyncs the dirty handles of mount m (close-to-open: what a
 * user does before another mount is to see the data). */
int fz_sync_fds(struct fz *z, int m);

/* fz_compare_trees: compares the mount m's work tree with the model's:
 * names, types, modes, owners, sizes, link counts and hard-link groups,
 * content, symlink targets, user xattrs. */
int fz_compare_trees(struct fz *z, int m);
/* fz_durable_write: creates a new file in .fzdur, writes, fsyncs and closes
 * it; on success appends "name size fnv64" to the manifest. */
int fz_durable_write(struct fz *z);
/* fz_durable_check: every file listed in manifest holds what was fsynced (under dir). */
int fz_durable_check(const char *manifest, const char *dir);

/* Operation kinds (index into fz_op_names). */
enum fz_kind {
	K_OPEN, K_CLOSE, K_WRITE, K_READ, K_FTRUNC, K_FALLOC, K_LSEEK, K_COPY, K_FSYNC, K_FSTAT,
	K_STAT, K_TRUNC, K_MKDIR, K_RMDIR, K_UNLINK, K_RENAME, K_LINK, K_SYMLINK, K_READLINK,
	K_CHMOD, K_CHOWN, K_UTIMENS, K_SETXATTR, K_GETXATTR, K_LISTXATTR, K_RMXATTR, K_READDIR,
	K_MKFIFO, K_DURABLE, K_NKINDS
};
extern const char *const fz_op_names[K_NKINDS];

#endif
