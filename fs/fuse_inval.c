/* fuse_inval.c — lookup counts and the kernel cache invalidation thread. */
#define FUSE_USE_VERSION 314
#include "fuse_inval.h"

#include <errno.h>
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sm.h"
#include "mono_ms.h"
#include "test_gate.h"

enum item_kind { INV_INODE, INV_ENTRY, INV_DELETE };

struct fuse_inval_item {
	struct fuse_inval_item *next;
	enum item_kind kind;
	uint64_t ino;	/* inode; entry: parent */
	uint64_t child; /* delete: the child */
	off_t off, len; /* inode: off < 0 drops attributes only */
	/* inode: an ENOENT while the inode is known is retried (settle) */
	bool until_known;
	char name[]; /* entry, delete */
};

/* How long the thread retries an until_known invalidation the kernel
 * answers ENOENT while the inode is known (settle): the kernel thread that
 * asked makes the inode microseconds after the reply unless it is held off
 * the CPU; past this bound the queue moves on (the attribute timeout bounds
 * the staleness, as before). The pauses start short and double. */
#define SETTLE_MAX_MS 1000
#define SETTLE_FIRST_NS (20 * 1000LL)
#define SETTLE_PAUSE_MAX_NS (5 * 1000000LL)

/* A chained hash of id -> lookup count. */
struct ref {
	struct ref *next;
	uint64_t id;
	uint64_t count;
};

#define NBUCKETS 4096

struct fuse_inval {
	pthread_mutex_t mu;
	pthread_cond_t cv, done_cv;
	struct fuse_inval_item *head, **tail;
	uint64_t queued, handled; /* items ever queued / handled */
	/* until_known items ever queued / notified once
	 * (fuse_inval_test_reply_gate) */
	uint64_t queued_known, tried_known;
	bool settling; /* in settle (fuse_inval_test_reply_gate) */
	atomic_uint_fast64_t grants; /* Grants applied (fuse_inval_grants; read lock-free by every lookup) */
	bool stop;
	/* RAFTFS_TEST_REPLY_GATE=FILE (fuse_inval_test_reply_gate): a grant's
	 * invalidation waits while FILE exists before the thread sends it, so
	 * that it goes out while a lookup's reply waits at the same gate, the
	 * kernel not having the inode yet; or NULL. */
	const char *test_reply_gate;
	struct fuse_session *se;
	pthread_t thread;
	struct ref *refs[NBUCKETS];
	void (*restore_hook)(void *arg); /* fuse_inval_set_restore_hook */
	void *restore_arg;
};

static struct ref **ref_slot(struct fuse_inval *v, uint64_t id)
{
	struct ref **p = &v->refs[(id ^ (id >> 48)) % NBUCKETS];

	while (*p && (*p)->id != id)
		p = &(*p)->next;
	return p;
}

void fuse_inval_ref(struct fuse_inval *v, uint64_t id, uint64_t n)
{
	struct ref **p;

	pthread_mutex_lock(&v->mu);
	p = ref_slot(v, id);
	if (!*p && (*p = calloc(1, sizeof(**p))))
		(*p)->id = id;
	if (*p)
		(*p)->count += n;
	pthread_mutex_unlock(&v->mu);
}

void fuse_inval_unref(struct fuse_inval *v, uint64_t id, uint64_t n)
{
	struct ref **p, *r;

	pthread_mutex_lock(&v->mu);
	p = ref_slot(v, id);
	r = *p;
	if (r && r->count <= n) {
		*p = r->next;
		free(r);
	} else if (r) {
		r->count -= n;
	}
	pthread_mutex_unlock(&v->mu);
}

/* Whether the kernel may hold id (the root always). Caller holds mu. */
static bool known(struct fuse_inval *v, uint64_t id)
{
	return id == FUSE_ROOT_ID || *ref_slot(v, id);
}

/* Queues one item if the kernel may cache what it names (the item, or NULL
 * when nothing was queued). Caller holds mu. */
static struct fuse_inval_item *push(struct fuse_inval *v, enum item_kind kind, uint64_t ino,
				    uint64_t child, const char *name, off_t off, off_t len)
{
	size_t nl = name ? strlen(name) : 0;
	struct fuse_inval_item *it;

	if (!v->se || !ino || !known(v, ino))
		return NULL;
	it = malloc(sizeof(*it) + nl + 1);
	if (!it)
		return NULL; /* the attribute timeout bounds the staleness */
	*it = (struct fuse_inval_item){NULL, kind, ino, child, off, len, false};
	memcpy(it->name, name ? name : "", nl + 1);
	*v->tail = it;
	v->tail = &it->next;
	v->queued++;
	pthread_cond_signal(&v->cv);
	return it;
}

