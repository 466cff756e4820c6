/* cli_member.c — raftfs member: list, add, remove and promote the members
 * of a running cluster through any of its nodes (the leader is found by
 * following "not the leader" answers). */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "client.h"
#include "node_members.h"
#include "mono_ms.h"

static const char usage[] =
    "NAME\n"
    "    raftfs member - list and change the members of a running cluster\n"
    "\n"
    "SYNOPSIS\n"
    "    raftfs member list --via ADDR [--json]\n"
    "    raftfs member add ID HOST:PORT --via ADDR [--learner] [--timeout S]\n"
    "    raftfs member remove ID --via ADDR [--timeout S]\n"
    "    raftfs member promote ID --via ADDR [--timeout S]\n"
    "\n"
    "DESCRIPTION\n"
    "    ADDR is the listen address (host:port) of any node of the cluster; a\n"
    "    change is made by the leader: a follower relays it there, and the\n"
    "    command follows \"not the leader\" answers too (unless --no-follow).\n"
    "    Changes go one server at a time (Raft thesis 4.1).\n"
    "\n"
    "    list prints one line per member: id, address, voter or learner,\n"
    "    its match index (the last entry it is known to hold: asked of the\n"
    "    leader; 0 when ADDR is not the leader), and whether ADDR's node is\n"
    "    connected to it.\n"
    "\n"
    "    add makes node ID, listening at HOST:PORT, a learner: it receives\n"
    "    the log (or a snapshot) but does not vote. Once its log is within\n"
    "    256 entries of the leader's, it is promoted to voter (thesis 4.2.1),\n"
    "    and the command returns. Start the new node first or right after,\n"
    "    with join = true in its [node] section (raftfs node --join) and the\n"
    "    current members plus itself in its [peers]. --learner stops at the\n"
    "    learner; promote does the rest later.\n"
    "\n"
    "    remove takes node ID out of the cluster. Removing the leader hands\n"
    "    its leadership to another voter first. The removed node's process\n"
    "    keeps running until stopped; its orphaned-file holds are dropped\n"
    "    with it. A dead node is replaced by removing it, then adding a fresh\n"
    "    node with a new id. A removed id may be added again: its node with\n"
    "    its old data directory (it catches up from where it was), or with a\n"
    "    fresh one and join = true.\n"
    "\n"
    "    --timeout S bounds the whole change (default 60 s: a new node that\n"
    "    needs a large snapshot may need more).\n"
    "\n"
    "ERRORS\n"
    "    Refused with a message: an id that is not a member (remove, promote)\n"
    "    or already is one (add), an address another member has, removing the\n"
    "    last voter, another change still in progress, a learner that did not\n"
    "    catch up in time (it stays a learner).\n"
    "\n"
    "EXIT STATUS\n"
    "    0 when the change applied (list: when the node answered); 1 when it\n"
    "    failed; 2 for bad usage.\n";

/* --no-follow: ask the --via node only (a follower relays a change to the
 * leader itself); for tests of that relay. */
static bool no_follow;

int cli_member_call(const char *via, int op, uint64_t id, const char *addr, int learner,
		    unsigned timeout_ms, Transportpb__Response **out, char *err, size_t errlen)
{
	Transportpb__Request req = TRANSPORTPB__REQUEST__INIT;
	Transportpb__MemberRequest mr = TRANSPORTPB__MEMBER_REQUEST__INIT;
	int64_t deadline = mono_ms() + timeout_ms;
	bool lost = false; /* a try was cut short by a leader change */
	char at[96];
	int rc;

	snprintf(at, sizeof(at), "%s", via);
	mr.op = (Transportpb__MemberRequest__Op)op;
	mr.node_id = id;
	mr.addr = (char *)(addr ? addr : "");
	mr.learner = learner;
	req.op_case = TRANSPORTPB__REQUEST__OP_MEMBER;
	req.member = &mr;
	for (;;) {
		Transportpb__Response *resp = NULL;
		int64_t now = mono_ms();
		unsigned left = now < deadline ? (unsigned)(deadline - now) : 1;
		client *c;

		mr.timeout_ms = left;
		rc = client_connect(at, left < 5000 ? left : 5000, &c, err, errlen);
		if (rc < 0 && strcmp(at, via) && mono_ms() < deadline) {
			/* The leader we were sent to is gone (killed, say):
			 * ask the first node again once it knows better. */
			struct timespec ts = {0, 200 * 1000000};

			nanosleep(&ts, NULL);
			snprintf(at, sizeof(at), "%s", via);
			continue;
		}
		if (rc < 0)
			return rc;
		/* The node answers within mr.timeout_ms; a little more for the
		 * answer to travel. */
		rc = client_call(c, &req, &resp, left + 5000, err, errlen);
		client_close(c);
		if (rc < 0)
			return rc;
		if (lost && op != TRANSPORTPB__MEMBER_REQUEST__OP__LIST &&
		    (resp->error == MEMBER_EEXISTS ||
		     (resp->error == MEMBER_EUNKNOWN &&
		      op == TRANSPORTPB__MEMBER_REQUEST__OP__REMOVE))) {
			/* The try cut short by a leader change got there after
			 * all: what this one finds is what was asked for. */
			char *msg = strdup("applied (leadership changed meanwhile)");

			if (msg) {
				/* Freed by free_unpacked, as the unpacked one
				 * would have been (not protobuf-c's shared
				 * empty string). */
				if (resp->error_msg && resp->error_msg[0])
					free(resp->error_msg);
				resp->error_msg = msg;
			}
			resp->error = 0;
		}
		if ((resp->error == MEMBER_ENOTLEADER || resp->error == MEMBER_ELOST) &&
		    !no_follow && mono_ms() < deadline) {
			/* Ask the (new) leader; after a lost try the change may
			 * be half done (a learner not yet promoted): asking
			 * again goes on from where it is. */
			lost |= resp->error == MEMBER_ELOST;
			if (resp->leader_addr && resp->leader_addr[0])
				snprintf(at, sizeof(at), "%s", resp->leader_addr);
			else {
				/* No leader known yet (an election): ask again. */
				struct timespec ts = {0, 200 * 1000000};

				nanosleep(&ts, NULL);
			}
			transportpb__response__free_unpacked(resp, NULL);
			continue;
		}
		*out = resp;
		return 0;
	}
}

