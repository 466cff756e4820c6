/* node_members_request.c — membership requests from clients
 * (TRANSPORTPB MemberRequest): answered by the leader once the change is
 * applied, relayed to the leader by a follower (node_members.h). */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "node_members_int.h"
#include "runtime_log.h"

/* A client's change being answered once it finishes. */
typedef struct member_reply {
	node *n;
	transport_conn *conn;
	uint64_t id;
} member_reply;

/* Answers request id with status, msg and the membership as this node
 * knows it (with each member's match when it leads). */
static void reply(node *n, transport_conn *conn, uint64_t id, int status, const char *msg,
		  uint64_t leader)
{
	struct node_members *m = n->mem;
	Transportpb__Response resp = TRANSPORTPB__RESPONSE__INIT;
	Transportpb__Member mb[CONFIG_MAX_PEERS], *pmb[CONFIG_MAX_PEERS];
	char addrs[CONFIG_MAX_PEERS][CONFIG_HOST_MAX + 8], laddr[CONFIG_HOST_MAX + 8];
	raft_status st;
	size_t k = 0;

	raft_get_status(n->r, &st);
	pthread_mutex_lock(&m->mu);
	for (size_t i = 0; i < m->n_voters + m->n_learners && k < CONFIG_MAX_PEERS; i++) {
		bool learner = i >= m->n_voters;
		uint64_t mid = learner ? m->learners[i - m->n_voters] : m->voters[i];
		const config_peer *p = node_members_book_find(m, mid);

		transportpb__member__init(&mb[k]);
		mb[k].id = mid;
		if (p)
			snprintf(addrs[k], sizeof(addrs[k]), "%s:%u", p->host, p->port);
		else
			snprintf(addrs[k], sizeof(addrs[k]), "?");
		mb[k].addr = addrs[k];
		mb[k].learner = learner;
		mb[k].connected = mid == n->cfg->id || transport_peer_connected(n->tp, mid);
		for (size_t q = 0; q < st.n_peers; q++)
			if (st.peers[q].id == mid)
				mb[k].match = st.peers[q].match;
		pmb[k] = &mb[k];
		k++;
	}
	pthread_mutex_unlock(&m->mu);
	resp.id = id;
	resp.error = status;
	resp.error_msg = (char *)(msg ? msg : node_members_strerror(status));
	resp.n_members = k;
	resp.members = pmb;
	if (status == MEMBER_ENOTLEADER || status == MEMBER_ELOST) {
		resp.leader = leader;
		node_members_addr(n, leader, laddr, sizeof(laddr));
		resp.leader_addr = laddr;
	}
	transport_reply(conn, &resp);
}

static void on_change_done(void *arg, int status, const char *msg, uint64_t leader)
{
	member_reply *mr = arg;

	reply(mr->n, mr->conn, mr->id, status, msg, leader);
	transport_conn_unref(mr->conn);
	free(mr);
}

/* ---- relaying a follower's change requests to the leader ---- */

/* A change request this follower relays to the leader, so that a client
 * may ask any node (thesis §6.2: servers redirect, here by proxy). A thread
 * of its own makes the blocking call; the answer goes back to the client on
 * the loop thread. */
typedef struct relay {
	struct relay *next;
	node *n;
	transport_conn *conn;
	uint64_t req_id;
	Transportpb__MemberRequest mq; /* the request, with forwarded set */
	char addr[CONFIG_HOST_MAX + 8];
	char leader_addr[CONFIG_HOST_MAX + 8];
	client *c;		     /* under mu while a call is under way */
	Transportpb__Response *resp; /* the leader's answer, or NULL */
	char err[256];		     /* else why there is none */
	bool posted;		     /* under mu: relay_done will free it */
	bool joined;		     /* its thread was joined */
	pthread_t thread;
} relay;

static void relay_unlink(struct node_members *m, relay *r)
{
	relay **p = &m->relays;

	pthread_mutex_lock(&m->mu);
	while (*p && *p != r)
		p = &(*p)->next;
	if (*p)
		*p = r->next;
	pthread_mutex_unlock(&m->mu);
}

static void relay_free(relay *r)
{
	transport_conn_unref(r->conn);
	if (r->resp)
		transportpb__response__free_unpacked(r->resp, NULL);
	free(r);
}

/* Loop thread: the leader's answer (or why there is none) to the client. */
static void relay_done(node *n, void *arg, bool stopping)
{
	relay *r = arg;

	if (!r->joined)
		pthread_join(r->thread, NULL); /* it ends right after posting */
	relay_unlink(n->mem, r);
	if (!stopping && r->resp) {
		r->resp->id = r->req_id;
		transport_reply(r->conn, r->resp);
	} else if (!stopping) {
		char msg[400];

		snprintf(msg, sizeof(msg), "node %" PRIu64 " is not the leader; relaying to it at %s failed: %s",
			 n->cfg->id, r->leader_addr, r->err);
		reply(n, r->conn, r->req_id, MEMBER_ENOTLEADER, msg, raft_leader(n->r));
	}
	relay_free(r);
}

