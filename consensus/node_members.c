/* node_members.c — membership changes of a running node (node_members.h). */
#include "node_members.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "codec.h"
#include "node_internal.h"
#include "node_members_int.h"
#include "runtime_log.h"

const char *node_members_strerror(int code)
{
	switch (code) {
	case MEMBER_ENOTLEADER:
		return "not the leader";
	case MEMBER_EUNKNOWN:
		return "not a member";
	case MEMBER_EEXISTS:
		return "already a member";
	case MEMBER_EADDR:
		return "address taken or bad";
	case MEMBER_ELAST:
		return "the last voter";
	case MEMBER_EBUSY:
		return "a membership change is in progress";
	case MEMBER_ELAGGING:
		return "the learner did not catch up in time";
	case MEMBER_ELOST:
		return "leadership changed before the change applied";
	case MEMBER_EFULL:
		return "too many members";
	case MEMBER_EQUORUM:
		return "the voters left could not make a quorum";
	}
	return MEMBER_IS_ERROR(code) ? "membership change failed" : node_strerror(code);
}

static uint64_t now_ms(void)
{
	return uv_hrtime() / 1000000;
}

/* ---- the address book ---- */

int node_members_encode(const config_peer *peers, size_t n, uint8_t **out, size_t *len)
{
	size_t cap = n * (CONFIG_HOST_MAX + 32) + 1, off = 0;
	char *buf = malloc(cap);

	if (!buf)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		off += (size_t)snprintf(buf + off, cap - off, "%" PRIu64 " %s:%u\n", peers[i].id,
					peers[i].host, peers[i].port);
	*out = (uint8_t *)buf;
	*len = off;
	return 0;
}

int node_members_decode(const uint8_t *buf, size_t len, config_peer *peers, size_t cap, size_t *n)
{
	size_t pos = 0;

	*n = 0;
	while (pos < len) {
		const uint8_t *nl = memchr(buf + pos, '\n', len - pos);
		char line[CONFIG_HOST_MAX + 32], *sp, *end;
		size_t ll;
		config_peer p = {0};

		if (!nl)
			return -EINVAL; /* every line ends with a newline */
		ll = (size_t)(nl - (buf + pos));
		if (ll == 0 || ll >= sizeof(line))
			return -EINVAL;
		memcpy(line, buf + pos, ll);
		line[ll] = '\0';
		pos += ll + 1;
		if (memchr(line, '\0', ll))
			return -EINVAL;
		errno = 0;
		p.id = strtoull(line, &end, 10);
		if (errno || end == line || *end != ' ' || p.id == 0 || line[0] == '-')
			return -EINVAL;
		sp = end + 1;
		if (config_parse_addr(sp, p.host, sizeof(p.host), &p.port) < 0 || p.port == 0)
			return -EINVAL;
		for (size_t i = 0; i < *n; i++)
			if (peers[i].id == p.id)
				return -EINVAL;
		if (*n == cap)
			return -EINVAL;
		peers[(*n)++] = p;
	}
	return 0;
}

/* ---- the membership in memory ---- */

const config_peer *node_members_book_find(const struct node_members *m, uint64_t id)
{
	for (size_t i = 0; i < m->n_book; i++)
		if (m->book[i].id == id)
			return &m->book[i];
	return NULL;
}

static bool in_list(const uint64_t *v, size_t n, uint64_t id)
{
	for (size_t i = 0; i < n; i++)
		if (v[i] == id)
			return true;
	return false;
}

/* Takes cs (voters, learners) as the membership and book as the addresses,
 * keeping only members' addresses (and this node's). Under mu. */
