/* log.c — the Raft log: an in-memory window over stable storage. */
#include "log.h"

#include "blob.h"

#include <stdlib.h>
#include <string.h>

static raft_entry *win(const raft_log *l, uint64_t i)
{
	return &l->ents[l->head + (size_t)(i - l->off)];
}

static bool in_window(const raft_log *l, uint64_t i)
{
	return i >= l->off && i < l->off + l->n;
}

int raft_log_init(raft_log *l, raft_storage *storage, uint64_t applied)
{
	memset(l, 0, sizeof(*l));
	l->storage = storage;
	uint64_t first, last;
	int rc = storage->first_index(storage->ctx, &first);
	if (rc == 0)
		rc = storage->last_index(storage->ctx, &last);
	if (rc != 0)
		return rc;
	l->off = last + 1;
	l->last = last;
	l->stable = last;
	l->handed = last;
	/* Entries up to the snapshot are in the state machine already. */
	l->committed = first - 1;
	l->applied = applied > first - 1 ? applied : first - 1;
	return 0;
}

void raft_log_destroy(raft_log *l)
{
	for (size_t i = 0; i < l->n; i++)
		raft_blob_release(l->ents[l->head + i].data);
	free(l->ents);
	for (size_t i = 0; i < l->n_graveyard; i++)
		raft_blob_release(l->graveyard[i]);
	free(l->graveyard);
	if (l->pending_snap) {
		raft_snapshot_free_contents(l->pending_snap);
		free(l->pending_snap);
	}
	memset(l, 0, sizeof(*l));
}

int raft_log_term(const raft_log *l, uint64_t i, uint64_t *term)
{
	*term = 0;
	if (in_window(l, i)) {
		*term = win(l, i)->term;
		return 0;
	}
	if (i > l->last)
		return RAFT_EUNAVAILABLE;
	if (l->pending_snap) {
		if (i == l->pending_snap->meta.index) {
			*term = l->pending_snap->meta.term;
			return 0;
		}
		return RAFT_ECOMPACTED;
	}
	/* i < off <= stable + 1: storage holds what we hold. */
	return l->storage->term(l->storage->ctx, i, term);
}

uint64_t raft_log_term_or_zero(const raft_log *l, uint64_t i)
{
	uint64_t t;
	if (raft_log_term(l, i, &t) != 0)
		return 0;
	return t;
}

uint64_t raft_log_last_term(const raft_log *l)
{
	return raft_log_term_or_zero(l, l->last);
}

uint64_t raft_log_first_index(const raft_log *l)
{
	if (l->pending_snap)
		return l->pending_snap->meta.index + 1;
	uint64_t first;
	if (l->storage->first_index(l->storage->ctx, &first) != 0)
		return l->off;
	return first;
}

bool raft_log_match_term(const raft_log *l, uint64_t i, uint64_t term)
{
	uint64_t t;
	if (raft_log_term(l, i, &t) != 0)
		return false;
	return t == term;
}

bool raft_log_is_up_to_date(const raft_log *l, uint64_t last_index, uint64_t last_term)
{
	uint64_t our_term = raft_log_last_term(l);
	return last_term > our_term || (last_term == our_term && last_index >= l->last);
}

/* Keeps the data of a truncated entry alive until the next release: a
 * Ready handed out before the truncation may still point at it. */
static void bury(raft_log *l, uint8_t *data)
{
	if (!data)
		return;
	if (l->n_graveyard == l->cap_graveyard) {
		size_t cap = l->cap_graveyard ? 2 * l->cap_graveyard : 16;
		uint8_t **p = realloc(l->graveyard, cap * sizeof(*p));
		if (!p) {
			raft_blob_release(data);
			return;
		}
		l->graveyard = p;
		l->cap_graveyard = cap;
	}
	l->graveyard[l->n_graveyard++] = data;
}