static void push_inode(struct fuse_inval *v, uint64_t ino, off_t off, off_t len)
{
	push(v, INV_INODE, ino, 0, NULL, off, len);
}

/* An entry that went away: with the child known, notify_delete also drops a
 * dentry that is in use (a cwd). */
static void push_gone(struct fuse_inval *v, uint64_t parent, const char *name, uint64_t child)
{
	if (child && known(v, child))
		push(v, INV_DELETE, parent, child, name, 0, 0);
	else
		push(v, INV_ENTRY, parent, 0, name, 0, 0);
}

void fuse_inval_prepare(struct fuse_inval *v, struct sm *sm, const Fspb__Command *c,
			struct fuse_inval_pre *pre)
{
	struct stat st;

	(void)v;
	*pre = (struct fuse_inval_pre){0};
	if (c->op_case == FSPB__COMMAND__OP_UNLINK) {
		if (sm_lookup(sm, c->unlink->parent, c->unlink->name, &st) == 0) {
			pre->a = st.st_ino;
			pre->a_linked = !S_ISDIR(st.st_mode) && st.st_nlink > 1;
		}
	} else if (c->op_case == FSPB__COMMAND__OP_RENAME) {
		if (sm_lookup(sm, c->rename->parent, c->rename->name, &st) == 0)
			pre->a = st.st_ino;
		if (sm_lookup(sm, c->rename->new_parent, c->rename->new_name, &st) == 0) {
			pre->b = st.st_ino;
			pre->b_linked = !S_ISDIR(st.st_mode) && st.st_nlink > 1;
		}
	}
}

void fuse_inval_applied(struct fuse_inval *v, const Fspb__Command *c,
			const struct fuse_inval_pre *pre)
{
	pthread_mutex_lock(&v->mu);
	switch (c->op_case) {
	case FSPB__COMMAND__OP_SETATTR:
		push_inode(v, c->setattr->ino, (c->setattr->valid & SM_SET_SIZE) ? 0 : -1, 0);
		break;
	case FSPB__COMMAND__OP_MKNOD:
		push(v, INV_ENTRY, c->mknod->parent, 0, c->mknod->name, 0, 0);
		push_inode(v, c->mknod->parent, -1, 0);
		break;
	case FSPB__COMMAND__OP_MKDIR:
		push(v, INV_ENTRY, c->mkdir->parent, 0, c->mkdir->name, 0, 0);
		push_inode(v, c->mkdir->parent, -1, 0);
		break;
	case FSPB__COMMAND__OP_SYMLINK:
		push(v, INV_ENTRY, c->symlink->parent, 0, c->symlink->name, 0, 0);
		push_inode(v, c->symlink->parent, -1, 0);
		break;
	case FSPB__COMMAND__OP_LINK:
		push(v, INV_ENTRY, c->link->new_parent, 0, c->link->new_name, 0, 0);
		push_inode(v, c->link->new_parent, -1, 0);
		push_inode(v, c->link->ino, -1, 0);
		break;
	case FSPB__COMMAND__OP_UNLINK:
		push_gone(v, c->unlink->parent, c->unlink->name, pre->a_linked ? 0 : pre->a);
		push_inode(v, c->unlink->parent, -1, 0);
		push_inode(v, pre->a, -1, 0);
		break;
	case FSPB__COMMAND__OP_RENAME:
		/* The moved object lives on under its new name: only the old
		 * name goes (notify_delete would mark a directory dead). What was
		 * at the new name is gone, unless exchanged. */
		push(v, INV_ENTRY, c->rename->parent, 0, c->rename->name, 0, 0);
		if (c->rename->flags & RENAME_EXCHANGE)
			push(v, INV_ENTRY, c->rename->new_parent, 0, c->rename->new_name, 0, 0);
		else
			push_gone(v, c->rename->new_parent, c->rename->new_name,
				  pre->b_linked ? 0 : pre->b);
		push_inode(v, c->rename->parent, -1, 0);
		if (c->rename->new_parent != c->rename->parent)
			push_inode(v, c->rename->new_parent, -1, 0);
		push_inode(v, pre->a, -1, 0);
		push_inode(v, pre->b, -1, 0);
		break;
	case FSPB__COMMAND__OP_WRITE:
		push_inode(v, c->write->ino, (off_t)c->write->offset, (off_t)c->write->data.len);
		break;
	case FSPB__COMMAND__OP_FALLOCATE:
		push_inode(v, c->fallocate->ino, 0, 0);
		break;
	case FSPB__COMMAND__OP_SETXATTR:
		push_inode(v, c->setxattr->ino, -1, 0);
		break;
	case FSPB__COMMAND__OP_REMOVEXATTR:
		push_inode(v, c->removexattr->ino, -1, 0);
		break;
	case FSPB__COMMAND__OP_DELEG:
		/* A directory granted to a node: its attributes, which the
		 * holder may now change behind, are asked for again, so the
		 * getattr's fence recalls it first (fuse_ops.c, op_getattr) —
		 * the kernel kept them for up to its timeout otherwise, past
		 * an open's barrier. Known here but not yet in the kernel (a
		 * lookup's or listing's reply on its way, counted before
		 * reply_entry's or readdir_common's last look at grants:
		 * fuse_ops.c): retried until the kernel made the inode
		 * (settle). */
		if (c->deleg->op == FSPB__DELEG__OP__GRANT) {
			struct fuse_inval_item *it;

			atomic_fetch_add(&v->grants, 1);
			it = push(v, INV_INODE, c->deleg->dir, 0, NULL, -1, 0);
			if (it) {
				it->until_known = true;
				v->queued_known++;
			}
		}
		break;
	default:
		break;
	}
	pthread_mutex_unlock(&v->mu);
}

