/* fs_node.c — the filesystem state machine as a node_sm, and the proposer. */
#include "fs_node.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd_merge.h"
#include "fs_plug.h"
#include "fuse_inval.h"
#include "node_members.h"
#include "sm_snapshot.h"
#include "snap_node.h"
#include "test_gate.h"

struct fs_node {
	struct sm *sm;
	node *n;
	_Atomic(struct fuse_inval *) inv;
	/* This process's client id in the envelopes, the runtime's
	 * (node_client_id, set by fs_node_attach). The kernel already knows
	 * what our own requests changed, so their commands need no
	 * invalidation. It used to be guessed from the client of the entry
	 * applied last when our first proposal completed, which a proposal
	 * answered from a restored snapshot (node_answer_restored: no apply
	 * of its own before it) could make another node's, for good. */
	_Atomic uint64_t own_client;
	_Atomic(const struct fs_deleg_sink *) deleg;
	uint32_t id;	     /* this node's id (Command.node) */
	bool write_behind;   /* [fs] write_behind */
	bool close_behind;   /* [fs] close = behind */
	atomic_bool stalled; /* the last proposal or barrier to end timed out */
	atomic_bool back;    /* this node's start command applied (fs_node_back) */
	struct fs_plug *plug; /* lazy proposals held back briefly (fs_plug.h) */
	atomic_uint outstanding; /* proposals and barriers whose done has not run */
	struct fuse_inval_pre inval_pre; /* inval_around_apply (apply thread only) */
	/* Tests: RAFTFS_TEST_HELLO_GATE (fs/fuse_run.c, struct hello): while
	 * that file exists this node gets no command out — every proposal
	 * waits here (the start command itself is held back by the main
	 * loop, which must not block) — as a restarted node none of whose
	 * commands committed yet (tests/mount/mount_holder_early.sh). */
	const char *test_hello_gate;
};

/* Writes smaller than this may be held (fs_plug.h); a bigger one is a log
 * write's worth by itself (and goes to the value log). */
#define PLUG_LAZY_WRITE (64u << 10)
/* How long a lazy proposal may wait for company by default (environment
 * RAFTFS_PLUG_US; 0 turns holding off). Long enough for a program's next
 * call on the same file (tens of microseconds), short against a commit
 * round (0.4-2 ms here). */
#define PLUG_LINGER_US 1000u
/* fs_node_progressing says false while this node's apply lags its commit
 * by more than this (node_apply_lag_ms). A second below the 3 s of
 * silence after which a recaller revokes (FUSE_REVOKE_AFTER_MS,
 * fs/fuse_grant.h; the second covers this node learning of a commit
 * late, as the lag counts from when it learned): a
 * holder that answers a close early has applied every Recall committed
 * more than this long ago, so it proposed the Return and holds no
 * directory a Revoke already took. Counting commits only, a holder whose
 * apply stalls (a slow disk for its tree) went on answering early while
 * its proposals committed, and after a Revoke its next early close named
 * a file that failed at apply: acknowledged, absent everywhere. Not
 * lower: a healthy follower under a tar x lags past 1 s now and then, and
 * each close that then waits does so for the whole backlog (clientfix's
 * runs: tar x 13.1 s mean without the bound, 15.8 s with 1 s). */
#define APPLY_LAG_MAX_MS 2000u

struct waiter {
	struct fs_node *f;
	fs_done_fn done;
	void *arg;
	/* Proposals merged into this one's command (fs_plug_merge_newest):
	 * completed right after it, with its result, in proposal order. */
	struct waiter *also;
};

static int plug_start(void *ctx, const struct fs_plug_cmd *cmds, unsigned n);
static void plug_fail(void *ctx, void *arg, int err);

static unsigned plug_linger_us(void)
{
	const char *e = getenv("RAFTFS_PLUG_US");

	return e && *e ? (unsigned)strtoul(e, NULL, 10) : PLUG_LINGER_US;
}

/* One more proposal or barrier outstanding. */
static void outstanding_inc(struct fs_node *f)
{
	atomic_fetch_add(&f->outstanding, 1);
}

/* One completed. */
static void outstanding_dec(struct fs_node *f)
{
	atomic_fetch_sub(&f->outstanding, 1);
}

