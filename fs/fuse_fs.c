/* fuse_fs.c — the state of a raftfs mount shared by its operations: open
 * handles and the orphan rule, replies, requests waiting for their commands,
 * read barriers. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs_node.h"
#include "fs_release.h"
#include "fuse_behind.h"
#include "fuse_fs_impl.h"
#include "fuse_inval.h"
#include "sm.h"
#include "sm_id_known.h"
#include "test_gate.h"

static bool holds_open(void *arg, uint64_t id);
static int ids_known(struct fuse_fs *fs);
static void *retrier(void *arg);

/* An entry change refused with EREMOTE is recalled and proposed again at
 * most this often (each time another node was granted the directory in
 * between; grants back off after a recall, fuse_grant.h). */
#define RETRY_MAX 8u

/* RETRY_MAX, or RAFTFS_TEST_RETRY_MAX (a test: with 1, every retry must get
 * through at once, fuse_behind_claim). */
static unsigned retry_max(void)
{
	static unsigned cached;
	unsigned v = __atomic_load_n(&cached, __ATOMIC_RELAXED);

	if (!v) {
		const char *e = test_hook_env("RAFTFS_TEST_RETRY_MAX");

		v = e && atoi(e) > 0 ? (unsigned)atoi(e) : RETRY_MAX;
		__atomic_store_n(&cached, v, __ATOMIC_RELAXED);
	}
	return v;
}

/* A snapshot replaced the tree: its orphans may wait for this node (it was
 * behind when the others released them). */
static void release_after_restore(void *arg)
{
	struct fuse_fs *fs = arg;

	fs_release_start(fs->cfg.rel);
}

int fuse_fs_new(struct fs_node *fsn, struct fuse_inval *inv, const struct fuse_ops_cfg *cfg,
		struct fuse_fs **out)
{
	struct fuse_fs *fs = calloc(1, sizeof(*fs));

	if (!fs)
		return -ENOMEM;
	fs->fsn = fsn;
	fs->sm = fs_node_sm(fsn);
	fs->inv = inv;
	fs->cfg = *cfg;
	fs->test_hang_mkdir = test_hook_env("RAFTFS_TEST_HANG_MKDIR");
	fs->test_lookup_gate = test_hook_env("RAFTFS_TEST_LOOKUP_GATE");
	fs->test_list_gate = test_hook_env("RAFTFS_TEST_LIST_GATE");
	pthread_mutex_init(&fs->mu, NULL);
	pthread_mutex_init(&fs->rmu, NULL);
	pthread_cond_init(&fs->rcv, NULL);
	if (pthread_create(&fs->retrier, NULL, retrier, fs) == 0)
		fs->retrier_running = true;
	fs_release_set_holder(cfg->rel, holds_open, fs);
	if (inv)
		fuse_inval_set_restore_hook(inv, release_after_restore, fs);
	*out = fs;
	return 0;
}

void fuse_fs_free(struct fuse_fs *fs)
{
	if (!fs)
		return;
	/* (The invalidation tracker is freed first, with the node stopped: its
	 * restore hook cannot fire any more.) */
	ffs_retry_stop(fs);
	if (fs->cfg.rel)
		fs_release_set_holder(fs->cfg.rel, NULL, NULL);
	for (size_t i = 0; i < OPEN_BUCKETS; i++)
		while (fs->open[i]) {
			struct open_count *o = fs->open[i];

			fs->open[i] = o->next;
			if (o->fd >= 0)
				close(o->fd);
			free(o);
		}
	pthread_cond_destroy(&fs->rcv);
	pthread_mutex_destroy(&fs->rmu);
	pthread_mutex_destroy(&fs->mu);
	free(fs);
}

void fuse_fs_set_session(struct fuse_fs *fs, struct fuse_session *se)
{
	fs->se = se;
}

struct fuse_fs *ffs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* ---- open handles and orphans ---- */

static struct open_count **open_slot(struct fuse_fs *fs, uint64_t id)
{
	struct open_count **p = &fs->open[(id ^ (id >> 48)) % OPEN_BUCKETS];

	while (*p && (*p)->id != id)
		p = &(*p)->next;
	return p;
}