static void set_membership(node *n, const raft_conf_state *cs, const config_peer *book,
			   size_t n_book)
{
	struct node_members *m = n->mem;
	size_t k = 0;

	m->n_voters = cs->n_voters < CONFIG_MAX_PEERS ? cs->n_voters : CONFIG_MAX_PEERS;
	for (size_t i = 0; i < m->n_voters; i++)
		m->voters[i] = cs->voters[i];
	m->n_learners = cs->n_learners < CONFIG_MAX_PEERS ? cs->n_learners : CONFIG_MAX_PEERS;
	for (size_t i = 0; i < m->n_learners; i++)
		m->learners[i] = cs->learners[i];
	for (size_t i = 0; i < n_book && k < CONFIG_MAX_PEERS; i++)
		if (book[i].id == n->cfg->id || in_list(m->voters, m->n_voters, book[i].id) ||
		    in_list(m->learners, m->n_learners, book[i].id))
			m->book[k++] = book[i];
	m->n_book = k;
}

/* The book of cs's context, else of the config's [peers]. */
static void book_of(node *n, const raft_conf_state *cs, config_peer *book, size_t *n_book)
{
	if (cs->context_len &&
	    node_members_decode(cs->context, cs->context_len, book, CONFIG_MAX_PEERS, n_book) == 0)
		return;
	if (cs->context_len)
		rlog_write(RLOG_ERR, "membership: the stored address book does not decode; "
				     "using the [peers] of the configuration");
	*n_book = n->cfg->n_peers;
	memcpy(book, n->cfg->peers, n->cfg->n_peers * sizeof(*book));
}

static void log_membership(node *n, const char *why)
{
	struct node_members *m = n->mem;
	char buf[512];
	size_t off = 0;

	off += (size_t)snprintf(buf + off, sizeof(buf) - off, "voters");
	for (size_t i = 0; i < m->n_voters && off < sizeof(buf); i++)
		off += (size_t)snprintf(buf + off, sizeof(buf) - off, " %" PRIu64, m->voters[i]);
	if (m->n_learners && off < sizeof(buf))
		off += (size_t)snprintf(buf + off, sizeof(buf) - off, ", learners");
	for (size_t i = 0; i < m->n_learners && off < sizeof(buf); i++)
		off += (size_t)snprintf(buf + off, sizeof(buf) - off, " %" PRIu64, m->learners[i]);
	rlog_write(RLOG_INFO, "membership (%s): %s", why, buf);
}

static void run_hook(node *n)
{
	struct node_members *m = n->mem;
	uint64_t v[CONFIG_MAX_PEERS];
	size_t nv;

	if (!m->hook)
		return;
	pthread_mutex_lock(&m->mu);
	nv = m->n_voters;
	memcpy(v, m->voters, nv * sizeof(*v));
	pthread_mutex_unlock(&m->mu);
	m->hook(m->hook_arg, v, nv);
}

/* Makes the transport's peers the book's (old: the book before). */
static void sync_transport(node *n, const config_peer *old, size_t n_old)
{
	struct node_members *m = n->mem;

	for (size_t i = 0; i < n_old; i++)
		if (!node_members_book_find(m, old[i].id))
			transport_remove_peer(n->tp, old[i].id);
	for (size_t i = 0; i < m->n_book; i++) {
		int rc = transport_add_peer(n->tp, m->book[i].id, m->book[i].host, m->book[i].port);

		if (rc < 0)
			rlog_write(RLOG_ERR, "membership: cannot reach node %" PRIu64 " at %s:%u: %s",
				   m->book[i].id, m->book[i].host, m->book[i].port, strerror(-rc));
	}
}

/* Fills cs's context with the book (replacing any). 0 or -ENOMEM. */
static int attach_book(const struct node_members *m, raft_conf_state *cs)
{
	free(cs->context);
	cs->context = NULL;
	cs->context_len = 0;
	return node_members_encode(m->book, m->n_book, &cs->context, &cs->context_len);
}

/* ---- start ---- */

