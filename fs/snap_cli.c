/* snap_cli.c — raftfs snapshot ADDR: an on-demand snapshot of one node. */
#include "snap_cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "client.h"

static const char usage[] =
    "NAME\n"
    "    raftfs snapshot - snapshot a node's state now and compact its log\n"
    "\n"
    "SYNOPSIS\n"
    "    raftfs snapshot [--timeout MS] ADDR\n"
    "\n"
    "DESCRIPTION\n"
    "    Asks the node at ADDR (host:port) to snapshot its state machine at\n"
    "    the next entry it applies (it proposes an empty entry so that there\n"
    "    is one), store the image and compact its Raft log behind it, as it\n"
    "    does by itself every snapshot_entries entries. Waits (up to MS\n"
    "    milliseconds, default 30000) until the node reports the new\n"
    "    snapshot, then prints its index and size in bytes.\n"
    "\n"
    "EXIT STATUS\n"
    "    0 once the snapshot is stored; 1 if the node refused or timed out;\n"
    "    2 for bad usage.\n";

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Sends the request: 0 with the node's applied index at the time, or -1. */
static int request(const char *addr, unsigned timeout_ms, uint64_t *applied)
{
	Transportpb__Request req = TRANSPORTPB__REQUEST__INIT;
	Transportpb__SnapshotRequest sr = TRANSPORTPB__SNAPSHOT_REQUEST__INIT;
	Transportpb__Response *resp = NULL;
	char err[256];
	client *c;
	int rc;

	if (client_connect(addr, timeout_ms, &c, err, sizeof(err)) < 0) {
		fprintf(stderr, "raftfs snapshot: %s\n", err);
		return -1;
	}
	req.op_case = TRANSPORTPB__REQUEST__OP_SNAPSHOT;
	req.snapshot = &sr;
	rc = client_call(c, &req, &resp, timeout_ms, err, sizeof(err));
	client_close(c);
	if (rc < 0) {
		fprintf(stderr, "raftfs snapshot: %s\n", err);
		return -1;
	}
	rc = resp->error;
	if (rc)
		fprintf(stderr, "raftfs snapshot: %s refused: %s\n", addr, resp->error_msg);
	*applied = resp->index;
	transportpb__response__free_unpacked(resp, NULL);
	return rc ? -1 : 0;
}

int cli_snapshot_main(int argc, char **argv)
{
	unsigned timeout_ms = 30000;
	const char *addr = NULL;
	uint64_t applied;
	double deadline;

	if (cli_wants_help(argc, argv)) {
		fputs(usage, stdout);
		return 0;
	}
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--timeout") && i + 1 < argc)
			timeout_ms = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (!addr && argv[i][0] != '-')
			addr = argv[i];
		else
			addr = NULL, i = argc;
	}
	if (!addr || timeout_ms == 0) {
		fputs(usage, stderr);
		return 2;
	}
	if (request(addr, timeout_ms, &applied) < 0)
		return 1;
	deadline = now_ms() + timeout_ms;
	for (;;) {
		Transportpb__NodeStatus *ns = NULL;
		char err[256];
		struct timespec pause = {0, 20 * 1000000};

		if (cli_fetch_status(addr, 2000, &ns, err, sizeof(err)) == 0) {
			uint64_t index = ns->snapshot_index, bytes = ns->snapshot_bytes;

			transportpb__node_status__free_unpacked(ns, NULL);
			if (index > applied) {
				printf("snapshot at %llu (%llu bytes)\n", (unsigned long long)index,
				       (unsigned long long)bytes);
				return 0;
			}
		}
		if (now_ms() > deadline) {
			fprintf(
			    stderr,
			    "raftfs snapshot: %s has no snapshot beyond index %llu after %u ms\n",
			    addr, (unsigned long long)applied, timeout_ms);
			return 1;
		}
		nanosleep(&pause, NULL);
	}
}
