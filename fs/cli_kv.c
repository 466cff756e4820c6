/* cli_kv.c — raftfs kv: client of the replicated test state machine. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "client.h"
#include "kvsm.h"

static const char usage[] =
    "NAME\n"
    "    raftfs kv - client of the replicated test state machine\n"
    "\n"
    "SYNOPSIS\n"
    "    raftfs kv put [--timeout MS] ADDR KEY VALUE\n"
    "    raftfs kv get [--stale] [--timeout MS] ADDR KEY\n"
    "    raftfs kv load [--count N] [--prefix P] [--size B] [--timeout MS] ADDR...\n"
    "    raftfs kv dump DATA_DIR\n"
    "\n"
    "DESCRIPTION\n"
    "    put proposes KEY=VALUE through the node at ADDR (forwarded to the\n"
    "    leader if that node follows) and prints the index it was applied at.\n"
    "    get prints KEY's value after a linearizable read barrier (--stale:\n"
    "    the node's current state, no barrier).\n"
    "    load puts P-1=1 .. P-N=N one after the other, printing each key once\n"
    "    its put is acknowledged (flushed line by line); on a connection\n"
    "    failure it moves on to the next ADDR and the next key (the failed put\n"
    "    is not retried: it may or may not have been applied). Default N 100,\n"
    "    P 'k'. --size pads each value to B bytes (i, then dots).\n"
    "    dump prints the applied records of a node's data directory, one per\n"
    "    line: index kind client seq result command (kind new, dup, stale or\n"
    "    empty). It reads the files directly and works while the node runs.\n"
    "\n"
    "EXIT STATUS\n"
    "    0 on success (load: at least one put acknowledged); 1 on failure;\n"
    "    2 for bad usage.\n";

/* Puts key=value through c; 0 with *index, or a negative code (err set). */
static int put(client *c, const char *key, const char *value, unsigned timeout_ms, uint64_t *index,
	       char *err, size_t errlen)
{
	Transportpb__Request req = TRANSPORTPB__REQUEST__INIT;
	Transportpb__ProposeRequest pr = TRANSPORTPB__PROPOSE_REQUEST__INIT;
	Transportpb__Response *resp;
	size_t kl = strlen(key), vl = strlen(value);
	char *cmd = malloc(kl + vl + 2);
	int rc;

	if (!cmd)
		return -ENOMEM;
	snprintf(cmd, kl + vl + 2, "%s=%s", key, value);
	pr.data.data = (uint8_t *)cmd;
	pr.data.len = kl + vl + 1;
	pr.timeout_ms = timeout_ms;
	req.op_case = TRANSPORTPB__REQUEST__OP_PROPOSE;
	req.propose = &pr;
	/* The node gives up at timeout_ms; wait a little longer for its answer. */
	rc = client_call(c, &req, &resp, timeout_ms + 2000, err, errlen);
	free(cmd);
	if (rc < 0)
		return rc;
	rc = resp->error;
	if (rc != 0)
		snprintf(err, errlen, "put %s: %s", key, resp->error_msg);
	*index = resp->index;
	transportpb__response__free_unpacked(resp, NULL);
	return rc;
}

static int cmd_put(int argc, char **argv, unsigned timeout_ms)
{
	char err[512];
	uint64_t index;
	client *c;
	int rc;

	if (argc != 3) {
		fprintf(stderr, "raftfs kv put: want ADDR KEY VALUE\n");
		return 2;
	}
	rc = client_connect(argv[0], timeout_ms, &c, err, sizeof(err));
	if (rc == 0) {
		rc = put(c, argv[1], argv[2], timeout_ms, &index, err, sizeof(err));
		client_close(c);
	}
	if (rc != 0) {
		fprintf(stderr, "raftfs kv: %s\n", err);
		return 1;
	}
	printf("%llu\n", (unsigned long long)index);
	return 0;
}

