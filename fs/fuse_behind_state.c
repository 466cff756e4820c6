/* fuse_behind_state.c — write-behind metadata's state: the tables of the
 * directories this mount holds, of names and objects with pending
 * commands, the view (applied tree + pending commands) answers are
 * predicted from, and the pending commands with their first failure. */
#include "fuse_behind_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fs_node.h"
#include "fuse_fs_impl.h"
#include "sm.h"

static unsigned hash_id(uint64_t id)
{
	return (unsigned)((id ^ (id >> 48) ^ (id >> 21)) % BUCKETS);
}

static unsigned hash_name(uint64_t dir, const char *name)
{
	uint64_t h = 1469598103934665603ULL ^ dir;

	for (const char *p = name; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	return (unsigned)(h % BUCKETS);
}

/* Waits on b->cv (under b->mu) for at most ms milliseconds. */
void bh_wait_ms(struct fuse_behind *b, int64_t ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_cond_timedwait(&b->cv, &b->mu, &ts);
}

/* Before waiting on b->cv for pending commands: they may still be held
 * back by the node (fs_node_flush), and would then start only after the
 * linger. Under b->mu, which it drops for the flush (a failed start
 * completes its command on this thread): the caller checks again. */
void bh_flush_held(struct fuse_behind *b)
{
	pthread_mutex_unlock(&b->mu);
	fs_node_flush(b->fs->fsn);
	pthread_mutex_lock(&b->mu);
}

/* ---- tables (under b->mu) ---- */

struct bh_dir *bh_dir_find(struct fuse_behind *b, uint64_t id)
{
	struct bh_dir *d = b->dirs[hash_id(id)];

	while (d && d->id != id)
		d = d->next;
	return d;
}

struct bh_dir *bh_dir_add(struct fuse_behind *b, uint64_t id, uint64_t epoch, enum dir_state st)
{
	struct bh_dir *d = bh_dir_find(b, id);

	if (!d && (d = calloc(1, sizeof(*d)))) {
		d->id = id;
		d->next = b->dirs[hash_id(id)];
		b->dirs[hash_id(id)] = d;
	}
	if (d) {
		d->epoch = epoch;
		d->state = st;
	}
	return d;
}

void bh_dir_put(struct fuse_behind *b, struct bh_dir *d)
{
	struct bh_dir **p = &b->dirs[hash_id(d->id)];

	if (d->pending || d->state != D_GONE)
		return;
	while (*p != d)
		p = &(*p)->next;
	*p = d->next;
	free(d);
}

/* The directory if this mount holds it for write-behind: known from a
 * grant it saw, or (after a restart) from the replicated state — then only
 * a delegation that says how this mount closes now (Deleg.close_behind):
 * one granted while it closed synchronously is not fenced by the others,
 * so no close may be answered early there.
 * None before this node's start command applied here (fs_node_back): a
 * mount that took this node for dead while it was down revokes what it
 * holds at once until that command applies there (fs/fuse_grant.h,
 * fuse_holder_*), and a change answered behind before it would fail at
 * apply. Once it applied here, every Revoke ordered before it applied
 * here too (the directory is no longer held); one ordered after it comes
 * from a recaller that had not applied it yet when it decided, and changes
 * nothing at apply (it names an older start of this node: fs/sm_starts.h;
 * DESIGN.md, Session 13). */
struct bh_dir *bh_dir_held(struct fuse_behind *b, uint64_t id)
{
	struct bh_dir *d;
	uint32_t holder;
	uint64_t epoch;
	bool behind;

	if (!fs_node_back(b->fs->fsn))
		return NULL;
	d = bh_dir_find(b, id);
	if (!d && sm_deleg_mode(b->fs->sm, id, &holder, &epoch, &behind) == 0 &&
	    holder == b->self && behind == fs_node_close_behind(b->fs->fsn))
		d = bh_dir_add(b, id, epoch, D_HELD);
	return d && d->state == D_HELD ? d : NULL;
}

struct bh_name *bh_name_find(struct fuse_behind *b, uint64_t dir, const char *name)
{
	struct bh_name *n = b->names[hash_name(dir, name)];

	while (n && (n->dir != dir || strcmp(n->name, name)))
		n = n->next;
	return n;
}

static struct bh_name *name_get(struct fuse_behind *b, uint64_t dir, const char *name)
{
	struct bh_name *n = bh_name_find(b, dir, name);
	unsigned h = hash_name(dir, name);

	if (n)
		return n;
	n = calloc(1, sizeof(*n));
	if (n && !(n->name = strdup(name))) {
		free(n);
		n = NULL;
	}
	if (n) {
		n->dir = dir;
		n->next = b->names[h];
		b->names[h] = n;
	}
	return n;
}

static void name_put(struct fuse_behind *b, struct bh_name *n)
{
	struct bh_name **p = &b->names[hash_name(n->dir, n->name)];

	if (n->pending)
		return;
	while (*p != n)
		p = &(*p)->next;
	*p = n->next;
	free(n->name);
	free(n);
}

struct bh_ino *bh_ino_find(struct fuse_behind *b, uint64_t id)
{
	struct bh_ino *i = b->inos[hash_id(id)];

	while (i && i->id != id)
		i = i->next;
	return i;
}

struct bh_ino *bh_ino_get(struct fuse_behind *b, uint64_t id)
{
	struct bh_ino *i = bh_ino_find(b, id);

	if (!i && (i = calloc(1, sizeof(*i)))) {
		i->id = id;
		i->next = b->inos[hash_id(id)];
		b->inos[hash_id(id)] = i;
	}
	return i;
}

static void ino_put(struct fuse_behind *b, struct bh_ino *i)
{
	struct bh_ino **p = &b->inos[hash_id(i->id)];

	if (i->pending)
		return;
	while (*p != i)
		p = &(*p)->next;
	*p = i->next;
	free(i);
}

/* ---- the view ---- */

/* Whether ino has pending commands of its own, or entry changes. Under mu. */
bool bh_ino_busy(struct fuse_behind *b, uint64_t ino, bool entries)
{
	struct bh_ino *i = bh_ino_find(b, ino);
	struct bh_dir *d = entries ? bh_dir_find(b, ino) : NULL;

	return (i && i->pending) || (d && d->pending);
}

/* What parent/name holds in this mount's view: 1 with st, 0 if absent, or
 * a negative errno. Under b->mu; parent is held, so only this mount's
 * pending commands change it. */
int bh_view_lookup(struct fuse_behind *b, uint64_t parent, const char *name, struct stat *st)
{
	struct bh_name *n = bh_name_find(b, parent, name);
	int rc;

	if (n && n->pending) {
		if (n->present)
			*st = n->st;
		return n->present;
	}
	rc = sm_lookup(b->fs->sm, parent, name, st);
	if (rc == -ENOENT)
		return 0;
	return rc < 0 ? rc : 1;
}

struct empty_scan {
	struct fuse_behind *b;
	uint64_t dir;
	bool found;
};

static int empty_entry(void *arg, const char *name, const struct stat *st, off_t next)
{
	struct empty_scan *e = arg;
	struct bh_name *n;

	(void)st;
	(void)next;
	if (!strcmp(name, ".") || !strcmp(name, ".."))
		return 0;
	n = bh_name_find(e->b, e->dir, name);
	if (n && n->pending && !n->present)
		return 0; /* removed by a pending command */
	e->found = true;
	return 1;
}

/* Whether held directory dir is empty in the view: 1, 0 or a negative errno. */
int bh_view_empty(struct fuse_behind *b, uint64_t dir)
{
	struct empty_scan e = {b, dir, false};
	int rc;

	for (unsigned i = 0; i < BUCKETS; i++)
		for (struct bh_name *n = b->names[i]; n; n = n->next)
			if (n->dir == dir && n->pending && n->present)
				return 0;
	rc = sm_readdir(b->fs->sm, dir, 0, false, empty_entry, &e);
	if (rc < 0 && rc != -ENOENT)
		return rc;
	return !e.found;
}

/* ---- pending commands ---- */

/* Records a failure (the first is kept for the next close/fsync). Under mu. */
static void note_failure(struct fuse_behind *b, const char *what, int err)
{
	/* EREMOTE: the delegation ended (revoked) before the command applied. */
	int shown = err == SM_RESULT_DELEGATED ? EIO : err;

	fprintf(stderr, "raftfs: write-behind %s failed: %s%s\n", what, strerror(err),
		err == SM_RESULT_DELEGATED ? " (the directory's delegation was revoked)" : "");
	if (!b->err)
		b->err = shown;
}

void bh_op_done(void *arg, int err)
{
	struct bh_op *op = arg;
	struct fuse_behind *b = op->b;

	pthread_mutex_lock(&b->mu);
	if (err)
		note_failure(b, op->what, err);
	/* Applied: the tree shows it now, and the view's count ends with the
	 * last of them (every earlier one applied before). Failed: it never
	 * will. */
	if (op->nlink) {
		if (err)
			op->dirs[0]->nlink = (nlink_t)((long)op->dirs[0]->nlink - op->nlink);
		op->dirs[0]->nlink_ops--;
	}
	for (int i = 0; i < 2; i++) {
		struct bh_dir *d = op->dirs[i];

		if (op->names[i]) {
			op->names[i]->pending--;
			name_put(b, op->names[i]);
		}
		if (op->inos[i]) {
			if (op->inos[i]->set_op == op)
				op->inos[i]->set_op = NULL;
			op->inos[i]->pending--;
			ino_put(b, op->inos[i]);
		}
		if (d && --d->pending == 0)
			bh_dir_put(b, d);
	}
	if (op->prev)
		op->prev->next = op->next;
	else
		b->head = op->next;
	if (op->next)
		op->next->prev = op->prev;
	else
		b->tail = op->prev;
	b->count--;
	pthread_cond_broadcast(&b->cv);
	pthread_mutex_unlock(&b->mu);
	free(op);
}

/* A new pending command (under mu): counted in flight, in order. */
struct bh_op *bh_op_new(struct fuse_behind *b, const char *verb, uint64_t dir, const char *name)
{
	struct bh_op *op = calloc(1, sizeof(*op));

	if (!op)
		return NULL;
	op->b = b;
	op->seq = b->next_seq++;
	snprintf(op->what, sizeof(op->what), "%s %016llx/%s", verb, (unsigned long long)dir, name);
	op->prev = b->tail;
	if (b->tail)
		b->tail->next = op;
	else
		b->head = op;
	b->tail = op;
	b->count++;
	return op;
}

/* Adds what op changes: entries of dir d (i = 0 or 1), the name there
 * (present with st, or absent), the object ino. */
int bh_op_touch(struct fuse_behind *b, struct bh_op *op, int i, struct bh_dir *d, const char *name,
		const struct stat *st, uint64_t ino, int64_t t)
{
	struct bh_name *n = name_get(b, d->id, name);
	struct bh_ino *in = ino ? bh_ino_get(b, ino) : NULL;

	if (!n || (ino && !in)) {
		if (n)
			name_put(b, n);
		return -ENOMEM;
	}
	n->pending++;
	n->present = st != NULL;
	if (st)
		n->st = *st;
	op->names[i] = n;
	if (in) {
		in->pending++;
		op->inos[i] = in;
		if (st && st->st_ino == ino && !S_ISDIR(st->st_mode) && in->pending == 1) {
			in->have_st = true; /* a new object: nothing else pends on it */
			in->st = *st;
		} else {
			in->have_st = false;
		}
	}
	d->pending++;
	d->mtime_ns = t;
	op->dirs[i] = d;
	return 0;
}

void bh_op_nlink(struct fuse_behind *b, struct bh_op *op, struct bh_dir *d, int delta)
{
	struct stat st;

	/* None pending: every earlier one's completion ran, so the tree has
	 * them all. Not there yet: d's own mkdir is pending (a new directory
	 * has 2). */
	if (d->nlink_ops == 0)
		d->nlink = sm_getattr(b->fs->sm, d->id, &st) == 0 ? st.st_nlink : 2;
	d->nlink = (nlink_t)((long)d->nlink + delta);
	d->nlink_ops++;
	op->nlink = delta;
}

/* Proposes c as op's command (under order, not mu). On failure, undoes op
 * as a completion with that error would, and returns it. */
int bh_op_propose(struct fuse_behind *b, struct bh_op *op, Fspb__Command *c)
{
	int rc;

	c->node = b->self;
	c->behind = true;
	rc = fs_node_propose(b->fs->fsn, c, bh_op_done, op);
	if (rc) {
		/* Not proposed: the caller answers the error (none logged). */
		pthread_mutex_lock(&b->mu);
		if (op->nlink)
			op->dirs[0]->nlink = (nlink_t)((long)op->dirs[0]->nlink - op->nlink);
		pthread_mutex_unlock(&b->mu);
		bh_op_done(op, 0);
	}
	return rc;
}

/* Whether write-behind may be used now at all: configured, not
 * linearizable, and the node committed recently (no leader, no quorum:
 * everything synchronous). */
bool bh_behind_on(struct fuse_behind *b)
{
	struct fuse_fs *fs = b->fs;

	/* linearizable: a change answered is applied (every other mount's
	 * next stat sees it): nothing is answered before. */
	return fs_node_write_behind(fs->fsn) && !fs->cfg.linearizable &&
	       !fs_node_stalled(fs->fsn) && !atomic_load(&fs->degraded);
}

/* Takes the order lock once there is room for one more command. */
void bh_begin(struct fuse_behind *b)
{
	pthread_mutex_lock(&b->mu);
	if (b->count >= MAX_PENDING) {
		struct timespec t0, t1;

		clock_gettime(CLOCK_MONOTONIC, &t0);
		bh_flush_held(b);
		while (b->count >= MAX_PENDING)
			pthread_cond_wait(&b->cv, &b->mu);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		b->full_waits++;
		b->full_wait_ns +=
		    (uint64_t)((t1.tv_sec - t0.tv_sec) * 1000000000ll + (t1.tv_nsec - t0.tv_nsec));
	}
	pthread_mutex_unlock(&b->mu);
	pthread_mutex_lock(&b->order);
	pthread_mutex_lock(&b->mu);
}

void bh_end(struct fuse_behind *b)
{
	pthread_mutex_unlock(&b->mu);
	pthread_mutex_unlock(&b->order);
}
