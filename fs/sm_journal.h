// The apply journal: "applying index i, result r" records, for redo and the duplicate table.
#ifndef RAFTFS_FS_SM_JOURNAL_H
#define RAFTFS_FS_SM_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SM_REC_SKIP 1u // nothing executed: a duplicate, a stale retry or an empty entry
#define SM_REC_DONE 2u // rewritten at a clean close: the command is fully applied

// What the state machine decided for a command before touching the tree. The
// plan fields (a, b, mode, gid) are what the idempotent redo needs and can no
// longer read from a half-changed tree (e.g. which object a rename moved).
// (client, seq, min_pending, result) is the duplicate table's input: the
// table is rebuilt at start by replaying the records (consensus/dedup.h).
struct sm_record {
	uint64_t index;
	uint64_t client;
	uint64_t seq;
	uint64_t min_pending;
	int32_t result; // 0 or a positive errno
	uint32_t flags; // SM_REC_*
	uint64_t a;	// op-specific object ids (see apply.c)
	uint64_t b;
	uint32_t mode;	   // final mode of the object the command creates or changes
	uint32_t gid;	   // final group of an object the command creates
	uint64_t cmd_hash; // of the command bytes: a redo must get the same command
	// A Batch entry (fs.proto) has a record per sub-command, each written
	// before that one executes (so a redo resumes at the one a crash cut
	// short: those before it are done): sub is its place (1..nsub; 0: not
	// a batch) and results the entry's result so far (byte k: sub-command
	// k's, for k < sub). A skipped entry keeps its whole recorded result
	// here (a batch's does not fit `result`).
	uint32_t sub;
	uint32_t nsub;
	uint64_t results;
};

// Whether r is the last record of its entry: the one whose result goes into
// the duplicate table (sm_rec_entry_result).
static inline bool sm_rec_ends_entry(const struct sm_record *r)
{
	return r->sub == r->nsub;
}

// The result of r's entry as the proposer gets it: a batch's packed
// results (also a batch refused or skipped as a whole: its errno in every
// byte), a skipped entry's recorded one, or the command's. results is 0 in
// every other record.
static inline int64_t sm_rec_entry_result(const struct sm_record *r)
{
	if (r->sub || r->results)
		return (int64_t)r->results;
	return r->result;
}

struct sm_journal {
	int fd;
	int dirfd;  // DATA/sm (not owned)
	off_t end;  // where the next record goes
	off_t last; // offset of the newest record (-1: none)
};

// Called by sm_journal_open for every intact record, oldest first; `newest`
// is set for the last one. Returns 0 or a negative errno (stops the replay).
typedef int (*sm_replay_fn)(void *arg, const struct sm_record *r, bool newest);

// Opens (creating) DIRFD/journal and replays its records. A record torn by a
// power loss ends the log (it and anything after it are dropped).
// Returns 0 or a negative errno.
int sm_journal_open(int dirfd, struct sm_journal *j, sm_replay_fn fn, void *arg);

// Appends rec: one pwrite of a few dozen bytes, no fsync (a process crash
// keeps the page cache; a write within one page is never torn by SIGKILL).
// Returns 0 or a negative errno.
int sm_journal_append(struct sm_journal *j, const struct sm_record *rec);

// Rewrites the newest record (e.g. with SM_REC_DONE). 0 or a negative errno.
int sm_journal_rewrite_last(struct sm_journal *j, const struct sm_record *rec);

// Starts a new log holding only rec (the newest, complete record): written
// beside and renamed over the old one, so a crash leaves one or the other.
// The caller first saves whatever the dropped records carried.
int sm_journal_restart(struct sm_journal *j, const struct sm_record *rec);

// Bytes in the log now.
off_t sm_journal_size(const struct sm_journal *j);

// Closes the journal file.
void sm_journal_close(struct sm_journal *j);

// A 64-bit FNV-1a hash: checksums of the small records in DATA/sm.
uint64_t sm_hash(const void *data, size_t len);

// A 64-bit hash of a command's bytes (sm_record.cmd_hash), eight bytes a
// step in four independent lanes: commands carry up to 256 KiB of file data
// and are hashed on every apply, where byte-wise FNV-1a cost ~4 cycles/byte.
uint64_t sm_cmd_hash(const void *data, size_t len);

#endif