/* Counts one more handle on id, keeping a dup of fd. -ESTALE, counting
 * nothing, for an orphan this mount holds no handle on yet: its last name
 * went before this open (the kernel still had a stale name) and this node
 * released it or is about to; the check and the count are one step under
 * fs->mu, the same lock the releaser's holder check takes, so an open
 * cannot slip in between that check and the Release. */
static int open_hold(struct fuse_fs *fs, uint64_t id, int fd, bool pinned)
{
	struct open_count **p;
	struct stat st;
	int rc = 0;

	pthread_mutex_lock(&fs->mu);
	p = open_slot(fs, id);
	if (!pinned && !*p && fs->cfg.rel && sm_getattr(fs->sm, id, &st) == 0 &&
	    st.st_nlink == 0 && !S_ISDIR(st.st_mode))
		rc = -ESTALE;
	else if (!*p && (*p = calloc(1, sizeof(**p)))) {
		(*p)->id = id;
		(*p)->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	}
	if (!rc && *p)
		(*p)->count++;
	pthread_mutex_unlock(&fs->mu);
	return rc;
}

int ffs_open_inc(struct fuse_fs *fs, uint64_t id, int fd)
{
	/* A caller that ignores a refusal leaves the handle uncounted: it
	 * reads on through its fd, but its writes fail once every node
	 * released the orphan. */
	return open_hold(fs, id, fd, false);
}

int ffs_open_pinned(struct fuse_fs *fs, uint64_t id, int fd)
{
	return open_hold(fs, id, fd, true);
}

/* Drops one handle; the count left. */
unsigned ffs_open_dec(struct fuse_fs *fs, uint64_t id)
{
	struct open_count **p, *o;
	unsigned left = 0;

	pthread_mutex_lock(&fs->mu);
	p = open_slot(fs, id);
	o = *p;
	if (o && --o->count == 0) {
		*p = o->next;
		if (o->fd >= 0)
			close(o->fd);
		free(o);
	} else if (o) {
		left = o->count;
	}
	pthread_mutex_unlock(&fs->mu);
	return left;
}

/* Attributes of a file released while this mount holds it open (the orphan
 * rule): what its handles still read. */
int ffs_orphan_stat(struct fuse_fs *fs, uint64_t id, struct stat *st)
{
	struct open_count *o;
	int rc = -ENOENT;

	pthread_mutex_lock(&fs->mu);
	o = *open_slot(fs, id);
	if (o && o->fd >= 0)
		rc = fstat(o->fd, st) < 0 ? -errno : 0;
	pthread_mutex_unlock(&fs->mu);
	if (rc == 0) {
		st->st_ino = id;
		st->st_nlink = 0;
	}
	return rc;
}

bool ffs_is_open(struct fuse_fs *fs, uint64_t id)
{
	bool r;

	pthread_mutex_lock(&fs->mu);
	r = *open_slot(fs, id) != NULL;
	pthread_mutex_unlock(&fs->mu);
	return r;
}

static bool holds_open(void *arg, uint64_t id)
{
	return ffs_is_open(arg, id);
}

/* The orphan rule (fs/README-sm.md, "Orphans"): this node releases a file
 * whose last name is gone once it holds no handle on it — when its last
 * local handle closes, or at once when it holds none (the state machine's
 * orphan hook reaches fs_release for every node when the unlink applies);
 * the file goes when every voter released it. */
void ffs_maybe_release(struct fuse_fs *fs, uint64_t id)
{
	struct stat st;

	if (!id || sm_getattr(fs->sm, id, &st) < 0 || st.st_nlink > 0 || S_ISDIR(st.st_mode))
		return;
	fs_release_id(fs->cfg.rel, id); /* checks the handles itself */
}

void fuse_fs_release_orphans(struct fuse_fs *fs)
{
	/* Once this node applied everything committed (the barrier), every
	 * orphan no handle here holds is released by this node: those left
	 * by a crash, and those that waited for it while it was down. */
	fs_release_start(fs->cfg.rel);
}

/* ---- replies ---- */

void ffs_fill_entry(struct fuse_fs *fs, struct fuse_entry_param *e, const struct stat *st)
{
	memset(e, 0, sizeof(*e));
	e->ino = st->st_ino;
	e->generation = 1;
	e->attr = *st;
	e->attr_timeout = fs->cfg.timeout;
	e->entry_timeout = fs->cfg.timeout;
}

