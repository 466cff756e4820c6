/* fuse_write.c — pipelined writes: the Write commands a mount has in flight,
 * per inode, the limits that make a fast writer wait, and the first error of
 * each handle's writes, kept for its next flush or fsync. */
#include "fuse_write.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fs_node.h"
#include "fuse_fs_impl.h"
#include "write_pace.h"

/* Whether the node applies this node's proposals in the order they were
 * made: it does (consensus/node.h, node_start, guarantee 2: the filesystem
 * gives the runtime its duplicate table). Without it, writes that overlap
 * would not be in flight together and mutations would wait for the writes
 * before them. The one reordering left: a write that failed (timed out)
 * may still apply after a later command started before that failure; its
 * error is what flush and fsync report then. */
static const bool node_keeps_order = true;

#define INO_BUCKETS 256
#define FH_BUCKETS 64

/* What may be in flight. The log pipeline needs bandwidth × one commit
 * latency to stay busy; beyond that, queueing in the node only costs
 * memory, and a writer should block instead. A 1 MiB entry takes ~20 ms
 * from proposal to apply when the three nodes share one disk (each Ready's
 * value-log fdatasync is most of it): with 4 MiB per file one writer was
 * capped near 200 MiB/s; 16 MiB also lets each Ready carry several
 * entries, so fewer fsyncs per MiB (consensus/README-node.md, "Session 4").
 * The mount's cap bounds the node's memory: each byte in flight is held
 * about three times (the proposal, the core's log, a message or the apply
 * queue). At least one write is always admitted, whatever its size. */
#define MOUNT_MAX_BYTES (64u << 20)
#define MOUNT_MAX_WRITES 256u
#define INODE_MAX_BYTES (16u << 20)
#define INODE_MAX_WRITES 64u

/* Pacing (session 6): every command enters the one log behind all the
 * bytes proposed before it and not yet committed, so a small command of
 * another mount waits for this mount's window to drain: with 16 MiB in
 * flight at ~100 MiB/s, p99 ~150 ms (bench/fs/README.md, "Session 6").
 * The window needed for throughput is bandwidth × the pipeline's own
 * latency; beyond that, bytes in flight are only a queue. So, as LEDBAT
 * does for bulk transfers (RFC 6817), the mount's byte window follows the
 * queueing delay its big writes see — each one's latency from proposal to
 * apply less the lowest seen lately (the pipeline's own) — and shrinks
 * while that exceeds PACE_TARGET_NS, grows while it is under: others'
 * commands then wait about PACE_TARGET_NS behind a writer, whatever the
 * machine's speed, and a writer on an idle pipeline keeps its full window
 * (write_pace.h). Only big writes are paced (small files' writes, a tar
 * x, keep the mount's caps). The target trades a writer's bandwidth for
 * others' latency: session 4 measured 200 MiB/s at ~20 ms per entry and
 * 260 at ~60 on a quiet machine, so it is not tight. RAFTFS_WRITE_PACE=MS
 * sets it (0: no pacing; before/after in one build). */
#define PACE_TARGET_NS 30000000ll
#define PACE_FLOOR_BYTES (4u << 20)
#define PACE_START_BYTES (8u << 20)

/* One proposed Write command, until this node applied it or gave up. */
struct inflight {
	struct inflight *next;		/* in its inode's list */
	struct inflight *gprev, *gnext; /* in the mount's list, in proposal order */
	struct fuse_write *w;
	struct ino_state *in;
	uint64_t seq;  /* proposal order within the inode */
	uint64_t gseq; /* proposal order within the mount */
	uint64_t lo, hi;
	size_t bytes;
	struct fh_err *e; /* its handle's error slot */
	int64_t time_ns;  /* the command's clock: the file's mtime once applied */
	int64_t t0;	  /* monotonic ns when proposed (pacing) */
};

/* An inode with writes in flight, or with a thread about to add or wait for
 * some (users keeps it). */
struct ino_state {
	struct ino_state *next;
	uint64_t ino;
	uint64_t next_seq;
	unsigned count;
	size_t bytes;
	unsigned users;
	struct inflight *writes;
};

