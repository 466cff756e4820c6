/* node_members_int.h — what node_members.c (the membership and its
 * changes) and node_members_request.c (clients' requests, relayed to the
 * leader from a follower) share; not for other modules. */
#ifndef RAFTFS_NODE_MEMBERS_INT_H
#define RAFTFS_NODE_MEMBERS_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "node_internal.h"
#include "node_members.h"

/* A change waits at most this long unless its caller says otherwise. */
#define DEFAULT_TIMEOUT_MS 60000
#define MSG_MAX 256

typedef enum { J_PROPOSED, J_CATCHUP, J_TRANSFER } job_state;

/* A membership change under way (loop thread; one at a time). */
typedef struct mjob {
	node_member_op op;
	uint64_t id;
	char addr[CONFIG_HOST_MAX + 8];
	bool learner_only;
	uint64_t deadline_ms;
	node_member_cb cb;
	void *arg;
	job_state state;
	uint64_t index, term; /* J_PROPOSED: the entry's position */
} mjob;

struct node_members {
	pthread_mutex_t mu; /* guards what other threads read: book, voters */
	config_peer book[CONFIG_MAX_PEERS]; /* addresses of the members */
	size_t n_book;
	uint64_t voters[CONFIG_MAX_PEERS], learners[CONFIG_MAX_PEERS];
	size_t n_voters, n_learners;
	node_members_hook hook; /* loop thread */
	void *hook_arg;
	mjob *job; /* loop thread */
	struct relay *relays; /* requests relayed to the leader (list under mu) */
	bool closing;	      /* under mu: no relay answers any more */
};

/* The member with this id in m's address book, or NULL. Under m->mu. */
const config_peer *node_members_book_find(const struct node_members *m, uint64_t id);

/* A new change (not yet started) that reports to cb(arg) and gives up
 * timeout_ms from now (0: DEFAULT_TIMEOUT_MS); NULL without memory. */
mjob *node_members_job_new(node_member_op what, uint64_t id, const char *addr, bool learner_only,
			   unsigned timeout_ms, node_member_cb cb, void *arg);

/* Loop thread: starts j, or answers MEMBER_EBUSY while another change is
 * under way (j is then freed). */
void node_members_job_submit(node *n, mjob *j);

/* Loop thread, stopping: cuts relayed requests short and joins their
 * threads (node_members_request.c). */
void node_members_relays_close(node *n);

#endif