void ffs_reply_entry_st(struct fuse_fs *fs, fuse_req_t req, const struct stat *st)
{
	struct fuse_entry_param e;

	ffs_fill_entry(fs, &e, st);
	fuse_inval_ref(fs->inv, st->st_ino, 1);
	if (fuse_reply_entry(req, &e) != 0)
		fuse_inval_unref(fs->inv, st->st_ino, 1);
}

void ffs_reply_attr_id(struct fuse_fs *fs, fuse_req_t req, uint64_t id)
{
	struct stat st;
	int rc = sm_getattr(fs->sm, id, &st);

	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &st, fs->cfg.timeout);
}

/* ---- pending mutations ---- */

struct pending *ffs_pending_new(fuse_req_t req, enum reply_kind kind)
{
	struct pending *p = calloc(1, sizeof(*p));

	if (!p) {
		fuse_reply_err(req, ENOMEM);
		return NULL;
	}
	p->fs = ffs_of(req);
	p->req = req;
	p->kind = kind;
	atomic_init(&p->parts, 1);
	return p;
}

/* The kernel checked nothing for a name it believed absent: the access
 * check of open(2) on the file found there instead (0 or a positive errno). */
static int may_open(fuse_req_t req, const struct stat *st, int flags)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	int acc = flags & O_ACCMODE;
	unsigned want = (acc == O_RDONLY ? 4 : acc == O_WRONLY ? 2 : 6), have;

	if (S_ISDIR(st->st_mode))
		return EISDIR;
	if (!S_ISREG(st->st_mode))
		return EEXIST;
	if (ctx->uid == 0)
		return 0;
	if (ctx->uid == st->st_uid)
		have = (st->st_mode >> 6) & 7;
	else if (ctx->gid == st->st_gid)
		have = (st->st_mode >> 3) & 7;
	else
		have = st->st_mode & 7;
	return (have & want) == want ? 0 : EACCES;
}

/* Hands p to the retrier (apply thread: no waiting). false: stopping. */
static bool queue_retry(struct pending *p)
{
	struct fuse_fs *fs = p->fs;
	bool queued = false;

	pthread_mutex_lock(&fs->rmu);
	if (!fs->retry_stop && fs->retrier_running) {
		p->next = fs->retry_head;
		fs->retry_head = p;
		pthread_cond_signal(&fs->rcv);
		queued = true;
	}
	pthread_mutex_unlock(&fs->rmu);
	return queued;
}

