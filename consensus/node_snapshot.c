/* node_snapshot.c — snapshot images of the node runtime: taken by the
 * state machine on the apply thread and streamed into the store's staging,
 * restored from the store chunk by chunk, and received from the leader
 * (Raft §7). The store belongs to the loop thread, so the apply thread moves
 * images through it with snap_io requests. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node_internal.h"
#include "runtime_log.h"

/* One step of moving a snapshot image between the apply thread and the
 * store, which only the loop thread touches: the apply thread fills it,
 * posts it and waits on done (node.smu / node.scv). */
typedef enum { SIO_BEGIN, SIO_INSTALL, SIO_ABORT, SIO_OPEN } sio_kind;

typedef struct snap_io {
	sio_kind kind;
	uint64_t index, term; /* BEGIN, INSTALL; OPEN: the current snapshot's */
	uint64_t offset;      /* INSTALL: the image's length; OPEN: the data's */
	store_snap_reader *rd; /* OPEN: out */
	store_snap_writer *w; /* BEGIN: out; INSTALL, ABORT: in (the loop frees it) */
	int rc;
	bool done;
} snap_io;

/* The snapshot (or apply) thread's side of a local snapshot being streamed
 * into the store's staging: a chunk buffer, written by the store's writer
 * from this thread, so the loop thread never waits for RocksDB taking an
 * image (with 100 ms election timeouts, memtable stalls behind 1 MiB
 * image writes on the loop thread were elections). */
typedef struct snap_out {
	struct node *n;
	store_snap_writer *w;
	uint64_t epoch; /* the staging's (stage_epoch at SIO_BEGIN) */
	uint8_t *buf;
	size_t fill;
	uint64_t offset; /* bytes written so far */
	int rc;
} snap_out;

/* The apply thread's side of a restore: the store's snapshot, read through
 * a reader of its own (store_snap_reader), so the loop thread never waits
 * for those reads (a restore reads the whole image: with one 1 MiB read
 * per loop turn, a follower installing 512 MiB stalled its loop for
 * seconds). */
typedef struct snap_in {
	store_snap_reader *rd;
	uint64_t offset;
	uint8_t *buf;
	size_t have, pos;
} snap_in;

/* ---- snapshot images between the apply thread and the store ----
 *
 * The store belongs to the loop thread, so the apply thread moves an image
 * through it one chunk at a time: it posts a snap_io and waits for it. The
 * data of a local image is the exception: the store's writer takes it
 * from the snapshot thread directly. Memory for an image is a chunk to
 * write it (and the writer's copy with its checksum), one to read it
 * back. */

static void do_snap_io(node *n, void *arg, bool stopping);

/* A code from the state machine (errno), the store/core or the runtime. */
const char *node_any_strerror(int rc)
{
	return rc > -1000 ? strerror(-rc) : rc > -2000 ? raft_strerror(rc) : node_strerror(rc);
}

/* Queues io for the loop thread. NODE_ESTOPPED once the loop has run its
 * last inbox (nothing would answer). */
static int snap_io_post(node *n, snap_io *io)
{
	op *o = calloc(1, sizeof(*o));

	if (!o)
		return NODE_ENOMEM;
	io->done = false;
	o->kind = OP_CALL;
	o->fn = do_snap_io;
	o->arg = io;
	pthread_mutex_lock(&n->mu);
	if (n->loop_done) {
		pthread_mutex_unlock(&n->mu);
		free(o);
		return NODE_ESTOPPED;
	}
	node_inbox_push_locked(n, o);
	pthread_mutex_unlock(&n->mu);
	return 0;
}

static int snap_io_wait(node *n, snap_io *io)
{
	pthread_mutex_lock(&n->smu);
	while (!io->done)
		pthread_cond_wait(&n->scv, &n->smu);
	pthread_mutex_unlock(&n->smu);
	return io->rc;
}

