/* raft_sim.c — randomized fault schedules over the simulated cluster.
 *
 *   raft-sim --seeds A-B [--nodes N] [--ticks T] [-v|-vv]
 *
 * Each seed is an independent run: a configuration and a schedule of
 * message loss, delay, duplication, partitions, crashes (also between
 * persisting and sending), restarts, forced campaigns, proposals, reads
 * and snapshots, all drawn from the seed. The checker verifies election
 * safety, log matching, leader completeness, state machine safety and
 * linearizable reads at every step; in the last part of the run every
 * fault heals and a leader must be elected and a proposal applied by
 * every node within a bounded number of ticks (liveness). Each failing
 * seed prints the command that replays it; the last line is
 * "N passed, M failed". Exit status 1 if any seed failed. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster.h"
#include "codec.h"
#include "tester.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#endif

/* Ticks the healed cluster gets to elect a leader and apply a proposal
 * on every node, in election timeouts. */
#define LIVENESS_ELECTIONS 30ULL

typedef struct run_args {
	uint64_t seed;
	size_t nodes; /* 0: drawn from the seed */
	uint64_t ticks;
	int verbose;
	bool membership; /* draw membership changes (spare nodes) */
	bool lease;	 /* leader lease reads on (with check-quorum) */
	bool async;	 /* asynchronous storage writes (sim_opts.async_storage) */
} run_args;

/* How stormy a run is: per-mille chances per tick, drawn per seed. */
typedef struct schedule {
	uint32_t propose, burst, read, crash, crash_in_ready, restart;
	uint32_t disconnect, reconnect, partition, unpartition, netfault, campaign;
	/* Faults aimed at the leader: what Figure 8 is made of. */
	uint32_t crash_leader, leader_crash_in_ready, isolate_leader;
	uint32_t transfer;    /* leader transfer to a random node */
	uint32_t conf_change; /* membership change (only with spare nodes) */
} schedule;

static volatile uint64_t current_seed;
static volatile size_t current_nodes;
static uint64_t current_ticks;
static bool current_membership;
static bool current_lease;
static bool current_async;

static void report_death(void)
{
	char buf[200];
	int n =
	    snprintf(buf, sizeof(buf),
		     "\nraft-sim died in seed %llu; replay: raft-sim --seeds %llu-%llu --nodes %zu "
		     "--ticks %llu%s%s%s -v\n",
		     (unsigned long long)current_seed, (unsigned long long)current_seed,
		     (unsigned long long)current_seed, (size_t)current_nodes,
		     (unsigned long long)current_ticks, current_membership ? " --membership" : "",
		     current_lease ? " --lease" : "", current_async ? " --async" : "");
	if (n > 0 && write(STDOUT_FILENO, buf, (size_t)n) < 0)
		return;
}

/* UBSan's "no recover" exit bypasses the sanitizer death callback; make it
 * abort instead, so on_fatal_signal can name the seed. (Unused without
 * UBSan; UBSAN_OPTIONS still overrides.) */
const char *__ubsan_default_options(void);
const char *__ubsan_default_options(void)
{
	return "abort_on_error=1:print_stacktrace=1";
}

static void on_fatal_signal(int sig)
{
	report_death();
	signal(sig, SIG_DFL);
	raise(sig);
}

static size_t draw_nodes(uint64_t seed)
{
	static const size_t choice[8] = {3, 3, 3, 5, 5, 5, 4, 1};
	return choice[sim_splitmix64(seed ^ 0x6e6f646573ULL) % 8];
}

