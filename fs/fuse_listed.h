/* fuse_listed.h — recalls ahead for a listing: the directories another
 * node holds that a listing just showed this mount, so that a scan of them
 * (the second a lookup or getattr fences) recalls them all at once.
 *
 * `ls -l` of a directory with N subdirectories another node holds reads
 * the listing (which hands the kernel no attributes of them: fuse_ops.c,
 * dir_add), then looks each up, one after the other; each lookup recalls
 * its directory and waits for the holder's Return (two commit rounds plus
 * the holder's backlog): N recalls in turn (0.5 s for 100, session 10).
 * With this, the second lookup (a scan: the first alone may be a cd) also
 * proposes the Recalls of the others the listing showed, in a few batched
 * entries, and their holder returns them in batches too (its returner): the lookups after it find them returned,
 * or wait for a Return already under way. Nothing changes in what a
 * lookup waits for (its own fence); a listing alone recalls nothing more
 * than before, nor does one look at one of its held directories — only a
 * second one, and only of holders not known silent (fuse_behind_deleg.c).
 * Pure bookkeeping, thread-safe, never blocks on I/O. */
#ifndef RAFTFS_FUSE_LISTED_H
#define RAFTFS_FUSE_LISTED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A listing's held directories are recalled ahead only if looks at two
 * different ones of them come within this many milliseconds of its read:
 * ls -l stats right after reading, one after another; a single look (cd
 * into one of them after tab completion, a monitor's `ls t; stat t/x`)
 * is no scan, and recalls only its own directory — else it would force
 * out everything the holder works in under t. */
#define FUSE_LISTED_MS 5000
/* Listings remembered at once (the oldest goes), held directories
 * remembered per listing, and recalled ahead per listing (beyond those,
 * each is recalled on its own look, as before). */
#define FUSE_LISTED_SLOTS 8u
#define FUSE_LISTED_IDS_MAX 8192u
#define FUSE_LISTED_AHEAD_MAX 256u

struct fuse_listed;

/* Which listing a take took (fuse_listed_sent's argument): a slot and its
 * generation, so that the Recalls sent are filed with that listing, not
 * with a newer listing of the same parent that reused or shares it. */
struct fuse_listed_token {
	unsigned slot;
	uint64_t gen;
};

/* 0 or -ENOMEM. */
int fuse_listed_new(struct fuse_listed **out);
void fuse_listed_free(struct fuse_listed *l);

/* A listing of parent at now_ms showed ids[0..n), directories another
 * node holds (added to what earlier reads of the same listing showed). */
void fuse_listed_note(struct fuse_listed *l, uint64_t parent, const uint64_t *ids, size_t n,
		      int64_t now_ms);

/* dir is about to be recalled at now_ms: when a listing showed it within
 * FUSE_LISTED_MS, another directory of that listing was looked at since
 * (a scan), and the listing's directories were not recalled ahead yet,
 * they are now — *out gets them, or FUSE_LISTED_AHEAD_MAX of them from
 * dir on (malloc'd, sorted; the caller frees it), *tok the
 * listing, and their count is returned; else 0 (*out NULL). */
size_t fuse_listed_take(struct fuse_listed *l, uint64_t dir, int64_t now_ms, uint64_t **out,
			struct fuse_listed_token *tok);

/* Of what the take of tok gave, the Recalls of ids[0..n) (sorted), each
 * for the delegation epochs[i], were proposed at now_ms: only these count
 * as recalled ahead (one not held by another node any more, or whose
 * proposal failed, is recalled on its own look, at once). epochs (malloc'd,
 * at least n long; NULL when n is 0) is taken: kept by the listing or
 * freed here. */
void fuse_listed_sent(struct fuse_listed *l, struct fuse_listed_token tok, const uint64_t *ids,
		      uint64_t *epochs, size_t n, int64_t now_ms);

/* Whether dir's delegation of epoch was recalled ahead (fuse_listed_sent)
 * within window_ms of now_ms: its own recaller need not propose another
 * Recall at once. A Recall sent for another epoch does not count. */
bool fuse_listed_ahead(struct fuse_listed *l, uint64_t dir, uint64_t epoch, int64_t now_ms,
		       int64_t window_ms);

#endif
