/* fuse_behind_deleg.c — delegations both ways: recalling (or revoking) a
 * directory another node holds, grant on demand, the state machine's
 * delegation events, the returner thread that returns recalled
 * directories, and the tracker's creation and teardown. */
#include "fuse_behind_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fs_node.h"
#include "fuse_fs_impl.h"
#include "fuse_grant.h"
#include "fuse_listed.h"
#include "sm.h"
#include "sm_starts.h"
#include "test_gate.h"

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

/* Proposes the Deleg g as this node; wait: waits for its result. */
static int send_deleg(struct fuse_behind *b, Fspb__Deleg *g, bool wait)
{
	struct call_wait w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0};
	Fspb__Command c;
	int rc;

	fspb__command__init(&c);
	c.time_ns = fs_node_now();
	c.node = b->self;
	c.op_case = FSPB__COMMAND__OP_DELEG;
	c.deleg = g;
	rc = fs_node_propose(b->fs->fsn, &c, wait ? call_done : ignore_done, wait ? &w : NULL);
	if (rc || !wait)
		return rc;
	pthread_mutex_lock(&w.mu);
	while (!w.done)
		pthread_cond_wait(&w.cv, &w.mu);
	pthread_mutex_unlock(&w.mu);
	return w.err;
}

/* A Deleg command for dir as this node; waits for it if wait. */
static int propose_deleg(struct fuse_behind *b, uint64_t dir, int op, uint64_t epoch, bool wait)
{
	Fspb__Deleg g = FSPB__DELEG__INIT;

	g.dir = dir;
	g.op = op;
	g.epoch = epoch;
	/* A grant says how this mount closes there: every mount fences a
	 * directory whose holder closes behind (fuse_behind_fence). */
	g.close_behind = op == FSPB__DELEG__OP__GRANT && fs_node_close_behind(b->fs->fsn);
	return send_deleg(b, &g, wait);
}

/* The Revoke of dir's delegation epoch, decided when the holder's last
 * start command applied here was `known` (its index; fs/sm_starts.h):
 * should the holder's start that applies before this Revoke be newer (it
 * came back after the decision), the Revoke changes nothing and returns
 * SM_RESULT_HOLDER_BACK. Waits for it. Tests: RAFTFS_TEST_REVOKE_GATE=FILE
 * holds the decided Revoke here while FILE exists, so that a test can
 * bring the holder back between a decision and its proposal
 * (tests/mount/mount_revoke_known.sh). */
static int propose_revoke(struct fuse_behind *b, uint64_t dir, uint64_t epoch, uint64_t known)
{
	uint32_t members[2 * CONFIG_MAX_PEERS];
	Fspb__Deleg g = FSPB__DELEG__INIT;
	int rc;

	test_gate_wait(test_hook_env("RAFTFS_TEST_REVOKE_GATE"));
	g.dir = dir;
	g.op = FSPB__DELEG__OP__REVOKE;
	g.epoch = epoch;
	g.n_members = fs_node_members(b->fs->fsn, members, 2 * CONFIG_MAX_PEERS);
	g.members = members;
	g.knows_start = g.n_members > 0 && sm_start_knows(b->fs->sm);
	g.holder_start = known;
	rc = send_deleg(b, &g, true);
	if (rc == SM_RESULT_HOLDER_BACK)
		fprintf(stderr,
			"raftfs: directory %016llx: its holder started again before the Revoke "
			"applied (it knew start %llu): recalling it instead\n",
			(unsigned long long)dir, (unsigned long long)known);
	return rc;
}

/* Revokes dir's delegation epoch (propose_revoke): 0 when the loop looks
 * again — it took, the delegation ended meanwhile (ESTALE), or the holder
 * came back (SM_RESULT_HOLDER_BACK: the wait starts afresh, its cap too,
 * and the holder is recalled) — else the error. */
static int revoke_or_wait_afresh(struct fuse_behind *b, uint64_t dir, uint64_t epoch,
				 uint64_t known, struct fuse_reclaim *clock)
{
	int rc = propose_revoke(b, dir, epoch, known);

	if (rc == SM_RESULT_HOLDER_BACK)
		fuse_reclaim_holder_back(clock, mono_ms());
	return rc == ESTALE || rc == SM_RESULT_HOLDER_BACK ? 0 : rc;
}

