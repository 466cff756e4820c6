/* cli_status.c — raftfs status: role, term, log positions and replication
 * progress of one or more nodes. */
#include <errno.h>
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
    "    index and snapshot index; a leader also reports, per follower, the\n"
    "    match and next index, the lag (last - match), the progress state and\n"
    "    whether it is connected and recently active; any other node lists the\n"
    "    members it knows and whether it is connected to each. Members that do\n"
    "    not vote yet (joining, raftfs member add) are listed as learners, by\n"
    "    every node. --json prints one JSON object per node, one per line\n"
    "    (a follower's members have an empty \"state\").\n"
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
}

static void print_json(const char *addr, const Transportpb__NodeStatus *s)
{
	printf("{\"addr\":\"%s\",\"id\":%llu,\"role\":\"%s\",\"term\":%llu,\"leader\":%llu,"
	       "\"commit\":%llu,\"applied\":%llu,\"first_index\":%llu,\"last_index\":%llu,"
	       "\"snapshot_index\":%llu,\"snapshot_bytes\":%llu,\"healthy\":%s,\"error\":\"%s\","
	       "\"peers\":[",
	       addr, (unsigned long long)s->id, s->role, (unsigned long long)s->term,
	       (unsigned long long)s->leader, (unsigned long long)s->commit,
	       (unsigned long long)s->applied, (unsigned long long)s->first_index,
	       (unsigned long long)s->last_index, (unsigned long long)s->snapshot_index,
	       (unsigned long long)s->snapshot_bytes,
	       s->healthy ? "true" : "false", s->error);
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
	printf("]}\n");
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