static int snap_io_call(node *n, snap_io *io)
{
	int rc = snap_io_post(n, io);

	if (rc < 0 && (io->kind == SIO_INSTALL || io->kind == SIO_ABORT)) {
		/* The loop is gone: nobody uses the store any more. */
		store_snap_writer_free(io->w);
		io->w = NULL;
	}
	return rc < 0 ? rc : snap_io_wait(n, io);
}

/* Opens a reader of the store's current snapshot. Loop thread, or before
 * the threads run. */
static int snap_open(store *st, snap_io *io)
{
	int rc = store_snap_reader_open(st, 0, &io->rd, &io->index, &io->offset);

	if (rc < 0)
		rlog_write(RLOG_ERR, "store: reading the snapshot: %s", store_errmsg(st));
	return rc;
}

/* node_snap_read over the store's snapshot, a stored chunk at a time. */
static ssize_t snap_in_read(void *arg, void *buf, size_t len)
{
	snap_in *in = arg;
	size_t k;

	if (in->pos == in->have) {
		uint64_t at;
		int rc = store_snap_reader_read(in->rd, in->buf, NODE_SNAP_CHUNK, &at, &in->have);

		if (rc < 0) {
			rlog_write(RLOG_ERR, "%s", store_snap_reader_errmsg(in->rd));
			return rc;
		}
		in->pos = 0;
		in->offset += in->have;
		if (in->have == 0)
			return 0;
	}
	k = in->have - in->pos < len ? in->have - in->pos : len;
	memcpy(buf, in->buf + in->pos, k);
	in->pos += k;
	return (ssize_t)k;
}

/* Restores the store's current snapshot into the state machine, read from
 * the store on this thread. That is the snapshot at *index or, should a
 * newer one from the leader have replaced it meanwhile, the newer one:
 * *index is what was restored, *bytes its size. */
int node_snap_restore_stream(node *n, bool direct, uint64_t *index, uint64_t *bytes)
{
	snap_io io = {.kind = SIO_OPEN};
	snap_in in = {0};
	int rc = direct ? snap_open(n->st, &io) : snap_io_call(n, &io);

	if (rc < 0)
		return rc;
	if (io.index != *index)
		rlog_write(RLOG_INFO,
			   "the snapshot at %llu was replaced by the one at %llu: restoring that one",
			   (unsigned long long)*index, (unsigned long long)io.index);
	*index = io.index;
	in.rd = io.rd;
	in.buf = malloc(NODE_SNAP_CHUNK);
	rc = in.buf ? n->sm->restore(n->sm->ctx, *index, snap_in_read, &in) : NODE_ENOMEM;
	*bytes = in.offset;
	free(in.buf);
	store_snap_reader_close(in.rd);
	return rc;
}

void node_snap_restore(node *n, const raft_snapshot *s)
{
	uint64_t index = s->meta.index, bytes = 0;
	int rc = NODE_EFAULT;

	if (index <= atomic_load(&n->applied))
		return; /* already there (a restart re-delivered it) */
	/* The leader's snapshot replaces the state a local image is still
	 * being read from: that image is dropped (the received one took over
	 * the store's staging anyway). */
	node_snap_stop(n);
	if (n->sm->restore)
		rc = node_snap_restore_stream(n, false, &index, &bytes);
	if (rc == NODE_ESTOPPED) {
		/* The state machine kept its old state: nothing after the
		 * snapshot may be applied to it. Restored at the next start. */
		n->apply_halted = true;
		return;
	}
	if (rc < 0) {
		node_set_fault(n, "restoring the snapshot at %llu failed: %s",
			       (unsigned long long)index, node_any_strerror(rc));
		return;
	}
	rlog_write(RLOG_INFO, "state restored from the snapshot at %llu (%llu bytes)",
		   (unsigned long long)index, (unsigned long long)bytes);
	/* Before applied moves: a proposal still pending once it has is
	 * taken as passed unanswered (node.c, forget_passed_commit). */
	node_answer_restored(n, index);
	atomic_store(&n->applied, index);
	n->last_snap = index;
	atomic_store(&n->image_bytes, bytes);
}