static void finish(struct pending *p)
{
	struct fuse_fs *fs = p->fs;
	int err = atomic_load(&p->err);
	struct stat st;
	int rc;

	/* Another node was granted the directory between this mount's
	 * recall and its command (grant on demand): recall again and retry,
	 * so the caller sees the command's own result, not the race. */
	if (err == SM_RESULT_DELEGATED && p->cmd && p->tries < retry_max() && queue_retry(p))
		return;
	/* create() without O_EXCL of a name another mount created first: open
	 * what is there (fs.proto, Mknod.exclusive). */
	if (err == EEXIST && p->kind == RP_CREATE && !(p->fi.flags & O_EXCL)) {
		err = 0;
		p->id = 0;
		p->existing = true;
	}
	/* A delegation granted between this mount's recall and its command
	 * (fuse_behind_reclaim): rare; the caller may try again. */
	if (err == SM_RESULT_DELEGATED)
		err = EAGAIN;
	if (err) {
		fuse_reply_err(p->req, err);
		goto out;
	}
	switch (p->kind) {
	case RP_NONE:
		fuse_reply_err(p->req, 0);
		break;
	case RP_ATTR:
		ffs_reply_attr_id(fs, p->req, p->id);
		break;
	case RP_ENTRY:
	case RP_CREATE:
		rc = sm_getattr(fs->sm, p->id, &st);
		if (rc < 0 && p->name)
			rc = sm_lookup(fs->sm, p->parent, p->name, &st);
		if (rc < 0) {
			fuse_reply_err(p->req, -rc);
			break;
		}
		if (p->kind == RP_ENTRY) {
			ffs_reply_entry_st(fs, p->req, &st);
			break;
		}
		if (p->existing && (rc = may_open(p->req, &st, p->fi.flags))) {
			fuse_reply_err(p->req, rc);
			break;
		}
		if (p->existing && (p->fi.flags & O_TRUNC) && st.st_size > 0 && !p->truncated) {
			/* The kernel thinks it created the file: truncate it
			 * here, then come back to open it. */
			Fspb__Command c;
			Fspb__SetAttr sa = FSPB__SET_ATTR__INIT;

			ffs_cmd_init(&c, p->req);
			sa.ino = st.st_ino;
			sa.valid = SM_SET_SIZE;
			c.op_case = FSPB__COMMAND__OP_SETATTR;
			c.setattr = &sa;
			p->truncated = true;
			atomic_store(&p->err, 0);
			atomic_store(&p->parts, 1);
			ffs_propose_part(p, &c);
			return;
		}
		rc = sm_open_fd(fs->sm, st.st_ino);
		if (rc < 0) {
			fuse_reply_err(p->req, -rc);
			break;
		}
		{
			struct fuse_entry_param e;

			ffs_fill_entry(fs, &e, &st);
			p->fi.fh = (uint64_t)rc;
			if (open_hold(fs, st.st_ino, rc, false) < 0) {
				/* Opening a file another mount created, which
				 * lost its name meanwhile: as if after it. */
				close(rc);
				fuse_reply_err(p->req, ENOENT);
				break;
			}
			fuse_inval_ref(fs->inv, st.st_ino, 1);
			if (fuse_reply_create(p->req, &e, &p->fi) != 0) {
				fuse_inval_unref(fs->inv, st.st_ino, 1);
				ffs_open_dec(fs, st.st_ino);
				close(rc);
			}
		}
		break;
	}
	/* With a releaser, the orphan hook released it as the command applied. */
	if (p->release && !fs->cfg.rel)
		ffs_maybe_release(fs, p->release);
out:
	free(p->cmd);
	free(p->name);
	free(p);
}

void ffs_part_done(void *arg, int err)
{
	struct pending *p = arg;
	int zero = 0;

	if (err)
		atomic_compare_exchange_strong(&p->err, &zero, err);
	if (atomic_fetch_sub(&p->parts, 1) == 1)
		finish(p);
}

/* Whether c changes directory entries synchronously (a delegation granted
 * meanwhile refuses it: SM_RESULT_DELEGATED). */
static bool entry_change(const Fspb__Command *c)
{
	switch (c->op_case) {
	case FSPB__COMMAND__OP_MKNOD:
	case FSPB__COMMAND__OP_MKDIR:
	case FSPB__COMMAND__OP_SYMLINK:
	case FSPB__COMMAND__OP_LINK:
	case FSPB__COMMAND__OP_UNLINK:
	case FSPB__COMMAND__OP_RENAME:
		return !c->behind;
	default:
		return false;
	}
}

/* Proposes one more part of p (call with parts counting it already). */
void ffs_propose_part(struct pending *p, const Fspb__Command *c)
{
	int rc;

	/* Kept for a retry (without it the race shows as EAGAIN). */
	if (!p->cmd && entry_change(c)) {
		size_t len = fspb__command__get_packed_size(c);

		if ((p->cmd = malloc(len ? len : 1))) {
			p->cmd_len = fspb__command__pack(c, p->cmd);
		}
	}
	rc = fs_node_propose(p->fs->fsn, c, ffs_part_done, p);

	if (rc)
		ffs_part_done(p, rc);
}

/* A command with the caller's identity and the proposer's clock. */
void ffs_cmd_init(Fspb__Command *c, fuse_req_t req)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);

	fspb__command__init(c);
	c->uid = ctx->uid;
	c->gid = ctx->gid;
	c->time_ns = fs_node_now();
	/* Who proposed it: a directory delegated to this node accepts it. */
	c->node = fs_node_id(ffs_of(req)->fsn);
}

/* New objects in a set-gid directory take its group (and directories the
 * bit), as on a local filesystem. */
static void inherit_gid(struct fuse_fs *fs, uint64_t parent, Fspb__Command *c, uint32_t *mode)
{
	struct stat st;

	if (sm_getattr(fs->sm, parent, &st) == 0 && (st.st_mode & S_ISGID)) {
		c->gid = st.st_gid;
		if (S_ISDIR(*mode))
			*mode |= S_ISGID;
	}
}

