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
 * Expiry (thesis §6.3: sessions expire by a deterministic rule applied in
 * log order): every node-process run is a client, so without it the table
 * grows by one client per start, forever. A client none of whose commands
 * executed in the last DEDUP_EXPIRE_ENTRIES recorded indexes (see
 * dedup_record_at) keeps only low = its highest seq + 1, so any of its old
 * seqs answers DEDUP_STALE — a retry that arrives that late is refused,
 * never executed twice; idle for twice as long it is dropped. The table so
 * holds the clients active in the last 2 x DEDUP_EXPIRE_ENTRIES entries.
 * Safe as long as no retry of a command is appended more than
 * DEDUP_EXPIRE_ENTRIES entries after the command executed: a retry is
 * proposed only while its proposal is pending (proposal timeout, 5 s by
 * default), and 2^20 entries take about a minute at this machine's best.
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

/* Idle clients expire after this many entries (dedup.h, top). */
#define DEDUP_EXPIRE_ENTRIES (1ull << 20)

/* Records the result of a newly executed (client, seq), applied at log index
 * `index`, and forgets the client's seqs below min_pending. The index is the
 * table's clock for expiry: a state machine calls this for every command it
 * executes, in log order, also when it rebuilds the table from a journal,
 * so every replica expires the same clients at the same index. 0 or
 * -ENOMEM. */
int dedup_record_at(dedup *d, uint64_t index, uint64_t client, uint64_t seq, uint64_t min_pending,
		    int64_t result);

/* dedup_record_at at the table's current index (no clock advance): for
 * state machines without expiry (the kv test machine). */
int dedup_record(dedup *d, uint64_t client, uint64_t seq, uint64_t min_pending, int64_t result);

/* Sets the expiry to `entries` (0: never). Must be the same on every
 * replica; not serialized (a table read back gets the default). For tests. */
void dedup_set_expiry(dedup *d, uint64_t entries);

/* Number of clients in the table. */
size_t dedup_clients(const dedup *d);

/* Encodes the table into a new malloc'd buffer (*out, caller frees).
 * 0 or -ENOMEM. */
int dedup_serialize(const dedup *d, uint8_t **out, size_t *len);

/* Builds a table from dedup_serialize bytes. 0, -EINVAL for bytes that do
 * not decode (never trusted), or -ENOMEM. */
int dedup_deserialize(const uint8_t *buf, size_t len, dedup **out);

#endif