static int cmd_get(int argc, char **argv, unsigned timeout_ms, int stale)
{
	Transportpb__Request req = TRANSPORTPB__REQUEST__INIT;
	Transportpb__QueryRequest q = TRANSPORTPB__QUERY_REQUEST__INIT;
	Transportpb__Response *resp = NULL;
	char err[512];
	client *c;
	int rc;

	if (argc != 2) {
		fprintf(stderr, "raftfs kv get: want ADDR KEY\n");
		return 2;
	}
	q.data.data = (uint8_t *)argv[1];
	q.data.len = strlen(argv[1]);
	q.linearizable = !stale;
	req.op_case = TRANSPORTPB__REQUEST__OP_QUERY;
	req.query = &q;
	rc = client_connect(argv[0], timeout_ms, &c, err, sizeof(err));
	if (rc == 0) {
		rc = client_call(c, &req, &resp, timeout_ms + 2000, err, sizeof(err));
		client_close(c);
	}
	if (rc == 0 && resp->error) {
		snprintf(err, sizeof(err), "get %s: %s", argv[1], resp->error_msg);
		rc = resp->error;
	}
	if (rc == 0)
		printf("%.*s\n", (int)resp->value.len, (const char *)resp->value.data);
	else
		fprintf(stderr, "raftfs kv: %s\n", err);
	if (resp)
		transportpb__response__free_unpacked(resp, NULL);
	return rc == 0 ? 0 : 1;
}

static int cmd_load(int argc, char **argv, unsigned timeout_ms, long count, const char *prefix,
		    size_t size)
{
	char *value = malloc(size + 32);

	client *c = NULL;
	long acked = 0;
	int cur = 0;

	if (argc < 1) {
		fprintf(stderr, "raftfs kv load: want ADDR...\n");
		return 2;
	}
	for (long i = 1; i <= count; i++) {
		char key[128], err[512];
		uint64_t index;
		size_t vl;
		int rc;

		if (!value)
			return 1;
		snprintf(key, sizeof(key), "%s-%ld", prefix, i);
		vl = (size_t)snprintf(value, 32, "%ld", i);
		if (vl < size) {
			memset(value + vl, '.', size - vl);
			value[size] = '\0';
		}
		if (!c) {
			rc = client_connect(argv[cur], timeout_ms, &c, err, sizeof(err));
			if (rc < 0) {
				fprintf(stderr, "raftfs kv load: %s\n", err);
				c = NULL;
				cur = (cur + 1) % argc;
				continue;
			}
		}
		rc = put(c, key, value, timeout_ms, &index, err, sizeof(err));
		if (rc == 0) {
			printf("%s\n", key);
			fflush(stdout);
			acked++;
		} else {
			fprintf(stderr, "raftfs kv load: %s\n", err);
			if (rc > -1000) { /* a connection error, not the node's answer */
				client_close(c);
				c = NULL;
				cur = (cur + 1) % argc;
			}
		}
	}
	client_close(c);
	free(value);
	fprintf(stderr, "raftfs kv load: %ld of %ld puts acknowledged\n", acked, count);
	return acked > 0 ? 0 : 1;
}

int cli_kv_main(int argc, char **argv)
{
	unsigned timeout_ms = 5000;
	const char *prefix = "k";
	long count = 100, size = 0;
	int stale = 0, i;
	const char *sub;

	if (argc < 2 || cli_wants_help(argc, argv)) {
		fputs(usage, argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	sub = argv[1];
	for (i = 2; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--stale"))
			stale = 1;
		else if (!strcmp(argv[i], "--timeout") && i + 1 < argc)
			timeout_ms = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--count") && i + 1 < argc)
			count = strtol(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--prefix") && i + 1 < argc)
			prefix = argv[++i];
		else if (!strcmp(argv[i], "--size") && i + 1 < argc &&
			 (size = atol(argv[i + 1])) >= 0 && size <= (64 << 20))
			i++;
		else {
			fprintf(stderr, "raftfs kv: unknown option %s\n", argv[i]);
			return 2;
		}
	}
	if (!strcmp(sub, "put"))
		return cmd_put(argc - i, argv + i, timeout_ms);
	if (!strcmp(sub, "get"))
		return cmd_get(argc - i, argv + i, timeout_ms, stale);
	if (!strcmp(sub, "load"))
		return cmd_load(argc - i, argv + i, timeout_ms, count, prefix, (size_t)size);
	if (!strcmp(sub, "dump")) {
		char err[512];

		if (argc - i != 1) {
			fprintf(stderr, "raftfs kv dump: want DATA_DIR\n");
			return 2;
		}
		if (kvsm_dump(argv[i], stdout, err, sizeof(err)) < 0) {
			fprintf(stderr, "raftfs kv dump: %s\n", err);
			return 1;
		}
		return 0;
	}
	fprintf(stderr, "raftfs kv: unknown subcommand '%s'\n", sub);
	return 2;
}