static void print_members(const Transportpb__Response *r, int json)
{
	if (json)
		printf("[");
	for (size_t i = 0; i < r->n_members; i++) {
		const Transportpb__Member *m = r->members[i];

		if (json)
			printf("%s{\"id\":%llu,\"addr\":\"%s\",\"role\":\"%s\",\"match\":%llu,"
			       "\"connected\":%s}",
			       i ? "," : "", (unsigned long long)m->id, m->addr,
			       m->learner ? "learner" : "voter", (unsigned long long)m->match,
			       m->connected ? "true" : "false");
		else
			printf("%llu  %s  %s  match %llu  %s\n", (unsigned long long)m->id, m->addr,
			       m->learner ? "learner" : "voter", (unsigned long long)m->match,
			       m->connected ? "connected" : "disconnected");
	}
	if (json)
		printf("]\n");
}

static int parse_id(const char *s, uint64_t *id)
{
	char *end;

	errno = 0;
	*id = strtoull(s, &end, 10);
	return errno || end == s || *end || *id == 0 || s[0] == '-' ? -1 : 0;
}

int cli_member_main(int argc, char **argv)
{
	const char *via = NULL, *pos[2] = {NULL, NULL}, *what;
	unsigned timeout_ms = 60000;
	int learner = 0, json = 0, n_pos = 0, op;
	Transportpb__Response *resp = NULL;
	uint64_t id = 0;
	char err[512];
	int rc;

	if (cli_wants_help(argc, argv)) {
		fputs(usage, stdout);
		return 0;
	}
	if (argc < 2) {
		fprintf(stderr, "raftfs member: what to do? (list, add, remove, promote)\n\n%s",
			usage);
		return 2;
	}
	what = argv[1];
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--via") && i + 1 < argc) {
			via = argv[++i];
		} else if (!strcmp(argv[i], "--timeout") && i + 1 < argc) {
			char *end;
			double s = strtod(argv[++i], &end);

			if (*end || s <= 0 || s > 86400) {
				fprintf(stderr, "raftfs member: bad --timeout '%s' (seconds)\n",
					argv[i]);
				return 2;
			}
			timeout_ms = (unsigned)(s * 1000);
		} else if (!strcmp(argv[i], "--learner")) {
			learner = 1;
		} else if (!strcmp(argv[i], "--no-follow")) {
			no_follow = true;
		} else if (!strcmp(argv[i], "--json")) {
			json = 1;
		} else if (argv[i][0] == '-') {
			fprintf(stderr, "raftfs member: unknown option %s\n", argv[i]);
			return 2;
		} else if (n_pos < 2) {
			pos[n_pos++] = argv[i];
		} else {
			fprintf(stderr, "raftfs member: unexpected argument '%s'\n", argv[i]);
			return 2;
		}
	}
	if (!via) {
		fprintf(stderr, "raftfs member: --via ADDR (a node of the cluster) is required\n");
		return 2;
	}
	if (!strcmp(what, "list")) {
		op = TRANSPORTPB__MEMBER_REQUEST__OP__LIST;
		if (n_pos) {
			fprintf(stderr, "raftfs member list: unexpected argument '%s'\n", pos[0]);
			return 2;
		}
	} else if (!strcmp(what, "add") || !strcmp(what, "remove") || !strcmp(what, "promote")) {
		int want = !strcmp(what, "add") ? 2 : 1;

		op = !strcmp(what, "add")      ? TRANSPORTPB__MEMBER_REQUEST__OP__ADD
		     : !strcmp(what, "remove") ? TRANSPORTPB__MEMBER_REQUEST__OP__REMOVE
					       : TRANSPORTPB__MEMBER_REQUEST__OP__PROMOTE;
		if (n_pos != want) {
			fprintf(stderr, "raftfs member %s: want %s\n", what,
				want == 2 ? "ID HOST:PORT" : "ID");
			return 2;
		}
		if (parse_id(pos[0], &id) < 0) {
			fprintf(stderr, "raftfs member %s: bad node id '%s' (a number from 1)\n",
				what, pos[0]);
			return 2;
		}
	} else {
		fprintf(stderr, "raftfs member: unknown action '%s' (list, add, remove, promote)\n",
			what);
		return 2;
	}
	rc = cli_member_call(via, op, id, pos[1], learner, timeout_ms, &resp, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "raftfs member %s: %s\n", what, err);
		return 1;
	}
	if (resp->error) {
		fprintf(stderr, "raftfs member %s: %s\n", what,
			resp->error_msg && resp->error_msg[0] ? resp->error_msg
							      : node_members_strerror(resp->error));
		transportpb__response__free_unpacked(resp, NULL);
		return 1;
	}
	if (op != TRANSPORTPB__MEMBER_REQUEST__OP__LIST && resp->error_msg && resp->error_msg[0])
		fprintf(stderr, "raftfs member %s: %s\n", what, resp->error_msg);
	print_members(resp, json);
	transportpb__response__free_unpacked(resp, NULL);
	return 0;
}