/* A handle that wrote: the first error of its writes not yet reported.
 * Made before its first write is proposed, so a completion never
 * allocates (an error must not be lost to ENOMEM). A handle released
 * while its writes are in flight (close behind) leaves the table but
 * lives on, detached, until the last of them completes: a later handle
 * may get the same number. */
struct fh_err {
	struct fh_err *next;
	uint64_t fh, ino;
	int err;
	unsigned refs; /* writes in flight through it */
	bool detached;
};

struct fuse_write {
	struct fs_node *fsn;
	size_t mount_max_bytes, inode_max_bytes; /* the limits above, or the environment's */
	struct write_pace pace;			 /* under mu */
	pthread_mutex_t mu;
	pthread_cond_t cv; /* broadcast whenever a write completes */
	unsigned count;
	size_t bytes;
	_Atomic uint64_t epoch; /* writes completed */
	struct ino_state *inos[INO_BUCKETS];
	struct fh_err *errs[FH_BUCKETS];
	struct inflight *ghead, *gtail; /* every write in flight, oldest first */
	uint64_t next_gseq;
	int late; /* the first failure of a detached handle's write, unreported */
};

/* A limit in MiB from the environment (window sweeps in one build), or
 * def. */
static size_t env_mib(const char *name, size_t def)
{
	const char *v = getenv(name);
	unsigned long mib = v ? strtoul(v, NULL, 10) : 0;

	return mib ? (size_t)mib << 20 : def;
}

int fuse_write_new(struct fs_node *fsn, struct fuse_write **out)
{
	struct fuse_write *w = calloc(1, sizeof(*w));

	if (!w)
		return -ENOMEM;
	w->fsn = fsn;
	w->mount_max_bytes = env_mib("RAFTFS_WRITE_MOUNT_MIB", MOUNT_MAX_BYTES);
	w->inode_max_bytes = env_mib("RAFTFS_WRITE_INODE_MIB", INODE_MAX_BYTES);
	write_pace_init(&w->pace, PACE_START_BYTES, PACE_FLOOR_BYTES, w->mount_max_bytes,
			getenv("RAFTFS_WRITE_PACE")
			    ? (int64_t)strtoul(getenv("RAFTFS_WRITE_PACE"), NULL, 10) * 1000000
			    : PACE_TARGET_NS);
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	*out = w;
	return 0;
}

void fuse_write_free(struct fuse_write *w)
{
	if (!w)
		return;
	for (size_t i = 0; i < FH_BUCKETS; i++)
		while (w->errs[i]) {
			struct fh_err *e = w->errs[i];

			w->errs[i] = e->next;
			free(e);
		}
	/* No inode state is left: each lives only while writes are in flight
	 * or a thread holds it, and neither outlives the node. */
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	free(w);
}

static struct ino_state **ino_slot(struct fuse_write *w, uint64_t ino)
{
	struct ino_state **p = &w->inos[(ino ^ (ino >> 48)) % INO_BUCKETS];

	while (*p && (*p)->ino != ino)
		p = &(*p)->next;
	return p;
}

/* The state of ino, made if absent and make is set (NULL if not there or
 * out of memory). Under w->mu. */
static struct ino_state *ino_get(struct fuse_write *w, uint64_t ino, bool make)
{
	struct ino_state **p = ino_slot(w, ino);

	if (!*p && make && (*p = calloc(1, sizeof(**p))))
		(*p)->ino = ino;
	return *p;
}

/* Drops the state of an inode nobody needs any more. Under w->mu. */
static void ino_put(struct fuse_write *w, struct ino_state *in)
{
	struct ino_state **p;

	if (in->count || in->users)
		return;
	p = ino_slot(w, in->ino);
	*p = in->next;
	free(in);
}

static struct fh_err **fh_slot(struct fuse_write *w, uint64_t fh)
{
	struct fh_err **p = &w->errs[fh % FH_BUCKETS];

	while (*p && (*p)->fh != fh)
		p = &(*p)->next;
	return p;
}