/* Reclaim: whoever holds dir returns it (or is revoked). The holder
 * proposes its Return behind every command it made before the Recall
 * applied there, so a busy or slow holder may take a while; when to recall
 * again and when to give up on it is fuse_reclaim_step's (fuse_grant.h):
 * revoked once none of its commands applied here for FUSE_REVOKE_AFTER_MS
 * (down or cut off; FUSE_REVOKE_BUSY_MS once seen working in this wait),
 * or after FUSE_REVOKE_CAP_MS in all however busy. The holder's silence is
 * shared by this mount's recallers (fuse_holder_*): parallel waits for one
 * holder run on one clock, and once one revoked it for silence the others
 * revoke at once until a command of it applies here again. */
static int reclaim_wait(struct fuse_behind *b, uint64_t dir, uint32_t *joined)
{
	struct fuse_reclaim clock;
	bool recalling = false, at_once = false, caught_up = false;

	fuse_reclaim_start(&clock, mono_ms());
	for (;;) {
		uint32_t holder;
		uint64_t epoch, progress, link, known;
		int64_t now, since;
		bool silent;
		enum fuse_reclaim_do step;
		int rc = sm_deleg(b->fs->sm, dir, &holder, &epoch);

		if (rc < 0 || holder == 0 || holder == b->self)
			return 0; /* the command's own checks answer for a bad dir */
		/* What this look knows of the holder's starts, read before
		 * anything it decides on: a Revoke decided on an older one
		 * than the holder's last changes nothing (propose_revoke). */
		known = sm_start_index(b->fs->sm, holder);
		progress = sm_applied_from(b->fs->sm, holder);
		link = fs_node_peer_link(b->fs->fsn, holder);
		now = mono_ms();
		/* *joined: the holder this wait is counted for (0: none; a
		 * full table counts nobody, and is asked again next look). */
		if (holder != *joined) {
			if (*joined)
				fuse_holder_leave(b->grant, *joined);
			*joined = fuse_holder_join(b->grant, holder, progress, link, now) ? holder
											   : 0;
		}
		since = fuse_holder_look(b->grant, holder, progress, link, now, &silent);
		/* Known silent (and not connected anew since: a restarted
		 * holder connects before it mounts, fuse_grant.h): first
		 * catch up with the log once (a read barrier): a holder that
		 * came back says so with a command at its start (fuse_run.c,
		 * propose_hello), and this node may not have applied it yet —
		 * then it is recalled as any live holder is, and what it
		 * answered behind since is not revoked under it. Still
		 * silent: one Revoke, no wait (once per call: should it not
		 * take, the clock below decides). */
		if (silent && !caught_up) {
			caught_up = true;
			(void)ffs_barrier(b->fs);
			continue;
		}
		if (silent && !at_once) {
			at_once = true;
			fprintf(stderr,
				"raftfs: directory %016llx: node %u is silent (a wait for it was "
				"revoked and none of its commands applied since): revoking it at "
				"once\n",
				(unsigned long long)dir, holder);
			if ((rc = revoke_or_wait_afresh(b, dir, epoch, known, &clock)))
				return rc;
			continue;
		}
		step = fuse_reclaim_step(&clock, holder, epoch, progress, link, since, now);
		switch (step) {
		case FUSE_RECLAIM_REVOKE:
			/* Its holder did not return it: down or cut off. Its
			 * commands ordered after this fail at apply. */
			fprintf(stderr,
				"raftfs: directory %016llx: node %u did not return its delegation "
				"(none of its commands applied for %d ms, or %d ms in all): "
				"revoking it\n",
				(unsigned long long)dir, holder,
				clock.busy ? FUSE_REVOKE_BUSY_MS : FUSE_REVOKE_AFTER_MS,
				FUSE_REVOKE_CAP_MS);
			if (!clock.capped)
				fuse_holder_silent(b->grant, holder, progress, link);
			if ((rc = revoke_or_wait_afresh(b, dir, epoch, known, &clock)))
				return rc;
			continue;
		case FUSE_RECLAIM_RECALL:
			/* At most once per FUSE_RECALL_EVERY_MS, however often
			 * the wait below is woken (every delegation event and
			 * completion here wakes it, this Recall's own apply
			 * too: proposing at each woke a Recall per commit round
			 * for as long as a slow holder drained). A listing's
			 * look recalled it with the others just now
			 * (recall_ahead): that one counts as this wait's first. */
			if (!recalling &&
			    fuse_listed_ahead(b->listed, dir, epoch, now, FUSE_RECALL_EVERY_MS)) {
				recalling = true;
				break;
			}
			if (!recalling) {
				recalling = true;
				atomic_fetch_add(&b->recalled, 1);
			}
			if ((rc = propose_deleg(b, dir, FSPB__DELEG__OP__RECALL, epoch, false)))
				return rc;
			/* Recalls are held for company (fs_node.c, lazy): this
			 * one is waited for. */
			fs_node_flush(b->fs->fsn);
			break;
		case FUSE_RECLAIM_WAIT:
			break;
		}
		pthread_mutex_lock(&b->mu);
		if (sm_deleg(b->fs->sm, dir, &holder, &epoch) == 0 && holder != 0 &&
		    holder != b->self)
			bh_wait_ms(b, fuse_reclaim_due(&clock, mono_ms()));
		pthread_mutex_unlock(&b->mu);
	}
}

