/* cli_status.c — raftfs status: role, term, log positions and replication
 * progress of one or more nodes. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "client.h"

static const char usage[] =
    "NAME\n"
    "    raftfs status - show the state of raftfs nodes\n"
    "\n"
    "SYNOPSIS\n"
    "    raftfs status [--json] [--timeout MS] ADDR...\n"
    "\n"
    "DESCRIPTION\n"
    "    Asks each node at ADDR (host:port, its listen address) for its role,\n"
    "    term, known leader, commit index, applied index, first and last log\n"
    "    index and snapshot index (and, after a power loss, what is left to\n"
    "    delete of the copy the node dropped); a leader also reports, per\n"
    "    follower, the match and next index, the lag (last - match), the\n"
    "    progress state and whether it is connected and recently active; any\n"
    "    other node lists the members it knows and whether it is connected to\n"
    "    each. A leader, and any node that held big writes while it led,\n"
    "    reports its admission of big writes ([raft] admit_bytes): bytes\n"
    "    outstanding (in the log, not yet saved by every voter that keeps up)\n"
    "    against the bound, proposals held now, and since its start how many\n"
    "    were held and released, resends dropped (of held ones, of ones already\n"
    "    in the log), offers dropped at the held cap (their senders retry),\n"
    "    held ones forgotten with a leadership, and the voters behind that\n"
    "    admission does not wait for now (down, catching up, a hung disk).\n"
    "    Members that do not vote yet (joining, raftfs member add) are\n"
    "    listed as learners, by every node. --json prints one JSON object per\n"
    "    node, one per line (a follower's members have an empty \"state\").\n"
    "\n"
    "EXIT STATUS\n"
    "    0 if every node answered and is healthy (applying, a leader known);\n"
    "    1 otherwise; 2 for bad usage.\n";

int cli_fetch_status(const char *addr, unsigned timeout_ms, Transportpb__NodeStatus **ns, char *err,
		     size_t errlen)
{
	Transportpb__Request req = TRANSPORTPB__REQUEST__INIT;
	Transportpb__StatusRequest sr = TRANSPORTPB__STATUS_REQUEST__INIT;
	Transportpb__Response *resp = NULL;
	client *c;
	int rc;

	rc = client_connect(addr, timeout_ms, &c, err, errlen);
	if (rc < 0)
		return rc;
	req.op_case = TRANSPORTPB__REQUEST__OP_STATUS;
	req.status = &sr;
	rc = client_call(c, &req, &resp, timeout_ms, err, errlen);
	client_close(c);
	if (rc < 0)
		return rc;
	if (!resp->status) {
		snprintf(err, errlen, "%s: no status in the answer: %s", addr, resp->error_msg);
		transportpb__response__free_unpacked(resp, NULL);
		return -EPROTO;
	}
	*ns = resp->status;
	resp->status = NULL; /* keep it past the response */
	transportpb__response__free_unpacked(resp, NULL);
	return 0;
}

#define MIB(x) ((double)(x) / 1048576.0)

/* The admission line: a leader's, and any node's that held big writes
 * while it led (its counters are since its start). */
static void print_admit_text(const Transportpb__NodeStatus *s)
{
	const Transportpb__AdmitStatus *a = s->admit;
	bool leader = !strcmp(s->role, "leader");

	if (!a || (!leader && !a->n_held && !a->n_resent))
		return;
	if (!a->bound) {
		printf("    admission off\n");
		return;
	}
	printf("    admission  outstanding %.1f of %.1f MiB  held %llu (%.1f MiB)  since start: "
	       "held %llu, released %llu, resends dropped %llu held + %llu in log, dropped at "
	       "cap %llu (+%llu behind), forgotten %llu  voters not waited for %llu\n",
	       MIB(a->outstanding), MIB(a->bound), (unsigned long long)a->held, MIB(a->held_bytes),
	       (unsigned long long)a->n_held, (unsigned long long)a->n_released,
	       (unsigned long long)a->n_dup, (unsigned long long)a->n_resent,
	       (unsigned long long)a->n_full, (unsigned long long)a->n_behind,
	       (unsigned long long)a->n_forgotten, (unsigned long long)a->stalled_voters);
}

static void print_text(const char *addr, const Transportpb__NodeStatus *s)
{
	printf("%s  node %llu  %s  term %llu  leader %llu  commit %llu  applied %llu  "
	       "first %llu  last %llu  snapshot %llu (%llu bytes)  %s%s%s\n",
	       addr, (unsigned long long)s->id, s->role, (unsigned long long)s->term,
	       (unsigned long long)s->leader, (unsigned long long)s->commit,
	       (unsigned long long)s->applied, (unsigned long long)s->first_index,
	       (unsigned long long)s->last_index, (unsigned long long)s->snapshot_index,
	       (unsigned long long)s->snapshot_bytes,
	       s->healthy ? "healthy" : "UNHEALTHY", s->healthy ? "" : ": ",
	       s->healthy ? "" : s->error);
	if (s->dropped_entries || s->dropped_bytes)
		printf("    dropped tree  %.1f MiB  %llu entries left to delete (after a power "
		       "loss)\n",
		       MIB(s->dropped_bytes), (unsigned long long)s->dropped_entries);
	for (size_t i = 0; i < s->n_peers; i++) {
		const Transportpb__PeerStatus *p = s->peers[i];

		if (p->id == s->id)
			continue;
		if (!p->state[0]) { /* a follower's view: members, no progress */
			printf("    %s %llu  %s\n", p->learner ? "learner" : "peer",
			       (unsigned long long)p->id, p->connected ? "connected" : "disconnected");
			continue;
		}
		printf(
		    "    %s %llu  match %llu  next %llu  lag %llu  %s%s%s\n",
		    p->learner ? "learner" : "peer", (unsigned long long)p->id,
		    (unsigned long long)p->match,
		    (unsigned long long)p->next,
		    (unsigned long long)(s->last_index > p->match ? s->last_index - p->match : 0),
		    p->state, p->active ? "  active" : "  inactive",
		    p->connected ? "  connected" : "  disconnected");
	}
	print_admit_text(s);
}