/* Whether [lo, hi) of in may be proposed now. */
static bool admit(const struct fuse_write *w, const struct ino_state *in, uint64_t lo, uint64_t hi,
		  size_t bytes)
{
	if (w->count == 0)
		return true;
	if (w->count >= MOUNT_MAX_WRITES || w->bytes + bytes > w->mount_max_bytes ||
	    (bytes >= WRITE_PACE_MIN_BYTES && w->pace.window && w->bytes + bytes > w->pace.window))
		return false;
	if (in->count >= INODE_MAX_WRITES || (in->count && in->bytes + bytes > w->inode_max_bytes))
		return false;
	/* Two overlapping writes applied in the other order would leave other
	 * bytes: without the node's promise of order, they go one at a time.
	 * Disjoint ones commute (the size is the largest end either way; the
	 * mtime is the later command's on every node alike). */
	if (node_keeps_order)
		return true;
	for (const struct inflight *f = in->writes; f; f = f->next)
		if (f->lo < hi && lo < f->hi)
			return false;
	return true;
}

/* Forgets f (completed, or never proposed) and wakes the waiters. Under
 * w->mu. */
static void unregister(struct fuse_write *w, struct inflight *f)
{
	struct ino_state *in = f->in;
	struct inflight **p = &in->writes;

	while (*p != f)
		p = &(*p)->next;
	*p = f->next;
	in->count--;
	in->bytes -= f->bytes;
	w->count--;
	w->bytes -= f->bytes;
	ino_put(w, in);
	if (f->gprev)
		f->gprev->gnext = f->gnext;
	else
		w->ghead = f->gnext;
	if (f->gnext)
		f->gnext->gprev = f->gprev;
	else
		w->gtail = f->gprev;
	if (--f->e->refs == 0 && f->e->detached)
		free(f->e);
	pthread_cond_broadcast(&w->cv);
}

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

/* Completion of one Write (apply or loop thread: does not block beyond the
 * short critical section). */
static void write_done(void *arg, int err)
{
	struct inflight *f = arg;
	struct fuse_write *w = f->w;
	struct fh_err *e;

	pthread_mutex_lock(&w->mu);
	/* ENOENT: the file was released by another mount (the orphan rule). */
	if (err == ENOENT)
		err = ESTALE;
	e = f->e;
	if (err && e->detached) {
		/* Its handle was closed behind: the mount's next close or
		 * fsync reports it, and the log says which file. */
		fprintf(stderr, "raftfs: write of %016llx at %llu (closed behind) failed: %s\n",
			(unsigned long long)e->ino, (unsigned long long)f->lo, strerror(err));
		if (!w->late)
			w->late = err;
	} else if (err && !e->err) {
		e->err = err;
	}
	if (!err) {
		int64_t now = mono_ns();

		write_pace_sample(&w->pace, f->bytes, now - f->t0, now);
	}
	unregister(w, f);
	atomic_fetch_add(&w->epoch, 1);
	pthread_mutex_unlock(&w->mu);
	free(f);
}

/* Waits for room for [lo, hi) of ino and records it as in flight. NULL
 * (ENOMEM) if the bookkeeping cannot be allocated. */
static struct inflight *reserve(struct fuse_write *w, uint64_t ino, uint64_t fh, uint64_t lo,
				uint64_t hi, size_t bytes, int64_t time_ns)
{
	struct inflight *f = calloc(1, sizeof(*f));
	struct ino_state *in;
	struct fh_err **p, *e;

	if (!f)
		return NULL;
	pthread_mutex_lock(&w->mu);
	p = fh_slot(w, fh);
	if (!*p && (*p = calloc(1, sizeof(**p))))
		(*p)->fh = fh;
	e = *p;
	in = e ? ino_get(w, ino, true) : NULL;
	if (!in) {
		pthread_mutex_unlock(&w->mu);
		free(f);
		return NULL;
	}
	/* Counted from here: the slot may move while we wait, e may not go. */
	e->refs++;
	e->ino = ino;
	in->users++;
	while (!admit(w, in, lo, hi, bytes)) {
		/* Some in flight may be held back by the node (fs_plug.h). */
		pthread_mutex_unlock(&w->mu);
		fs_node_flush(w->fsn);
		pthread_mutex_lock(&w->mu);
		if (!admit(w, in, lo, hi, bytes))
			pthread_cond_wait(&w->cv, &w->mu);
	}
	in->users--;
	*f = (struct inflight){.next = in->writes,
			       .gprev = w->gtail,
			       .w = w,
			       .in = in,
			       .seq = in->next_seq++,
			       .gseq = w->next_gseq++,
			       .lo = lo,
			       .hi = hi,
			       .bytes = bytes,
			       .e = e,
			       .time_ns = time_ns,
			       .t0 = mono_ns()};
	if (w->gtail)
		w->gtail->gnext = f;
	else
		w->ghead = f;
	w->gtail = f;
	in->writes = f;
	in->count++;
	in->bytes += bytes;
	w->count++;
	w->bytes += bytes;
	pthread_mutex_unlock(&w->mu);
	return f;
}