static int reclaim(struct fuse_behind *b, uint64_t dir)
{
	uint32_t joined = 0;
	int rc = reclaim_wait(b, dir, &joined);

	if (joined)
		fuse_holder_leave(b->grant, joined);
	return rc;
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

	if (!bh_behind_on(b) || sm_deleg(b->fs->sm, dir, &holder, &epoch) < 0 || holder != 0)
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

/* Rounds of fuse_behind_claim (each: another node won the directory
 * between the reclaim and the grant) before it gives up. */
#define CLAIM_ROUNDS 16

int fuse_behind_claim(struct fuse_behind *b, const uint64_t *dirs, unsigned n,
		      void (*propose)(void *arg), void *arg)
{
	for (unsigned round = 0; round < CLAIM_ROUNDS; round++) {
		bool all = true;
		int rc = 0;

		for (unsigned i = 0; i < n && !rc; i++)
			rc = reclaim(b, dirs[i]);
		if (rc)
			return rc;
		/* The order lock from the grants to the proposal: a recall
		 * applied meanwhile is returned only behind the command. */
		pthread_mutex_lock(&b->order);
		for (unsigned i = 0; i < n && all && !rc; i++) {
			uint32_t holder;
			uint64_t epoch;

			if (sm_deleg(b->fs->sm, dirs[i], &holder, &epoch) < 0 || holder == b->self)
				continue; /* gone: the command's own checks answer */
			rc = propose_deleg(b, dirs[i], FSPB__DELEG__OP__GRANT, 0, true);
			if (rc == SM_RESULT_DELEGATED) {
				all = false; /* another node was granted it first */
				rc = 0;
			}
		}
		if (!rc && all)
			propose(arg);
		pthread_mutex_unlock(&b->order);
		if (rc || all)
			return rc;
	}
	return EAGAIN;
}

/* Before dir's own recall: when a listing just showed dir among other
 * directories other nodes hold, and another of them was looked at since
 * (a scan, as ls -l's lookups: one look alone, as a cd's, recalls only
 * its own), the Recalls of all of them, dir's too, go out now, together
 * (a few batched entries; the holders return them in batches too):
 * `ls -l`'s lookups after this one find them returned or on the way,
 * instead of recalling each in turn (fuse_listed.h). A holder known
 * silent is skipped: its directories are revoked at once on their own
 * looks, a Recall would only wait in the pending room. Proposed, not
 * waited for: each lookup still waits for its own directory (reclaim,
 * which counts the Recall sent here as its first). */
static void recall_ahead(struct fuse_behind *b, uint64_t dir)
{
	struct fuse_listed_token tok;
	uint64_t *ids, *epochs = NULL;
	size_t n = fuse_listed_take(b->listed, dir, mono_ms(), &ids, &tok);
	unsigned sent = 0;

	if (n && !(epochs = malloc(n * sizeof(*epochs))))
		n = 0; /* each is recalled on its own look */
	for (size_t i = 0; i < n; i++) {
		uint32_t holder;
		uint64_t epoch;
		bool silent;

		if (sm_deleg(b->fs->sm, ids[i], &holder, &epoch) < 0 || !holder ||
		    holder == b->self)
			continue;
		(void)fuse_holder_look(b->grant, holder, sm_applied_from(b->fs->sm, holder),
				       fs_node_peer_link(b->fs->fsn, holder), mono_ms(),
				       &silent);
		if (silent)
			continue;
		if (propose_deleg(b, ids[i], FSPB__DELEG__OP__RECALL, epoch, false))
			break; /* the rest are recalled each on its own look */
		epochs[sent] = epoch;
		ids[sent++] = ids[i]; /* in order: still sorted */
	}
	/* Only these count as recalled ahead (reclaim_wait's first Recall),
	 * each for the epoch its Recall named; the listing takes epochs. */
	if (n)
		fuse_listed_sent(b->listed, tok, ids, epochs, sent, mono_ms());
	if (sent) {
		atomic_fetch_add(&b->recalled_ahead, sent);
		fs_node_flush(b->fs->fsn);
	}
	free(ids);
}

void fuse_behind_listed(struct fuse_behind *b, uint64_t parent, const uint64_t *ids, size_t n)
{
	fuse_listed_note(b->listed, parent, ids, n, mono_ms());
}

int fuse_behind_fence(struct fuse_behind *b, uint64_t dir)
{
	uint32_t holder;
	uint64_t epoch;
	int rc;

	/* Whatever the holder's [fs] close: one that closes synchronously
	 * answered no close before its commit, but its write-behind
	 * metadata (an unlink, a chown of a file whose creation is pending)
	 * returned once proposed, and a lookup that hits here must see it
	 * once it returned there (fuzz.mixed, seed 62: a chown on a commit
	 * holder, then an lstat on another mount showed the old group).
	 * Without a quorum a recall cannot commit: reads stay local. */
	if (sm_deleg(b->fs->sm, dir, &holder, &epoch) < 0 || !holder || holder == b->self ||
	    atomic_load(&b->fs->degraded))
		return 0;
	recall_ahead(b, dir);
	rc = reclaim(b, dir);
	return rc ? -rc : 1;
}

/* The state machine's delegation events (apply thread: no blocking). */
static void deleg_event(void *arg, uint64_t dir, int op, uint32_t by, uint32_t holder,
			uint64_t epoch)
{
	struct fuse_behind *b = arg;
	struct bh_dir *d;

	(void)by;
	pthread_mutex_lock(&b->mu);
	d = bh_dir_find(b, dir);
	if (holder == b->self && op == FSPB__DELEG__OP__GRANT) {
		if (!d || d->state == D_GONE)
			d = bh_dir_add(b, dir, epoch, D_HELD);
		else
			d->epoch = epoch;
		/* Returned once idle (next_returns), counted from when the
		 * returner first sees it: it looks every IDLE_SCAN_MS anyway
		 * (not woken here: every mkdir answered behind is a grant, and
		 * a scan of all held directories per mkdir was quadratic). */
		if (d && !d->pending)
			d->mtime_ns = 0;
	} else if (holder == b->self && op == FSPB__DELEG__OP__RECALL) {
		/* Another mount works here: do not ask for it again soon. */
		fuse_grant_recalled(b->grant, dir, mono_ms());
		/* Also for a delegation this mount never used (made before a
		 * restart): the returner returns it. A Recall of a delegation
		 * whose Return was proposed already (recalled, or idle) means
		 * that Return has not applied yet, or was lost with a leader:
		 * proposed again (a second one of the same epoch changes
		 * nothing, ESTALE). The recaller proposes its Recall again every
		 * FUSE_RECALL_EVERY_MS while it waits. */
		if (!d)
			d = bh_dir_add(b, dir, epoch, D_RECALLED);
		else if (d->state == D_HELD || d->state == D_RETURNING)
			d->state = D_RECALLED;
		pthread_cond_signal(&b->rcv);
	} else if (d && holder != b->self) {
		d->state = D_GONE;
		bh_dir_put(b, d);
	}
	pthread_cond_broadcast(&b->cv);
	pthread_mutex_unlock(&b->mu);
}

/* ---- returns ---- */

/* A directory this mount holds and has not used for a while (nothing
 * pending in it, no file it created there still open) is returned without
 * being asked: another mount's first look into it then costs no recall
 * (two commit rounds plus this mount's pending commands, each; a listing
 * of a tree tar x just made on another node met ~850 of them). How long
 * is fuse_grant_idle's rule: FUSE_IDLE_RETURN_MS once the mount's whole
 * write-behind went quiet (tar x is done), ten times that while it works
 * elsewhere. RAFTFS_DELEG_IDLE_MS overrides it (0: never). */
/* How often the returner looks for idle directories while any is held. */
#define IDLE_SCAN_MS 250
/* Returns proposed in one go (under the order lock). */
#define RETURN_BATCH 64

static int cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, c = *(const uint64_t *)y;

	return a < c ? -1 : a > c;
}