static void draw_opts(sim_rng *g, sim_opts *o)
{
	o->pre_vote = sim_rng_chance(g, 750);
	o->check_quorum = sim_rng_chance(g, 750);
	if (sim_rng_chance(g, 100)) {
		/* Hair-trigger elections: timeouts barely above the heartbeat. */
		o->election_ticks = 2 + (int)sim_rng_below(g, 3);
		o->heartbeat_ticks = 1;
	} else {
		o->election_ticks = 8 + (int)sim_rng_below(g, 8);
		o->heartbeat_ticks = 1 + (int)sim_rng_below(g, 3);
	}
	static const size_t inflight[4] = {1, 2, 8, 256};
	o->max_inflight = inflight[sim_rng_below(g, 4)];
	static const uint64_t bytes[4] = {1, 100, 1000, 1 << 20};
	o->max_msg_bytes = bytes[sim_rng_below(g, 4)];
	if (sim_rng_chance(g, 300))
		o->tick_in_ready_pm = 1 + (uint32_t)sim_rng_below(g, 300);
	if (sim_rng_chance(g, 300))
		o->propose_in_ready_pm = 1 + (uint32_t)sim_rng_below(g, 300);
	if (sim_rng_chance(g, 700)) {
		o->snapshot_every = 3 + sim_rng_below(g, 40);
		o->snapshot_keep = sim_rng_below(g, 6);
	}
}

static void draw_schedule(sim_rng *g, schedule *s)
{
	memset(s, 0, sizeof(*s));
	uint32_t storm = 1 + (uint32_t)sim_rng_below(g, 4); /* 1 calm .. 4 stormy */
	s->propose = 50 + (uint32_t)sim_rng_below(g, 400);
	s->burst = (uint32_t)sim_rng_below(g, 30);
	s->read = (uint32_t)sim_rng_below(g, 200);
	s->crash = storm * (uint32_t)sim_rng_below(g, 4);
	s->crash_in_ready = storm * (uint32_t)sim_rng_below(g, 3);
	s->restart = 10 + (uint32_t)sim_rng_below(g, 40);
	s->disconnect = storm * (uint32_t)sim_rng_below(g, 4);
	s->reconnect = 10 + (uint32_t)sim_rng_below(g, 40);
	s->partition = storm * (uint32_t)sim_rng_below(g, 4);
	s->unpartition = 5 + (uint32_t)sim_rng_below(g, 20);
	s->netfault = storm * (uint32_t)sim_rng_below(g, 6);
	s->campaign = (uint32_t)sim_rng_below(g, 3);
	s->crash_leader = storm * (uint32_t)sim_rng_below(g, 5);
	s->leader_crash_in_ready = storm * (uint32_t)sim_rng_below(g, 5);
	s->isolate_leader = storm * (uint32_t)sim_rng_below(g, 4);
	s->transfer = (uint32_t)sim_rng_below(g, 4);
}

static uint64_t pick(sim_cluster *c)
{
	return 1 + sim_rng_below(&c->rng, c->opts.n_nodes);
}

static void propose_value(sim_cluster *c, uint64_t id, uint64_t *next_value)
{
	uint8_t b[8];
	uint64_t v = ++*next_value;
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	int rc = sim_propose(c, id, b, sizeof(b), NULL, NULL);
	if (rc != 0 && rc != RAFT_EPROPOSAL_DROPPED)
		sim_fail(c, "node %llu: propose: %s", (unsigned long long)id, raft_strerror(rc));
}

static void random_netfault(sim_cluster *c)
{
	sim_rng *g = &c->rng;
	for (size_t a = 1; a <= c->opts.n_nodes; a++)
		for (size_t b = 1; b <= c->opts.n_nodes; b++)
			c->net.drop_pm[a][b] =
			    sim_rng_chance(g, 500) ? 0 : (uint32_t)sim_rng_below(g, 400);
	/* Sometimes a few links fail one way only (asymmetric partitions). */
	if (sim_rng_chance(g, 200)) {
		for (uint64_t k = 1 + sim_rng_below(g, 3); k > 0; k--) {
			uint64_t a = pick(c), b = pick(c);
			c->net.drop_pm[a][b] = 1000;
			sim_trace(c, "link n%llu->n%llu cut one way", (unsigned long long)a,
				  (unsigned long long)b);
		}
	}
	c->net.dup_pm = (uint32_t)sim_rng_below(g, 100);
	c->net.max_delay = (uint32_t)sim_rng_below(g, 6);
	c->net.long_delay_pm = sim_rng_chance(g, 700) ? 0 : (uint32_t)sim_rng_below(g, 200);
	/* Now and then a message from long ago: hundreds of ticks late. */
	c->net.long_delay_max = 5 + (uint32_t)sim_rng_below(g, sim_rng_chance(g, 200) ? 600 : 30);
	sim_trace(c, "network faults: dup %u‰, delay <= %u, long delay %u‰", c->net.dup_pm,
		  c->net.max_delay, c->net.long_delay_pm);
}