/* Writes the filled chunk into the staging, from this thread. */
static int snap_out_flush(snap_out *o)
{
	int rc;

	if (!o->fill)
		return 0;
	rc = store_snap_writer_append(o->w, o->buf, o->fill, &o->n->snap_cancel);
	if (rc < 0) {
		if (rc != RAFT_ESNAP_OUT_OF_DATE)
			rlog_write(RLOG_ERR, "%s", store_snap_writer_errmsg(o->w));
		return rc;
	}
	o->offset += o->fill;
	o->fill = 0;
	return 0;
}

/* node_snap_write into the store's staging, NODE_SNAP_CHUNK at a time. */
static int snap_out_write(void *arg, const void *buf, size_t len)
{
	snap_out *o = arg;
	const uint8_t *p = buf;

	if (atomic_load(&o->n->snap_cancel))
		o->rc = NODE_ESTOPPED; /* a restore or a stop wants the state machine */
	else if (atomic_load(&o->n->stage_epoch) != o->epoch)
		o->rc = RAFT_ESNAP_OUT_OF_DATE; /* a snapshot from the leader took the staging */
	while (len && o->rc == 0) {
		size_t k = NODE_SNAP_CHUNK - o->fill < len ? NODE_SNAP_CHUNK - o->fill : len;

		memcpy(o->buf + o->fill, p, k);
		o->fill += k;
		p += k;
		len -= k;
		if (o->fill == NODE_SNAP_CHUNK)
			o->rc = snap_out_flush(o);
	}
	return o->rc;
}

/* Streams the local image into the staging begun at index (SIO_BEGIN) and
 * makes it current: job's stream (snapshot thread) or, job NULL, the
 * synchronous snapshot() (apply thread). */
static void snap_stream_install(node *n, void *job, uint64_t index, store_snap_writer *w,
				uint64_t epoch)
{
	snap_out o = {.n = n, .w = w, .epoch = epoch};
	snap_io io;
	int rc;

	o.buf = malloc(NODE_SNAP_CHUNK);
	if (!o.buf)
		rc = NODE_ENOMEM;
	else if (job)
		rc = n->sm->snapshot_stream(n->sm->ctx, job, snap_out_write, &o);
	else
		rc = n->sm->snapshot(n->sm->ctx, snap_out_write, &o);
	if (rc == 0)
		rc = o.rc ? o.rc : snap_out_flush(&o);
	free(o.buf);
	if (w && store_snap_writer_waited_ms(w) > 0)
		rlog_write(RLOG_INFO,
			   "snapshot at %llu: its writes waited %llu ms for RocksDB to flush (the "
			   "log's writes go first)",
			   (unsigned long long)index,
			   (unsigned long long)store_snap_writer_waited_ms(w));
	io = (snap_io){.kind = rc == 0 ? SIO_INSTALL : SIO_ABORT,
		       .index = index,
		       .offset = o.offset,
		       .w = w};
	if (rc == 0)
		rc = snap_io_call(n, &io);
	else
		snap_io_call(n, &io);
	if (rc < 0 && rc != NODE_ESTOPPED)
		rlog_write(RLOG_ERR, "state machine snapshot at %llu failed: %s: skipped",
			   (unsigned long long)index, node_any_strerror(rc));
}

/* Loop thread: an empty entry, so that the apply thread, idle otherwise,
 * ends the image that just streamed and takes the one raftfs snapshot
 * asked for meanwhile (as request_snapshot does in node.c). */
static void propose_empty(node *n, void *arg, bool stopping)
{
	static const uint8_t none;

	(void)arg;
	if (!stopping)
		raft_propose(n->r, &none, 0, NULL, NULL);
}