static void print_json(const char *addr, const Transportpb__NodeStatus *s)
{
	printf("{\"addr\":\"%s\",\"id\":%llu,\"role\":\"%s\",\"term\":%llu,\"leader\":%llu,"
	       "\"commit\":%llu,\"applied\":%llu,\"first_index\":%llu,\"last_index\":%llu,"
	       "\"snapshot_index\":%llu,\"snapshot_bytes\":%llu,\"healthy\":%s,\"error\":\"%s\","
	       "\"dropped_bytes\":%llu,\"dropped_entries\":%llu,\"tick_fires\":%llu,\"peers\":[",
	       addr, (unsigned long long)s->id, s->role, (unsigned long long)s->term,
	       (unsigned long long)s->leader, (unsigned long long)s->commit,
	       (unsigned long long)s->applied, (unsigned long long)s->first_index,
	       (unsigned long long)s->last_index, (unsigned long long)s->snapshot_index,
	       (unsigned long long)s->snapshot_bytes,
	       s->healthy ? "true" : "false", s->error, (unsigned long long)s->dropped_bytes,
	       (unsigned long long)s->dropped_entries, (unsigned long long)s->tick_fires);
	for (size_t i = 0; i < s->n_peers; i++) {
		const Transportpb__PeerStatus *p = s->peers[i];

		printf(
		    "%s{\"id\":%llu,\"match\":%llu,\"next\":%llu,\"lag\":%llu,\"state\":\"%s\","
		    "\"active\":%s,\"connected\":%s,\"learner\":%s}",
		    i ? "," : "", (unsigned long long)p->id, (unsigned long long)p->match,
		    (unsigned long long)p->next,
		    (unsigned long long)(s->last_index > p->match ? s->last_index - p->match : 0),
		    p->state, p->active ? "true" : "false", p->connected ? "true" : "false",
		    p->learner ? "true" : "false");
	}
	printf("]");
	if (s->admit) {
		const Transportpb__AdmitStatus *a = s->admit;

		printf(",\"admit\":{\"bound\":%llu,\"outstanding\":%llu,\"held\":%llu,"
		       "\"held_bytes\":%llu,\"n_held\":%llu,\"n_released\":%llu,\"n_dup\":%llu,"
		       "\"n_resent\":%llu,\"n_full\":%llu,\"n_behind\":%llu,\"n_forgotten\":%llu,"
		       "\"stalled_voters\":%llu,\"held_bytes_max\":%llu,\"outstanding_max\":%llu}",
		       (unsigned long long)a->bound, (unsigned long long)a->outstanding,
		       (unsigned long long)a->held, (unsigned long long)a->held_bytes,
		       (unsigned long long)a->n_held, (unsigned long long)a->n_released,
		       (unsigned long long)a->n_dup, (unsigned long long)a->n_resent,
		       (unsigned long long)a->n_full, (unsigned long long)a->n_behind,
		       (unsigned long long)a->n_forgotten, (unsigned long long)a->stalled_voters,
		       (unsigned long long)a->held_bytes_max, (unsigned long long)a->outstanding_max);
	}
	printf("}\n");
}

int cli_status_main(int argc, char **argv)
{
	unsigned timeout_ms = 2000;
	int json = 0, healthy = 1, n_addr = 0;

	if (cli_wants_help(argc, argv)) {
		fputs(usage, stdout);
		return 0;
	}
	for (int i = 1; i < argc; i++) {
		Transportpb__NodeStatus *ns;
		char err[512];

		if (!strcmp(argv[i], "--json")) {
			json = 1;
			continue;
		}
		if (!strcmp(argv[i], "--timeout") && i + 1 < argc) {
			timeout_ms = (unsigned)strtoul(argv[++i], NULL, 10);
			continue;
		}
		if (argv[i][0] == '-') {
			fprintf(stderr, "raftfs status: unknown option %s\n", argv[i]);
			return 2;
		}
		n_addr++;
		if (cli_fetch_status(argv[i], timeout_ms, &ns, err, sizeof(err)) < 0) {
			if (json)
				printf("{\"addr\":\"%s\",\"healthy\":false,\"error\":"
				       "\"unreachable\"}\n",
				       argv[i]);
			fprintf(stderr, "raftfs status: %s\n", err);
			healthy = 0;
			continue;
		}
		if (json)
			print_json(argv[i], ns);
		else
			print_text(argv[i], ns);
		healthy &= ns->healthy;
		transportpb__node_status__free_unpacked(ns, NULL);
	}
	if (n_addr == 0) {
		fprintf(stderr, "raftfs status: no address given\n\n%s", usage);
		return 2;
	}
	return healthy ? 0 : 1;
}