static void random_partition(sim_cluster *c)
{
	int groups[SIM_MAX_NODES + 1] = {0};
	int k = 2 + (int)sim_rng_below(&c->rng, 2);
	for (size_t i = 1; i <= c->opts.n_nodes; i++)
		groups[i] = (int)sim_rng_below(&c->rng, (uint64_t)k);
	sim_partition(c, groups);
}

/* The leader of the highest term among live nodes, or 0. */
static uint64_t current_leader(sim_cluster *c)
{
	uint64_t best = 0, best_term = 0;
	for (uint64_t i = 1; i <= c->opts.n_nodes; i++) {
		raft *r = c->nodes[i].r;
		if (r && raft_is_leader(r) && raft_term(r) >= best_term) {
			best = i;
			best_term = raft_term(r);
		}
	}
	return best;
}

/* Proposes a random membership change on the leader: add a node (as voter
 * or learner), promote a learner, or remove a member (never the last voter). */
static void random_conf_change(sim_cluster *c)
{
	uint64_t l = current_leader(c);
	if (!l)
		return;
	const raft_conf_state *cs = &c->nodes[l].conf;
	uint64_t x = pick(c);
	bool voter = false, learner = false;
	for (size_t i = 0; i < cs->n_voters; i++)
		voter |= cs->voters[i] == x;
	for (size_t i = 0; i < cs->n_learners; i++)
		learner |= cs->learners[i] == x;
	int type;
	if (!voter && !learner)
		type = sim_rng_chance(&c->rng, 300) ? RAFT_CONF_ADD_LEARNER : RAFT_CONF_ADD_NODE;
	else if (learner)
		type = sim_rng_chance(&c->rng, 500) ? RAFT_CONF_ADD_NODE : RAFT_CONF_REMOVE_NODE;
	else if (cs->n_voters > 1)
		type = RAFT_CONF_REMOVE_NODE;
	else
		return;
	if (type == RAFT_CONF_REMOVE_NODE && x == l) {
		/* As etcd's server does: hand leadership over first, remove the
		 * old leader once it is a follower. A leader removing itself
		 * steps down at once, and a survivor that has not learned the
		 * removal committed may then never be elected (CORE_BUGS.md). */
		uint64_t to = x % c->opts.n_nodes + 1;
		raft_msg m = {.type = RAFT_MSG_TRANSFER_LEADER, .to = l, .from = to};
		raft_step(c->nodes[l].r, &m);
		return;
	}
	int rc = sim_propose_conf_change(c, l, type, x);
	if (rc != 0 && rc != RAFT_EPROPOSAL_DROPPED)
		sim_fail(c, "node %llu: propose membership change: %s", (unsigned long long)l,
			 raft_strerror(rc));
}