/* The directories in which a file this mount created behind is open (its
 * close may still be answered early under that delegation): sorted, in
 * *out (malloc'd; NULL when none or out of memory: then *all, every
 * directory counts as having one). Under mu. */
static size_t open_dirs(struct fuse_behind *b, uint64_t **out, bool *all)
{
	size_t n = 0;

	*out = NULL;
	*all = false;
	for (struct bh_fh *h = b->fhs; h; h = h->next)
		n++;
	if (!n)
		return 0;
	if (!(*out = malloc(n * sizeof(**out)))) {
		*all = true;
		return 0;
	}
	n = 0;
	for (struct bh_fh *h = b->fhs; h; h = h->next)
		(*out)[n++] = h->dir;
	qsort(*out, n, sizeof(**out), cmp_u64);
	return n;
}

/* Picks up to max directories to return, now RETURNING, with their epochs:
 * the recalled ones, and held ones left idle (fuse_grant_idle). A held
 * directory's last use is the time of its last write-behind command
 * (mtime_ns, read by getattr only while commands pend); one never used
 * since this mount took it starts its idle time when first seen here.
 * The mount's last use also counts its read requests (fuse_fs.used):
 * *used, the time of the last look that found one (the returner's). Under
 * mu. */
static unsigned next_returns(struct fuse_behind *b, uint64_t *dirs, uint64_t *epochs,
			     unsigned max, int64_t *used)
{
	int64_t now = fs_node_now(), newest;
	uint64_t *open;
	size_t nopen;
	bool all_open;
	unsigned n = 0;

	/* A stat-only phase between a mkdir phase and a rename phase
	 * (fs-bench) is still the same burst. */
	if (atomic_exchange(&b->fs->used, false))
		*used = now;
	newest = b->count ? now : *used;
	/* The mount's newest use of anything it holds. */
	for (unsigned i = 0; i < BUCKETS; i++)
		for (struct bh_dir *d = b->dirs[i]; d; d = d->next)
			if (d->state == D_HELD) {
				if (d->mtime_ns == 0)
					d->mtime_ns = now;
				if (d->pending || d->mtime_ns > newest)
					newest = d->pending ? now : d->mtime_ns;
			}
	nopen = open_dirs(b, &open, &all_open);
	for (unsigned i = 0; i < BUCKETS && n < max; i++)
		for (struct bh_dir *d = b->dirs[i]; d && n < max; d = d->next) {
			if (d->state == D_HELD &&
			    (d->pending || all_open ||
			     (nopen && bsearch(&d->id, open, nopen, sizeof(*open), cmp_u64)) ||
			     !fuse_grant_idle(d->mtime_ns, newest, now, b->idle_ms)))
				continue;
			if (d->state != D_RECALLED && d->state != D_HELD)
				continue;
			if (d->state == D_HELD)
				atomic_fetch_add(&b->idle_returned, 1);
			d->state = D_RETURNING;
			dirs[n] = d->id;
			epochs[n++] = d->epoch;
		}
	free(open);
	return n;
}