int node_members_init(node *n, char *err, size_t errlen)
{
	const node_config *cfg = n->cfg;
	struct node_members *m = calloc(1, sizeof(*m));
	config_peer book[CONFIG_MAX_PEERS];
	raft_conf_state cs;
	size_t n_book;
	int rc;

	if (!m) {
		snprintf(err, errlen, "out of memory");
		return NODE_ENOMEM;
	}
	pthread_mutex_init(&m->mu, NULL);
	n->mem = m;
	rc = store_conf_state(n->st, &cs);
	if (rc < 0) {
		snprintf(err, errlen, "reading the membership: %s", store_errmsg(n->st));
		return rc;
	}
	if (cs.n_voters == 0) {
		/* A store without a membership: the bootstrap one. A joining
		 * node's is made durable at once (a restart must not take it
		 * for a voter of [peers]); the others keep using [peers] until
		 * the first change (raftfs local may still move a node that
		 * never ran to another port), and the core bootstraps from
		 * the same list. */
		raft_conf_state_free_contents(&cs);
		cs.voters = calloc(CONFIG_MAX_PEERS, sizeof(uint64_t));
		if (!cs.voters) {
			snprintf(err, errlen, "out of memory");
			return NODE_ENOMEM;
		}
		for (size_t i = 0; i < cfg->n_peers; i++)
			if (!cfg->join || cfg->peers[i].id != cfg->id)
				cs.voters[cs.n_voters++] = cfg->peers[i].id;
		if (cs.n_voters == 0) {
			raft_conf_state_free_contents(&cs);
			snprintf(err, errlen,
				 "join: [peers] names no member of the cluster to join, only "
				 "this node %" PRIu64,
				 cfg->id);
			return RAFT_EINVAL;
		}
		set_membership(n, &cs, cfg->peers, cfg->n_peers);
		rc = cfg->join ? attach_book(m, &cs) : 0;
		if (rc == 0 && cfg->join)
			rc = store_set_conf_state(n->st, &cs);
		raft_conf_state_free_contents(&cs);
		if (rc < 0) {
			snprintf(err, errlen, "saving the bootstrap membership: %s",
				 rc == -ENOMEM ? "out of memory" : store_errmsg(n->st));
			return rc;
		}
		log_membership(n, cfg->join ? "joining; not a member yet" : "bootstrap from [peers]");
		return 0;
	}
	book_of(n, &cs, book, &n_book);
	set_membership(n, &cs, book, n_book);
	raft_conf_state_free_contents(&cs);
	if (cfg->join && !in_list(m->voters, m->n_voters, cfg->id) &&
	    !in_list(m->learners, m->n_learners, cfg->id))
		rlog_write(RLOG_INFO, "joining: not a member yet (add it: raftfs member add %" PRIu64
				      " %s:%u --via ADDR)",
			   cfg->id, cfg->listen_host, cfg->listen_port);
	log_membership(n, "from the store");
	return 0;
}

int node_members_attach(node *n, char *err, size_t errlen)
{
	struct node_members *m = n->mem;

	(void)err;
	(void)errlen;
	/* The transport was made from [peers]: members since removed go,
	 * members since added (or moved) come from the book. */
	for (size_t i = 0; i < n->cfg->n_peers; i++)
		if (!node_members_book_find(m, n->cfg->peers[i].id))
			transport_remove_peer(n->tp, n->cfg->peers[i].id);
	sync_transport(n, NULL, 0);
	return 0;
}

/* ---- putting changes into effect ---- */