bool fs_node_progressing(struct fs_node *f, unsigned ms)
{
	/* Stopped applying (disk full, I/O error): its loop no longer sends
	 * what it proposes, so an answer before commit would be a promise
	 * nobody keeps (tests/fuzz/disk_full.sh). */
	if (node_fault(f->n))
		return false;
	/* A proposal counts as answered once committed, not once applied
	 * here: a node whose apply lags its commit by seconds (a slow disk, a
	 * busy holder) still gets its proposals through, and counting applies
	 * turned its closes synchronous at every 100 ms pause of its apply,
	 * each then waiting for the whole backlog (mount.slow_holder, session
	 * 8; tests/fs/mount_close_lease.sh). A node cut off sees none commit.
	 * But not lagging without bound: see APPLY_LAG_MAX_MS. */
	return node_unanswered_ms(f->n) <= ms && node_apply_lag_ms(f->n) <= APPLY_LAG_MAX_MS;
}

uint64_t fs_node_peer_link(struct fs_node *f, uint32_t id)
{
	return node_peer_link(f->n, id);
}

size_t fs_node_members(struct fs_node *f, uint32_t *out, size_t cap)
{
	uint64_t ids[2 * CONFIG_MAX_PEERS];
	size_t nv, nl;

	if (!f->n)
		return 0;
	nv = node_voters(f->n, ids, CONFIG_MAX_PEERS);
	nl = node_learners(f->n, ids + CONFIG_MAX_PEERS, CONFIG_MAX_PEERS);
	if (nv > CONFIG_MAX_PEERS || nl > CONFIG_MAX_PEERS || nv + nl > cap)
		return 0;
	for (size_t i = 0; i < nv; i++)
		out[i] = (uint32_t)ids[i];
	for (size_t i = 0; i < nl; i++)
		out[nv + i] = (uint32_t)ids[CONFIG_MAX_PEERS + i];
	return nv + nl;
}

int64_t fs_node_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* NODE_E* to the errno a FUSE caller sees. No quorum shows as ETIMEDOUT
 * after the bounded proposal timeout. */
static int node_errno(int status)
{
	switch (status) {
	case NODE_ENOLEADER:
	case NODE_ELEADERLOST:
	case NODE_ETIMEOUT:
		return ETIMEDOUT;
	case NODE_ENOMEM:
		return ENOMEM;
	default:
		return EIO;
	}
}

static uint64_t nsm_applied_index(void *ctx)
{
	struct fs_node *f = ctx;

	return sm_applied_index(f->sm);
}

/* sm's apply hook: another node's command changes what this mount's kernel
 * may cache; what to invalidate is read before the change (names, parents)
 * and queued after it (apply thread only, so `pre` needs no lock). The
 * mount's own commands need nothing: its kernel saw them happen. */
static void inval_around_apply(void *arg, uint64_t client, const Fspb__Command *c, bool done)
{
	struct fs_node *f = arg;
	struct fuse_inval *inv = atomic_load(&f->inv);

	if (!inv || client == atomic_load(&f->own_client))
		return;
	if (!done)
		fuse_inval_prepare(inv, f->sm, c, &f->inval_pre);
	else
		fuse_inval_applied(inv, c, &f->inval_pre);
}

static int nsm_apply(void *ctx, uint64_t index, const envelope *env, const uint8_t *cmd, size_t len,
		     int64_t *result)
{
	struct fs_node *f = ctx;
	int64_t r = 0;
	int rc;

	rc = sm_apply_entry(f->sm, index, env->client, env->seq, env->min_pending, cmd, len, &r);
	if (rc < 0) {
		fprintf(stderr, "fs: applying entry %llu failed: %s\n", (unsigned long long)index,
			strerror(-rc));
		return rc;
	}
	*result = r;
	return 0;
}

/* The duplicate table sm_apply records into, for the runtime's order rule
 * (node.h). */
static const dedup *nsm_dedup_table(void *ctx)
{
	struct fs_node *f = ctx;

	return sm_dedup(f->sm);
}

static int nsm_apply_empty(void *ctx, uint64_t index)
{
	struct fs_node *f = ctx;

	return sm_apply_empty(f->sm, index);
}