void fuse_inval_entry(struct fuse_inval *v, uint64_t parent, const char *name)
{
	pthread_mutex_lock(&v->mu);
	push(v, INV_ENTRY, parent, 0, name, 0, 0);
	pthread_mutex_unlock(&v->mu);
}

/* 0 or a negative errno (INV_INODE's; the others' 0). */
static int notify(struct fuse_session *se, const struct fuse_inval_item *it)
{
	/* Errors (ENOENT: the kernel dropped it already) need no handling,
	 * but for settle's. */
	switch (it->kind) {
	case INV_INODE:
		return fuse_lowlevel_notify_inval_inode(se, it->ino, it->off, it->len);
	case INV_ENTRY:
		fuse_lowlevel_notify_inval_entry(se, it->ino, it->name, strlen(it->name));
		break;
	case INV_DELETE:
		if (fuse_lowlevel_notify_delete(se, it->ino, it->child, it->name,
						strlen(it->name)) != 0)
			fuse_lowlevel_notify_inval_entry(se, it->ino, it->name, strlen(it->name));
		break;
	}
	return 0;
}

/* it (until_known) was answered ENOENT: the kernel does not have the inode.
 * While this mount counts a lookup of it, the kernel either forgot it (a
 * FORGET on its way drops the count) or has not made it yet: the thread
 * that asked for a lookup (or readdirplus) got the reply and makes the
 * inode from it after the reply's write returned (fuse_iget), with the
 * attributes of the reply — unless an invalidation came first: it bumps the
 * inode's attr_version past the one the lookup sampled before it asked, and
 * fuse_change_attributes then keeps the reply's attributes out. So the
 * invalidation is retried until the kernel has the inode, the count is
 * gone, SETTLE_MAX_MS passed, or the mount's session is no longer se (the
 * mount stopping: every notify answers ENOENT then, and fuse_mount_finish
 * may close the device under a notify). Called and returns with mu held. */
static void settle(struct fuse_inval *v, struct fuse_session *se, const struct fuse_inval_item *it)
{
	int64_t start = mono_ms(), pause = SETTLE_FIRST_NS;

	v->settling = true;
	pthread_cond_broadcast(&v->done_cv);
	while (known(v, it->ino) && !v->stop && v->se == se && mono_ms() - start < SETTLE_MAX_MS) {
		struct timespec ts = {0, pause};
		int rc;

		pthread_mutex_unlock(&v->mu);
		nanosleep(&ts, NULL);
		rc = notify(se, it);
		pthread_mutex_lock(&v->mu);
		if (rc != -ENOENT)
			break;
		if ((pause *= 2) > SETTLE_PAUSE_MAX_NS)
			pause = SETTLE_PAUSE_MAX_NS;
	}
	v->settling = false;
}