int ffs_new_node_cmd(struct fuse_fs *fs, fuse_req_t req, uint64_t parent, Fspb__Command *c,
		     uint64_t *id, uint32_t *mode)
{
	int rc = ids_known(fs);

	if (rc) {
		fuse_reply_err(req, rc);
		return -rc;
	}
	rc = sm_alloc_id(fs->sm, id);

	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return rc;
	}
	ffs_cmd_init(c, req);
	inherit_gid(fs, parent, c, mode);
	return 0;
}

/* Proposes a single command for req, answered as kind about id. */
void ffs_submit(fuse_req_t req, Fspb__Command *c, enum reply_kind kind, uint64_t id,
		uint64_t parent, const char *name, uint64_t release)
{
	struct pending *p = ffs_pending_new(req, kind);

	if (!p)
		return;
	p->id = id;
	p->parent = parent;
	p->release = release;
	if (name && !(p->name = strdup(name))) {
		free(p);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	ffs_propose_part(p, c);
}

/* ---- retries of refused entry changes ---- */

/* The directories whose delegation refused c: its parent(s), and a
 * directory it removes or replaces. */
static unsigned refusing_dirs(struct fuse_fs *fs, const Fspb__Command *c, uint64_t dirs[3])
{
	struct stat st;
	unsigned n = 0;

	switch (c->op_case) {
	case FSPB__COMMAND__OP_MKNOD:
		dirs[n++] = c->mknod->parent;
		break;
	case FSPB__COMMAND__OP_MKDIR:
		dirs[n++] = c->mkdir->parent;
		break;
	case FSPB__COMMAND__OP_SYMLINK:
		dirs[n++] = c->symlink->parent;
		break;
	case FSPB__COMMAND__OP_LINK:
		dirs[n++] = c->link->new_parent;
		break;
	case FSPB__COMMAND__OP_UNLINK:
		dirs[n++] = c->unlink->parent;
		if (c->unlink->dir &&
		    sm_lookup(fs->sm, c->unlink->parent, c->unlink->name, &st) == 0)
			dirs[n++] = st.st_ino;
		break;
	case FSPB__COMMAND__OP_RENAME:
		dirs[n++] = c->rename->parent;
		dirs[n++] = c->rename->new_parent;
		if (sm_lookup(fs->sm, c->rename->new_parent, c->rename->new_name, &st) == 0 &&
		    S_ISDIR(st.st_mode))
			dirs[n++] = st.st_ino;
		break;
	default:
		break;
	}
	return n;
}

struct redo_arg {
	struct pending *p;
	const Fspb__Command *c;
};

static void redo_propose(void *arg)
{
	struct redo_arg *r = arg;

	ffs_propose_part(r->p, r->c);
}

/* Proposes p's command again under this node's own delegation of what
 * refused it (fuse_behind_claim: a grant cannot overtake it again); any
 * failure answers p. */
static void redo(struct fuse_fs *fs, struct pending *p)
{
	Fspb__Command *c = fspb__command__unpack(NULL, p->cmd_len, p->cmd);
	struct redo_arg r = {p, c};
	uint64_t dirs[3];
	unsigned n;
	int rc = c ? 0 : EIO;

	n = c ? refusing_dirs(fs, c, dirs) : 0;
	p->tries++;
	atomic_store(&p->err, 0);
	atomic_store(&p->parts, 1);
	if (!rc)
		rc = fuse_behind_claim(fs->bh, dirs, n, redo_propose, &r);
	if (rc)
		ffs_part_done(p, rc);
	if (c)
		fspb__command__free_unpacked(c, NULL);
}

static void *retrier(void *arg)
{
	struct fuse_fs *fs = arg;

	pthread_mutex_lock(&fs->rmu);
	for (;;) {
		struct pending *p = fs->retry_head;

		if (!p && fs->retry_stop)
			break;
		if (!p) {
			pthread_cond_wait(&fs->rcv, &fs->rmu);
			continue;
		}
		bool stopping = fs->retry_stop;

		fs->retry_head = p->next;
		pthread_mutex_unlock(&fs->rmu);
		if (stopping) {
			/* The mount is going: answer, do not retry. */
			p->tries = retry_max();
			atomic_store(&p->parts, 1);
			ffs_part_done(p, EIO);
		} else {
			redo(fs, p);
		}
		pthread_mutex_lock(&fs->rmu);
	}
	pthread_mutex_unlock(&fs->rmu);
	return NULL;
}

void ffs_retry_stop(struct fuse_fs *fs)
{
	pthread_mutex_lock(&fs->rmu);
	fs->retry_stop = true;
	pthread_cond_signal(&fs->rcv);
	pthread_mutex_unlock(&fs->rmu);
	if (fs->retrier_running) {
		pthread_join(fs->retrier, NULL);
		fs->retrier_running = false;
	}
}

/* ---- barriers ---- */

struct sync_wait {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	int err;
};

static void sync_done(void *arg, int err)
{
	struct sync_wait *w = arg;

	pthread_mutex_lock(&w->mu);
	w->done = true;
	w->err = err;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

static void probe_done(void *arg, int err)
{
	struct fuse_fs *fs = arg;

	if (!err)
		atomic_store(&fs->degraded, false);
	atomic_store(&fs->probing, false);
}

/* Starts a read barrier and waits for its answer on this thread, whatever
 * the mode (degraded or not): 0 with the answer (0 or a positive errno) in
 * *answer, or the positive errno the barrier could not start with. */
static int barrier_wait(struct fuse_fs *fs, int *answer)
{
	struct sync_wait w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0};
	int rc = fs_node_barrier(fs->fsn, sync_done, &w);

	if (rc)
		return rc;
	pthread_mutex_lock(&w.mu);
	while (!w.done)
		pthread_cond_wait(&w.cv, &w.mu);
	pthread_mutex_unlock(&w.mu);
	*answer = w.err;
	return 0;
}

bool ffs_ids_known_now(struct fuse_fs *fs)
{
	return sm_ids_known(fs->sm);
}

/* Whether this node may hand out ids: 0, or the positive errno a create
 * fails with (EAGAIN: not caught up yet, sm_id_known.h). */
static int ids_known(struct fuse_fs *fs)
{
	static atomic_bool told;
	int err, answer;

	if (sm_ids_known(fs->sm))
		return 0;
	/* Not the lookup's barrier (ffs_barrier): a degraded mount skips it,
	 * and a rebuilt node's mount is degraded until it reaches a leader.
	 * Passed, everything committed before it is applied here: the
	 * creates of this node's ids in the log raised the counter past them
	 * (sm_note_id), and an installed image past the ones it knew
	 * (sm_ids_take_over). */
	if (!(err = barrier_wait(fs, &answer)))
		err = answer;
	if (err == ETIMEDOUT) {
		if (!atomic_exchange(&told, true))
			fprintf(stderr, "fs: no new ids until this node has caught up with the "
					"cluster (no barrier passed yet): creates fail "
					"with EAGAIN\n");
		return EAGAIN;
	}
	if (err)
		return err;
	sm_ids_mark_known(fs->sm); /* a failure to record it costs the next start a barrier */
	return 0;
}

/* Waits (on this FUSE thread) until this node applied everything committed
 * before now. 0 or a positive errno.
 *
 * Without a quorum no barrier completes. Unless linearizable, reads must
 * keep working then: after one barrier timed out, the mount serves from its
 * local state without waiting (degraded) while one barrier at a time probes
 * in the background; the first that succeeds ends the degraded mode. */
int ffs_barrier(struct fuse_fs *fs)
{
	int rc, err;

	if (!fs->cfg.linearizable && atomic_load(&fs->degraded)) {
		if (!atomic_exchange(&fs->probing, true) &&
		    fs_node_barrier(fs->fsn, probe_done, fs) != 0)
			atomic_store(&fs->probing, false);
		return 0;
	}
	rc = barrier_wait(fs, &err);
	if (rc)
		return rc;
	if (err == ETIMEDOUT && !fs->cfg.linearizable) {
		atomic_store(&fs->degraded, true);
		return 0;
	}
	/* The state machine failed here (it stopped applying): the frozen
	 * tree is still served to readers. */
	if (err == EIO && !fs->cfg.linearizable)
		return 0;
	return err;
}