/* Whether this node still holds delegation epoch of dir as applied here.
 * A directory revoked from it (a holder that restarted and was taken for
 * dead meanwhile) needs no Return: one would only apply as ESTALE. A
 * Revoke not applied yet when this looks is not known: its Return goes
 * out and fails the same way. */
static bool still_held(struct fuse_behind *b, uint64_t dir, uint64_t epoch)
{
	uint32_t holder;
	uint64_t now;

	return sm_deleg(b->fs->sm, dir, &holder, &now) < 0 || (holder == b->self && now == epoch);
}

/* The returner: proposes the Return of each recalled or idle directory
 * behind every command this mount predicted there. It picks them under mu
 * alone (they stop being held there), then takes the order lock for the
 * proposals: a FUSE thread that decided under the delegation before the
 * pick holds that lock until its command is proposed, so the Return goes
 * behind it, and the FUSE threads never wait for the scan. */
static void *returner(void *arg)
{
	struct fuse_behind *b = arg;
	uint64_t dirs[RETURN_BATCH], epochs[RETURN_BATCH];
	int64_t used = 0;
	unsigned n = 0;
	bool stop;

	for (;;) {
		pthread_mutex_lock(&b->mu);
		while (!b->stop && !(n = next_returns(b, dirs, epochs, RETURN_BATCH, &used))) {
			/* Idle returns on: a look every IDLE_SCAN_MS, also
			 * with nothing held (a grant does not wake it). */
			if (b->idle_ms > 0) {
				struct timespec ts;

				clock_gettime(CLOCK_MONOTONIC, &ts);
				ts.tv_nsec += IDLE_SCAN_MS * 1000000L;
				ts.tv_sec += ts.tv_nsec / 1000000000L;
				ts.tv_nsec %= 1000000000L;
				pthread_cond_timedwait(&b->rcv, &b->mu, &ts);
			} else {
				pthread_cond_wait(&b->rcv, &b->mu);
			}
		}
		stop = b->stop;
		pthread_mutex_unlock(&b->mu);
		if (stop)
			return NULL;
		pthread_mutex_lock(&b->order);
		for (unsigned i = 0; i < n; i++)
			if (still_held(b, dirs[i], epochs[i]) &&
			    propose_deleg(b, dirs[i], FSPB__DELEG__OP__RETURN, epochs[i], false))
				fprintf(stderr,
					"raftfs: return of directory %016llx could not be proposed\n",
					(unsigned long long)dirs[i]);
		pthread_mutex_unlock(&b->order);
		/* Returns are held like write-behind commands (fs_node.c's
		 * lazy), so the n above share entries (FS_PLUG_BATCH_MAX a
		 * piece) instead of one each; a recaller waits for them: out
		 * now, not after the plug's linger. */
		fs_node_flush(b->fs->fsn);
	}
}

