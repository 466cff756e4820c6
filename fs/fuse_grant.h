/* fuse_grant.h — the timing rules of delegations, as pure bookkeeping: when
 * a mount asks for a directory, when it gives one back unasked, and when a
 * recaller proposes its Recall or gives up on the holder (Revoke).
 *
 * Grant on demand (fs/README-sm.md "Delegations"): a mount asks for the
 * delegation of a directory it did not make after
 * it changed the directory's entries synchronously several times in a
 * short while (cp or tar x into an existing tree, a program filling a
 * directory another node made), and not soon after its delegation of that
 * directory was recalled — two mounts working in one directory then settle
 * on neither holding it instead of passing it back and forth. Pure
 * bookkeeping: the caller proposes the Grant; time comes in as an
 * argument. */
#ifndef RAFTFS_FUSE_GRANT_H
#define RAFTFS_FUSE_GRANT_H

#include <stdbool.h>
#include <stdint.h>

/* This many synchronous entry changes of one directory nobody holds ... */
#define FUSE_GRANT_AFTER 8u
/* ... within this many milliseconds: ask for it. */
#define FUSE_GRANT_WINDOW_MS 2000
/* After a recall of this mount's delegation of a directory, it does not
 * ask again for this long, doubled at each further recall up to the max. */
#define FUSE_GRANT_BACKOFF_MS 2000
#define FUSE_GRANT_BACKOFF_MAX_MS 60000
/* Directories remembered at most (older quiet ones are dropped first). */
#define FUSE_GRANT_DIRS_MAX 4096u

struct fuse_grant;

/* 0 or -ENOMEM. eager: the test hook RAFTFS_TEST_GRANT_EAGER, read by
 * the caller (test_hook_env: this file is unit-tested without it): ask at
 * the first change, never back off. */
int fuse_grant_new(struct fuse_grant **out, bool eager);
void fuse_grant_free(struct fuse_grant *g);

/* This mount is about to change dir's entries synchronously (nobody holds
 * it) at now_ms: true when it should propose a Grant of dir now (then the
 * count starts again). Thread-safe. */
bool fuse_grant_note(struct fuse_grant *g, uint64_t dir, int64_t now_ms);

/* This mount's delegation of dir was recalled at now_ms: no Grant of it is
 * asked for during the back-off. Thread-safe, does not block (apply
 * thread). */
void fuse_grant_recalled(struct fuse_grant *g, uint64_t dir, int64_t now_ms);

/* Idle returns: a held directory with nothing pending and no file created
 * behind there still open is returned unasked once unused for idle_ms (the
 * mount's RAFTFS_DELEG_IDLE_MS, default FUSE_IDLE_RETURN_MS; 0: never) —
 * but only once the mount's write-behind as a whole has been quiet that
 * long (its burst is over: tar x returned). While the mount keeps working
 * in other directories, a directory is returned after FUSE_IDLE_BUSY_X
 * times that (5 s, CephFS's client_caps_release_delay): a mount that made
 * directories and then fills or renames into them (fs-bench, cp -a, a
 * build) would otherwise give each back just before it comes back to it,
 * and then pay a synchronous commit round per change there. */
#define FUSE_IDLE_RETURN_MS 500
#define FUSE_IDLE_BUSY_X 10

/* Whether a directory last used at last_ns is returned at now_ns, the
 * mount's newest use of any directory it holds (or of a pending command)
 * at newest_ns (ns of one clock; a use in the future counts as now). */
bool fuse_grant_idle(int64_t last_ns, int64_t newest_ns, int64_t now_ns, int64_t idle_ms);

/* A recaller's clock (fuse_behind_reclaim): it proposes a Recall at once
 * and again every FUSE_RECALL_EVERY_MS while it waits (in case the holder
 * restarted and missed the last one), and revokes the holder once none of
 * its commands applied for FUSE_REVOKE_AFTER_MS (down or cut off) —
 * FUSE_REVOKE_BUSY_MS once it was seen working in this wait — or after
 * FUSE_REVOKE_CAP_MS in all however busy. A new holder or epoch
 * between two looks (the delegation changed hands: returned, revoked and
 * granted to another) starts both afresh: the new holder gets the whole
 * FUSE_REVOKE_AFTER_MS and a Recall of its own epoch at once, rather than
 * what was left of its predecessor's (possibly nothing). The cap runs from
 * the start of the wait, whoever holds the directory. */
#define FUSE_RECALL_EVERY_MS 500
#define FUSE_REVOKE_AFTER_MS 3000
#define FUSE_REVOKE_CAP_MS 30000
/* A holder seen working during the wait (a command of its applied here
 * after the first look) is alive and has commands in flight; it may then
 * fall silent for as long as its own apply takes to catch up with them: a
 * synchronous step of its mount (a close past the lease, an fsync) waits
 * behind every command it has in flight (up to MAX_PENDING of
 * fuse_behind_int.h) and proposes nothing meanwhile — over 4 s for a
 * holder applying 4 ms per entry (tests/mount/mount_slow_holder.sh). Such
 * a holder is revoked once none of its commands applied for this long. */
#define FUSE_REVOKE_BUSY_MS 10000