static void *inval_main(void *arg)
{
	struct fuse_inval *v = arg;

	pthread_mutex_lock(&v->mu);
	for (;;) {
		struct fuse_inval_item *it;
		struct fuse_session *se;
		int rc;

		while (!v->head && !v->stop)
			pthread_cond_wait(&v->cv, &v->mu);
		if (v->stop)
			break;
		it = v->head;
		v->head = it->next;
		if (!v->head)
			v->tail = &v->head;
		se = v->se;
		pthread_mutex_unlock(&v->mu);
		if (it->until_known)
			test_gate_wait(v->test_reply_gate);
		rc = se ? notify(se, it) : 0;
		pthread_mutex_lock(&v->mu);
		/* Waiters for tried_known are woken with those for handled
		 * below, or by settle, which may take a while. */
		if (it->until_known)
			v->tried_known++;
		/* Handled only once settled: an open's wait (close-to-open)
		 * covers a grant's invalidation the kernel got late. */
		if (rc == -ENOENT && it->until_known)
			settle(v, se, it);
		free(it);
		v->handled++;
		pthread_cond_broadcast(&v->done_cv);
	}
	pthread_mutex_unlock(&v->mu);
	return NULL;
}

int fuse_inval_new(struct fuse_inval **out)
{
	struct fuse_inval *v = calloc(1, sizeof(*v));
	int rc;

	if (!v)
		return -ENOMEM;
	pthread_mutex_init(&v->mu, NULL);
	pthread_cond_init(&v->cv, NULL);
	pthread_cond_init(&v->done_cv, NULL);
	v->tail = &v->head;
	v->test_reply_gate = test_hook_env("RAFTFS_TEST_REPLY_GATE");
	rc = pthread_create(&v->thread, NULL, inval_main, v);
	if (rc) {
		free(v);
		return -rc;
	}
	*out = v;
	return 0;
}

void fuse_inval_free(struct fuse_inval *v)
{
	if (!v)
		return;
	pthread_mutex_lock(&v->mu);
	v->stop = true;
	pthread_cond_broadcast(&v->cv);
	pthread_cond_broadcast(&v->done_cv);
	pthread_mutex_unlock(&v->mu);
	pthread_join(v->thread, NULL);
	while (v->head) {
		struct fuse_inval_item *it = v->head;

		v->head = it->next;
		free(it);
	}
	for (size_t i = 0; i < NBUCKETS; i++)
		while (v->refs[i]) {
			struct ref *r = v->refs[i];

			v->refs[i] = r->next;
			free(r);
		}
	pthread_cond_destroy(&v->done_cv);
	pthread_cond_destroy(&v->cv);
	pthread_mutex_destroy(&v->mu);
	free(v);
}

void fuse_inval_set_session(struct fuse_inval *v, struct fuse_session *se)
{
	pthread_mutex_lock(&v->mu);
	v->se = se;
	pthread_mutex_unlock(&v->mu);
}

struct names {
	struct fuse_inval *v;
	uint64_t dir;
	struct fuse_inval_item *head;
};

static int collect_name(void *arg, const char *name, const struct stat *st, off_t next)
{
	struct names *n = arg;
	size_t nl = strlen(name);
	struct fuse_inval_item *it;

	(void)st;
	(void)next;
	if (!strcmp(name, ".") || !strcmp(name, ".."))
		return 0;
	it = malloc(sizeof(*it) + nl + 1);
	if (!it)
		return 1;
	*it = (struct fuse_inval_item){n->head, INV_ENTRY, n->dir, 0, 0, 0, false};
	memcpy(it->name, name, nl + 1);
	n->head = it;
	return 0;
}

struct fuse_inval_item *fuse_inval_names_before_restore(struct fuse_inval *v, struct sm *sm)
{
	struct names n = {v, 0, NULL};
	uint64_t *dirs = NULL;
	size_t nd = 0, cap = 0;

