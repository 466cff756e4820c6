/* fuse_inval.h — what the kernel of this mount has cached, and the thread
 * that invalidates it when applied commands change the tree.
 *
 * Why a thread: a notify call may need a lock the kernel holds while one of
 * our FUSE requests waits for an apply; calling it from the apply thread
 * (or from a request handler) could deadlock. So the apply thread only
 * queues; one thread makes the calls. Only inodes this mount handed to the
 * kernel (lookup count > 0, dropped by forget) are invalidated. */
#ifndef RAFTFS_FUSE_INVAL_H
#define RAFTFS_FUSE_INVAL_H

#include <stdbool.h>
#include <stdint.h>

#include "fs.pb-c.h"

struct fuse_session;
struct sm;
struct fuse_inval;

/* Before an apply: ids a command will detach (the unlinked or replaced
 * object, the renamed one), looked up before the tree changes. */
struct fuse_inval_pre {
	uint64_t a; /* unlink: the child; rename: the moved object */
	uint64_t b; /* rename: the object at the new name, if any */
	/* a (b) is a non-directory with another name left after the command:
	 * its name goes by inval_entry, not notify_delete, which would set the
	 * kernel's link count to 0 (a later link() of another name: ENOENT). */
	bool a_linked, b_linked;
};

/* Creates the tracker and starts its thread. 0 or a negative errno. */
int fuse_inval_new(struct fuse_inval **out);

/* Stops the thread (dropping what is queued) and frees. NULL is allowed. */
void fuse_inval_free(struct fuse_inval *v);

/* The session notifications go to; NULL until mounted (nothing is queued
 * while NULL). */
void fuse_inval_set_session(struct fuse_inval *v, struct fuse_session *se);

/* The kernel got n more references to id (an entry reply). */
void fuse_inval_ref(struct fuse_inval *v, uint64_t id, uint64_t n);

/* The kernel forgot n references to id. */
void fuse_inval_unref(struct fuse_inval *v, uint64_t id, uint64_t n);

/* Fills pre from the state before c is applied (apply thread). */
void fuse_inval_prepare(struct fuse_inval *v, struct sm *sm, const Fspb__Command *c,
			struct fuse_inval_pre *pre);

/* c was applied with result 0: queues the invalidations of what it changed. */
void fuse_inval_applied(struct fuse_inval *v, const Fspb__Command *c,
			const struct fuse_inval_pre *pre);

/* A snapshot is about to replace the whole tree: the names the kernel may
 * hold (every entry of every directory it knows, read from the tree before
 * the install). Owned by the caller until passed to fuse_inval_restored. */
struct fuse_inval_item;
struct fuse_inval_item *fuse_inval_names_before_restore(struct fuse_inval *v, struct sm *sm);

/* The snapshot is installed: queues the invalidation of those names and of
 * the attributes and pages of every inode the kernel holds; takes names
 * (NULL allowed). */
void fuse_inval_restored(struct fuse_inval *v, struct fuse_inval_item *names);

/* fn(arg) is called by fuse_inval_restored (apply thread), after a
 * snapshot replaced the tree, e.g. so the node releases the orphans the
 * image brought that it holds no handle on. NULL: none. Set before the
 * node applies, cleared before arg goes. */
void fuse_inval_set_restore_hook(struct fuse_inval *v, void (*fn)(void *arg), void *arg);

/* Queues the invalidation of name in parent, whatever changed (tests: the
 * never-answered mkdir of fuse_ops.c). */
void fuse_inval_entry(struct fuse_inval *v, uint64_t parent, const char *name);

/* Grants applied on this node so far. Counted under the lock that a
 * lookup count is taken under, with the grant's own invalidation (which
 * skips a directory the kernel does not know): a reply that took its
 * count and then finds this unchanged since before it read the
 * attributes has no grant between the two that went unseen. */
uint64_t fuse_inval_grants(struct fuse_inval *v);

/* A ticket for everything queued so far... */
uint64_t fuse_inval_mark(struct fuse_inval *v);

/* The same, after queueing the invalidation of id's attributes whether or
 * not it is known: a reply computed before an apply may have handed the
 * kernel attributes the apply's invalidation missed (the reference was
 * counted after the apply looked). */
uint64_t fuse_inval_attr_mark(struct fuse_inval *v, uint64_t id);

/* ...and waits until the thread handled it (close-to-open: an open is
 * answered only once the kernel forgot what changed before it). A grant's
 * invalidation of a directory this mount counts a lookup of but the kernel
 * does not have yet (a lookup's reply on its way) is handled once the
 * kernel made the inode and dropped its attributes (up to 1 s). */
void fuse_inval_wait(struct fuse_inval *v, uint64_t mark);

/* Test hook (RAFTFS_TEST_REPLY_GATE=FILE; nothing when it is off):
 * reply_entry, its last look at the grants taken, waits while FILE exists
 * and then until the thread sent every grant's invalidation queued
 * before the call to the kernel once (one waits at the same gate), so
 * that a grant applied there reaches the kernel before the reply makes the
 * inode (tests/mount/mount_grant_inflight.sh): once, whether or not the kernel had the
 * inode, or is retrying one the kernel answered ENOENT (which may wait for
 * the caller's reply: the items after it wait for it too). Only those: an
 * entry invalidation of a directory a waiting lookup is in waits for the
 * lookup's reply in the kernel (the directory's lock). Gives up after
 * TEST_GATE_MAX_S (logged): an item queued before a grant's waits for the
 * kernel like that too. */
void fuse_inval_test_reply_gate(struct fuse_inval *v);

#endif