ssize_t fuse_write_data(struct fuse_write *w, fuse_req_t req, uint64_t ino, uint64_t fh,
			const char *data, size_t size, uint64_t off, bool append)
{
	size_t done = 0;

	do {
		size_t n = size - done < FUSE_WRITE_CHUNK ? size - done : FUSE_WRITE_CHUNK;
		/* An append lands wherever the end is when it applies: it
		 * overlaps every other write of the file. */
		uint64_t lo = append ? 0 : off + done, hi = append ? UINT64_MAX : off + done + n;
		Fspb__Command c;
		Fspb__Write wr = FSPB__WRITE__INIT;
		struct inflight *f;
		int rc;

		ffs_cmd_init(&c, req);
		f = reserve(w, ino, fh, lo, hi, n, c.time_ns);
		if (!f)
			return done ? (ssize_t)done : -ENOMEM;
		wr.ino = ino;
		wr.offset = off + done;
		wr.append = append;
		wr.data.data = (uint8_t *)data + done;
		wr.data.len = n;
		c.op_case = FSPB__COMMAND__OP_WRITE;
		c.write = &wr;
		/* f belongs to write_done once this succeeds. */
		rc = fs_node_propose(w->fsn, &c, write_done, f);
		if (rc) {
			pthread_mutex_lock(&w->mu);
			unregister(w, f);
			pthread_mutex_unlock(&w->mu);
			free(f);
			return done ? (ssize_t)done : -rc;
		}
		done += n;
	} while (done < size);
	return (ssize_t)done;
}

/* Whether in has a write proposed before sequence number seq in flight. */
static bool earlier_in_flight(const struct ino_state *in, uint64_t seq)
{
	for (const struct inflight *f = in->writes; f; f = f->next)
		if (f->seq < seq)
			return true;
	return false;
}

/* fuse_write_wait under w->mu. Only the writes proposed before the call
 * count, so a reader is not starved by a writer that never pauses. */
static void wait_locked(struct fuse_write *w, uint64_t ino)
{
	struct ino_state *in = ino_get(w, ino, false);
	uint64_t seq;

	if (!in)
		return;
	seq = in->next_seq;
	in->users++;
	while (earlier_in_flight(in, seq))
		pthread_cond_wait(&w->cv, &w->mu);
	in->users--;
	ino_put(w, in);
}

/* Starts what the plug holds (fs_plug.h) when ino has writes in flight:
 * they may be among it. Only then: a flush starts every held command of
 * the mount, and a read, lseek or close of a file with nothing in flight
 * (a cat during a tar x) would cut the plug's batches into entries of one
 * command each. A file whose creation is still held has no descriptor
 * before it applied: fuse_behind_fd starts and waits for that. A write
 * proposed after the check is not waited for either (wait_locked counts
 * only those before the call). */
static void flush_if_busy(struct fuse_write *w, uint64_t ino)
{
	if (fuse_write_busy(w, ino))
		fs_node_flush(w->fsn);
}

void fuse_write_wait(struct fuse_write *w, uint64_t ino)
{
	flush_if_busy(w, ino);
	pthread_mutex_lock(&w->mu);
	wait_locked(w, ino);
	pthread_mutex_unlock(&w->mu);
}

uint64_t fuse_write_epoch(struct fuse_write *w)
{
	return atomic_load(&w->epoch);
}

bool fuse_write_busy(struct fuse_write *w, uint64_t ino)
{
	bool busy;

	pthread_mutex_lock(&w->mu);
	busy = ino_get(w, ino, false) != NULL;
	pthread_mutex_unlock(&w->mu);
	return busy;
}