static void job_finish(node *n, int status, uint64_t leader, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void job_finish(node *n, int status, uint64_t leader, const char *fmt, ...)
{
	mjob *j = n->mem->job;
	char msg[MSG_MAX];
	va_list ap;

	if (!j)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	n->mem->job = NULL;
	if (status < 0)
		rlog_write(RLOG_ERR, "membership change: %s", msg);
	else
		rlog_write(RLOG_INFO, "membership change: %s", msg);
	j->cb(j->arg, status, msg, leader);
	free(j);
}

static const char *cc_name(int type)
{
	return type == RAFT_CONF_ADD_NODE      ? "add voter"
	       : type == RAFT_CONF_ADD_LEARNER ? "add learner"
					       : "remove";
}

void node_members_apply(node *n, const raft_entry *e)
{
	struct node_members *m = n->mem;
	config_peer old[CONFIG_MAX_PEERS], book[CONFIG_MAX_PEERS];
	size_t n_old, n_book;
	raft_conf_change cc;
	raft_conf_state cs;
	mjob *j = m->job;
	int rc;

	if (codec_conf_change_decode(e->data, e->len, &cc) < 0) {
		rlog_write(RLOG_ERR, "membership: entry %" PRIu64 " does not decode as a ConfChange",
			   e->index);
		return;
	}
	rc = raft_apply_conf_change(n->r, (int)cc.type, cc.node_id, &cs);
	if (rc < 0) {
		rlog_write(RLOG_ERR, "membership: applying entry %" PRIu64 " (%s %" PRIu64 "): %s",
			   e->index, cc_name((int)cc.type), cc.node_id, raft_strerror(rc));
		raft_conf_change_free_contents(&cc);
		return;
	}
	n_old = m->n_book;
	memcpy(old, m->book, n_old * sizeof(*old));
	n_book = n_old;
	memcpy(book, old, n_old * sizeof(*book));
	if (cc.type != RAFT_CONF_REMOVE_NODE && cc.context_len) {
		config_peer p = {.id = cc.node_id};
		char addr[CONFIG_HOST_MAX + 8];
		size_t i;

		snprintf(addr, sizeof(addr), "%.*s", (int)cc.context_len, (const char *)cc.context);
		if (config_parse_addr(addr, p.host, sizeof(p.host), &p.port) < 0) {
			rlog_write(RLOG_ERR, "membership: entry %" PRIu64 ": bad address '%s'",
				   e->index, addr);
		} else {
			for (i = 0; i < n_book && book[i].id != p.id; i++)
				;
			if (i < CONFIG_MAX_PEERS) {
				book[i] = p;
				n_book += i == n_book;
			}
		}
	}
	pthread_mutex_lock(&m->mu);
	set_membership(n, &cs, book, n_book);
	pthread_mutex_unlock(&m->mu);
	rc = attach_book(m, &cs);
	node_persist_lock(n->pq);
	if (rc == 0)
		rc = store_set_conf_state(n->st, &cs);
	if (rc < 0)
		rlog_write(RLOG_ERR, "membership: saving it after entry %" PRIu64 ": %s", e->index,
			   rc == -ENOMEM ? "out of memory" : store_errmsg(n->st));
	node_persist_unlock(n->pq);
	raft_conf_state_free_contents(&cs);
	sync_transport(n, old, n_old);
	{
		char why[96];

		snprintf(why, sizeof(why), "entry %" PRIu64 ": %s %" PRIu64, e->index,
			 cc_name((int)cc.type), cc.node_id);
		log_membership(n, why);
	}
	if (cc.type == RAFT_CONF_REMOVE_NODE && cc.node_id == n->cfg->id)
		rlog_write(RLOG_INFO, "this node was removed from the cluster; stop it");
	run_hook(n);
	if (j && j->state == J_PROPOSED && j->index == e->index && j->term == e->term) {
		if (j->op == NODE_MEMBER_ADD && cc.type == RAFT_CONF_ADD_LEARNER && !j->learner_only) {
			j->state = J_CATCHUP; /* promoted once caught up (tick) */
		} else {
			job_finish(n, 0, 0, "%s %" PRIu64 " applied at %" PRIu64,
				   cc_name((int)cc.type), cc.node_id, e->index);
		}
	}
	raft_conf_change_free_contents(&cc);
}

void node_members_on_snapshot(node *n, const raft_snapshot *snap)
{
	struct node_members *m = n->mem;
	config_peer old[CONFIG_MAX_PEERS], book[CONFIG_MAX_PEERS];
	size_t n_old = m->n_book, n_book;

	if (!snap || snap->meta.conf.n_voters == 0)
		return; /* a snapshot that says nothing of the membership */
	memcpy(old, m->book, n_old * sizeof(*old));
	book_of(n, &snap->meta.conf, book, &n_book);
	/* Addresses the image does not know (an older snapshot's book) are
	 * kept from what this node knew. */
	for (size_t i = 0; i < n_old && n_book < CONFIG_MAX_PEERS; i++) {
		size_t k;

		for (k = 0; k < n_book && book[k].id != old[i].id; k++)
			;
		if (k == n_book)
			book[n_book++] = old[i];
	}
	pthread_mutex_lock(&m->mu);
	set_membership(n, &snap->meta.conf, book, n_book);
	pthread_mutex_unlock(&m->mu);
	sync_transport(n, old, n_old);
	log_membership(n, "from the leader's snapshot");
	run_hook(n);
}

/* ---- changes asked for (loop thread) ---- */

static bool is_voter(const raft_status *st, uint64_t id, bool *found)
{
	for (size_t i = 0; i < st->n_peers; i++)
		if (st->peers[i].id == id) {
			*found = true;
			return !st->peers[i].learner;
		}
	*found = false;
	return false;
}

/* Proposes a conf change of the job's node; the job then waits for it. */
static void job_propose(node *n, int type)
{
	mjob *j = n->mem->job;
	raft_conf_change cc = {.type = (raft_conf_change_type)type, .node_id = j->id};
	uint8_t buf[CONFIG_HOST_MAX + 64];
	size_t len;
	int rc;

	if (type != RAFT_CONF_REMOVE_NODE) {
		cc.context = (uint8_t *)j->addr;
		cc.context_len = strlen(j->addr);
	}
	if (codec_conf_change_size(&cc) > sizeof(buf)) {
		job_finish(n, MEMBER_EADDR, 0, "address '%s' is too long", j->addr);
		return;
	}
	len = codec_conf_change_pack(&cc, buf);
	rc = raft_propose_conf_change(n->r, buf, len, &j->index, &j->term);
	if (rc == RAFT_EPROPOSAL_DROPPED) {
		job_finish(n, MEMBER_EBUSY, 0,
			   "%s %" PRIu64 ": an earlier membership change is not applied yet, or "
			   "leadership is being transferred: try again",
			   cc_name(type), j->id);
		return;
	}
	if (rc < 0 || j->index == 0) {
		job_finish(n, rc < 0 ? rc : MEMBER_ENOTLEADER, raft_leader(n->r),
			   "%s %" PRIu64 ": proposing it failed: %s", cc_name(type), j->id,
			   rc < 0 ? raft_strerror(rc) : "not the leader");
		return;
	}
	j->state = J_PROPOSED;
	rlog_write(RLOG_INFO, "membership change: proposed %s %" PRIu64 "%s%s at %" PRIu64,
		   cc_name(type), j->id, cc.context_len ? " at " : "",
		   cc.context_len ? j->addr : "", j->index);
}

/* The connected voter other than this node with the longest log. */
static uint64_t handover_target(node *n, const raft_status *st)
{
	uint64_t best = 0, best_match = 0;

	for (size_t i = 0; i < st->n_peers; i++)
		if (st->peers[i].id != st->id && !st->peers[i].learner &&
		    transport_peer_connected(n->tp, st->peers[i].id) &&
		    st->peers[i].match >= best_match) {
			best = st->peers[i].id;
			best_match = st->peers[i].match;
		}
	return best;
}

static void job_start(node *n)
{
	struct node_members *m = n->mem;
	mjob *j = m->job;
	raft_status st;
	bool found, voter;
	size_t nv = 0;

	if (!raft_is_leader(n->r)) {
		uint64_t l = raft_leader(n->r);

		job_finish(n, MEMBER_ENOTLEADER, l, "node %" PRIu64 " is not the leader (%s)",
			   n->cfg->id, l ? "ask the leader" : "no leader known");
		return;
	}
	raft_get_status(n->r, &st);
	voter = is_voter(&st, j->id, &found);
	for (size_t i = 0; i < st.n_peers; i++)
		nv += !st.peers[i].learner;
	switch (j->op) {
	case NODE_MEMBER_ADD: {
		char host[CONFIG_HOST_MAX];
		uint16_t port;

		if (found && voter) {
			job_finish(n, MEMBER_EEXISTS, 0, "node %" PRIu64 " is already a voter", j->id);
			return;
		}
		if (found && j->learner_only) {
			job_finish(n, MEMBER_EEXISTS, 0, "node %" PRIu64 " is already a learner",
				   j->id);
			return;
		}
		if (found) {
			j->state = J_CATCHUP; /* a learner already: promote it */
			rlog_write(RLOG_INFO, "membership change: node %" PRIu64
					      " is a learner: promoting it once it caught up",
				   j->id);
			return;
		}
		if (config_parse_addr(j->addr, host, sizeof(host), &port) < 0 || port == 0) {
			job_finish(n, MEMBER_EADDR, 0, "bad address '%s' (want host:port)", j->addr);
			return;
		}
		pthread_mutex_lock(&m->mu);
		for (size_t i = 0; i < m->n_book; i++)
			if (m->book[i].port == port && !strcmp(m->book[i].host, host)) {
				uint64_t other = m->book[i].id;

				pthread_mutex_unlock(&m->mu);
				job_finish(n, MEMBER_EADDR, 0,
					   "address %s is taken by node %" PRIu64, j->addr, other);
				return;
			}
		pthread_mutex_unlock(&m->mu);
		if (st.n_peers >= CONFIG_MAX_PEERS) {
			job_finish(n, MEMBER_EFULL, 0, "the cluster has %zu members, the most there "
						       "may be", st.n_peers);
			return;
		}
		job_propose(n, RAFT_CONF_ADD_LEARNER);
		return;
	}
	case NODE_MEMBER_PROMOTE:
		if (!found)
			job_finish(n, MEMBER_EUNKNOWN, 0, "node %" PRIu64 " is not a member", j->id);
		else if (voter)
			job_finish(n, MEMBER_EEXISTS, 0, "node %" PRIu64 " is already a voter", j->id);
		else {
			j->state = J_CATCHUP;
			rlog_write(RLOG_INFO, "membership change: promoting node %" PRIu64
					      " once it caught up",
				   j->id);
		}
		return;
	case NODE_MEMBER_REMOVE:
		if (!found) {
			job_finish(n, MEMBER_EUNKNOWN, 0, "node %" PRIu64 " is not a member", j->id);
			return;
		}
		if (voter && nv == 1) {
			job_finish(n, MEMBER_ELAST, 0,
				   "node %" PRIu64 " is the last voter: a cluster needs one", j->id);
			return;
		}
		if (voter) {
			/* etcd's strict reconfiguration check: refuse a removal
			 * after which the voters this leader hears from could
			 * not commit anything (the cluster would stall until the
			 * others came back). */
			size_t left = nv - 1, up = 0;

			for (size_t i = 0; i < st.n_peers; i++)
				if (!st.peers[i].learner && st.peers[i].id != j->id &&
				    (st.peers[i].id == st.id ||
				     transport_peer_connected(n->tp, st.peers[i].id)))
					up++;
			if (up < left / 2 + 1) {
				job_finish(n, MEMBER_EQUORUM, 0,
					   "removing node %" PRIu64 " would leave %zu voters of "
					   "which %zu are connected: no quorum; bring the others "
					   "back first",
					   j->id, left, up);
				return;
			}
		}
		if (j->id == n->cfg->id) {
			/* raft.h: a leader never proposes its own removal
			 * (tests/sim/CORE_BUGS.md #4); the next leader does. */
			raft_msg tm = {.type = RAFT_MSG_TRANSFER_LEADER, .to = n->cfg->id};

			tm.from = handover_target(n, &st);
			if (!tm.from) {
				job_finish(n, MEMBER_ELAST, 0,
					   "node %" PRIu64 " leads and no other voter is connected to "
					   "hand leadership to",
					   j->id);
				return;
			}
			rlog_write(RLOG_INFO, "membership change: removing this leader: handing "
					      "leadership to %" PRIu64 " first",
				   tm.from);
			raft_step(n->r, &tm);
			j->state = J_TRANSFER;
			return;
		}
		job_propose(n, RAFT_CONF_REMOVE_NODE);
		return;
	}
}

bool node_members_busy(node *n)
{
	return n->mem && n->mem->job;
}

void node_members_tick(node *n)
{
	struct node_members *m = n->mem;
	mjob *j = m ? m->job : NULL;
	uint64_t now = now_ms();
	raft_status st;
	bool found;

	if (!j)
		return;
	switch (j->state) {
	case J_PROPOSED:
		if (!raft_is_leader(n->r) || raft_term(n->r) != j->term) {
			job_finish(n, MEMBER_ELOST, raft_leader(n->r),
				   "leadership changed before the change of node %" PRIu64
				   " applied: see raftfs member list, and ask again if it is not "
				   "there",
				   j->id);
			return;
		}
		if (now >= j->deadline_ms)
			job_finish(n, NODE_ETIMEOUT, 0,
				   "the change of node %" PRIu64 " proposed at %" PRIu64
				   " did not apply in time",
				   j->id, j->index);
		return;
	case J_CATCHUP:
		if (!raft_is_leader(n->r)) {
			job_finish(n, MEMBER_ELOST, raft_leader(n->r),
				   "leadership changed while node %" PRIu64
				   " was catching up; it stays a learner: raftfs member promote %" PRIu64,
				   j->id, j->id);
			return;
		}
		raft_get_status(n->r, &st);
		is_voter(&st, j->id, &found);
		for (size_t i = 0; i < st.n_peers; i++) {
			const raft_peer_status *p = &st.peers[i];

			if (p->id != j->id)
				continue;
			/* Thesis §4.2.1: promote once the learner's log is close
			 * to the leader's, so the new quorum can commit at once. */
			if (p->match + NODE_MEMBER_CATCHUP >= st.last_index &&
			    p->state == RAFT_PROGRESS_REPLICATE) {
				rlog_write(RLOG_INFO, "membership change: node %" PRIu64
						      " caught up (match %" PRIu64 " of %" PRIu64
						      "): promoting it",
					   j->id, p->match, st.last_index);
				job_propose(n, RAFT_CONF_ADD_NODE);
				return;
			}
			if (now >= j->deadline_ms)
				job_finish(n, MEMBER_ELAGGING, 0,
					   "node %" PRIu64 " did not catch up in time (match %" PRIu64
					   " of %" PRIu64 "); it stays a learner: raftfs member "
					   "promote %" PRIu64 " once it has",
					   j->id, p->match, st.last_index, j->id);
			return;
		}
		job_finish(n, MEMBER_EUNKNOWN, 0, "node %" PRIu64 " is no longer a member", j->id);
		return;
	case J_TRANSFER:
		if (!raft_is_leader(n->r) && raft_leader(n->r)) {
			job_finish(n, MEMBER_ENOTLEADER, raft_leader(n->r),
				   "leadership handed to node %" PRIu64
				   "; it removes node %" PRIu64,
				   raft_leader(n->r), j->id);
			return;
		}
		if (now >= j->deadline_ms)
			job_finish(n, NODE_ETIMEOUT, raft_leader(n->r),
				   "handing leadership over before removing node %" PRIu64
				   " did not finish in time",
				   j->id);
		return;
	}
}

static void start_call(node *n, void *arg, bool stopping)
{
	mjob *j = arg;

	if (stopping) {
		j->cb(j->arg, NODE_ESTOPPED, "node stopping", 0);
		free(j);
		return;
	}
	if (n->mem->job) {
		char msg[MSG_MAX];

		snprintf(msg, sizeof(msg),
			 "a membership change (node %" PRIu64 ") is already in progress on node "
			 "%" PRIu64,
			 n->mem->job->id, n->cfg->id);
		j->cb(j->arg, MEMBER_EBUSY, msg, 0);
		free(j);
		return;
	}
	n->mem->job = j;
	job_start(n);
}

mjob *node_members_job_new(node_member_op what, uint64_t id, const char *addr, bool learner_only,
			   unsigned timeout_ms, node_member_cb cb, void *arg)
{
	mjob *j = calloc(1, sizeof(*j));

	if (!j)
		return NULL;
	j->op = what;
	j->id = id;
	snprintf(j->addr, sizeof(j->addr), "%s", addr ? addr : "");
	j->learner_only = learner_only;
	j->deadline_ms = now_ms() + (timeout_ms ? timeout_ms : DEFAULT_TIMEOUT_MS);
	j->cb = cb;
	j->arg = arg;
	return j;
}

void node_members_job_submit(node *n, mjob *j)
{
	start_call(n, j, false);
}

int node_change_member(node *n, node_member_op what, uint64_t id, const char *addr,
		       bool learner_only, unsigned timeout_ms, node_member_cb cb, void *arg)
{
	mjob *j = node_members_job_new(what, id, addr, learner_only, timeout_ms, cb, arg);
	op *o = calloc(1, sizeof(*o));

	if (!j || !o) {
		free(j);
		free(o);
		return NODE_ENOMEM;
	}
	o->kind = OP_CALL;
	o->fn = start_call;
	o->arg = j;
	pthread_mutex_lock(&n->mu);
	if (n->stopping) {
		pthread_mutex_unlock(&n->mu);
		free(j);
		free(o);
		return NODE_ESTOPPED;
	}
	node_inbox_push_locked(n, o);
	pthread_mutex_unlock(&n->mu);
	return 0;
}

void node_members_close(node *n)
{
	if (n->mem)
		node_members_relays_close(n);
	if (n->mem && n->mem->job)
		job_finish(n, NODE_ESTOPPED, 0, "node %" PRIu64 " is stopping", n->cfg->id);
}

void node_members_free(node *n)
{
	if (!n->mem)
		return;
	free(n->mem->job); /* never launched: no callback owed */
	pthread_mutex_destroy(&n->mem->mu);
	free(n->mem);
	n->mem = NULL;
}

void node_members_addr(node *n, uint64_t id, char *buf, size_t len)
{
	struct node_members *m = n->mem;
	const config_peer *p;

	buf[0] = '\0';
	if (!m)
		return;
	pthread_mutex_lock(&m->mu);
	p = node_members_book_find(m, id);
	if (p)
		snprintf(buf, len, "%s:%u", p->host, p->port);
	pthread_mutex_unlock(&m->mu);
}

size_t node_voters(node *n, uint64_t *out, size_t cap)
{
	struct node_members *m = n->mem;
	size_t k;

	pthread_mutex_lock(&m->mu);
	k = m->n_voters;
	memcpy(out, m->voters, (k < cap ? k : cap) * sizeof(*out));
	pthread_mutex_unlock(&m->mu);
	return k;
}

size_t node_learners(node *n, uint64_t *out, size_t cap)
{
	struct node_members *m = n->mem;
	size_t k;

	pthread_mutex_lock(&m->mu);
	k = m->n_learners;
	memcpy(out, m->learners, (k < cap ? k : cap) * sizeof(*out));
	pthread_mutex_unlock(&m->mu);
	return k;
}

void node_set_members_hook(node *n, node_members_hook fn, void *arg)
{
	n->mem->hook = fn;
	n->mem->hook_arg = arg;
}