static void chaos_tick(sim_cluster *c, const schedule *s, uint64_t *next_value)
{
	sim_rng *g = &c->rng;
	if (sim_rng_chance(g, s->propose))
		propose_value(c, pick(c), next_value);
	if (sim_rng_chance(g, s->burst)) {
		uint64_t id = pick(c);
		uint64_t n = 1 + sim_rng_below(g, 30);
		for (uint64_t i = 0; i < n; i++)
			propose_value(c, id, next_value);
	}
	if (sim_rng_chance(g, s->read)) {
		uint64_t id = pick(c);
		if (sim_alive(c, id)) {
			int rc = sim_read(c, id);
			if (rc != 0 && rc != RAFT_EPROPOSAL_DROPPED)
				sim_fail(c, "node %llu: read index: %s", (unsigned long long)id,
					 raft_strerror(rc));
		}
	}
	if (sim_rng_chance(g, s->crash))
		sim_crash(c, pick(c));
	if (sim_rng_chance(g, s->crash_in_ready))
		sim_crash_in_next_ready(c, pick(c));
	if (sim_rng_chance(g, s->restart)) {
		uint64_t id = pick(c);
		if (!sim_alive(c, id) && !c->nodes[id].retired)
			sim_restart(c, id);
	}
	if (sim_rng_chance(g, s->disconnect))
		sim_disconnect(c, pick(c));
	if (sim_rng_chance(g, s->reconnect)) {
		uint64_t id = pick(c);
		if (!c->net.connected[id])
			sim_connect(c, id);
	}
	if (sim_rng_chance(g, s->partition))
		random_partition(c);
	if (sim_rng_chance(g, s->unpartition)) {
		int groups[SIM_MAX_NODES + 1] = {0};
		bool split = false;
		for (size_t i = 1; i <= c->opts.n_nodes; i++)
			split |= c->net.group[i] != 0;
		if (split)
			sim_partition(c, groups);
	}
	if (sim_rng_chance(g, s->netfault)) {
		if (sim_rng_chance(g, 300)) {
			sim_net_set_drop(&c->net, 0);
			c->net.dup_pm = c->net.max_delay = c->net.long_delay_pm = 0;
			sim_trace(c, "network faults cleared");
		} else {
			random_netfault(c);
		}
	}
	uint32_t at_leader = s->crash_leader + s->leader_crash_in_ready + s->isolate_leader;
	if (sim_rng_chance(g, at_leader)) {
		uint64_t l = current_leader(c);
		uint32_t x = (uint32_t)sim_rng_below(g, at_leader);
		if (l && x < s->crash_leader)
			sim_crash(c, l);
		else if (l && x < s->crash_leader + s->leader_crash_in_ready)
			sim_crash_in_next_ready(c, l);
		else if (l)
			sim_disconnect(c, l);
	}
	if (sim_rng_chance(g, s->transfer)) {
		uint64_t l = current_leader(c), to = pick(c);
		if (l && to != l) {
			raft_msg m = {.type = RAFT_MSG_TRANSFER_LEADER, .to = l, .from = to};
			sim_trace(c, "n%llu asked to hand leadership to n%llu",
				  (unsigned long long)l, (unsigned long long)to);
			int rc = raft_step(c->nodes[l].r, &m);
			if (rc != 0 && rc != RAFT_EPROPOSAL_DROPPED)
				sim_fail(c, "node %llu: transfer leadership to %llu: %s",
					 (unsigned long long)l, (unsigned long long)to,
					 raft_strerror(rc));
		}
	}
	if (sim_rng_chance(g, s->campaign)) {
		uint64_t id = pick(c);
		if (sim_alive(c, id)) {
			sim_trace(c, "n%llu forced to campaign", (unsigned long long)id);
			raft_campaign(c->nodes[id].r);
		}
	}
	if (s->conf_change && sim_rng_chance(g, s->conf_change))
		random_conf_change(c);
	sim_tick(c);
}

static void u64_bytes(uint8_t out[8], uint64_t v)
{
	for (int i = 0; i < 8; i++)
		out[i] = (uint8_t)(v >> (8 * i));
}

/* True if node i belongs to the configuration the leader has applied. */
static bool member(sim_cluster *c, uint64_t leader, uint64_t i)
{
	return leader && sim_in_conf(c, leader, i);
}

/* True once the entry at index holds cmd and every member applied it. */
static bool applied_everywhere(sim_cluster *c, uint64_t index, const uint8_t cmd[8])
{
	const sim_committed *e = sim_checker_entry(&c->ck, index);
	if (!e || !e->applied || e->len != 8 || memcmp(e->data, cmd, 8) != 0)
		return false;
	uint64_t leader = current_leader(c);
	if (!leader)
		return false;
	for (uint64_t i = 1; i <= c->opts.n_nodes; i++)
		if (member(c, leader, i) && c->nodes[i].sm.applied < index)
			return false;
	return true;
}