/* The snapshot thread: streams the image begun on the apply thread. */
static void *snap_main(void *arg)
{
	node *n = arg;

	snap_stream_install(n, n->snap_job, n->snap_job_index, n->snap_writer, n->snap_epoch);
	n->snap_writer = NULL; /* the loop freed it */
	atomic_store(&n->snap_done, true);
	if (atomic_load(&n->snap_wanted) && !atomic_load(&n->snap_cancel)) {
		op *o = calloc(1, sizeof(*o));

		if (o) {
			o->kind = OP_CALL;
			o->fn = propose_empty;
			pthread_mutex_lock(&n->mu);
			if (n->loop_done)
				free(o);
			else
				node_inbox_push_locked(n, o);
			pthread_mutex_unlock(&n->mu);
		}
	}
	return NULL;
}

/* Apply thread: waits for the snapshot thread and ends its job. */
static void snap_finish(node *n)
{
	if (!n->snap_running)
		return;
	pthread_join(n->snap_thread, NULL);
	n->sm->snapshot_end(n->sm->ctx, n->snap_job);
	n->snap_job = NULL;
	n->snap_running = false;
}

void node_snap_stop(node *n)
{
	atomic_store(&n->snap_cancel, true);
	snap_finish(n);
}

/* This node's snapshot points are staggered within the interval I =
 * snapshot_entries, so that the nodes of a cluster do not all take one at
 * the same index: the node whose id is the k-th smallest of the m peers
 * (k from 0) snapshots when the applied index crosses a multiple of I
 * shifted by k*I/m, i.e. at the indexes x with (x + k*I/m) mod I == 0. The
 * node with the smallest id keeps the multiples of I. Deterministic: the
 * same config gives the same points. */
static uint64_t snap_offset(const node *n)
{
	uint64_t every = n->cfg->snapshot_entries, k = 0;

	for (size_t i = 0; i < n->cfg->n_peers; i++)
		k += n->cfg->peers[i].id < n->cfg->id;
	return n->cfg->n_peers ? k * every / n->cfg->n_peers : 0;
}

/* The byte bound on the log kept behind a snapshot: half the byte
 * threshold (0: none). snapshot_trailing counts entries, and with 1 MiB
 * writes 5,000 entries behind each snapshot were 5 GB of log per node. */
static uint64_t trail_limit(const node *n)
{
	return n->cfg->snapshot_entries ? n->cfg->snapshot_bytes / 2 : 0;
}

/* Apply thread, per applied entry: a mark every 2/TRAIL_MARKS of the
 * bound (the marks span twice the bound), so the index behind which the
 * bound is exceeded is known to that precision without reading the log
 * back. */
static void trail_note(node *n, const raft_entry *e)
{
	uint64_t limit = trail_limit(n);
	struct trail_mark *last;

	n->applied_bytes += e->len;
	if (limit == 0)
		return;
	last = n->trail_n ? &n->trail[(n->trail_head + n->trail_n - 1) % TRAIL_MARKS] : NULL;
	if (last && n->applied_bytes - last->bytes < limit / (TRAIL_MARKS / 2))
		return;
	if (n->trail_n == TRAIL_MARKS) {
		n->trail_head = (n->trail_head + 1) % TRAIL_MARKS;
		n->trail_n--;
	}
	n->trail[(n->trail_head + n->trail_n) % TRAIL_MARKS] =
		(struct trail_mark){.index = e->index, .bytes = n->applied_bytes};
	n->trail_n++;
}

/* Apply thread, at a snapshot of entry e (the last noted): the oldest
 * marked index with at most the bound's bytes of entries after it, up
 * to e; 0 if every mark is within the bound. */
static uint64_t trail_compact_upto(const node *n)
{
	uint64_t limit = trail_limit(n), upto = 0;

	if (limit == 0 || n->trail_n == 0)
		return 0;
	for (unsigned i = 0; i < n->trail_n; i++) {
		const struct trail_mark *m = &n->trail[(n->trail_head + i) % TRAIL_MARKS];

		if (n->applied_bytes - m->bytes > limit)
			upto = m->index;
		else
			break;
	}
	return upto;
}