static int window_reserve(raft_log *l, size_t extra)
{
	if (l->head + l->n + extra <= l->cap)
		return 0;
	/* Slide down only when at least half the array is free at the front,
	 * so each entry is moved O(1) times amortized. */
	if (l->head >= l->cap / 2 && l->n + extra <= l->cap) {
		memmove(l->ents, l->ents + l->head, l->n * sizeof(raft_entry));
		l->head = 0;
		return 0;
	}
	size_t cap = l->cap ? l->cap : 64;
	while (cap < l->head + l->n + extra)
		cap *= 2;
	raft_entry *p = realloc(l->ents, cap * sizeof(*p));
	if (!p)
		return RAFT_ENOMEM;
	l->ents = p;
	l->cap = cap;
	return 0;
}

/* Drops window entries from index from on (their data goes to the graveyard). */
static void window_truncate(raft_log *l, uint64_t from)
{
	while (l->n > 0 && l->off + l->n - 1 >= from) {
		l->n--;
		bury(l, l->ents[l->head + l->n].data);
	}
	if (l->n == 0) {
		l->head = 0;
		l->off = from;
	}
}

/* ents[0..n) into e: refs takes a reference to each entry's block, else
 * copies its data. */
static int take_entries(raft_entry *e, const raft_entry *ents, size_t n, bool refs)
{
	if (!refs)
		return raft_blob_copy_entries(e, ents, n);
	for (size_t i = 0; i < n; i++) {
		e[i] = ents[i];
		raft_blob_ref(e[i].data);
	}
	return 0;
}

/* Appends ents (copied, or with refs their blocks referenced), replacing
 * whatever the log holds from ents[0].index on. The caller checked that
 * nothing committed is replaced. */
static int truncate_and_append(raft_log *l, const raft_entry *ents, size_t n, bool refs)
{
	if (n == 0)
		return 0;
	uint64_t after = ents[0].index;
	if (after <= l->last) {
		if (after < l->off) {
			/* The conflict is below the window (e.g. after a restart):
			 * the window restarts at after; storage keeps [.., after). */
			window_truncate(l, l->off);
			l->off = after;
		} else {
			window_truncate(l, after);
		}
		if (l->stable > after - 1)
			l->stable = after - 1;
		if (l->handed > after - 1)
			l->handed = after - 1;
	} else if (after != l->last + 1) {
		return RAFT_EINVAL;
	}
	if (l->n == 0)
		l->off = after;
	int rc = window_reserve(l, n);
	if (rc != 0)
		return rc;
	raft_entry *e = &l->ents[l->head + l->n];
	if ((rc = take_entries(e, ents, n, refs)) != 0)
		return rc;
	l->n += n;
	l->last = l->off + l->n - 1;
	return 0;
}

/* raft_log_append_new and raft_log_append_refs: refs takes a reference to
 * each entry's block instead of copying its data. */
static int append_new(raft_log *l, const raft_entry *ents, size_t n, uint64_t term, bool refs)
{
	if (n == 0)
		return 0;
	if (l->n == 0)
		l->off = l->last + 1;
	int rc = window_reserve(l, n);
	if (rc != 0)
		return rc;
	raft_entry *e = &l->ents[l->head + l->n];
	if ((rc = take_entries(e, ents, n, refs)) != 0)
		return rc;
	for (size_t i = 0; i < n; i++) {
		e[i].term = term;
		e[i].index = l->off + l->n + i;
	}
	l->n += n;
	l->last = l->off + l->n - 1;
	return 0;
}

int raft_log_append_new(raft_log *l, const raft_entry *ents, size_t n, uint64_t term)
{
	return append_new(l, ents, n, term, false);
}

int raft_log_append_refs(raft_log *l, const raft_entry *ents, size_t n, uint64_t term)
{
	return append_new(l, ents, n, term, true);
}

