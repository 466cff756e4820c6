// State machine test helpers: temp dirs, building and applying commands, random sequences.
#ifndef RAFTFS_TESTS_FS_TESTLIB_H
#define RAFTFS_TESTS_FS_TESTLIB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "fs.pb-c.h"
#include "sm.h"

// Creates a fresh directory under $TMPDIR (or /tmp); returns a malloc'd path.
// One a failed test leaves (no tl_rmtree) is removed when the process exits.
char *tl_mkdtemp(void);

// Removes path and everything under it, then frees it. NULL is allowed.
void tl_rmtree(char *path);

// Encodes c; the caller frees the returned buffer.
uint8_t *tl_pack(const Fspb__Command *c, size_t *len);

// Applies c at the next index as client 0, with uid/gid 0 unless set, and a
// time advancing by one microsecond per command (returned through *t if t).
// Fails the test on a local fault. Returns the command's result.
int tl_apply(struct sm *sm, Fspb__Command *c);

// From now on (until called with false) tl_apply and the builders below
// stamp a command that sets no uid or gid with this process's own instead
// of 0, as a node's own mount would (tests of what apply skips for its own
// ids).
void tl_use_own_ids(bool on);

// The time the last tl_apply stamped.
int64_t tl_last_time(void);

// Commands recorded to be applied later (a replay, batches of them):
// while tl_record(l) is on, tl_apply, and so every builder below, packs
// its command into l instead of applying it (their sm may be NULL) and
// returns 0. Command i is stamped with time TL_CMDS_TIME0 + i ms, l's
// node, and l's uid and gid (the caller's ids: the builders set none).
#define TL_CMDS_MAX 64
#define TL_CMDS_TIME0 1600000000000000000LL
struct tl_cmds {
	int n;
	uint8_t *cmd[TL_CMDS_MAX];
	size_t len[TL_CMDS_MAX];
	uint32_t node, uid, gid; // set before recording
};

// Records into l from now on; NULL: tl_apply applies again.
void tl_record(struct tl_cmds *l);

// Frees l's commands; l is empty again (its stamps stay).
void tl_cmds_free(struct tl_cmds *l);

// One-line builders applying a command (or recording it: tl_record); each
// returns the result.
int tl_mknod(struct sm *sm, uint64_t parent, const char *name, uint64_t ino, uint32_t mode);
int tl_mkdir(struct sm *sm, uint64_t parent, const char *name, uint64_t ino, uint32_t mode);
// The Mkdir command tl_mkdir applies, built in c and m (the caller's), for
// a test that applies it otherwise (to several replicas, say).
void tl_mkdir_cmd(Fspb__Command *c, Fspb__Mkdir *m, uint64_t parent, const char *name,
		  uint64_t ino, uint32_t mode);
// A Mkdir (mode 0755) as node `node` proposes it: grant delegates the new
// directory to its maker (Mkdir.grant), close_behind with closes answered
// behind (Mkdir.grant_close_behind).
int tl_mkdir_as(struct sm *sm, uint32_t node, uint64_t parent, const char *name, uint64_t ino,
		bool grant, bool close_behind);
int tl_symlink(struct sm *sm, uint64_t parent, const char *name, uint64_t ino, const char *target);
int tl_link(struct sm *sm, uint64_t ino, uint64_t parent, const char *name);
int tl_unlink(struct sm *sm, uint64_t parent, const char *name, int dir);
int tl_rename(struct sm *sm, uint64_t p, const char *n, uint64_t np, const char *nn,
	      uint32_t flags);
int tl_write(struct sm *sm, uint64_t ino, uint64_t off, const void *data, size_t len);
int tl_setxattr(struct sm *sm, uint64_t ino, const char *name, const char *value, int flags);
int tl_removexattr(struct sm *sm, uint64_t ino, const char *name);
int tl_release(struct sm *sm, uint64_t ino);
int tl_fallocate(struct sm *sm, uint64_t ino, int mode, uint64_t off, uint64_t len);
int tl_setattr(struct sm *sm, const Fspb__SetAttr *s);

// A generated command sequence: entry i is proposed by client[i] with seq[i]
// and min_pending[i] (client 0: no duplicate detection); some entries repeat
// an earlier (client, seq, command) as a retry after a leader change would.
struct tl_seq {
	size_t n;
	uint64_t *client;
	uint64_t *seq;
	uint64_t *min_pending;
	uint8_t **cmd;
	size_t *len;
	char *scratch; // the generator's data dir while it runs (removed by tl_gen_free on failure)
};

// Generates n commands from seed, a mix of every op over a small namespace so
// names collide and errors happen. Deterministic in (seed, n).
void tl_gen(struct tl_seq *s, uint64_t seed, size_t n);

// Frees a generated sequence.
void tl_gen_free(struct tl_seq *s);

// Power-loss tests (fs/sm_reset.h). tl_fake_boot_id writes a boot id no
// machine has into DATA/sm/boot: the next open sees a restarted machine,
// and drops the state unless it was closed cleanly.
void tl_fake_boot_id(const char *dir);

// Whether dir/sub exists (lstat).
bool tl_exists(const char *dir, const char *sub);

// Waits (up to 30 s) for the background deletion of DATA/dropped; whether
// it is gone.
bool tl_dropped_deleted(const char *dir);

// A child process opens dir as node, runs fn(sm, arg) and dies without
// closing, as if the machine then lost power. Fails the test unless the
// open and fn returned 0.
void tl_run_and_die(const char *dir, uint32_t node, int (*fn)(struct sm *sm, void *arg),
		    void *arg);

// An image in memory, for snap_node_snapshot (tl_image_put) and
// snap_node_restore (tl_image_get); the caller frees buf.
struct tl_image {
	uint8_t *buf;
	size_t len, off;
};
int tl_image_put(void *arg, const void *buf, size_t len);
ssize_t tl_image_get(void *arg, void *buf, size_t len);

// Node 1's image of a tree holding directory "img" (id dir) with file "f"
// (id file) in it, at index 2, into path.
void tl_make_image(const char *path, uint64_t dir, uint64_t file);

// Crash tests: runs child(arg, progress) in a forked child, which exits
// with what it returns and writes to progress (a non-blocking pipe) each
// step it completes; the child is SIGKILLed at a random instant (rand(),
// seeded by the caller) within max_delay_us of its first report. Again and
// again, until a child ends by itself (it must exit 0, else the test
// fails) or max_kills were killed. Returns the number of kills. No child
// is left when it returns or fails.
int tl_kill_until_done(int (*child)(void *arg, int progress), void *arg, unsigned max_delay_us,
		       int max_kills);

#endif