/* Every snapshot_entries applied entries (staggered, above), or
 * snapshot_bytes of entry data, whichever comes first, or when raftfs
 * snapshot asked, the state machine's image at e->index is streamed into
 * the store's staging, which then becomes the current snapshot (Raft §7).
 * With node_sm.snapshot_begin, apply pauses only for begin and the image
 * streams from the snapshot thread; one at a time: a snapshot due while
 * one streams waits for it. */
void node_snap_maybe_take(node *n, const raft_entry *e)
{
	snap_io io = {.kind = SIO_BEGIN, .index = e->index, .term = e->term};
	uint64_t every = n->cfg->snapshot_entries, off;
	bool async = n->sm->snapshot_begin && n->sm->snapshot_stream && n->sm->snapshot_end;
	bool due, by_entries;
	int rc;

	if ((!n->sm->snapshot && !async) || !n->sm->restore)
		return;
	n->snap_bytes += e->len;
	trail_note(n, e);
	if (n->snap_running && atomic_load(&n->snap_done))
		snap_finish(n);
	if (n->snap_running)
		return; /* still streaming: what is due now is taken after it */
	off = every ? snap_offset(n) : 0;
	by_entries = every != 0 && (e->index + off) / every > (n->last_snap + off) / every;
	/* Amortized: an image costs its whole size, so one due by entries
	 * waits until the log since the last holds a share of it (it stays
	 * due meanwhile: last_snap has not moved). */
	if (by_entries && n->cfg->snapshot_amortize != 0 &&
	    n->snap_bytes < atomic_load(&n->image_bytes) / n->cfg->snapshot_amortize)
		by_entries = false;
	due = by_entries || (every != 0 && n->cfg->snapshot_bytes != 0 &&
			     n->snap_bytes >= n->cfg->snapshot_bytes);
	if (!atomic_exchange(&n->snap_wanted, false) && !due)
		return;
	n->snap_bytes = 0;
	n->last_snap = e->index;
	atomic_store(&n->trail_upto, trail_compact_upto(n));
	rc = snap_io_call(n, &io);
	if (rc == RAFT_ESNAP_TEMP_UNAVAILABLE) {
		/* Not at this index (the staging is busy, or the membership
		 * is ahead of it): at the next entry applied. */
		atomic_store(&n->snap_wanted, true);
		return;
	}
	if (rc < 0) {
		if (rc != NODE_ESTOPPED)
			rlog_write(RLOG_INFO, "snapshot at %llu not taken: %s",
				   (unsigned long long)e->index, raft_strerror(rc));
		return;
	}
	if (!async) {
		snap_stream_install(n, NULL, e->index, io.w, n->local_epoch);
		return;
	}
	n->snap_writer = io.w;
	n->snap_epoch = n->local_epoch;
	rc = n->sm->snapshot_begin(n->sm->ctx, &n->snap_job);
	if (rc == 0) {
		n->snap_job_index = e->index;
		n->snap_job_term = e->term;
		atomic_store(&n->snap_done, false);
		atomic_store(&n->snap_cancel, false);
		if (pthread_create(&n->snap_thread, NULL, snap_main, n) == 0) {
			n->snap_running = true;
			return;
		}
		n->sm->snapshot_end(n->sm->ctx, n->snap_job);
		n->snap_job = NULL;
		rc = -EAGAIN;
	}
	io = (snap_io){.kind = SIO_ABORT, .index = e->index, .w = n->snap_writer};
	n->snap_writer = NULL;
	snap_io_call(n, &io);
	rlog_write(RLOG_ERR, "state machine snapshot at %llu failed: %s: skipped",
		   (unsigned long long)e->index, node_any_strerror(rc));
}

/* Makes a snapshot current in the store, the data written in chunks (a log
 * that does not hold the snapshot's last entry is discarded). Loop thread. */