struct fuse_reclaim {
	int64_t deadline_ms, cap_ms, next_recall_ms;
	uint32_t holder;
	uint64_t epoch, progress;
	uint64_t link; /* the newest connection to the holder seen in this wait */
	bool busy;   /* the holder's commands applied here during this wait */
	bool capped; /* the last FUSE_RECLAIM_REVOKE came from the cap, not silence */
};

enum fuse_reclaim_do {
	FUSE_RECLAIM_WAIT,   /* wait (at most until fuse_reclaim_due) */
	FUSE_RECLAIM_RECALL, /* propose a Recall of (holder, epoch), then wait */
	FUSE_RECLAIM_REVOKE, /* propose a Revoke of (holder, epoch) */
};

/* Starts a wait at now_ms. */
void fuse_reclaim_start(struct fuse_reclaim *r, int64_t now_ms);
/* What to do at now_ms, the directory held by holder under epoch, the
 * holder's commands applied here up to progress (sm_applied_from), this
 * node connected to it by link (fs_node_peer_link, 0: none; a connection
 * newer than the last one this wait saw gives it the whole wait again from
 * now, as a command of it applying does: it restarted, and connects
 * before it can answer anything — a holder that connected 2 s into a 3 s
 * wait is not revoked a second later, before its start command can
 * apply here), silent
 * since silent_ms as far as every recaller of this mount saw
 * (fuse_holder_look; now_ms if none did: a wait of its own). After
 * FUSE_RECLAIM_REVOKE the revoke's own deadline starts (a Revoke lost to a
 * leader change is proposed again). */
enum fuse_reclaim_do fuse_reclaim_step(struct fuse_reclaim *r, uint32_t holder, uint64_t epoch,
				       uint64_t progress, uint64_t link, int64_t silent_ms,
				       int64_t now_ms);
/* How long to wait at most from now_ms before the next step. */
int64_t fuse_reclaim_due(const struct fuse_reclaim *r, int64_t now_ms);
/* A Revoke this wait proposed changed nothing at now_ms: its holder had
 * started again before it applied (SM_RESULT_HOLDER_BACK). The holder is
 * live: the wait starts afresh, cap included. The cap's clock ran from
 * the wait's start, through the revoke at once of a silent holder, its
 * read barrier, proposal and apply; one that took most of the cap (a
 * loaded machine, a holder restarting slowly) would leave the live
 * holder less than FUSE_REVOKE_AFTER_MS, or nothing, before a Revoke that
 * takes, and the change it answered behind since would fail at apply. */
void fuse_reclaim_holder_back(struct fuse_reclaim *r, int64_t now_ms);

/* Holders' silence, one record per holder shared by all the recallers of
 * this mount. A dead or cut-off node may hold hundreds of directories (all
 * it used in its last seconds); each recall paying the whole
 * FUSE_REVOKE_AFTER_MS on its own clock made ls -l of a parent take 3 s
 * per directory, one after another, each blocking a FUSE thread. So:
 *  - recallers waiting for one holder at once share its clock: its silence
 *    counts from when the first of them started waiting for it and saw its
 *    progress (sm_applied_from) last change, not from each one's start;
 *  - once a wait revoked it for silence (not for the cap: a busy holder is
 *    alive), it is known silent, and a recall of another directory it
 *    holds revokes at once, until a command of it applies here again, or
 *    it shows a connection newer than the one this node had to it when
 *    its silence began (link, fs_node_peer_link: it restarted or came
 *    back from a partition) — it came back: normal recalls, with their
 *    whole wait, resume. The connection is the earlier sign: a restarted
 *    node connects before it mounts, while its start's command
 *    (fs/fuse_run.c) may commit much later. It spares the holder its
 *    directories; nothing it answered is at stake, since it answers
 *    nothing behind before that command applied there (fs_node_back).
 * A live holder is still given its FUSE_REVOKE_AFTER_MS once: the first
 * wait for it starts the clock, and any command of it resets it. At most
 * FUSE_HOLDERS_MAX holders are remembered (beyond that a wait has a clock
 * of its own, as before). Thread-safe, never blocks on I/O. */
#define FUSE_HOLDERS_MAX 64u

/* A recaller starts waiting for holder: true when counted (pair with
 * fuse_holder_leave), false when the table is full (no leave). progress:
 * the holder's commands applied here (sm_applied_from); link: this node's
 * present connection to it (fs_node_peer_link, 0: none). */
bool fuse_holder_join(struct fuse_grant *g, uint32_t holder, uint64_t progress, uint64_t link,
		      int64_t now_ms);
void fuse_holder_leave(struct fuse_grant *g, uint32_t holder);
/* A joined recaller's look at now_ms, the holder's commands applied here
 * up to progress, connected by link: since when it has been silent (now_ms
 * when unknown); *silent: a wait for it was revoked for silence, nothing
 * of it applied here since and no new connection to it came up (revoke
 * at once). */
int64_t fuse_holder_look(struct fuse_grant *g, uint32_t holder, uint64_t progress, uint64_t link,
			 int64_t now_ms, bool *silent);
/* A recaller revoked holder for silence, its commands applied up to
 * progress, connected by link: marked silent unless a look saw either
 * change since (another recaller's look found it back meanwhile). */
void fuse_holder_silent(struct fuse_grant *g, uint32_t holder, uint64_t progress, uint64_t link);

#endif