/* The index where cmd was committed, searching from index from; 0 if none. */
static uint64_t find_committed(sim_cluster *c, uint64_t from, const uint8_t cmd[8])
{
	for (uint64_t i = from; i <= sim_checker_committed(&c->ck); i++) {
		const sim_committed *e = sim_checker_entry(&c->ck, i);
		if (e->applied && e->len == 8 && memcmp(e->data, cmd, 8) == 0)
			return i;
	}
	return 0;
}

static bool read_pending(const sim_cluster *c, uint64_t id)
{
	for (size_t i = 0; i < c->n_reads; i++)
		if (c->reads[i].id == id)
			return true;
	return false;
}

/* After healing, within the bound: a leader appears; a proposal made on the
 * leader and one made on a follower (forwarded) are applied by every node;
 * a linearizable read on every node is served. Requests lost to a leader
 * change are retried, as a client would. */
static void check_liveness(sim_cluster *c, uint64_t *next_value)
{
	sim_heal(c);
	c->opts.tick_in_ready_pm = 0; /* clocks stop running fast too */
	c->opts.persist_delay = 0;    /* and disks slow for whole ticks */
	for (uint64_t i = 1; i <= c->opts.n_nodes; i++) {
		c->nodes[i].crash_in_ready = false;
		if (!sim_alive(c, i) && !c->nodes[i].retired)
			sim_restart(c, i);
	}
	uint64_t et = (uint64_t)c->opts.election_ticks;
	uint64_t bound = LIVENESS_ELECTIONS * et;
	uint64_t start = c->now;
	enum { VIA_LEADER, VIA_FOLLOWER, READS, DONE } phase = VIA_LEADER;
	uint64_t index = 0, term = 0, sent_at = 0, base = 0;
	uint8_t cmd[8];
	uint64_t read_id[SIM_MAX_NODES + 1] = {0}, read_at[SIM_MAX_NODES + 1] = {0};
	bool read_done[SIM_MAX_NODES + 1] = {false};
	while (!sim_failed(c) && phase != DONE && c->now - start < bound) {
		uint64_t leader = current_leader(c);
		bool stale = c->now - sent_at > 3 * et;
		if (phase == VIA_LEADER) {
			if (leader &&
			    (index == 0 || raft_term(c->nodes[leader].r) != term || stale)) {
				u64_bytes(cmd, ++*next_value);
				index = 0;
				if (sim_propose(c, leader, cmd, sizeof(cmd), &index, &term) == 0)
					sent_at = c->now;
			}
			if (index && applied_everywhere(c, index, cmd)) {
				sim_trace(
				    c,
				    "liveness: proposal on the leader applied everywhere at %llu",
				    (unsigned long long)index);
				base = index + 1;
				phase = c->opts.n_nodes > 1 ? VIA_FOLLOWER : READS;
				sent_at = 0;
				continue;
			}
		} else if (phase == VIA_FOLLOWER) {
			uint64_t at = find_committed(c, base, cmd);
			if (sent_at && at && applied_everywhere(c, at, cmd)) {
				sim_trace(
				    c,
				    "liveness: proposal on a follower applied everywhere at %llu",
				    (unsigned long long)at);
				phase = READS;
				continue;
			}
			if (leader && (!sent_at || stale)) {
				uint64_t f = leader % c->opts.n_nodes + 1;
				while (f != leader && !member(c, leader, f))
					f = f % c->opts.n_nodes + 1;
				u64_bytes(cmd, ++*next_value);
				sim_propose(c, f, cmd, sizeof(cmd), NULL, NULL);
				sent_at = c->now;
			}
		} else {
			bool all = true;
			for (uint64_t i = 1; i <= c->opts.n_nodes; i++) {
				if (!member(c, leader, i))
					continue;
				if (read_id[i] && !read_pending(c, read_id[i]))
					read_done[i] = true;
				if (read_done[i])
					continue;
				all = false;
				if (!read_id[i] || c->now - read_at[i] > 3 * et) {
					if (sim_read(c, i) == 0) {
						read_id[i] = c->next_read_id;
						read_at[i] = c->now;
					}
				}
			}
			if (all) {
				sim_trace(c, "liveness: a read served on every node");
				phase = DONE;
				continue;
			}
		}
		sim_tick(c);
	}
	if (sim_failed(c) || phase == DONE)
		return;
	static const char *const what[] = {
	    "a proposal on the leader is still not applied on every node",
	    "a proposal on a follower is still not applied on every node",
	    "a linearizable read is still not served on some node",
	};
	sim_fail(c, "liveness: %llu ticks after every fault healed, %s", (unsigned long long)bound,
		 current_leader(c) ? what[phase] : "there is no leader");
}

