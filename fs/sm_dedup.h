// The duplicate table: per client id, the last applied seq and its result, persisted in DATA/sm/clients.
#ifndef RAFTFS_FS_SM_DEDUP_H
#define RAFTFS_FS_SM_DEDUP_H

#include <stdint.h>

#include "tree_map.h"

// Exactly-once across leader changes (Raft thesis §6.3): a command re-proposed
// after a leader change may be committed twice; the second copy must return
// the first's result without executing. Each client owns a fixed 32-byte slot
// in the file, rewritten in place by one pwrite per command.
struct sm_dedup {
	int fd;
	struct tree_map clients; // client id -> struct sm_client *
	uint64_t nslots;
};

struct sm_client {
	uint64_t id;
	uint64_t seq;
	int32_t result;
	uint64_t slot;
};

// Opens (creating) DIRFD/clients and loads every intact slot. 0 or -errno.
int sm_dedup_open(int dirfd, struct sm_dedup *d);

// The client's entry, or NULL if it never had a command applied.
const struct sm_client *sm_dedup_get(const struct sm_dedup *d, uint64_t client);

// Sets the client's last seq and result (memory and file). 0 or -errno.
int sm_dedup_put(struct sm_dedup *d, uint64_t client, uint64_t seq, int32_t result);

// Closes the file and frees the table.
void sm_dedup_close(struct sm_dedup *d);

#endif
