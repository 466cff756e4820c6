/* dedup.h — the duplicate table a replicated state machine embeds so that a
 * command retried after a leader change is executed at most once (Raft
 * thesis §6.3).
 *
 * Every proposal carries (client id, seq, min_pending) in the runtime
 * envelope (consensus/envelope.h). A client may have many proposals in
 * flight; min_pending is the lowest seq it still waits for, a promise never
 * to retry anything below it. dedup_check_ordered() adds the rule that
 * makes one client's commands apply in seq order (the node runtime uses it;
 * consensus/README-node.md, "Order"). The table keeps,
 * per client, the result of every seq >= the highest min_pending seen, and
 * forgets the rest, so it stays as small as the number of proposals in
 * flight.
 *
 * The state machine persists the table atomically with its own applied
 * state (dedup_serialize / dedup_deserialize), so a restarted node answers a
 * retry exactly as before the crash. Deterministic: the same applied
 * sequence gives byte-identical serializations on every node. Not
 * thread-safe (the apply thread owns it).
 */
#ifndef RAFTFS_DEDUP_H
#define RAFTFS_DEDUP_H

#include <stddef.h>
#include <stdint.h>

typedef struct dedup dedup;

enum dedup_verdict {
	DEDUP_NEW = 0,	     /* never applied: execute it, then dedup_record */
	DEDUP_DUPLICATE = 1, /* applied before: *result is what it returned */
	DEDUP_STALE = 2,     /* below the client's min_pending: nobody waits for it; skip */
	DEDUP_EARLY = 3,     /* new, but a lower seq it depends on is not applied yet: skip
				(not recorded: the client proposes it again after that one) */
};

/* An empty table, or NULL when out of memory. */
dedup *dedup_new(void);
void dedup_free(dedup *d);

/* What to do with (client, seq). client 0 means "no client" (e.g. a
 * command that need not be deduplicated): always DEDUP_NEW. */
enum dedup_verdict dedup_check(const dedup *d, uint64_t client, uint64_t seq, int64_t *result);

/* dedup_check, plus the order rule: a new (client, seq) proposed with
 * min_pending may execute only once every seq of the client in
 * [max(min_pending, forgotten), seq) has executed; otherwise DEDUP_EARLY.
 * Applied to every entry, this makes the executed seqs of a client strictly
 * increasing in log order: a seq t < s can never execute after s (at s's
 * turn, t was either executed, below s's min_pending — hence forgotten and
 * STALE from then on — or below what was forgotten already). A function of
 * the table alone, so every replica gives the same verdict at the same
 * index. */
enum dedup_verdict dedup_check_ordered(const dedup *d, uint64_t client, uint64_t seq,
				       uint64_t min_pending, int64_t *result);

/* Records the result of a newly executed (client, seq) and forgets the
 * client's seqs below min_pending. 0 or -ENOMEM. */
int dedup_record(dedup *d, uint64_t client, uint64_t seq, uint64_t min_pending, int64_t result);

/* Number of clients in the table. */
size_t dedup_clients(const dedup *d);

/* Encodes the table into a new malloc'd buffer (*out, caller frees).
 * 0 or -ENOMEM. */
int dedup_serialize(const dedup *d, uint8_t **out, size_t *len);

/* Builds a table from dedup_serialize bytes. 0, -EINVAL for bytes that do
 * not decode (never trusted), or -ENOMEM. */
int dedup_deserialize(const uint8_t *buf, size_t len, dedup **out);

#endif