/* Snapshots: fs/snap_node.h (snap helper). */
static int nsm_snapshot(void *ctx, node_snap_write write, void *warg)
{
	struct fs_node *f = ctx;

	return snap_node_snapshot(f->sm, write, warg);
}

static int nsm_snapshot_begin(void *ctx, void **job)
{
	struct fs_node *f = ctx;

	return snap_node_begin(f->sm, job);
}

static int nsm_snapshot_stream(void *ctx, void *job, node_snap_write write, void *warg)
{
	(void)ctx;
	return snap_node_stream(job, write, warg);
}

static void nsm_snapshot_end(void *ctx, void *job)
{
	(void)ctx;
	snap_node_end(job);
}

static int nsm_restore(void *ctx, uint64_t index, node_snap_read read, void *rarg)
{
	struct fs_node *f = ctx;
	struct fuse_inval *inv = atomic_load(&f->inv);
	/* The whole tree changes: whatever the kernel cached may be stale. */
	struct fuse_inval_item *names = inv ? fuse_inval_names_before_restore(inv, f->sm) : NULL;
	int rc = snap_node_restore(f->sm, index, read, rarg);

	if (inv)
		fuse_inval_restored(inv, names);
	return rc;
}

/* The state machine's delegation hook, installed before the apply thread
 * runs; the mount that wants the events comes and goes later. */
static void deleg_forward(void *arg, uint64_t dir, int op, uint32_t by, uint32_t holder,
			  uint64_t epoch)
{
	struct fs_node *f = arg;
	const struct fs_deleg_sink *s = atomic_load(&f->deleg);

	if (s)
		s->fn(s->arg, dir, op, by, holder, epoch);
}

int fs_node_open(const char *data_dir, uint32_t node_id, struct fs_node **out)
{
	struct fs_node *f = calloc(1, sizeof(*f));
	int rc;

	if (!f)
		return -ENOMEM;
	/* Finish (or drop) a snapshot install a crash interrupted. */
	rc = sm_snapshot_recover(data_dir);
	if (rc == 0)
		rc = sm_open(data_dir, node_id, &f->sm);
	if (rc < 0) {
		free(f);
		return rc;
	}
	f->id = node_id;
	f->test_hello_gate = test_hook_env("RAFTFS_TEST_HELLO_GATE");
	rc = fs_plug_new(plug_linger_us(), plug_start, plug_fail, f, &f->plug);
	if (rc < 0) {
		sm_close(f->sm);
		free(f);
		return rc;
	}
	sm_set_deleg_hook(f->sm, deleg_forward, f);
	sm_set_apply_hook(f->sm, inval_around_apply, f);
	*out = f;
	return 0;
}

void fs_node_set_deleg_sink(struct fs_node *f, const struct fs_deleg_sink *sink)
{
	atomic_store(&f->deleg, sink);
}

uint32_t fs_node_id(struct fs_node *f)
{
	return f->id;
}

void fs_node_set_write_behind(struct fs_node *f, bool on)
{
	f->write_behind = on;
}

bool fs_node_write_behind(struct fs_node *f)
{
	return f->write_behind;
}

void fs_node_set_close_behind(struct fs_node *f, bool on)
{
	f->close_behind = on;
}

bool fs_node_close_behind(struct fs_node *f)
{
	return f->close_behind;
}

void fs_node_set_back(struct fs_node *f)
{
	atomic_store(&f->back, true);
}

bool fs_node_back(struct fs_node *f)
{
	return atomic_load(&f->back);
}

bool fs_node_stalled(struct fs_node *f)
{
	return atomic_load(&f->stalled);
}

unsigned fs_node_outstanding(struct fs_node *f)
{
	return atomic_load(&f->outstanding);
}

void fs_node_close(struct fs_node *f)
{
	if (!f)
		return;
	if (getenv("RAFTFS_STAGES") && strcmp(getenv("RAFTFS_STAGES"), "0")) {
		struct fs_plug_stats st;

		fs_plug_stats(f->plug, &st);
		fprintf(stderr,
			"fs: node %u held %llu proposals back; started by an eager one %llu, "
			"a flush %llu, the limit %llu, the linger %llu; %llu merged into the last "
			"one waiting; %llu entries started, %llu of them batches; %llu files closed "
			"in one entry, %llu not; %llu woke the flusher\n",
			f->id, (unsigned long long)st.held, (unsigned long long)st.by_eager,
			(unsigned long long)st.by_flush, (unsigned long long)st.by_limit,
			(unsigned long long)st.by_linger, (unsigned long long)st.merged,
			(unsigned long long)st.entries, (unsigned long long)st.batches,
			(unsigned long long)st.units, (unsigned long long)st.units_split,
			(unsigned long long)st.wakes);
	}
	fs_plug_free(f->plug);
	sm_close(f->sm);
	free(f);
}