/* Runs one seed; returns 0 if it passed, 1 if it failed (message in *c). */
static int run_seed(const run_args *a, char *why, size_t why_len, size_t *nodes_out)
{
	size_t n = a->nodes ? a->nodes : draw_nodes(a->seed);
	*nodes_out = n;
	current_seed = a->seed;
	current_nodes = n;

	sim_rng g;
	sim_rng_seed(&g, a->seed);
	sim_opts o;
	sim_opts_default(&o, n, sim_rng_next(&g));
	draw_opts(&g, &o);
	if (a->lease) {
		/* Leases rest on clocks whose rates agree within the margin
		 * (raft.h); the clocks that run fast inside Readies have no
		 * bound, so they stop. Reads are then served by leases. */
		o.lease_reads = true;
		o.check_quorum = true;
		o.tick_in_ready_pm = 0;
	}
	if (a->async) {
		/* Drawn apart, so the other draws of a seed stay as they were:
		 * saves complete 0..3 ticks after their Ready. */
		sim_rng ag;
		sim_rng_seed(&ag, a->seed ^ 0x6173796e63ULL);
		o.async_storage = true;
		o.persist_delay = (uint32_t)sim_rng_below(&ag, 4);
		/* A disk slower than a fifth of the election timeout keeps
		 * any cluster electing (a vote waits for a save): no seed is
		 * that sick. */
		if (o.persist_delay > (uint32_t)o.election_ticks / 5)
			o.persist_delay = (uint32_t)o.election_ticks / 5;
	}
	if (a->verbose) {
		o.trace = stdout;
		o.trace_msgs = a->verbose > 1;
	}
	schedule s;
	draw_schedule(&g, &s);
	/* Membership changes, drawn apart so other seeds' runs stay as they
	 * were: one or two spare nodes start outside the cluster. */
	sim_rng mg;
	sim_rng_seed(&mg, a->seed ^ 0x6d656d62657273ULL);
	size_t spares = 0;
	if (a->membership && sim_rng_chance(&mg, 400) && n < SIM_MAX_NODES) {
		spares = 1 + (size_t)sim_rng_below(&mg, 2);
		if (n + spares > SIM_MAX_NODES)
			spares = SIM_MAX_NODES - n;
		o.n_voters = n;
		o.n_nodes = n + spares;
		s.conf_change = 2 + (uint32_t)sim_rng_below(&mg, 20);
	}

	sim_cluster *c;
	int rc = sim_cluster_new(&o, &c);
	if (rc != 0) {
		snprintf(why, why_len, "create cluster: %s", raft_strerror(rc));
		return 1;
	}
	sim_trace(c,
		  "seed %llu: %zu nodes, election %d, heartbeat %d, pre-vote %d, check-quorum %d, "
		  "lease %d, inflight %zu, msg bytes %llu, snapshot every %llu keep %llu, %zu spares",
		  (unsigned long long)a->seed, n, o.election_ticks, o.heartbeat_ticks, o.pre_vote,
		  o.check_quorum, o.lease_reads, o.max_inflight, (unsigned long long)o.max_msg_bytes,
		  (unsigned long long)o.snapshot_every, (unsigned long long)o.snapshot_keep,
		  spares);

	uint64_t next_value = 0;
	uint64_t heal_at = a->ticks * 3 / 4;
	while (c->now < heal_at && !sim_failed(c))
		chaos_tick(c, &s, &next_value);
	if (!sim_failed(c))
		check_liveness(c, &next_value);
	int failed = sim_failed(c);
	if (failed)
		snprintf(why, why_len, "%s", sim_failure(c));
	else
		sim_trace(c, "seed %llu passed: %llu committed, %llu reads served, %llu messages",
			  (unsigned long long)a->seed,
			  (unsigned long long)sim_checker_committed(&c->ck),
			  (unsigned long long)c->reads_done, (unsigned long long)c->net.msgs_sent);
	sim_cluster_free(c);
	return failed;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: raft-sim --seeds A-B [--nodes N] [--ticks T] [--membership] [--lease] "
		"[--async] [-v|-vv]\n");
}