int fuse_behind_new(struct fuse_fs *fs, struct fuse_behind **out)
{
	struct fuse_behind *b = calloc(1, sizeof(*b));
	/* 0 is off: only a value that turns the hook on is warned about. */
	const char *eager_env = getenv("RAFTFS_TEST_GRANT_EAGER");
	bool eager =
	    eager_env && strcmp(eager_env, "0") && test_hook_env("RAFTFS_TEST_GRANT_EAGER");
	pthread_condattr_t ca;

	if (!b)
		return -ENOMEM;
	if (fuse_grant_new(&b->grant, eager) < 0) {
		free(b);
		return -ENOMEM;
	}
	if (fuse_listed_new(&b->listed) < 0) {
		fuse_grant_free(b->grant);
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
	pthread_cond_init(&b->rcv, &ca);
	pthread_condattr_destroy(&ca);
	b->idle_ms = getenv("RAFTFS_DELEG_IDLE_MS")
			 ? strtoll(getenv("RAFTFS_DELEG_IDLE_MS"), NULL, 10)
			 : FUSE_IDLE_RETURN_MS;
	if (pthread_create(&b->returner, NULL, returner, b)) {
		pthread_cond_destroy(&b->rcv);
		pthread_cond_destroy(&b->cv);
		pthread_mutex_destroy(&b->mu);
		pthread_mutex_destroy(&b->order);
		fuse_grant_free(b->grant);
		fuse_listed_free(b->listed);
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
	if (fs_node_close_behind(b->fs->fsn) && getenv("RAFTFS_STAGES") &&
	    strcmp(getenv("RAFTFS_STAGES"), "0"))
		fprintf(stderr,
			"fs: node %u answered %llu of %llu flushes of files created behind before "
			"their commit\n",
			b->self, (unsigned long long)b->flushed_early,
			(unsigned long long)b->flushes);
	if (getenv("RAFTFS_STAGES") && strcmp(getenv("RAFTFS_STAGES"), "0")) {
		fprintf(stderr,
			"fs: node %u recalled %llu directories from other nodes (and %llu more "
			"ahead, for a listing) and returned %llu unasked (idle)\n",
			b->self, (unsigned long long)atomic_load(&b->recalled),
			(unsigned long long)atomic_load(&b->recalled_ahead),
			(unsigned long long)atomic_load(&b->idle_returned));
		fprintf(stderr,
			"fs: node %u: %llu changes waited for room behind %u pending, %.1f ms in "
			"all\n",
			b->self, (unsigned long long)b->full_waits, MAX_PENDING,
			(double)b->full_wait_ns / 1e6);
	}
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
	fuse_listed_free(b->listed);
	free(b);
}
