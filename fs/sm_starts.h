// sm_starts.h — every node's last start command, replicated: what a Revoke is checked against at apply.
//
// A recaller that decided to revoke a silent holder before it applied that
// holder's start command (its apply lagging the commit, or between its
// catch-up barrier and its proposal), with the Revoke ordered after that
// command, took a holder that was back for dead: a change the holder
// answered behind just after its start applied failed at apply. The Revoke
// now says what its revoker knew (Deleg.knows_start, holder_start: the
// index of the holder's last start command applied there), and apply turns
// one that knew an older start than the holder's last into a no-op
// (SM_RESULT_HOLDER_BACK): the revoker recalls the live holder instead.
//
// That changes a command's result, and an older binary ignores the new
// fields: it would revoke where this one does not, and the trees would
// part. So the rule is honoured only when every member the revoker names
// has a last start command that says it honours it (Command.start_caps),
// and only when every node's table agrees, which is not a given: a node
// that applied some start commands with an older binary (before its
// upgrade) has no entry, or an older one, for them. Each node's table is
// complete for the commands after the index its binary began keeping it
// (`since`: the applied index when the table's local mark was first
// written, or an installed image's index), and each start command carries
// its node's since. The rule is honoured only when every named member's
// last start is after every named member's since: then every member
// applied every one of those start commands itself, with a binary that
// records them, so every member's table holds the same entries and
// decides alike (the proof: DESIGN.md, "Session 13"). A node whose last
// start is not after another's since proposes its start command again
// (fuse_run.c), so after a rolling upgrade the rule comes on by itself.
//
// Stored as the root directory's xattr SM_XATTR_STARTS (replicated:
// snapshot images carry it); the local since as SM_XATTR_START_SINCE on
// the same root (not carried: an installed tree gets its own).
#ifndef RAFTFS_FS_SM_STARTS_H
#define RAFTFS_FS_SM_STARTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fs.pb-c.h"

struct sm;

#define SM_XATTR_STARTS "trusted.raftfs.starts"
#define SM_XATTR_START_SINCE "trusted.raftfs.start_since"

// Command.start_caps: the state machine honours Deleg.knows_start.
#define SM_START_CAP_REVOKE_KNOWS 1u

// Nodes kept; a start of a node not in a full table replaces the oldest
// entry (a removed node's, as a rule). A member left without an entry only
// turns the rule off, never makes nodes decide apart. The bound also keeps
// the root's xattrs in ext4's one xattr block (4 KiB): the user's up to
// apply.c's MAX_XATTR_SPACE (3072), a full table (770 bytes of value),
// the since, id and ctime leave ~100 bytes (measured on ext4 with a 4 KiB
// block); a note that failed on space would stop the node, so a larger
// table needs a smaller user limit (fs_test_sm_starts, full_root_xattrs).
#define SM_STARTS_MAX 32

struct sm_start {
	uint32_t node;
	uint32_t caps;	// its Command.start_caps
	uint64_t index; // the log index of its last start command
	uint64_t since; // its Command.start_since
};

struct sm_starts {
	uint32_t n;
	struct sm_start e[SM_STARTS_MAX];
};

// The xattr's bytes: version u8 (1) | n u8 | n x (node u32 | caps u32 |
// index u64 | since u64), little-endian as this machine writes them.
#define SM_STARTS_BYTES (2 + SM_STARTS_MAX * 24)
size_t sm_starts_encode(const struct sm_starts *t, uint8_t *buf);
// 0, or -EBADMSG for bytes that are not such a table.
int sm_starts_decode(const uint8_t *buf, size_t len, struct sm_starts *t);

// Node's entry, or NULL.
const struct sm_start *sm_starts_find(const struct sm_starts *t, uint32_t node);

// Records a start command of node at index (replacing its entry, or the
// oldest one of a full table).
void sm_starts_put(struct sm_starts *t, uint32_t node, uint32_t caps, uint64_t index,
		   uint64_t since);

// Whether a Revoke naming these members may be checked against the
// table: every member has an entry that honours it, and every member's
// last start is after every member's since.
bool sm_starts_honoured(const struct sm_starts *t, const uint32_t *members, size_t n);

// A Revoke g of a directory holder holds (current, as apply checked):
// SM_RESULT_HOLDER_BACK when the rule is honoured and holder's last start
// is newer than g->holder_start, else 0 (it revokes).
int sm_starts_revoke_result(const struct sm_starts *t, const Fspb__Deleg *g, uint32_t holder);

// Whether c is a start command (no operation, a proposing node).
bool sm_is_start(const Fspb__Command *c);

// At open, after the journal (sm->applied known): the table from the
// root's xattr (none: empty), and this node's since from the root's local
// mark, which is written (durably) as the applied index when absent: a
// fresh tree, a tree an older binary kept, or an installed one. 0 or a
// negative errno (a table that does not decode: -EBADMSG).
int sm_starts_load(struct sm *sm);

// Apply thread: records start command c applied at index, in the xattr
// then the table (redo-safe: the same bytes again). 0 or a negative errno.
int sm_starts_note(struct sm *sm, const Fspb__Command *c, uint64_t index);

// Any thread: the index of node's last start command applied here (0:
// none known).
uint64_t sm_start_index(struct sm *sm, uint32_t node);

// Fills what this node's start command says of its state machine
// (start_caps, start_since).
void sm_start_fill(struct sm *sm, Fspb__Command *c);

// Any thread: whether node's last start command applied here is not after
// some node's since (a node that began keeping its table later), or, for
// this node, says a since older than its own now (it installed an image
// since: its table up to the image is the sender's, whose since it must
// not claim): the rule stays off, or would not be sound, until node
// proposes its start command again.
bool sm_start_outdated(struct sm *sm, uint32_t node);

// Any thread: whether a Revoke this node proposes may say what it knows of
// the holder's starts (Deleg.knows_start): not while this node's own start
// is outdated (above). A table that lost entries at an install (an older
// binary's image: none) would name a start older than the one its peers
// have, which they take for a holder back while this node revokes; a
// Revoke that says nothing revokes on every node alike.
bool sm_start_knows(struct sm *sm);

#endif
