/* config.h — a node's configuration: an INI file (libinih) overridden by
 * command-line flags.
 *
 * File format (every key optional unless marked; see raftfs node --help):
 *
 *   [node]    id (required), cluster, listen, data_dir (required), mount,
 *             state_machine, proposal_timeout_ms, join
 *   [peers]   <id> = host:port     one line per voter, this node included
 *             (the bootstrap: once the store holds a membership, made by
 *             membership changes, the node takes its peers from there)
 *   [raft]    tick_ms, election_ticks, heartbeat_ticks, max_msg_bytes,
 *             max_inflight, pre_vote, check_quorum, lease_reads, snapshot_entries,
 *             snapshot_bytes, snapshot_trailing, unsaved_bytes, unsaved_entries,
 *             admit_bytes, admit_entry_bytes
 *   [transport] max_frame_bytes, send_queue_bytes
 *   [fs]      write_behind, close
 *   [log]     topics (comma-separated, or "all")
 *
 * Unknown sections or keys and bad values are errors naming file, line and
 * key. Flags override the file; --peer replaces the whole [peers] list.
 */
#ifndef RAFTFS_CONFIG_H
#define RAFTFS_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONFIG_MAX_PEERS 16
#define CONFIG_HOST_MAX 64

typedef struct config_peer {
	uint64_t id;
	char host[CONFIG_HOST_MAX];
	uint16_t port;
} config_peer;

typedef struct node_config {
	uint64_t id;
	char cluster[64];
	char listen_host[CONFIG_HOST_MAX]; /* empty: this node's [peers] address */
	uint16_t listen_port;
	config_peer peers[CONFIG_MAX_PEERS]; /* voters, this node included */
	size_t n_peers;
	char data_dir[PATH_MAX];
	char mount[PATH_MAX];
	char state_machine[32]; /* "kv" (test state machine) or "fs" */
	unsigned proposal_timeout_ms;
	/* A node joining a running cluster (thesis §4.2.1): [peers] lists the
	 * members now and this node, which is not one of them yet; it never
	 * campaigns until a membership change made it a voter. */
	bool join;

	unsigned tick_ms;
	int election_ticks;
	int heartbeat_ticks;
	/* heartbeat_ticks was set (file, flag): config_validate then keeps it
	 * and refuses one not below election_ticks; the default (3) instead
	 * gives way to election_ticks - 1 for an election_ticks of 2 or 3,
	 * which the default of 1 before session 14 accepted. */
	bool heartbeat_given;
	uint64_t max_msg_bytes;
	size_t max_inflight;
	bool pre_vote;
	bool check_quorum;
	bool lease_reads; /* leader lease for ReadIndex (raft.h); default on */
	uint64_t snapshot_entries; /* entries between snapshots (0: never) */
	/* Also snapshot once this many bytes of entries were applied since
	 * the last snapshot (0: no byte threshold). */
	uint64_t snapshot_bytes;
	/* A snapshot due by entries waits until the entry data applied
	 * since the last one is at least 1/snapshot_amortize of the last
	 * image's size, so an image of the whole state (file data included)
	 * is not rewritten every snapshot_entries entries however big it is:
	 * snapshot writes stay within snapshot_amortize times the log's
	 * (0: off). */
	uint64_t snapshot_amortize;
	/* Entries kept behind a snapshot so a follower slightly behind
	 * catches up from the log (Raft §7); UINT64_MAX: half of
	 * snapshot_entries. Never more than snapshot_bytes / 2 of entry
	 * data, whatever the count. */
	uint64_t snapshot_trailing;

	size_t max_frame_bytes;
	size_t send_queue_bytes;
	/* Committed entry data queued for the apply thread at most before the
	 * core holds further committed entries back (node.c; 0: unbounded). */
	uint64_t apply_queue_bytes;
	/* A leader's entries not yet saved on its own disk, at most (bytes
	 * of entry data, entries): beyond either, its own proposals wait and
	 * those forwarded to it are dropped (the forwarder retries) until
	 * saves catch up, so a stalled disk cannot fill its memory (node.c,
	 * consensus/README-node.md; 0: unbounded). */
	uint64_t unsaved_bytes, unsaved_entries;
	/* A leader admits entries of admit_entry_bytes or more into its log
	 * only while those it holds uncommitted are under admit_bytes; the
	 * rest wait per client, released round robin as entries commit, and
	 * smaller ones pass at once (consensus/node_admit.h). 0: off. Default
	 * 4 MiB, or the environment's RAFTFS_ADMIT_KIB at config_defaults. */
	uint64_t admit_bytes, admit_entry_bytes;

	/* The mount answers changes of directories delegated to this node
	 * before they apply (fs/fuse_behind.h). Default: on, or the
	 * environment's RAFTFS_WRITE_BEHIND (true/false) at config_defaults. */
	bool write_behind;
	/* [fs] close = commit|behind: with behind, close of a file created
	 * behind (write_behind) returns once its commands are proposed, not
	 * committed (fs/fuse_close.h). Default commit, or the environment's
	 * RAFTFS_CLOSE at config_defaults. */
	bool close_behind;

	char log_topics[256];
} node_config;

/* Fills in the defaults (tick 10 ms, election 10 / heartbeat 1 ticks, ...;
 * write_behind from RAFTFS_WRITE_BEHIND when set). */
void config_defaults(node_config *cfg);

/* Reads an INI file into cfg (keys present override what is there).
 * 0, or -EINVAL/-ENOENT with a message naming file, line and key in err. */
int config_load_file(node_config *cfg, const char *path, char *err, size_t errlen);

/* Applies one setting as section/key/value, the way a file line would; the
 * flag parser uses it too. 0 or -EINVAL with a message in err. */
int config_set(node_config *cfg, const char *section, const char *key, const char *value, char *err,
	       size_t errlen);

/* Checks the whole: id set and among the peers, data_dir set, tick
 * lengths consistent. 0 or -EINVAL with a message in err. */
int config_validate(node_config *cfg, char *err, size_t errlen);

/* The address entry of peer id, or NULL. */
const config_peer *config_peer_find(const node_config *cfg, uint64_t id);

/* Parses "host:port" into host/port. 0 or -EINVAL. */
int config_parse_addr(const char *s, char *host, size_t hostlen, uint16_t *port);

/* Writes cfg as an INI file that config_load_file reads back. 0 or -errno. */
int config_write_file(const node_config *cfg, const char *path);

#endif
