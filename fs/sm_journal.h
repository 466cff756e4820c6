// The apply journal: one small record per command, "applying index i with result r", for redo after a crash.
#ifndef RAFTFS_FS_SM_JOURNAL_H
#define RAFTFS_FS_SM_JOURNAL_H

#include <stdbool.h>
#include <stdint.h>

#define SM_REC_DUP 1u  // a duplicate (client, seq): nothing is executed
#define SM_REC_DONE 2u // written at a clean close: the command is fully applied

// What the state machine decided for a command before touching the tree. The
// plan fields (a, b, mode, gid) are what the idempotent redo needs and can no
// longer read from a half-changed tree (e.g. which object a rename moved).
struct sm_record {
	uint64_t index;
	uint64_t client;
	uint64_t seq;
	int32_t result; // 0 or a positive errno
	uint32_t flags; // SM_REC_*
	uint64_t a;     // op-specific object ids (see apply.c)
	uint64_t b;
	uint32_t mode;  // final mode of the object the command creates or changes
	uint32_t gid;   // final group of an object the command creates
	uint64_t cmd_hash; // of the command bytes: a redo must get the same command
};

struct sm_journal {
	int fd;
};

// Opens (creating) DIRFD/journal and reads the newest intact record into *last
// (*have = false on a fresh journal). Returns 0 or a negative errno.
int sm_journal_open(int dirfd, struct sm_journal *j, struct sm_record *last, bool *have);

// Records rec, overwriting the older of two slots so a record torn by a power
// loss leaves the previous one readable. One pwrite, no fsync: a process crash
// keeps the page cache. Returns 0 or a negative errno.
int sm_journal_write(struct sm_journal *j, const struct sm_record *rec);

// Closes the journal file.
void sm_journal_close(struct sm_journal *j);

// A 64-bit FNV-1a hash: checksums of the small fixed records in DATA/sm.
uint64_t sm_hash(const void *data, uint64_t len);

#endif
