/* fuse_behind.c — write-behind metadata: the directories this mount holds,
 * the view (applied tree + pending commands) its answers are predicted
 * from, the pending commands and their first failure, recalls both ways. */
#include "fuse_behind.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

#include "fs_node.h"
#include "fuse_fs_impl.h"
#include "fuse_grant.h"
#include "fuse_inval.h"
#include "fuse_write.h"
#include "sm.h"

/* Commands in flight before a new write-behind one waits: a fast tar x
 * blocks instead of queueing without limit (each is a few hundred bytes in
 * the node's queues; 1024 cover several commit rounds at full speed). */
#define MAX_PENDING 1024u
/* A recalled holder has this long to return the directory before it is
 * revoked: it first lets its pending commands apply (up to MAX_PENDING), so
 * a busy but healthy holder must not lose them; a dead one costs this. */
#define REVOKE_AFTER_MS 3000
/* A Recall is proposed again this often while waiting (the holder may have
 * restarted since the last one applied, and missed it). */
#define RECALL_EVERY_MS 500

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
	unsigned pending;  /* write-behind commands changing its entries */
	int64_t mtime_ns;  /* the time of the last of them (its mtime/ctime then) */
	int nlink_delta;   /* subdirectories they add (mkdir) or remove (rmdir) */
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
};

/* One write-behind command in flight. */
struct bh_op {
	struct bh_op *prev, *next; /* in proposal order */
	struct fuse_behind *b;
	uint64_t seq;
	struct bh_dir *dirs[2];
	struct bh_name *names[2];
	struct bh_ino *inos[2];
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
};

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

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits on b->cv (under b->mu) for at most ms milliseconds. */
static void wait_ms(struct fuse_behind *b, int64_t ms)
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
static void flush_held(struct fuse_behind *b)
{
	pthread_mutex_unlock(&b->mu);
	fs_node_flush(b->fs->fsn);
	pthread_mutex_lock(&b->mu);
}

/* ---- tables (under b->mu) ---- */

static struct bh_dir *dir_find(struct fuse_behind *b, uint64_t id)
{
	struct bh_dir *d = b->dirs[hash_id(id)];

	while (d && d->id != id)
		d = d->next;
	return d;
}

static struct bh_dir *dir_add(struct fuse_behind *b, uint64_t id, uint64_t epoch,
			      enum dir_state st)
{
	struct bh_dir *d = dir_find(b, id);

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

static void dir_put(struct fuse_behind *b, struct bh_dir *d)
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
 * grant it saw, or (after a restart) from the replicated state. */
static struct bh_dir *dir_held(struct fuse_behind *b, uint64_t id)
{
	struct bh_dir *d = dir_find(b, id);
	uint32_t holder;
	uint64_t epoch;

	if (!d && sm_deleg(b->fs->sm, id, &holder, &epoch) == 0 && holder == b->self)
		d = dir_add(b, id, epoch, D_HELD);
	return d && d->state == D_HELD ? d : NULL;
}

static struct bh_name *name_find(struct fuse_behind *b, uint64_t dir, const char *name)
{
	struct bh_name *n = b->names[hash_name(dir, name)];

	while (n && (n->dir != dir || strcmp(n->name, name)))
		n = n->next;
	return n;
}

static struct bh_name *name_get(struct fuse_behind *b, uint64_t dir, const char *name)
{
	struct bh_name *n = name_find(b, dir, name);
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

static struct bh_ino *ino_find(struct fuse_behind *b, uint64_t id)
{
	struct bh_ino *i = b->inos[hash_id(id)];