void fs_node_iface(struct fs_node *f, node_sm *out)
{
	*out = (node_sm){
	    .ctx = f,
	    .applied_index = nsm_applied_index,
	    .apply = nsm_apply,
	    .apply_empty = nsm_apply_empty,
	    .snapshot = nsm_snapshot,
	    .snapshot_begin = nsm_snapshot_begin,
	    .snapshot_stream = nsm_snapshot_stream,
	    .snapshot_end = nsm_snapshot_end,
	    .restore = nsm_restore,
	    .dedup_table = nsm_dedup_table,
	};
}

void fs_node_attach(struct fs_node *f, node *n)
{
	f->n = n;
	atomic_store(&f->own_client, node_client_id(n));
}

uint64_t fs_node_own_client(struct fs_node *f)
{
	return atomic_load(&f->own_client);
}

void fs_node_set_inval(struct fs_node *f, struct fuse_inval *inv)
{
	atomic_store(&f->inv, inv);
	/* Hold lazy proposals only while a mount serves: one that stops
	 * starts what is held before its node stops (fs_node.h). */
	fs_plug_enable(f->plug, inv != NULL);
}

void fs_node_flush(struct fs_node *f)
{
	fs_plug_flush(f->plug);
}

uint64_t fs_node_unit_begin(struct fs_node *f)
{
	return fs_plug_unit_begin(f->plug);
}

void fs_node_unit_end(struct fs_node *f, uint64_t mark)
{
	fs_plug_unit_end(f->plug, mark);
}

bool fs_node_flush_unit(struct fs_node *f, uint64_t mark)
{
	return fs_plug_flush_unit(f->plug, mark);
}

struct sm *fs_node_sm(struct fs_node *f)
{
	return f->sm;
}

/* A completion's status as the caller's errno. */
static int status_errno(struct fs_node *f, int status)
{
	return node_fault(f->n) ? EIO : node_errno(status);
}

/* What every completion of a started proposal tells f. */
static void note_completion(struct fs_node *f, int status)
{
	atomic_store(&f->stalled, status < 0 && status_errno(f, status) == ETIMEDOUT);
}

/* Completes w and the proposals merged into it with err. */
static void finish_chain(struct waiter *w, int err)
{
	while (w) {
		struct waiter *next = w->also;

		w->done(w->arg, err);
		outstanding_dec(w->f);
		free(w);
		w = next;
	}
}

static void proposal_done(void *arg, int status, int64_t result, uint64_t index)
{
	struct waiter *w = arg;

	(void)index;
	note_completion(w->f, status);
	finish_chain(w, status < 0 ? status_errno(w->f, status) : (int)result);
}

/* A proposal carrying several commands (a Batch entry): their waiters in
 * order; each gets its own command's result, byte k of the entry's
 * (sm_apply_entry). */
struct batch_waiter {
	struct fs_node *f;
	unsigned n;
	struct waiter *w[FS_PLUG_BATCH_MAX];
};

_Static_assert(FS_PLUG_BATCH_MAX <= SM_BATCH_MAX, "a batch's results must fit its entry's");

static void batch_done(void *arg, int status, int64_t result, uint64_t index)
{
	struct batch_waiter *b = arg;

	(void)index;
	note_completion(b->f, status);
	for (unsigned k = 0; k < b->n; k++) {
		int err = status < 0 ? status_errno(b->f, status)
				     : (int)(((uint64_t)result >> (8 * k)) & 0xff);

		finish_chain(b->w[k], err);
	}
	free(b);
}

/* Starts cmds[0..n) as one Batch entry (fs.proto): they commit, and apply
 * on every node, together or not at all. */