static int store_snapshot(node *n, const raft_snapshot_meta *meta, const uint8_t *data, size_t len)
{
	int rc = store_snapshot_begin(n->st, meta);

	n->stage_epoch++; /* a local snapshot being staged is dropped */
	for (size_t off = 0; rc == 0 && off < len; off += NODE_SNAP_CHUNK) {
		size_t chunk = len - off < NODE_SNAP_CHUNK ? len - off : NODE_SNAP_CHUNK;

		rc = store_snapshot_write(n->st, off, data + off, chunk);
	}
	if (rc == 0)
		rc = store_snapshot_install(n->st);
	if (rc < 0 && rc != RAFT_ESNAP_OUT_OF_DATE)
		rlog_write(RLOG_ERR, "store: snapshot at %llu: %s", (unsigned long long)meta->index,
			   store_errmsg(n->st));
	return rc == RAFT_ESNAP_OUT_OF_DATE ? 0 : rc;
}

/* Whether the store's staging still holds this node's own snapshot, with
 * len bytes: a snapshot from the leader (received in chunks or inline)
 * begins its own staging, which drops the local one. */
static bool local_staging_ok(node *n, uint64_t len)
{
	uint64_t index, staged;

	return n->local_staging && n->local_epoch == atomic_load(&n->stage_epoch) &&
	       store_snapshot_staged(n->st, &index, &staged) && index == n->local_index &&
	       staged == len;
}

/* SIO_BEGIN: stages a snapshot of the local state machine at io->index,
 * with the membership as of that index (Raft §7: the snapshot carries the
 * latest configuration as of its last included index). The store's
 * membership is the latest handed out, which is ahead of the apply thread:
 * a change committed after io->index and handed out before this runs is
 * in it. So not then (the apply thread retries at its next entries, which
 * soon pass the change), nor while a snapshot received from the leader
 * waits in the staging for its Ready. */
static int local_begin(node *n, snap_io *io)
{
	raft_snapshot_meta meta = {.index = io->index, .term = io->term};
	int rc;

	if (n->recv_pending)
		return RAFT_ESNAP_TEMP_UNAVAILABLE;
	if (n->conf_index > io->index) {
		RLOG(RLOG_APPL,
		     "snapshot at %llu: the membership changed at %llu: waiting until applied",
		     (unsigned long long)io->index, (unsigned long long)n->conf_index);
		return RAFT_ESNAP_TEMP_UNAVAILABLE;
	}
	rc = store_conf_state(n->st, &meta.conf);
	if (rc == 0) {
		rc = store_snapshot_begin(n->st, &meta);
		raft_conf_state_free_contents(&meta.conf);
	}
	if (rc == 0)
		rc = store_snap_writer_open(n->st, &io->w);
	if (rc < 0) {
		if (rc != RAFT_ESNAP_OUT_OF_DATE)
			rlog_write(RLOG_ERR, "store: staging the snapshot at %llu: %s",
				   (unsigned long long)io->index, store_errmsg(n->st));
		return rc;
	}
	/* A snapshot being received is dropped; the leader sends it again. */
	snap_recv_reset(n->ss);
	n->local_staging = true;
	n->local_index = io->index;
	n->local_epoch = n->stage_epoch;
	return 0;
}

/* SIO_INSTALL: the local snapshot of io->offset bytes becomes current and
 * the log is compacted behind it. Entries behind the snapshot are kept for
 * a while (snapshot_trailing; by default half a snapshot interval, as etcd
 * keeps its catch-up entries, but never more than snapshot_bytes / 2 of
 * entry data: trail_limit), so a follower just behind catches up from
 * the log rather than from a snapshot. */