static void *relay_main(void *arg)
{
	relay *r = arg;
	struct node_members *m = r->n->mem;
	Transportpb__Request req = TRANSPORTPB__REQUEST__INIT;
	unsigned timeout = r->mq.timeout_ms ? r->mq.timeout_ms : DEFAULT_TIMEOUT_MS;
	client *c = NULL;
	op *o;
	int rc;

	pthread_setname_np(pthread_self(), "member-relay");
	rc = client_connect(r->leader_addr, 2000, &c, r->err, sizeof(r->err));
	pthread_mutex_lock(&m->mu);
	if (rc == 0 && m->closing) {
		snprintf(r->err, sizeof(r->err), "the node is stopping");
		rc = -ECANCELED;
	}
	r->c = rc == 0 ? c : NULL;
	pthread_mutex_unlock(&m->mu);
	if (rc == 0) {
		req.op_case = TRANSPORTPB__REQUEST__OP_MEMBER;
		req.member = &r->mq;
		/* The leader answers within the change's timeout. */
		client_call(c, &req, &r->resp, timeout + 5000, r->err, sizeof(r->err));
	}
	pthread_mutex_lock(&m->mu);
	r->c = NULL;
	pthread_mutex_unlock(&m->mu);
	client_close(c);
	o = calloc(1, sizeof(*o));
	pthread_mutex_lock(&m->mu);
	r->posted = o && !m->closing;
	pthread_mutex_unlock(&m->mu);
	if (r->posted) {
		o->kind = OP_CALL;
		o->fn = relay_done;
		o->arg = r;
		pthread_mutex_lock(&r->n->mu);
		node_inbox_push_locked(r->n, o);
		pthread_mutex_unlock(&r->n->mu);
	} else {
		free(o); /* node_members_close frees r */
	}
	return NULL;
}

/* Relays mq to the leader if this node is not it and knows where it is.
 * true if it did (the client's answer comes from relay_done). */
static bool relay_to_leader(node *n, transport_conn *conn, const Transportpb__Request *req)
{
	struct node_members *m = n->mem;
	uint64_t leader = raft_leader(n->r);
	relay *r;

	if (raft_is_leader(n->r) || leader == 0 || req->member->forwarded)
		return false;
	r = calloc(1, sizeof(*r));
	if (!r)
		return false;
	node_members_addr(n, leader, r->leader_addr, sizeof(r->leader_addr));
	if (!r->leader_addr[0]) {
		free(r);
		return false;
	}
	r->n = n;
	r->conn = conn;
	r->req_id = req->id;
	r->mq = *req->member;
	snprintf(r->addr, sizeof(r->addr), "%s", req->member->addr ? req->member->addr : "");
	r->mq.addr = r->addr;
	r->mq.forwarded = true;
	transport_conn_ref(conn);
	pthread_mutex_lock(&m->mu);
	if (m->closing || pthread_create(&r->thread, NULL, relay_main, r) != 0) {
		pthread_mutex_unlock(&m->mu);
		transport_conn_unref(conn);
		free(r);
		return false;
	}
	r->next = m->relays;
	m->relays = r;
	pthread_mutex_unlock(&m->mu);
	rlog_write(RLOG_INFO, "membership request relayed to the leader, node %" PRIu64 " at %s",
		   leader, r->leader_addr);
	return true;
}

/* Stopping (loop thread): relays under way are cut short and joined; those
 * that posted their answer are freed by relay_done (stopping), the others
 * here. */
void node_members_relays_close(node *n)
{
	struct node_members *m = n->mem;
	relay *r, *next, *mine = NULL;

	pthread_mutex_lock(&m->mu);
	m->closing = true;
	for (r = m->relays; r; r = r->next)
		client_abort(r->c);
	pthread_mutex_unlock(&m->mu);
	/* Threads may connect for up to 2 s before they see closing. */
	for (r = m->relays; r; r = r->next)
		if (!r->joined) {
			pthread_join(r->thread, NULL);
			r->joined = true;
		}
	pthread_mutex_lock(&m->mu);
	for (relay **p = &m->relays; (r = *p);) {
		if (r->posted) {
			p = &r->next;
			continue;
		}
		*p = r->next;
		r->next = mine;
		mine = r;
	}
	pthread_mutex_unlock(&m->mu);
	for (r = mine; r; r = next) {
		next = r->next;
		relay_free(r);
	}
}

void node_members_request(node *n, transport_conn *conn, const Transportpb__Request *req)
{
	const Transportpb__MemberRequest *mq = req->member;
	member_reply *mr;
	node_member_op what;
	mjob *j;

	switch (mq->op) {
	case TRANSPORTPB__MEMBER_REQUEST__OP__LIST:
		reply(n, conn, req->id, 0, "", 0);
		return;
	case TRANSPORTPB__MEMBER_REQUEST__OP__ADD:
		what = NODE_MEMBER_ADD;
		break;
	case TRANSPORTPB__MEMBER_REQUEST__OP__REMOVE:
		what = NODE_MEMBER_REMOVE;
		break;
	case TRANSPORTPB__MEMBER_REQUEST__OP__PROMOTE:
		what = NODE_MEMBER_PROMOTE;
		break;
	default:
		reply(n, conn, req->id, RAFT_EINVAL, "unknown membership operation", 0);
		return;
	}
	if (mq->node_id == 0) {
		reply(n, conn, req->id, MEMBER_EUNKNOWN, "node id 0: ids start at 1", 0);
		return;
	}
	if (relay_to_leader(n, conn, req))
		return;
	mr = calloc(1, sizeof(*mr));
	j = node_members_job_new(what, mq->node_id, mq->addr, mq->learner, mq->timeout_ms,
				 on_change_done, mr);
	if (!mr || !j) {
		free(mr);
		free(j);
		reply(n, conn, req->id, NODE_ENOMEM, NULL, 0);
		return;
	}
	mr->n = n;
	mr->conn = conn;
	mr->id = req->id;
	transport_conn_ref(conn);
	node_members_job_submit(n, j);
}