static int start_batch(struct fs_node *f, const struct fs_plug_cmd *cmds, unsigned n)
{
	struct batch_waiter *b = malloc(sizeof(*b));
	ProtobufCBinaryData parts[FS_PLUG_BATCH_MAX];
	Fspb__Batch bt = FSPB__BATCH__INIT;
	Fspb__Command c = FSPB__COMMAND__INIT;
	uint8_t *buf = NULL;
	size_t len;
	int rc;

	if (!b)
		return ENOMEM;
	b->f = f;
	b->n = n;
	for (unsigned k = 0; k < n; k++) {
		parts[k] = (ProtobufCBinaryData){cmds[k].len, (uint8_t *)cmds[k].buf};
		b->w[k] = cmds[k].arg;
	}
	bt.n_cmds = n;
	bt.cmds = parts;
	c.node = f->id;
	c.op_case = FSPB__COMMAND__OP_BATCH;
	c.batch = &bt;
	len = fspb__command__get_packed_size(&c);
	if (!(buf = malloc(len))) {
		free(b);
		return ENOMEM;
	}
	fspb__command__pack(&c, buf);
	rc = node_start(f->n, buf, len, 0, batch_done, b, NULL, NULL);
	free(buf);
	if (rc < 0) {
		free(b);
		return node_errno(rc);
	}
	return 0;
}

/* The plug's start (fs_plug.h): under the plug's lock, in proposal order. */
static int plug_start(void *ctx, const struct fs_plug_cmd *cmds, unsigned n)
{
	struct fs_node *f = ctx;
	int rc;

	/* As fs_node_propose: held ones too fail at once on a node that
	 * stopped applying (a close flushing them then reports EIO), rather
	 * than wait out the proposal timeout in a loop that sends nothing. */
	if (node_fault(f->n))
		return EIO;
	if (n > 1)
		return start_batch(f, cmds, n);
	rc = node_start(f->n, cmds[0].buf, cmds[0].len, 0, proposal_done, cmds[0].arg, NULL, NULL);
	return rc < 0 ? node_errno(rc) : 0;
}

/* A held proposal that could not be started: completed with the error. */
static void plug_fail(void *ctx, void *arg, int err)
{
	struct waiter *w = arg;

	(void)ctx;
	while (w) {
		struct waiter *next = w->also;

		w->done(w->arg, err);
		outstanding_dec(w->f);
		free(w);
		w = next;
	}
}

/* Commands that may wait for company (fs_plug.h): those answered before
 * they apply — write-behind metadata and small writes — whose caller is
 * not waiting for them now. Big writes fill a log write alone; everything
 * else has a caller waiting, and goes at once (with what is held before
 * it). Nothing is held once the node saw a timeout: then every answer
 * waits for its commit anyway. */
static bool lazy(struct fs_node *f, const Fspb__Command *c, size_t len)
{
	if (atomic_load(&f->stalled))
		return false;
	if (c->behind)
		return true;
	/* Nobody waits for these either: orphan Releases (fs_release.c) and
	 * the returner's Returns (it flushes them after each round, as a
	 * recaller may wait for them); nor for a recaller's Recalls until it
	 * flushes them (one, or a listing's all at once: fuse_listed.h).
	 * Eager, each started everything held: during an unlink stream the
	 * Releases of the unlinks applied so far cut the held unlinks into
	 * one entry each. */
	if (c->op_case == FSPB__COMMAND__OP_RELEASE ||
	    (c->op_case == FSPB__COMMAND__OP_DELEG && (c->deleg->op == FSPB__DELEG__OP__RETURN ||
						       c->deleg->op == FSPB__DELEG__OP__RECALL)))
		return true;
	return c->op_case == FSPB__COMMAND__OP_WRITE && len < PLUG_LAZY_WRITE;
}

/* fs_node_amend's merge: the held proposal of (done, arg) takes the
 * command packed in buf. */
struct amend {
	fs_done_fn done;
	void *arg;
	uint8_t *buf;
	size_t len;
};

static bool amend_merge(void *mctx, void *warg, const uint8_t *held, size_t held_len,
			uint8_t **buf, size_t *len)
{
	const struct waiter *w = warg;
	struct amend *a = mctx;

	(void)held;
	(void)held_len;
	if (w->done != a->done || w->arg != a->arg)
		return false;
	*buf = a->buf;
	*len = a->len;
	return true;
}