static int local_install(node *n, snap_io *io)
{
	uint64_t keep = n->cfg->snapshot_trailing != UINT64_MAX ? n->cfg->snapshot_trailing
								: n->cfg->snapshot_entries / 2;
	uint64_t upto = io->index > keep ? io->index - keep : 0;
	uint64_t by_bytes = atomic_load(&n->trail_upto);
	int rc;

	if (by_bytes > upto && by_bytes <= io->index)
		upto = by_bytes;
	if (!n->local_staging || n->local_epoch != atomic_load(&n->stage_epoch)) {
		store_snap_writer_discard(n->st, io->w);
		return RAFT_ESNAP_OUT_OF_DATE;
	}
	rc = store_snapshot_stage_commit(n->st, io->w);
	if (rc < 0 || !local_staging_ok(n, io->offset))
		return rc < 0 ? rc : RAFT_ESNAP_OUT_OF_DATE;
	n->local_staging = false;
	rc = store_snapshot_install_local(n->st);
	if (rc < 0) {
		if (rc != RAFT_ESNAP_OUT_OF_DATE)
			rlog_write(RLOG_ERR, "store: installing the snapshot at %llu: %s",
				   (unsigned long long)io->index, store_errmsg(n->st));
		return rc;
	}
	if (upto >= store_first_index(n->st)) {
		rc = store_compact(n->st, upto);
		if (rc < 0)
			rlog_write(RLOG_ERR, "store: compact to %llu: %s", (unsigned long long)upto,
				   store_errmsg(n->st));
	}
	atomic_store(&n->image_bytes, io->offset);
	rlog_write(RLOG_INFO, "snapshot at %llu (%llu bytes); log compacted up to %llu",
		   (unsigned long long)io->index, (unsigned long long)io->offset,
		   (unsigned long long)(store_first_index(n->st) - 1));
	return 0;
}

/* Runs a snap_io of the apply thread on the loop thread and wakes it. */
static void do_snap_io(node *n, void *arg, bool stopping)
{
	snap_io *io = arg;
	int rc = 0;

	node_persist_lock(n->pq);
	if (stopping) {
		rc = NODE_ESTOPPED;
		if (io->kind == SIO_INSTALL || io->kind == SIO_ABORT)
			store_snap_writer_discard(n->st, io->w);
	} else {
		switch (io->kind) {
		case SIO_BEGIN:
			rc = local_begin(n, io);
			break;
		case SIO_INSTALL:
			rc = local_install(n, io);
			break;
		case SIO_ABORT:
			store_snap_writer_discard(n->st, io->w);
			break;
		case SIO_OPEN:
			rc = snap_open(n->st, io);
			break;
		}
	}
	node_persist_unlock(n->pq);
	if (io->kind != SIO_OPEN && (rc < 0 || io->kind == SIO_ABORT))
		n->local_staging = false;
	pthread_mutex_lock(&n->smu);
	io->rc = rc;
	io->done = true; /* io belongs to the apply thread again */
	pthread_cond_broadcast(&n->scv);
	pthread_mutex_unlock(&n->smu);
}

/* The snapshot of a Ready from the leader: its data was streamed into the
 * store's staging (consensus/snapshot_stream.h) unless it came inline.
 * Installs it; the apply thread reads it back from the store in chunks, so
 * *for_apply carries the metadata only. */