	/* The ids first (under mu), the names after (sm takes its own lock). */
	pthread_mutex_lock(&v->mu);
	for (size_t i = 0; v->se && i < NBUCKETS; i++)
		for (struct ref *r = v->refs[i]; r; r = r->next) {
			if (nd == cap) {
				uint64_t *d =
				    realloc(dirs, (cap = cap ? 2 * cap : 64) * sizeof(*d));

				if (!d)
					break;
				dirs = d;
			}
			if (nd < cap)
				dirs[nd++] = r->id;
		}
	pthread_mutex_unlock(&v->mu);
	for (size_t i = 0; i <= nd; i++) {
		struct stat st;

		n.dir = i < nd ? dirs[i] : FUSE_ROOT_ID;
		if (sm_getattr(sm, n.dir, &st) == 0 && S_ISDIR(st.st_mode))
			sm_readdir(sm, n.dir, 0, false, collect_name, &n);
	}
	free(dirs);
	return n.head;
}

void fuse_inval_set_restore_hook(struct fuse_inval *v, void (*fn)(void *arg), void *arg)
{
	pthread_mutex_lock(&v->mu);
	v->restore_hook = fn;
	v->restore_arg = arg;
	pthread_mutex_unlock(&v->mu);
}

void fuse_inval_restored(struct fuse_inval *v, struct fuse_inval_item *names)
{
	void (*hook)(void *arg);
	void *arg;

	pthread_mutex_lock(&v->mu);
	hook = v->restore_hook;
	arg = v->restore_arg;
	push_inode(v, FUSE_ROOT_ID, 0, 0);
	for (size_t i = 0; i < NBUCKETS; i++)
		for (struct ref *r = v->refs[i]; r; r = r->next)
			push_inode(v, r->id, 0, 0);
	while (names) {
		struct fuse_inval_item *it = names;

		names = it->next;
		if (v->se) {
			it->next = NULL;
			*v->tail = it;
			v->tail = &it->next;
			v->queued++;
		} else {
			free(it);
		}
	}
	pthread_cond_signal(&v->cv);
	pthread_mutex_unlock(&v->mu);
	if (hook)
		hook(arg);
}

uint64_t fuse_inval_attr_mark(struct fuse_inval *v, uint64_t id)
{
	uint64_t m;

	pthread_mutex_lock(&v->mu);
	if (v->se) {
		struct fuse_inval_item *it = malloc(sizeof(*it) + 1);

		if (it) {
			*it = (struct fuse_inval_item){NULL, INV_INODE, id, 0, -1, 0, false};
			it->name[0] = '\0';
			*v->tail = it;
			v->tail = &it->next;
			v->queued++;
			pthread_cond_signal(&v->cv);
		}
	}
	m = v->queued;
	pthread_mutex_unlock(&v->mu);
	return m;
}

uint64_t fuse_inval_grants(struct fuse_inval *v)
{
	return atomic_load(&v->grants);
}

uint64_t fuse_inval_mark(struct fuse_inval *v)
{
	uint64_t m;

	pthread_mutex_lock(&v->mu);
	m = v->queued;
	pthread_mutex_unlock(&v->mu);
	return m;
}

/* Waits until the thread sent every grant's invalidation queued before
 * the call to the kernel once (fuse_inval_test_reply_gate). */
static void wait_grants_tried(struct fuse_inval *v)
{
	struct timespec until;
	uint64_t mark;

	clock_gettime(CLOCK_REALTIME, &until); /* done_cv's clock */
	until.tv_sec += TEST_GATE_MAX_S;
	pthread_mutex_lock(&v->mu);
	mark = v->queued_known;
	while (v->tried_known < mark && !v->settling && !v->stop)
		if (pthread_cond_timedwait(&v->done_cv, &v->mu, &until) == ETIMEDOUT) {
			fprintf(stderr,
				"raftfs: test hook: a grant's invalidation not sent "
				"after %d s: the reply goes on\n",
				TEST_GATE_MAX_S);
			break;
		}
	pthread_mutex_unlock(&v->mu);
}

void fuse_inval_wait(struct fuse_inval *v, uint64_t mark)
{
	pthread_mutex_lock(&v->mu);
	while (v->handled < mark && !v->stop)
		pthread_cond_wait(&v->done_cv, &v->mu);
	pthread_mutex_unlock(&v->mu);
}

void fuse_inval_test_reply_gate(struct fuse_inval *v)
{
	if (!v || !v->test_reply_gate)
		return;
	test_gate_wait(v->test_reply_gate);
	wait_grants_tried(v);
}