bool fuse_write_pending(struct fuse_write *w, uint64_t ino, uint64_t *end, int64_t *time_ns)
{
	struct ino_state *in;
	bool known = true;

	*end = 0;
	*time_ns = 0;
	pthread_mutex_lock(&w->mu);
	in = ino_get(w, ino, false);
	for (const struct inflight *f = in ? in->writes : NULL; f; f = f->next) {
		if (f->hi == UINT64_MAX)
			known = false; /* an append: its offset is decided at apply */
		if (f->bytes && f->hi > *end)
			*end = f->hi;
		if (f->bytes && f->time_ns > *time_ns)
			*time_ns = f->time_ns;
	}
	pthread_mutex_unlock(&w->mu);
	return known;
}

void fuse_write_fence(struct fuse_write *w, uint64_t ino)
{
	if (!node_keeps_order)
		fuse_write_wait(w, ino);
}

/* Waits for ino's writes, then takes fh's error; forget drops fh. */
static int sync_fh(struct fuse_write *w, uint64_t ino, uint64_t fh, bool forget)
{
	struct fh_err **p, *e;
	int err = 0;

	flush_if_busy(w, ino); /* its writes may be held back (fs_plug.h) */
	pthread_mutex_lock(&w->mu);
	wait_locked(w, ino);
	p = fh_slot(w, fh);
	e = *p;
	if (e) {
		err = e->err;
		e->err = 0;
		if (forget) {
			*p = e->next;
			if (e->refs)
				e->detached = true; /* freed by its last write */
			else
				free(e);
		}
	}
	pthread_mutex_unlock(&w->mu);
	return err;
}

bool fuse_write_unused(struct fuse_write *w, uint64_t fh)
{
	bool unused;

	pthread_mutex_lock(&w->mu);
	unused = *fh_slot(w, fh) == NULL;
	pthread_mutex_unlock(&w->mu);
	return unused;
}

int fuse_write_sync(struct fuse_write *w, uint64_t ino, uint64_t fh)
{
	return sync_fh(w, ino, fh, false);
}

int fuse_write_release(struct fuse_write *w, uint64_t ino, uint64_t fh)
{
	return sync_fh(w, ino, fh, true);
}

int fuse_write_take(struct fuse_write *w, uint64_t fh)
{
	struct fh_err *e;
	int err = 0;

	pthread_mutex_lock(&w->mu);
	e = *fh_slot(w, fh);
	if (e) {
		err = e->err;
		e->err = 0;
	}
	pthread_mutex_unlock(&w->mu);
	return err;
}

void fuse_write_detach(struct fuse_write *w, uint64_t fh)
{
	struct fh_err **p, *e;

	pthread_mutex_lock(&w->mu);
	p = fh_slot(w, fh);
	e = *p;
	if (e) {
		*p = e->next;
		/* An error known already goes to the mount too: the handle
		 * that could have reported it is gone. Logged as write_done
		 * logs one that comes after the handle went (which of the two
		 * happens depends on how fast the apply was). */
		if (e->err) {
			fprintf(stderr,
				"raftfs: write of %016llx (closed behind) failed: %s\n",
				(unsigned long long)e->ino, strerror(e->err));
			if (!w->late)
				w->late = e->err;
		}
		if (e->refs)
			e->detached = true;
		else
			free(e);
	}
	pthread_mutex_unlock(&w->mu);
}

int fuse_write_late(struct fuse_write *w, bool take)
{
	int err;

	pthread_mutex_lock(&w->mu);
	err = w->late;
	if (take)
		w->late = 0;
	pthread_mutex_unlock(&w->mu);
	return err;
}

void fuse_write_wait_all(struct fuse_write *w)
{
	uint64_t mark;

	fs_node_flush(w->fsn); /* some may be held back (fs_plug.h) */
	pthread_mutex_lock(&w->mu);
	mark = w->next_gseq;
	while (w->ghead && w->ghead->gseq < mark)
		pthread_cond_wait(&w->cv, &w->mu);
	pthread_mutex_unlock(&w->mu);
}