/* raft_log_maybe_append and raft_log_maybe_append_refs. */
static int maybe_append(raft_log *l, uint64_t index, uint64_t log_term, uint64_t commit,
			const raft_entry *ents, size_t n, uint64_t *last_new, bool refs)
{
	if (!raft_log_match_term(l, index, log_term))
		return RAFT_EINVAL;
	uint64_t lastnew = index + n;
	/* §5.3: skip the prefix we already hold; replace from the first
	 * conflicting entry. A matching suffix is never truncated, so a
	 * delayed, shorter append cannot undo newer entries. */
	size_t k = 0;
	while (k < n && raft_log_match_term(l, ents[k].index, ents[k].term))
		k++;
	if (k < n) {
		if (ents[k].index <= l->committed)
			return RAFT_ECORRUPT; /* would rewrite a committed entry */
		int rc = truncate_and_append(l, ents + k, n - k, refs);
		if (rc != 0)
			return rc;
	}
	raft_log_commit_to(l, commit < lastnew ? commit : lastnew);
	*last_new = lastnew;
	return 0;
}

int raft_log_maybe_append(raft_log *l, uint64_t index, uint64_t log_term, uint64_t commit,
			  const raft_entry *ents, size_t n, uint64_t *last_new)
{
	return maybe_append(l, index, log_term, commit, ents, n, last_new, false);
}

int raft_log_maybe_append_refs(raft_log *l, uint64_t index, uint64_t log_term, uint64_t commit,
			       const raft_entry *ents, size_t n, uint64_t *last_new)
{
	return maybe_append(l, index, log_term, commit, ents, n, last_new, true);
}

uint64_t raft_log_find_conflict_by_term(const raft_log *l, uint64_t index, uint64_t term,
					uint64_t *out_term)
{
	*out_term = 0;
	if (index > l->last)
		return index;
	for (;;) {
		uint64_t t;
		if (raft_log_term(l, index, &t) != 0)
			return index;
		if (t <= term) {
			*out_term = t;
			return index;
		}
		if (index == 0)
			return 0;
		index--;
	}
}

void raft_log_commit_to(raft_log *l, uint64_t index)
{
	if (index > l->last)
		index = l->last;
	if (index > l->committed)
		l->committed = index;
}

int raft_log_entries(const raft_log *l, uint64_t lo, uint64_t max_bytes, raft_entry **out,
		     size_t *n)
{
	*out = NULL;
	*n = 0;
	if (lo > l->last)
		return 0;
	if (l->pending_snap && lo <= l->pending_snap->meta.index)
		return RAFT_ECOMPACTED;
	raft_entry *stored = NULL;
	size_t n_stored = 0;
	uint64_t bytes = 0;
	bool more = true;
	if (lo < l->off) {
		/* Older entries come from storage (a lagging follower). */
		uint64_t hi = l->off;
		int rc =
		    l->storage->entries(l->storage->ctx, lo, hi, max_bytes, &stored, &n_stored);
		if (rc != 0)
			return rc;
		for (size_t i = 0; i < n_stored; i++)
			bytes += raft_entry_size(&stored[i]);
		more = lo + n_stored == hi;
		lo = hi;
	}
	size_t n_win = 0;
	while (more && lo + n_win <= l->last) {
		uint64_t sz = raft_entry_size(win(l, lo + n_win));
		if ((n_stored > 0 || n_win > 0) && bytes + sz > max_bytes)
			break;
		bytes += sz;
		n_win++;
	}
	size_t total = n_stored + n_win;
	raft_entry *arr = total ? malloc(total * sizeof(*arr)) : NULL;
	if (arr && raft_blob_copy_entries(arr, stored, n_stored) != 0) {
		free(arr);
		arr = NULL;
	}
	raft_entries_free(stored, n_stored);
	if (total && !arr)
		return RAFT_ENOMEM;
	for (size_t i = 0; i < n_win; i++) {
		arr[n_stored + i] = *win(l, lo + i);
		raft_blob_ref(arr[n_stored + i].data);
	}
	*out = arr;
	*n = total;
	return 0;
}

void raft_log_entries_free(raft_entry *ents, size_t n)
{
	for (size_t i = 0; i < n; i++)
		raft_blob_release(ents[i].data);
	free(ents);
}