	while (i && i->id != id)
		i = i->next;
	return i;
}

static struct bh_ino *ino_get(struct fuse_behind *b, uint64_t id)
{
	struct bh_ino *i = ino_find(b, id);

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
static bool ino_busy(struct fuse_behind *b, uint64_t ino, bool entries)
{
	struct bh_ino *i = ino_find(b, ino);
	struct bh_dir *d = entries ? dir_find(b, ino) : NULL;

	return (i && i->pending) || (d && d->pending);
}


/* What parent/name holds in this mount's view: 1 with st, 0 if absent, or
 * a negative errno. Under b->mu; parent is held, so only this mount's
 * pending commands change it. */
static int view_lookup(struct fuse_behind *b, uint64_t parent, const char *name, struct stat *st)
{
	struct bh_name *n = name_find(b, parent, name);
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
	n = name_find(e->b, e->dir, name);
	if (n && n->pending && !n->present)
		return 0; /* removed by a pending command */
	e->found = true;
	return 1;
}

/* Whether held directory dir is empty in the view: 1, 0 or a negative errno. */
static int view_empty(struct fuse_behind *b, uint64_t dir)
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

static void op_done(void *arg, int err)
{
	struct bh_op *op = arg;
	struct fuse_behind *b = op->b;

	pthread_mutex_lock(&b->mu);
	if (err)
		note_failure(b, op->what, err);
	for (int i = 0; i < 2; i++) {
		struct bh_dir *d = op->dirs[i];

		if (op->names[i]) {
			op->names[i]->pending--;
			name_put(b, op->names[i]);
		}
		if (op->inos[i]) {
			op->inos[i]->pending--;
			ino_put(b, op->inos[i]);
		}
		if (d && --d->pending == 0) {
			d->nlink_delta = 0;
			dir_put(b, d);
		}
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
static struct bh_op *op_new(struct fuse_behind *b, const char *verb, uint64_t dir,
			    const char *name)
{
	struct bh_op *op = calloc(1, sizeof(*op));

	if (!op)
		return NULL;
	op->b = b;
	op->seq = b->next_seq++;
	snprintf(op->what, sizeof(op->what), "%s %016llx/%s", verb, (unsigned long long)dir,
		 name);
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
static int op_touch(struct fuse_behind *b, struct bh_op *op, int i, struct bh_dir *d,
		    const char *name, const struct stat *st, uint64_t ino, int64_t t)
{
	struct bh_name *n = name_get(b, d->id, name);
	struct bh_ino *in = ino ? ino_get(b, ino) : NULL;

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

/* Proposes c as op's command (under order, not mu). On failure, undoes op
 * as a completion with that error would, and returns it. */
static int op_propose(struct fuse_behind *b, struct bh_op *op, Fspb__Command *c)
{
	int rc;

	c->node = b->self;
	c->behind = true;
	rc = fs_node_propose(b->fs->fsn, c, op_done, op);
	if (rc)
		op_done(op, 0); /* not proposed: the caller answers the error */
	return rc;
}

/* Whether write-behind may be used now at all: configured, not
 * linearizable, and the node committed recently (no leader, no quorum:
 * everything synchronous). */
static bool behind_on(struct fuse_behind *b)
{
	struct fuse_fs *fs = b->fs;

	/* linearizable: a change answered is applied (every other mount's
	 * next stat sees it): nothing is answered before. */
	return fs_node_write_behind(fs->fsn) && !fs->cfg.linearizable &&
	       !fs_node_stalled(fs->fsn) && !atomic_load(&fs->degraded);
}

/* Takes the order lock once there is room for one more command. */
static void begin(struct fuse_behind *b)
{
	pthread_mutex_lock(&b->mu);
	if (b->count >= MAX_PENDING)
		flush_held(b);
	while (b->count >= MAX_PENDING)
		pthread_cond_wait(&b->cv, &b->mu);
	pthread_mutex_unlock(&b->mu);
	pthread_mutex_lock(&b->order);
	pthread_mutex_lock(&b->mu);
}

static void end(struct fuse_behind *b)
{
	pthread_mutex_unlock(&b->mu);
	pthread_mutex_unlock(&b->order);
}

/* The attributes a new object gets when its command applies (apply.c):
 * the proposer's time for all three times, the caller's owner (the group
 * and set-gid bit of a set-gid parent already in c and mode). */
static void predict_new(struct stat *st, uint64_t id, mode_t mode, const Fspb__Command *c,
			off_t size, dev_t rdev)
{
	struct timespec t = {c->time_ns / 1000000000, c->time_ns % 1000000000};

	memset(st, 0, sizeof(*st));
	st->st_ino = id;
	st->st_mode = mode;
	st->st_uid = c->uid;
	st->st_gid = c->gid;
	st->st_nlink = S_ISDIR(mode) ? 2 : 1;
	st->st_size = size;
	st->st_rdev = rdev;
	st->st_blksize = 4096;
	st->st_blocks = S_ISDIR(mode) ? 8 : 0;
	st->st_atim = st->st_mtim = st->st_ctim = t;
}

/* The checks of a name that apply.c makes (tree_check_name). */
static int name_result(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || !strcmp(name, ".") || !strcmp(name, "..") || strchr(name, '/'))
		return EINVAL;
	return n > 255 ? ENAMETOOLONG : 0;
}

/* Creates parent/name as c (built by the caller, without the op) behind:
 * 1 answered, 0 not possible here. st is the prediction. */
static bool create_behind(struct fuse_behind *b, fuse_req_t req, uint64_t parent,
			  const char *name, Fspb__Command *c, const struct stat *st,
			  const char *verb)
{
	struct fuse_fs *fs = b->fs;
	struct bh_dir *d;
	struct bh_op *op;
	struct stat old;
	int rc;

	d = dir_held(b, parent);
	if (!d)
		return false;
	rc = name_result(name);
	if (!rc) {
		rc = view_lookup(b, parent, name, &old);
		rc = rc < 0 ? -rc : rc ? EEXIST : 0;
	}
	if (rc) {
		end(b);
		fuse_reply_err(req, rc);
		return true;
	}
	op = op_new(b, verb, parent, name);
	if (!op || op_touch(b, op, 0, d, name, st, st->st_ino, c->time_ns)) {
		if (op) {
			pthread_mutex_unlock(&b->mu);
			op_done(op, 0);
			pthread_mutex_lock(&b->mu);
		}
		end(b);
		fuse_reply_err(req, ENOMEM);
		return true;
	}
	if (S_ISDIR(st->st_mode)) {
		d->nlink_delta++;
		/* Granted with the mkdir: its own entries are this mount's to
		 * change at once (mkdir -p, tar x of a deep tree). */
		dir_add(b, st->st_ino, 1, D_HELD);
	}
	pthread_mutex_unlock(&b->mu);
	rc = op_propose(b, op, c);
	pthread_mutex_unlock(&b->order);
	if (rc) {
		fuse_reply_err(req, rc);
		return true;
	}
	ffs_reply_entry_st(fs, req, st);
	return true;
}

/* The start of a new object's write-behind creation in parent: room in
 * flight, the locks (begin), the delegation check, then the command's
 * common part and a new id (ffs_new_node_cmd). NEW_NOT_HELD: nothing was
 * done, the caller takes the synchronous path; NEW_ANSWERED: the request
 * got an error; NEW_READY: locks held, finish with finish_new. */
enum new_start { NEW_NOT_HELD, NEW_ANSWERED, NEW_READY };

static enum new_start start_new(struct fuse_behind *b, fuse_req_t req, uint64_t parent,
				Fspb__Command *c, uint64_t *ino, uint32_t *md)
{
	begin(b);
	if (!dir_held(b, parent)) {
		end(b);
		return NEW_NOT_HELD;
	}
	if (ffs_new_node_cmd(b->fs, req, parent, c, ino, md) < 0) {
		end(b);
		return NEW_ANSWERED;
	}
	return NEW_READY;
}

/* Proposes a started creation behind (create_behind); the locks are
 * released on either outcome. */
static bool finish_new(struct fuse_behind *b, fuse_req_t req, uint64_t parent, const char *name,
		       Fspb__Command *c, const struct stat *st, const char *verb)
{
	bool done = create_behind(b, req, parent, name, c, st, verb);

	if (!done)
		end(b);
	return done;
}

bool fuse_behind_mknod(struct fuse_behind *b, fuse_req_t req, uint64_t parent, const char *name,
		       mode_t mode, dev_t rdev)
{
	Fspb__Command c;
	Fspb__Mknod m = FSPB__MKNOD__INIT;
	struct stat st;
	uint32_t md = mode;
	mode_t t = mode & S_IFMT;

	if (!behind_on(b) || (t != S_IFREG && t != S_IFIFO && t != S_IFSOCK && t != S_IFCHR &&
			      t != S_IFBLK))
		return false;
	switch (start_new(b, req, parent, &c, &m.ino, &md)) {
	case NEW_NOT_HELD:
		return false;
	case NEW_ANSWERED:
		return true;
	case NEW_READY:
		break;
	}
	m.parent = parent;
	m.name = (char *)name;
	m.mode = md;
	m.rdev = rdev;
	m.exclusive = true;
	c.op_case = FSPB__COMMAND__OP_MKNOD;
	c.mknod = &m;
	predict_new(&st, m.ino, (md & S_IFMT) | (md & 07777), &c, 0, (dev_t)rdev);
	return finish_new(b, req, parent, name, &c, &st, "mknod");
}

bool fuse_behind_mkdir(struct fuse_behind *b, fuse_req_t req, uint64_t parent, const char *name,
		       mode_t mode)
{
	Fspb__Command c;
	Fspb__Mkdir m = FSPB__MKDIR__INIT;
	struct stat st;
	uint32_t md = S_IFDIR | (mode & 07777);

	if (!behind_on(b))
		return false;
	switch (start_new(b, req, parent, &c, &m.ino, &md)) {
	case NEW_NOT_HELD:
		return false;
	case NEW_ANSWERED:
		return true;
	case NEW_READY:
		break;
	}
	m.parent = parent;
	m.name = (char *)name;
	m.mode = md;
	m.grant = true;
	c.op_case = FSPB__COMMAND__OP_MKDIR;
	c.mkdir = &m;
	predict_new(&st, m.ino, S_IFDIR | (md & 07777), &c, 4096, 0);
	return finish_new(b, req, parent, name, &c, &st, "mkdir");
}

bool fuse_behind_symlink(struct fuse_behind *b, fuse_req_t req, const char *target,
			 uint64_t parent, const char *name)
{
	Fspb__Command c;
	Fspb__Symlink s = FSPB__SYMLINK__INIT;
	struct stat st;
	uint32_t md = S_IFLNK | 0777;
	size_t len = strlen(target);

	/* The results apply.c gives a bad target are left to it. */
	if (!behind_on(b) || len == 0 || len >= PATH_MAX)
		return false;
	switch (start_new(b, req, parent, &c, &s.ino, &md)) {
	case NEW_NOT_HELD:
		return false;
	case NEW_ANSWERED:
		return true;
	case NEW_READY:
		break;
	}
	s.parent = parent;
	s.name = (char *)name;
	s.target = (char *)target;
	c.op_case = FSPB__COMMAND__OP_SYMLINK;
	c.symlink = &s;
	predict_new(&st, s.ino, S_IFLNK | 0777, &c, (off_t)len, 0);
	return finish_new(b, req, parent, name, &c, &st, "symlink");
}

bool fuse_behind_remove(struct fuse_behind *b, fuse_req_t req, uint64_t parent, const char *name,
			bool dir)
{
	Fspb__Command c;
	Fspb__Unlink u = FSPB__UNLINK__INIT;
	struct bh_dir *d, *child = NULL;
	struct bh_op *op;
	struct stat st;
	int rc;

	if (!behind_on(b))
		return false;
	begin(b);
	d = dir_held(b, parent);
	if (!d) {
		end(b);
		return false;
	}
	rc = view_lookup(b, parent, name, &st);
	if (rc < 0 || (rc == 1 && dir && S_ISDIR(st.st_mode) && !(child = dir_held(b, st.st_ino)))) {
		/* A directory this mount does not hold: another node may be
		 * changing it (synchronously, after a recall if needed). */
		end(b);
		return false;
	}
	rc = rc == 0 ? ENOENT : 0;
	if (!rc && dir && !S_ISDIR(st.st_mode))
		rc = ENOTDIR;
	if (!rc && !dir && S_ISDIR(st.st_mode))
		rc = EISDIR;
	if (!rc && dir) {
		rc = view_empty(b, st.st_ino);
		if (rc < 0) {
			end(b);
			return false;
		}
		rc = rc ? 0 : ENOTEMPTY;
	}
	if (rc) {
		end(b);
		fuse_reply_err(req, rc);
		return true;
	}
	ffs_cmd_init(&c, req);
	u.parent = parent;
	u.name = (char *)name;
	u.dir = dir;
	c.op_case = FSPB__COMMAND__OP_UNLINK;
	c.unlink = &u;
	op = op_new(b, dir ? "rmdir" : "unlink", parent, name);
	if (!op || op_touch(b, op, 0, d, name, NULL, st.st_ino, c.time_ns)) {
		if (op) {
			pthread_mutex_unlock(&b->mu);
			op_done(op, 0);
			pthread_mutex_lock(&b->mu);
		}
		end(b);
		fuse_reply_err(req, ENOMEM);
		return true;
	}
	if (child) {
		d->nlink_delta--;
		child->state = D_GONE; /* nothing more goes behind in it */
		dir_put(b, child);
	}
	pthread_mutex_unlock(&b->mu);
	/* The file's own writes are proposed before (per-node order): they
	 * apply while it still has its name. */
	rc = op_propose(b, op, &c);
	pthread_mutex_unlock(&b->order);
	fuse_reply_err(req, rc);
	return true;
}

bool fuse_behind_rename(struct fuse_behind *b, fuse_req_t req, uint64_t parent, const char *name,
			uint64_t newparent, const char *newname, unsigned flags)
{
	Fspb__Command c;
	Fspb__Rename r = FSPB__RENAME__INIT;
	struct bh_dir *d1, *d2;
	struct bh_op *op;
	struct stat src, dst;
	int rc, have_dst;

	/* Files only, plain or NOREPLACE: directories (subtree checks) and
	 * exchanges stay synchronous. */
	if (!behind_on(b) || (flags & ~(unsigned)RENAME_NOREPLACE))
		return false;
	begin(b);
	d1 = dir_held(b, parent);
	d2 = dir_held(b, newparent);
	if (!d1 || !d2) {
		end(b);
		return false;
	}
	rc = view_lookup(b, parent, name, &src);
	have_dst = view_lookup(b, newparent, newname, &dst);
	if (rc < 0 || have_dst < 0 || (rc == 1 && S_ISDIR(src.st_mode)) ||
	    (have_dst == 1 && S_ISDIR(dst.st_mode))) {
		end(b);
		return false;
	}
	rc = rc == 0 ? ENOENT : name_result(newname);
	if (!rc && have_dst && (flags & RENAME_NOREPLACE))
		rc = EEXIST;
	if (!rc && have_dst && dst.st_ino == src.st_ino) {
		/* Two names of one file: POSIX says do nothing (nor do we). */
		end(b);
		fuse_reply_err(req, 0);
		return true;
	}
	if (rc) {
		end(b);
		fuse_reply_err(req, rc);
		return true;
	}
	ffs_cmd_init(&c, req);
	r.parent = parent;
	r.name = (char *)name;
	r.new_parent = newparent;
	r.new_name = (char *)newname;
	r.flags = flags;
	c.op_case = FSPB__COMMAND__OP_RENAME;
	c.rename = &r;
	/* The moved file's ctime changes with the rename. */
	src.st_ctim.tv_sec = c.time_ns / 1000000000;
	src.st_ctim.tv_nsec = c.time_ns % 1000000000;
	op = op_new(b, "rename", parent, name);
	if (!op || op_touch(b, op, 0, d1, name, NULL, src.st_ino, c.time_ns) ||
	    op_touch(b, op, 1, d2, newname, &src, have_dst ? dst.st_ino : 0, c.time_ns)) {
		if (op) {
			pthread_mutex_unlock(&b->mu);
			op_done(op, 0);
			pthread_mutex_lock(&b->mu);
		}
		end(b);
		fuse_reply_err(req, ENOMEM);
		return true;
	}
	pthread_mutex_unlock(&b->mu);
	rc = op_propose(b, op, &c);
	pthread_mutex_unlock(&b->order);
	fuse_reply_err(req, rc);
	return true;
}

/* A handle of a file created behind: its descriptor is opened on first
 * use. Its address, with the top bit set, is the handle (fds are small). */
#define DEFERRED (1ULL << 63)

struct bh_fh {
	struct bh_fh *prev, *next; /* in b->fhs: freed at unmount if never released */
	uint64_t ino;
	int fd;
};

bool fuse_behind_create(struct fuse_behind *b, fuse_req_t req, uint64_t parent, const char *name,
			mode_t mode, struct fuse_file_info *fi)
{
	struct fuse_fs *fs = b->fs;
	Fspb__Command c;
	Fspb__Mknod m = FSPB__MKNOD__INIT;
	struct fuse_entry_param e;
	struct bh_dir *d;
	struct bh_op *op;
	struct bh_fh *h;
	struct stat st, old;
	uint32_t md = S_IFREG | (mode & 07777);
	int rc;

	if (!behind_on(b))
		return false;
	begin(b);
	d = dir_held(b, parent);
	rc = d ? view_lookup(b, parent, name, &old) : -1;
	/* An existing name without O_EXCL opens what is there: the
	 * synchronous way (it waits for this mount's pending commands). */
	if (rc < 0 || (rc == 1 && !(fi->flags & O_EXCL))) {
		end(b);
		return false;
	}
	rc = rc ? EEXIST : name_result(name);
	if (rc) {
		end(b);
		fuse_reply_err(req, rc);
		return true;
	}
	h = calloc(1, sizeof(*h));
	if (!h) {
		end(b);
		fuse_reply_err(req, ENOMEM);
		return true;
	}
	if (ffs_new_node_cmd(fs, req, parent, &c, &m.ino, &md) < 0) {
		end(b);
		free(h);
		return true;
	}
	m.parent = parent;
	m.name = (char *)name;
	m.mode = md;
	m.exclusive = (fi->flags & O_EXCL) != 0;
	c.op_case = FSPB__COMMAND__OP_MKNOD;
	c.mknod = &m;
	predict_new(&st, m.ino, S_IFREG | (md & 07777), &c, 0, 0);
	op = op_new(b, "create", parent, name);
	if (!op || op_touch(b, op, 0, d, name, &st, m.ino, c.time_ns)) {
		if (op) {
			pthread_mutex_unlock(&b->mu);
			op_done(op, 0);
			pthread_mutex_lock(&b->mu);
		}
		end(b);
		free(h);
		fuse_reply_err(req, ENOMEM);
		return true;
	}
	pthread_mutex_unlock(&b->mu);
	rc = op_propose(b, op, &c);
	pthread_mutex_unlock(&b->order);
	if (rc) {
		free(h);
		fuse_reply_err(req, rc);
		return true;
	}
	h->ino = m.ino;
	h->fd = -1;
	pthread_mutex_lock(&b->mu);
	h->next = b->fhs;
	if (b->fhs)
		b->fhs->prev = h;
	b->fhs = h;
	pthread_mutex_unlock(&b->mu);
	fi->fh = (uint64_t)(uintptr_t)h | DEFERRED;
	fi->keep_cache = 0;
	if (fi->flags & O_APPEND)
		fi->direct_io = 1; /* as ffs_open: appends whole on every node */
	ffs_fill_entry(fs, &e, &st);
	ffs_open_inc(fs, m.ino, -1); /* not an orphan: counted */
	fuse_inval_ref(fs->inv, m.ino, 1);
	if (fuse_reply_create(req, &e, fi) != 0) {
		fuse_inval_unref(fs->inv, m.ino, 1);
		ffs_open_dec(fs, m.ino);
		fuse_behind_close(b, fi->fh);
	}
	return true;
}

int fuse_behind_fd(struct fuse_behind *b, uint64_t fh)
{
	struct bh_fh *h;
	int fd;

	if (!(fh & DEFERRED))
		return (int)fh;
	h = (struct bh_fh *)(uintptr_t)(fh & ~DEFERRED);
	pthread_mutex_lock(&b->mu);
	if (h->fd < 0 && ino_busy(b, h->ino, false))
		flush_held(b);
	while (h->fd < 0 && ino_busy(b, h->ino, false))
		pthread_cond_wait(&b->cv, &b->mu);
	if (h->fd < 0)
		h->fd = sm_open_fd(b->fs->sm, h->ino);
	fd = h->fd;
	if (fd < 0)
		h->fd = -1;
	pthread_mutex_unlock(&b->mu);
	return fd;
}

void fuse_behind_close(struct fuse_behind *b, uint64_t fh)
{
	struct bh_fh *h;

	if (!(fh & DEFERRED)) {
		close((int)fh);
		return;
	}
	h = (struct bh_fh *)(uintptr_t)(fh & ~DEFERRED);
	pthread_mutex_lock(&b->mu);
	if (h->prev)
		h->prev->next = h->next;
	else
		b->fhs = h->next;
	if (h->next)
		h->next->prev = h->prev;
	pthread_mutex_unlock(&b->mu);
	if (h->fd >= 0)
		close(h->fd);
	free(h);
}

/* A file's predicted attributes with what this mount's writes in flight
 * leave (apply.c: each write sets the size it reaches, mtime and ctime). */
static void with_writes(const struct stat *base, uint64_t wend, int64_t wt, struct stat *st)
{
	int64_t mt = base->st_mtim.tv_sec * 1000000000LL + base->st_mtim.tv_nsec;

	*st = *base;
	if ((off_t)wend > st->st_size)
		st->st_size = (off_t)wend;
	if (wt > mt) {
		st->st_mtim.tv_sec = st->st_ctim.tv_sec = wt / 1000000000;
		st->st_mtim.tv_nsec = st->st_ctim.tv_nsec = wt % 1000000000;
	}
}

bool fuse_behind_setattr(struct fuse_behind *b, fuse_req_t req, uint64_t ino,
			 const struct stat *attr, unsigned valid)
{
	struct fuse_fs *fs = b->fs;
	Fspb__Command c;
	Fspb__SetAttr s = FSPB__SET_ATTR__INIT;
	struct bh_ino *in;
	struct bh_op *op;
	struct stat st;
	uint64_t wend;
	int64_t wt;
	int rc;

	if (!behind_on(b) || (valid & SM_SET_SIZE))
		return false;
	begin(b);
	in = ino_find(b, ino);
	if (!in || !in->have_st || !fuse_write_pending(fs->wr, ino, &wend, &wt)) {
		end(b);
		return false;
	}
	with_writes(&in->st, wend, wt, &st);
	if ((valid & SM_SET_MODE) && S_ISLNK(st.st_mode)) {
		end(b);
		fuse_reply_err(req, EOPNOTSUPP);
		return true;
	}
	ffs_cmd_init(&c, req);
	s.ino = ino;
	s.valid = valid;
	s.mode = attr->st_mode & 07777;
	s.uid = attr->st_uid;
	s.gid = attr->st_gid;
	s.atime_ns = (valid & SM_SET_ATIME_NOW)
			 ? c.time_ns
			 : attr->st_atim.tv_sec * 1000000000LL + attr->st_atim.tv_nsec;
	s.mtime_ns = (valid & SM_SET_MTIME_NOW)
			 ? c.time_ns
			 : attr->st_mtim.tv_sec * 1000000000LL + attr->st_mtim.tv_nsec;
	c.op_case = FSPB__COMMAND__OP_SETATTR;
	c.setattr = &s;
	/* apply.c's plan_setattr and exec_setattr, on the predicted state. */
	if (valid & SM_SET_MODE) {
		st.st_mode = (st.st_mode & S_IFMT) | (s.mode & 07777);
	} else if (valid & (SM_SET_UID | SM_SET_GID)) {
		st.st_mode &= ~(mode_t)S_ISUID;
		if (st.st_mode & S_IXGRP)
			st.st_mode &= ~(mode_t)S_ISGID;
	}
	if (valid & SM_SET_UID)
		st.st_uid = s.uid;
	if (valid & SM_SET_GID)
		st.st_gid = s.gid;
	if (valid & (SM_SET_ATIME | SM_SET_ATIME_NOW)) {
		st.st_atim.tv_sec = s.atime_ns / 1000000000;
		st.st_atim.tv_nsec = s.atime_ns % 1000000000;
	}
	if (valid & (SM_SET_MTIME | SM_SET_MTIME_NOW)) {
		st.st_mtim.tv_sec = s.mtime_ns / 1000000000;
		st.st_mtim.tv_nsec = s.mtime_ns % 1000000000;
	}
	st.st_ctim.tv_sec = c.time_ns / 1000000000;
	st.st_ctim.tv_nsec = c.time_ns % 1000000000;
	op = op_new(b, "setattr", ino, "");
	if (!op) {
		end(b);
		fuse_reply_err(req, ENOMEM);
		return true;
	}
	in->pending++;
	op->inos[0] = in;
	/* Later predictions start from here; the writes in flight are
	 * counted again then (the size only grows, the later clock wins). */
	in->st = st;
	pthread_mutex_unlock(&b->mu);
	rc = op_propose(b, op, &c);
	pthread_mutex_unlock(&b->order);
	if (rc)
		fuse_reply_err(req, rc);
	else
		fuse_reply_attr(req, &st, fs->cfg.timeout);
	return true;
}

void fuse_behind_forget(struct fuse_behind *b, uint64_t ino)
{
	struct bh_ino *in;

	pthread_mutex_lock(&b->mu);
	if ((in = ino_find(b, ino)))
		in->have_st = false;
	pthread_mutex_unlock(&b->mu);
}

bool fuse_behind_fresh(struct fuse_behind *b, uint64_t ino)
{
	struct bh_ino *in;
	bool fresh;

	pthread_mutex_lock(&b->mu);
	in = ino_find(b, ino);
	fresh = in && in->have_st;
	pthread_mutex_unlock(&b->mu);
	return fresh;
}

/* ---- reads ---- */

bool fuse_behind_name(struct fuse_behind *b, uint64_t parent, const char *name)
{
	struct bh_name *n;
	bool held;

	pthread_mutex_lock(&b->mu);
	if ((n = name_find(b, parent, name)) && n->pending)
		flush_held(b);
	while ((n = name_find(b, parent, name)) && n->pending)
		pthread_cond_wait(&b->cv, &b->mu);
	held = dir_held(b, parent) != NULL;
	pthread_mutex_unlock(&b->mu);
	return held;
}

void fuse_behind_wait(struct fuse_behind *b, uint64_t ino)
{
	pthread_mutex_lock(&b->mu);
	if (ino_busy(b, ino, true))
		flush_held(b);
	while (ino_busy(b, ino, true))
		pthread_cond_wait(&b->cv, &b->mu);
	pthread_mutex_unlock(&b->mu);
}

bool fuse_behind_predict(struct fuse_behind *b, uint64_t ino, struct stat *st)
{
	struct bh_ino *in;
	uint64_t wend;
	int64_t wt;
	bool ok;

	pthread_mutex_lock(&b->mu);
	in = ino_find(b, ino);
	ok = in && in->have_st && fuse_write_pending(b->fs->wr, ino, &wend, &wt);
	if (ok)
		with_writes(&in->st, wend, wt, st);
	pthread_mutex_unlock(&b->mu);
	return ok;
}

int fuse_behind_getattr(struct fuse_behind *b, uint64_t ino, struct stat *st)
{
	struct bh_dir *d;
	int rc;

	pthread_mutex_lock(&b->mu);
	if (ino_busy(b, ino, false))
		flush_held(b);
	while (ino_busy(b, ino, false))
		pthread_cond_wait(&b->cv, &b->mu);
	/* The kernel asks for a directory's attributes before each change
	 * in it (default_permissions, after the last change dropped them):
	 * answered from the view, or every create would wait for the last. */
	rc = sm_getattr(b->fs->sm, ino, st);
	d = dir_find(b, ino);
	if (rc == 0 && d && d->pending) {
		st->st_mtim.tv_sec = st->st_ctim.tv_sec = d->mtime_ns / 1000000000;
		st->st_mtim.tv_nsec = st->st_ctim.tv_nsec = d->mtime_ns % 1000000000;
		st->st_nlink = (nlink_t)((long)st->st_nlink + d->nlink_delta);
	}
	pthread_mutex_unlock(&b->mu);
	return rc;
}

int fuse_behind_sync(struct fuse_behind *b, bool take)
{
	uint64_t mark;
	int err;

	pthread_mutex_lock(&b->mu);
	mark = b->next_seq;
	if (b->head && b->head->seq < mark)
		flush_held(b);
	while (b->head && b->head->seq < mark)
		pthread_cond_wait(&b->cv, &b->mu);
	err = b->err;
	if (take)
		b->err = 0;
	pthread_mutex_unlock(&b->mu);
	return err;
}

/* ---- recalls ---- */

struct call_wait {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	int err;
};

static void call_done(void *arg, int err)
{
	struct call_wait *w = arg;

	pthread_mutex_lock(&w->mu);
	w->done = true;
	w->err = err;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

static void ignore_done(void *arg, int err)
{
	(void)arg;
	(void)err;
}

/* A Deleg command for dir as this node; waits for it if wait. */
static int propose_deleg(struct fuse_behind *b, uint64_t dir, int op, uint64_t epoch, bool wait)
{
	struct call_wait w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0};
	Fspb__Command c;
	Fspb__Deleg g = FSPB__DELEG__INIT;
	int rc;

	fspb__command__init(&c);
	c.time_ns = fs_node_now();
	c.node = b->self;
	g.dir = dir;
	g.op = op;
	g.epoch = epoch;
	c.op_case = FSPB__COMMAND__OP_DELEG;
	c.deleg = &g;
	rc = fs_node_propose(b->fs->fsn, &c, wait ? call_done : ignore_done, wait ? &w : NULL);
	if (rc || !wait)
		return rc;
	pthread_mutex_lock(&w.mu);
	while (!w.done)
		pthread_cond_wait(&w.cv, &w.mu);
	pthread_mutex_unlock(&w.mu);
	return w.err;
}

/* Reclaim: whoever holds dir returns it (or is revoked). */
static int reclaim(struct fuse_behind *b, uint64_t dir)
{
	int64_t deadline = mono_ms() + REVOKE_AFTER_MS;
	uint32_t holder;
	uint64_t epoch;

	for (;;) {
		int rc = sm_deleg(b->fs->sm, dir, &holder, &epoch);

		if (rc < 0 || holder == 0 || holder == b->self)
			return 0; /* the command's own checks answer for a bad dir */
		if (mono_ms() >= deadline) {
			/* Its holder did not return it: down or cut off. Its
			 * commands ordered after this fail at apply. */
			fprintf(stderr,
				"raftfs: directory %016llx: node %u did not return its delegation "
				"in %d ms: revoking it\n",
				(unsigned long long)dir, holder, REVOKE_AFTER_MS);
			rc = propose_deleg(b, dir, FSPB__DELEG__OP__REVOKE, epoch, true);
			if (rc && rc != ESTALE)
				return rc;
			deadline = mono_ms() + REVOKE_AFTER_MS;
			continue;
		}
		if ((rc = propose_deleg(b, dir, FSPB__DELEG__OP__RECALL, epoch, false)))
			return rc;
		pthread_mutex_lock(&b->mu);
		if (sm_deleg(b->fs->sm, dir, &holder, &epoch) == 0 && holder != 0 &&
		    holder != b->self)
			wait_ms(b, RECALL_EVERY_MS);
		pthread_mutex_unlock(&b->mu);
	}
}

/* Grant on demand (fuse_grant.h): a directory nobody holds that this mount
 * keeps changing synchronously is asked for, and the change about to be
 * proposed waits for the Grant's apply: it applies after the Grant either
 * way (per-node order), and the changes after it are answered behind. A
 * refusal (another node asked first) changes nothing. */
static void maybe_grant(struct fuse_behind *b, uint64_t dir)
{
	uint32_t holder;
	uint64_t epoch;

	if (!behind_on(b) || sm_deleg(b->fs->sm, dir, &holder, &epoch) < 0 || holder != 0)
		return;
	if (fuse_grant_note(b->grant, dir, mono_ms()))
		(void)propose_deleg(b, dir, FSPB__DELEG__OP__GRANT, epoch, true);
}

int fuse_behind_reclaim(struct fuse_behind *b, uint64_t dir)
{
	int rc = reclaim(b, dir);

	if (rc == 0)
		maybe_grant(b, dir);
	return rc;
}

int fuse_behind_recall(struct fuse_behind *b, uint64_t dir)
{
	return reclaim(b, dir);
}

/* The state machine's delegation events (apply thread: no blocking). */
static void deleg_event(void *arg, uint64_t dir, int op, uint32_t by, uint32_t holder,
			uint64_t epoch)
{
	struct fuse_behind *b = arg;
	struct bh_dir *d;

	(void)by;
	pthread_mutex_lock(&b->mu);
	d = dir_find(b, dir);
	if (holder == b->self && op == FSPB__DELEG__OP__GRANT) {
		if (!d || d->state == D_GONE)
			dir_add(b, dir, epoch, D_HELD);
		else
			d->epoch = epoch;
	} else if (holder == b->self && op == FSPB__DELEG__OP__RECALL) {
		/* Another mount works here: do not ask for it again soon. */
		fuse_grant_recalled(b->grant, dir, mono_ms());
		/* Also for a delegation this mount never used (made before a
		 * restart): the returner returns it. */
		if (!d)
			d = dir_add(b, dir, epoch, D_RECALLED);
		else if (d->state == D_HELD)
			d->state = D_RECALLED;
		pthread_cond_signal(&b->rcv);
	} else if (d && holder != b->self) {
		d->state = D_GONE;
		dir_put(b, d);
	}
	pthread_cond_broadcast(&b->cv);
	pthread_mutex_unlock(&b->mu);
}

/* Finds a recalled directory: 1 with its id and epoch (now RETURNING).
 * Under mu. */
static int next_recalled(struct fuse_behind *b, uint64_t *dir, uint64_t *epoch)
{
	for (unsigned i = 0; i < BUCKETS; i++)
		for (struct bh_dir *d = b->dirs[i]; d; d = d->next)
			if (d->state == D_RECALLED) {
				d->state = D_RETURNING;
				*dir = d->id;
				*epoch = d->epoch;
				return 1;
			}
	return 0;
}

/* The returner: proposes each recalled directory's Return behind every
 * command this mount predicted there (the order lock). */
static void *returner(void *arg)
{
	struct fuse_behind *b = arg;
	uint64_t dir = 0, epoch = 0;

	for (;;) {
		pthread_mutex_lock(&b->order);
		pthread_mutex_lock(&b->mu);
		while (!b->stop && !next_recalled(b, &dir, &epoch)) {
			pthread_mutex_unlock(&b->order);
			pthread_cond_wait(&b->rcv, &b->mu);
			pthread_mutex_unlock(&b->mu);
			pthread_mutex_lock(&b->order);
			pthread_mutex_lock(&b->mu);
		}
		pthread_mutex_unlock(&b->mu);
		if (b->stop) {
			pthread_mutex_unlock(&b->order);
			return NULL;
		}
		if (propose_deleg(b, dir, FSPB__DELEG__OP__RETURN, epoch, false))
			fprintf(stderr, "raftfs: return of directory %016llx could not be proposed\n",
				(unsigned long long)dir);
		pthread_mutex_unlock(&b->order);
	}
}

int fuse_behind_new(struct fuse_fs *fs, struct fuse_behind **out)
{
	struct fuse_behind *b = calloc(1, sizeof(*b));
	pthread_condattr_t ca;

	if (!b)
		return -ENOMEM;
	if (fuse_grant_new(&b->grant) < 0) {
		free(b);
		return -ENOMEM;
	}
	b->fs = fs;
	b->self = fs_node_id(fs->fsn);
	pthread_mutex_init(&b->order, NULL);
	pthread_mutex_init(&b->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&b->cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_cond_init(&b->rcv, NULL);
	if (pthread_create(&b->returner, NULL, returner, b)) {
		pthread_cond_destroy(&b->rcv);
		pthread_cond_destroy(&b->cv);
		pthread_mutex_destroy(&b->mu);
		pthread_mutex_destroy(&b->order);
		fuse_grant_free(b->grant);
		free(b);
		return -EAGAIN;
	}
	b->sink = (struct fs_deleg_sink){deleg_event, b};
	fs_node_set_deleg_sink(fs->fsn, &b->sink);
	*out = b;
	return 0;
}

void fuse_behind_free(struct fuse_behind *b)
{
	if (!b)
		return;
	fs_node_set_deleg_sink(b->fs->fsn, NULL);
	pthread_mutex_lock(&b->mu);
	b->stop = true;
	pthread_cond_broadcast(&b->cv);
	pthread_cond_signal(&b->rcv);
	pthread_mutex_unlock(&b->mu);
	pthread_join(b->returner, NULL);
	for (unsigned i = 0; i < BUCKETS; i++) {
		while (b->dirs[i]) {
			struct bh_dir *d = b->dirs[i];

			b->dirs[i] = d->next;
			free(d);
		}
		while (b->names[i]) {
			struct bh_name *n = b->names[i];

			b->names[i] = n->next;
			free(n->name);
			free(n);
		}
		while (b->inos[i]) {
			struct bh_ino *n = b->inos[i];

			b->inos[i] = n->next;
			free(n);
		}
	}
	while (b->head) {
		struct bh_op *op = b->head;

		b->head = op->next;
		free(op);
	}
	/* Handles the kernel never released (unmounted while open). */
	while (b->fhs) {
		struct bh_fh *h = b->fhs;

		b->fhs = h->next;
		if (h->fd >= 0)
			close(h->fd);
		free(h);
	}
	pthread_cond_destroy(&b->rcv);
	pthread_cond_destroy(&b->cv);
	pthread_mutex_destroy(&b->mu);
	pthread_mutex_destroy(&b->order);
	fuse_grant_free(b->grant);
	free(b);
}