bool fs_node_amend(struct fs_node *f, fs_done_fn done, void *arg, const Fspb__Command *c)
{
	struct amend a = {done, arg, NULL, fspb__command__get_packed_size(c)};

	if (!(a.buf = malloc(a.len ? a.len : 1)))
		return false;
	fspb__command__pack(c, a.buf);
	if (fs_plug_merge_newest(f->plug, amend_merge, &a))
		return true;
	free(a.buf);
	return false;
}

/* merge_write's merge: c, a small write, continues the held write of the
 * same file by the same caller (cmd_merge.h): one command carries both,
 * and w is completed after the held one. */
struct write_merge_ctx {
	const Fspb__Command *c;
	struct waiter *w;
};

static bool write_merge_held(void *mctx, void *warg, const uint8_t *held, size_t held_len,
			     uint8_t **buf, size_t *len)
{
	struct write_merge_ctx *m = mctx;
	struct waiter *hw = warg;
	Fspb__Command *a = fspb__command__unpack(NULL, held_len, held);
	Fspb__Command out;
	Fspb__Write w;
	uint8_t *data = NULL;
	bool ok = false;

	if (a && write_mergeable(a, m->c, PLUG_LAZY_WRITE - 1) &&
	    (data = malloc(a->write->data.len + m->c->write->data.len))) {
		write_merge(a, m->c, &out, &w, data);
		*len = fspb__command__get_packed_size(&out);
		if ((*buf = malloc(*len))) {
			fspb__command__pack(&out, *buf);
			while (hw->also)
				hw = hw->also;
			hw->also = m->w;
			ok = true;
		}
	}
	free(data);
	if (a)
		fspb__command__free_unpacked(a, NULL);
	return ok;
}

/* A small write that continues the newest held one (tar writes a file's
 * data in two parts when it crosses a record of the archive): merged into
 * it, one command and one log entry instead of two. */
static bool merge_write(struct fs_node *f, const Fspb__Command *c, struct waiter *w)
{
	struct write_merge_ctx m = {c, w};

	if (c->op_case != FSPB__COMMAND__OP_WRITE || c->write->append)
		return false;
	return fs_plug_merge_newest(f->plug, write_merge_held, &m);
}

int fs_node_propose(struct fs_node *f, const Fspb__Command *c, fs_done_fn done, void *arg)
{
	size_t len = fspb__command__get_packed_size(c);
	uint8_t *buf;
	struct waiter *w;
	int rc;

	test_gate_wait(f->test_hello_gate);
	buf = malloc(len ? len : 1);
	w = malloc(sizeof(*w));
	/* A node whose state machine failed cannot answer from its own apply:
	 * refuse at once rather than after the timeout. */
	if (node_fault(f->n)) {
		free(buf);
		free(w);
		return EIO;
	}
	if (!buf || !w) {
		free(buf);
		free(w);
		return ENOMEM;
	}
	*w = (struct waiter){f, done, arg, NULL};
	outstanding_inc(f);
	if (lazy(f, c, len) && merge_write(f, c, w)) {
		free(buf);
		return 0;
	}
	fspb__command__pack(c, buf);
	/* buf belongs to the plug from here. */
	rc = fs_plug_propose(f->plug, buf, len, w, lazy(f, c, len));
	if (rc) {
		outstanding_dec(f);
		free(w);
		return rc;
	}
	return 0;
}

static void barrier_done(void *arg, int status)
{
	struct waiter *w = arg;
	int err = status < 0 ? node_errno(status) : 0;

	atomic_store(&w->f->stalled, err == ETIMEDOUT);
	w->done(w->arg, err);
	outstanding_dec(w->f);
	free(w);
}

int fs_node_barrier(struct fs_node *f, fs_done_fn done, void *arg)
{
	struct waiter *w = malloc(sizeof(*w));
	int rc;

	if (!w)
		return ENOMEM;
	*w = (struct waiter){f, done, arg, NULL};
	outstanding_inc(f);
	rc = node_read_index(f->n, barrier_done, w);
	if (rc < 0) {
		outstanding_dec(f);
		free(w);
		return node_errno(rc);
	}
	return 0;
}
