/* node_members.h — membership changes of a running node: adding (as a
 * learner first, then promoted), removing and readdressing members, one
 * server at a time (Raft thesis §4.1, §4.2.1), and every member's address.
 *
 * The membership lives in the Raft core (who votes) and, with every
 * member's address (the "address book", raft_conf_state.context), in the
 * store and in snapshot metadata, so a restarted node and a node that
 * installs a snapshot know whom to dial. The config file's [peers] serve
 * until the store holds a membership (the first change, or joining).
 *
 * Conf-change entries are put into effect on the loop thread, in log
 * order, as the Ready hands them out to be applied (the core's
 * raft_apply_conf_change), then the store and the transport follow.
 */
#ifndef RAFTFS_NODE_MEMBERS_H
#define RAFTFS_NODE_MEMBERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "raft_types.h"

struct node;
struct transport_conn;
struct raft_snapshot;
struct Transportpb__Request;

/* Failure reasons of a membership request (negative; node_strerror and
 * node_members_strerror name them). */
enum {
	MEMBER_ENOTLEADER = -2101, /* ask the leader (named in the answer) */
	MEMBER_EUNKNOWN = -2102,   /* the id is not a member */
	MEMBER_EEXISTS = -2103,	   /* the id is a member already */
	MEMBER_EADDR = -2104,	   /* the address is another member's, or bad */
	MEMBER_ELAST = -2105,	   /* removing the last voter */
	MEMBER_EBUSY = -2106,	   /* another change is in progress */
	MEMBER_ELAGGING = -2107,   /* the learner did not catch up in time */
	MEMBER_ELOST = -2108,	   /* leadership changed before the change applied */
	MEMBER_EFULL = -2109,	   /* CONFIG_MAX_PEERS members already */
	MEMBER_EQUORUM = -2110,	   /* the voters left could not make a quorum */
};
/* Whether code is one of the above. */
#define MEMBER_IS_ERROR(code) ((code) <= -2101 && (code) >= -2199)
const char *node_members_strerror(int code);

/* ---- the address book: "id host:port" per line ---- */

/* Encodes n peers into *out (malloc'd, caller frees; *len its length).
 * 0 or -ENOMEM. */
int node_members_encode(const config_peer *peers, size_t n, uint8_t **out, size_t *len);

/* Decodes an address book into peers[0..cap); *n the count. 0, or
 * -EINVAL for anything that is not a well-formed book (bad line, id 0,
 * duplicate id, more than cap entries). */
int node_members_decode(const uint8_t *buf, size_t len, config_peer *peers, size_t cap, size_t *n);

/* ---- the API ---- */

typedef enum {
	NODE_MEMBER_ADD = 1,	 /* as a learner, then promoted once caught up */
	NODE_MEMBER_REMOVE = 2,
	NODE_MEMBER_PROMOTE = 3, /* a learner to voter, once caught up */
} node_member_op;

/* Completion of a membership change: 0, or a negative MEMBER_E* / NODE_E*
 * reason, with msg saying what happened ("node 4 is not a member"; for
 * MEMBER_ENOTLEADER, leader is the node to ask, 0 if unknown). Fires once,
 * on the loop thread: must not block. */
typedef void (*node_member_cb)(void *arg, int status, const char *msg, uint64_t leader);

/* Changes the membership through this node, which must lead (else cb gets
 * MEMBER_ENOTLEADER and the leader's id: ask there, as the CLI does). ADD
 * makes id a learner at addr ("host:port"), waits until its log is within
 * NODE_MEMBER_CATCHUP entries of the leader's, then promotes it, unless
 * learner_only; REMOVE takes id out, handing leadership to another voter
 * first when id is this node (cb then gets MEMBER_ENOTLEADER naming the new
 * leader). cb fires once the change is applied here, or on failure; the
 * whole waits at most timeout_ms (0: 60 s). Any thread. 0 once queued, or
 * NODE_ESTOPPED / NODE_ENOMEM (cb is then not called). */
int node_change_member(struct node *n, node_member_op what, uint64_t id, const char *addr,
		       bool learner_only, unsigned timeout_ms, node_member_cb cb, void *arg);

/* How far behind the leader's last index a learner may be to be promoted. */
#define NODE_MEMBER_CATCHUP 256

/* The voters as this node last put them into effect, into out[0..cap);
 * returns their count (which may exceed cap). Any thread. */
size_t node_voters(struct node *n, uint64_t *out, size_t cap);

/* The learners as this node last put them into effect, the same way: every
 * node knows them, not only the leader (raftfs status lists them). */
size_t node_learners(struct node *n, uint64_t *out, size_t cap);

/* Called on the loop thread with the new voters after every membership
 * change this node puts into effect (must not block). Set before
 * node_launch; NULL clears. */
typedef void (*node_members_hook)(void *arg, const uint64_t *voters, size_t n_voters);
void node_set_members_hook(struct node *n, node_members_hook fn, void *arg);

/* ---- hooks of the node runtime (node.c), loop thread unless said ---- */

/* node_new, after the store opened and before the core is made: the
 * membership is the store's, else the bootstrap one: the [peers] (the core
 * bootstraps from the same list), or with cfg->join the [peers] but this
 * node, which joins as nothing until the cluster adds it (stored at once,
 * so that a restart does not make it a voter of [peers]). The first
 * membership change stores the membership with every address; from then
 * on [peers] are not read. 0 or a negative code with what failed in err. */
int node_members_init(struct node *n, char *err, size_t errlen);

/* node_new, once the transport exists: it learns the stored addresses and
 * forgets [peers] that are no longer members. */
int node_members_attach(struct node *n, char *err, size_t errlen);

/* A committed entry of type RAFT_ENTRY_CONF_CHANGE being handed to apply. */
void node_members_apply(struct node *n, const raft_entry *e);

/* A snapshot from the leader was installed in the store: its membership
 * (and addresses) replace this node's. */
void node_members_on_snapshot(struct node *n, const struct raft_snapshot *snap);

/* Every tick: moves a change under way along (catch-up, hand-over,
 * deadlines). */
void node_members_tick(struct node *n);

/* Whether a change is under way (node_members_tick has work: the loop
 * keeps ticking, node.c's tick_plan). Loop thread. */
bool node_members_busy(struct node *n);

/* A client's MemberRequest: answered now or once the change applied. */
void node_members_request(struct node *n, struct transport_conn *conn,
			  const struct Transportpb__Request *req);

/* Shutting down: a change under way is answered with NODE_ESTOPPED. */
void node_members_close(struct node *n);

/* node_free. */
void node_members_free(struct node *n);

/* The address of member id as host:port in buf (empty when unknown). Any
 * thread. */
void node_members_addr(struct node *n, uint64_t id, char *buf, size_t len);

#endif