int node_snap_install(node *n, const raft_snapshot *snap, raft_snapshot *for_apply)
{
	uint64_t staged_index = 0, staged_len = 0;
	int rc;

	*for_apply = *snap;
	for_apply->data = NULL;
	for_apply->len = 0;
	if (snap->len > 0) {
		rc = store_snapshot(n, &snap->meta, snap->data, snap->len);
		if (rc == 0 && n->conf_index < snap->meta.index)
			n->conf_index = snap->meta.index; /* the snapshot's membership */
		return rc;
	}
	/* Streamed: only the staging this node received whole may become
	 * current. Anything else (a partial staging, none: an empty image)
	 * would be restored as a truncated image, the node would fault, and
	 * a restart would restore the same broken snapshot. */
	if (!store_snapshot_staged(n->st, &staged_index, &staged_len) ||
	    staged_index != snap->meta.index ||
	    !snap_recv_whole(n->ss, staged_index, staged_len)) {
		rlog_write(RLOG_ERR,
			   "the snapshot at %llu from the leader is not staged whole (staged: "
			   "%s at %llu, %llu bytes): not installed",
			   (unsigned long long)snap->meta.index,
			   store_snapshot_staged(n->st, NULL, NULL) ? "one" : "none",
			   (unsigned long long)staged_index, (unsigned long long)staged_len);
		return RAFT_ESNAP_TEMP_UNAVAILABLE;
	}
	n->stage_epoch++;
	rc = store_snapshot_install(n->st);
	if (rc == 0 && n->conf_index < snap->meta.index)
		n->conf_index = snap->meta.index; /* the snapshot's membership */
	if (rc < 0 && rc != RAFT_ESNAP_OUT_OF_DATE) {
		rlog_write(RLOG_ERR, "store: installing the snapshot at %llu: %s",
			   (unsigned long long)snap->meta.index, store_errmsg(n->st));
		return rc;
	}
	return 0;
}

/* Loop thread: hands the core every snapshot that is now staged whole. */
static void recv_pump(node *n)
{
	raft_msg m;

	for (;;) {
		int rc;

		/* The staging is the store's: under the store lock. */
		node_persist_lock(n->pq);
		rc = snap_recv_pump(n->ss, &m);
		node_persist_unlock(n->pq);
		if (rc != 1)
			break;
		/* Staged: no local snapshot may begin before its Ready. */
		n->recv_pending = true;
		RLOG(RLOG_NET, "snapshot at %llu from %llu: received",
		     (unsigned long long)m.snapshot->meta.index, (unsigned long long)m.from);
		raft_step(n->r, &m);
		raft_msg_free_contents(&m);
	}
}

void node_snap_on_chunk(void *arg, uint64_t from, const Transportpb__SnapshotChunk *ch)
{
	node *n = arg;

	if (n->recv_pending && !ch->resume && !ch->ack) {
		/* A snapshot received whole waits for its Ready to install it:
		 * nothing may touch the staging before (a new stream's chunk at
		 * 0 would restart it under the core's feet). The sender is
		 * told, ends its stream and sends again. */
		RLOG(RLOG_NET,
		     "snapshot chunk from %llu at %llu: a received snapshot waits for its "
		     "install: dropped",
		     (unsigned long long)from, (unsigned long long)ch->offset);
		node_persist_lock(n->pq);
		snap_recv_refuse(n->ss, from, ch);
		node_persist_unlock(n->pq);
		return;
	}
	if (ch->resume || ch->ack) {
		/* Answers to this node's own streams: the sending side, which
		 * takes the store lock itself where it reopens its reader
		 * (the lock is not recursive). */
		snap_recv_chunk(n->ss, from, ch);
		return;
	}
	if (ch->offset == 0 && !ch->offer)
		n->stage_epoch++; /* drops a local snapshot being staged */
	node_persist_lock(n->pq);
	snap_recv_chunk(n->ss, from, ch);
	node_persist_unlock(n->pq);
	recv_pump(n); /* an empty image is whole at its only chunk */
}

/* Loop thread: the chunks a stream's reader thread read are ready, or a
 * writer thread staged some. */
static void pump_streams(node *n, void *arg, bool stopping)
{
	(void)arg;
	if (stopping)
		return;
	snap_send_pump(n->ss);
	recv_pump(n);
}

void node_snap_wake(void *arg)
{
	node *n = arg;
	op *o = calloc(1, sizeof(*o));

	if (!o)
		return; /* the next tick pumps */
	o->kind = OP_CALL;
	o->fn = pump_streams;
	pthread_mutex_lock(&n->mu);
	if (n->loop_done)
		free(o);
	else
		node_inbox_push_locked(n, o);
	pthread_mutex_unlock(&n->mu);
}

void node_snap_report(void *arg, uint64_t peer, bool failed)
{
	node *n = arg;

	raft_report_snapshot(n->r, peer, failed);
}