bool raft_log_has_conf_change(const raft_log *l, uint64_t lo, uint64_t hi)
{
	for (uint64_t i = lo; i <= hi && i <= l->last; i++) {
		if (in_window(l, i)) {
			if (win(l, i)->type == RAFT_ENTRY_CONF_CHANGE)
				return true;
			continue;
		}
		raft_entry *e;
		size_t n;
		if (l->storage->entries(l->storage->ctx, i, i + 1, 0, &e, &n) != 0 || n == 0)
			continue;
		bool conf = e[0].type == RAFT_ENTRY_CONF_CHANGE;
		raft_entries_free(e, n);
		if (conf)
			return true;
	}
	return false;
}

void raft_log_restore(raft_log *l, raft_snapshot *snap)
{
	window_truncate(l, l->off);
	l->off = snap->meta.index + 1;
	l->last = snap->meta.index;
	l->stable = snap->meta.index;
	l->handed = snap->meta.index;
	l->committed = snap->meta.index;
	if (l->pending_snap) {
		raft_snapshot_free_contents(l->pending_snap);
		free(l->pending_snap);
	}
	l->pending_snap = snap;
}

const raft_entry *raft_log_unstable(const raft_log *l, size_t *n)
{
	if (l->last <= l->handed) {
		*n = 0;
		return NULL;
	}
	*n = (size_t)(l->last - l->handed);
	return win(l, l->handed + 1);
}

/* The last index that may be applied: committed and persisted here. */
static uint64_t apply_limit(const raft_log *l)
{
	return l->committed < l->stable ? l->committed : l->stable;
}

bool raft_log_has_next_committed(const raft_log *l)
{
	return !l->pending_snap && l->applied < apply_limit(l);
}

int raft_log_next_committed(const raft_log *l, uint64_t max_bytes, const raft_entry **out,
			    size_t *n, raft_entry **owned)
{
	*out = NULL;
	*n = 0;
	*owned = NULL;
	if (!raft_log_has_next_committed(l))
		return 0;
	uint64_t lo = l->applied + 1, hi = apply_limit(l) + 1;
	if (lo < l->off) {
		uint64_t end = hi < l->off ? hi : l->off;
		int rc = l->storage->entries(l->storage->ctx, lo, end, max_bytes, owned, n);
		if (rc != 0)
			return rc;
		*out = *owned;
		return 0;
	}
	size_t count = 0;
	uint64_t bytes = 0;
	while (lo + count < hi) {
		uint64_t sz = raft_entry_size(win(l, lo + count));
		if (count > 0 && bytes + sz > max_bytes)
			break;
		bytes += sz;
		count++;
	}
	*out = win(l, lo);
	*n = count;
	return 0;
}

void raft_log_stable_to(raft_log *l, uint64_t index, uint64_t term)
{
	if (index > l->stable && index <= l->last && raft_log_match_term(l, index, term)) {
		l->stable = index;
		if (l->handed < index)
			l->handed = index;
	}
}

void raft_log_handed_to(raft_log *l, uint64_t index, uint64_t term)
{
	if (index > l->handed && index <= l->last && raft_log_match_term(l, index, term))
		l->handed = index;
}

void raft_log_stable_snap_to(raft_log *l, uint64_t index)
{
	if (l->pending_snap && l->pending_snap->meta.index == index) {
		raft_snapshot_free_contents(l->pending_snap);
		free(l->pending_snap);
		l->pending_snap = NULL;
	}
}

void raft_log_applied_to(raft_log *l, uint64_t index)
{
	if (index > l->applied && index <= l->committed)
		l->applied = index;
}

void raft_log_release(raft_log *l)
{
	for (size_t i = 0; i < l->n_graveyard; i++)
		raft_blob_release(l->graveyard[i]);
	l->n_graveyard = 0;
	uint64_t upto = l->applied < l->stable ? l->applied : l->stable;
	/* The entry at upto stays: the term of the last applied entry is
	 * asked for by every append to an up-to-date follower, and storage
	 * may be busy with a save on another thread (consensus/node.c). */
	while (l->n > 0 && l->off < upto) {
		raft_blob_release(l->ents[l->head].data);
		l->head++;
		l->n--;
		l->off++;
	}
	if (l->n == 0)
		l->head = 0;
}