int main(int argc, char **argv)
{
	uint64_t lo = 0, hi = 0;
	bool have_seeds = false;
	run_args a = {.ticks = 3000};
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--seeds") == 0 && i + 1 < argc) {
			char *end;
			lo = strtoull(argv[++i], &end, 10);
			hi = *end == '-' ? strtoull(end + 1, &end, 10) : lo;
			if (*end != '\0' || hi < lo) {
				fprintf(stderr, "raft-sim: bad seed range '%s'\n", argv[i]);
				return 2;
			}
			have_seeds = true;
		} else if (strcmp(argv[i], "--nodes") == 0 && i + 1 < argc) {
			a.nodes = strtoul(argv[++i], NULL, 10);
			if (a.nodes == 0 || a.nodes > SIM_MAX_NODES) {
				fprintf(stderr, "raft-sim: --nodes must be 1..%d\n", SIM_MAX_NODES);
				return 2;
			}
		} else if (strcmp(argv[i], "--ticks") == 0 && i + 1 < argc) {
			a.ticks = strtoull(argv[++i], NULL, 10);
		} else if (strcmp(argv[i], "--membership") == 0) {
			a.membership = true;
		} else if (strcmp(argv[i], "--lease") == 0) {
			a.lease = true;
		} else if (strcmp(argv[i], "--async") == 0) {
			a.async = true;
		} else if (strcmp(argv[i], "-v") == 0) {
			a.verbose = 1;
		} else if (strcmp(argv[i], "-vv") == 0) {
			a.verbose = 2;
		} else {
			usage();
			return 2;
		}
	}
	if (!have_seeds) {
		usage();
		return 2;
	}
	current_ticks = a.ticks;
	current_membership = a.membership;
	current_lease = a.lease;
	current_async = a.async;
#if defined(__SANITIZE_ADDRESS__)
	__sanitizer_set_death_callback(report_death);
#endif
	signal(SIGSEGV, on_fatal_signal);
	signal(SIGABRT, on_fatal_signal);
	signal(SIGFPE, on_fatal_signal);

	uint64_t passed = 0, failed = 0;
	for (uint64_t seed = lo;; seed++) {
		a.seed = seed;
		char why[1024];
		size_t n;
		if (run_seed(&a, why, sizeof(why), &n) == 0) {
			passed++;
		} else {
			failed++;
			printf("FAIL seed %llu: %s; replay: raft-sim --seeds %llu-%llu --nodes %zu "
			       "--ticks %llu%s%s%s -v\n",
			       (unsigned long long)seed, why, (unsigned long long)seed,
			       (unsigned long long)seed, n, (unsigned long long)a.ticks,
			       a.membership ? " --membership" : "", a.lease ? " --lease" : "",
			       a.async ? " --async" : "");
			fflush(stdout);
		}
		if (seed == hi)
			break;
	}
	printf("%llu passed, %llu failed\n", (unsigned long long)passed,
	       (unsigned long long)failed);
	return failed ? 1 : 0;
}
