/* cli_node.c — raftfs node: runs one node in the foreground until SIGTERM
 * or SIGINT. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "config.h"
#include "fuse_mount.h"
#include "kvsm.h"
#include "node.h"
#include "runtime_log.h"
#include "svc_notify.h"
#include "svc_start.h"

static const char usage[] =
	"NAME\n"
	"    raftfs node - run one raftfs node in the foreground\n"
	"\n"
	"SYNOPSIS\n"
	"    raftfs node --config FILE [flags]\n"
	"\n"
	"DESCRIPTION\n"
	"    Starts the node described by FILE (an INI file, see below); flags\n"
	"    override the file. The node listens for its peers and for clients\n"
	"    (raftfs status, raftfs kv) on its listen address. SIGTERM or SIGINT\n"
	"    stops it cleanly. Log lines go to stderr.\n"
	"\n"
	"OPTIONS\n"
	"    --config FILE           the configuration file\n"
	"    --id N                  [node] id: this node's id (nonzero)\n"
	"    --cluster NAME          [node] cluster: peers of another cluster are refused\n"
	"    --listen HOST:PORT      [node] listen (default: this node's [peers] address)\n"
	"    --peer ID=HOST:PORT     [peers]: a voter; repeat for each, this node\n"
	"                            included (replaces the file's list)\n"
	"    --join                  [node] join = true: join a running cluster (below)\n"
	"    --data-dir DIR          [node] data_dir: Raft log (DIR/raft) and state\n"
	"    --mount DIR             [node] mount: where the filesystem is mounted\n"
	"    --state-machine NAME    [node] state_machine: kv (the test state\n"
	"                            machine; default) or fs (the filesystem,\n"
	"                            mounted at [node] mount; mount options from\n"
	"                            the environment: RAFTFS_MOUNT_OPTS=linearizable,...)\n"
	"    --proposal-timeout-ms N [node] proposal_timeout_ms (default 5000)\n"
	"    --tick-ms N             [raft] tick_ms (default 10)\n"
	"    --election-ticks N      [raft] election_ticks (default 10: the election\n"
	"                            timeout is 10..20 ticks)\n"
	"    --heartbeat-ticks N     [raft] heartbeat_ticks (default 3)\n"
	"    --snapshot-entries N    [raft] snapshot_entries (default 10000)\n"
	"    --log TOPICS            [log] topics: NET,CLNT,APPL,PERS or all; the\n"
	"                            core's topics come from RAFTFS_DEBUG\n"
	"\n"
	"FILE\n"
	"    [node]\n"
	"    id = 1\n"
	"    cluster = demo\n"
	"    data_dir = /var/lib/raftfs\n"
	"    [peers]\n"
	"    1 = 127.0.0.1:7001\n"
	"    2 = 127.0.0.1:7002\n"
	"    3 = 127.0.0.1:7003\n"
	"    [raft]\n"
	"    tick_ms = 10\n"
	"    Also: [raft] max_msg_bytes, max_inflight, pre_vote, check_quorum,\n"
	"    lease_reads (ReadIndex without a heartbeat round; default true),\n"
	"    snapshot_bytes, snapshot_trailing, snapshot_amortize (a snapshot due\n"
	"    by entries waits until the log holds 1/N of the last image; 8),\n"
	"    unsaved_bytes, unsaved_entries (a leader's entries not yet on its own\n"
	"    disk: beyond, proposals wait; 64 MiB, 65536; 0: no bound),\n"
	"    admit_bytes, admit_entry_bytes (a leader lets entries of 64 KiB or more\n"
	"    into its log only while those uncommitted are under 4 MiB; the rest\n"
	"    wait per node, smaller ones pass: 0 turns it off);\n"
	"    [transport] max_frame_bytes, send_queue_bytes. Unknown keys and bad\n"
	"    values are errors naming the file, line and key.\n"
	"    [node] join = true: the node joins a running cluster. Its [peers] list\n"
	"    the members now and this node; it is not a member (and never\n"
	"    campaigns) until `raftfs member add ID HOST:PORT --via ADDR` makes it\n"
	"    a learner, then a voter once caught up (raftfs local add does all\n"
	"    of it). [peers] only bootstrap a node whose store holds no membership\n"
	"    yet: afterwards the members and their addresses come from the store,\n"
	"    kept up to date by raftfs member (the file is not rewritten). Two\n"
	"    [peers] at one address are an error.\n"
	"    [fs] write_behind = true|false: the mount answers changes of the\n"
	"    directories delegated to this node (those it made) as soon as they\n"
	"    are proposed; close, fsync and fsyncdir wait for them and report\n"
	"    their first error (default true, or $RAFTFS_WRITE_BEHIND).\n"
	"    [fs] close = commit|behind: with behind, close of a file created in\n"
	"    such a directory returns once its commands are proposed, not\n"
	"    committed (a failure shows at the next close or fsync; fsync is the\n"
	"    durability point); other mounts recall the directory before they\n"
	"    look into it (the mode travels with the directory's delegation, so\n"
	"    nodes may differ). Only a file whose commands since its creation\n"
	"    went out in one log entry closes early (the others then hold all of\n"
	"    it or none); every other close waits as with commit, which also\n"
	"    makes close durable. Default behind, or $RAFTFS_CLOSE.\n"
	"\n"
	"EXIT STATUS\n"
	"    0 after a clean stop; 1 if the node could not start or failed; 2 for\n"
	"    bad usage or configuration.\n";

/* Flag -> config key (section, key). */
static const struct {
	const char *flag, *section, *key;
} flag_keys[] = {
	{"id", "node", "id"},
	{"cluster", "node", "cluster"},
	{"listen", "node", "listen"},
	{"data-dir", "node", "data_dir"},
	{"mount", "node", "mount"},
	{"state-machine", "node", "state_machine"},
	{"proposal-timeout-ms", "node", "proposal_timeout_ms"},
	{"tick-ms", "raft", "tick_ms"},
	{"election-ticks", "raft", "election_ticks"},
	{"heartbeat-ticks", "raft", "heartbeat_ticks"},
	{"snapshot-entries", "raft", "snapshot_entries"},
	{"log", "log", "topics"},
};

#define N_FLAGS (sizeof(flag_keys) / sizeof(flag_keys[0]))

/* Reads the config file, then applies the flags over it. */
static int parse(int argc, char **argv, node_config *cfg, char *err, size_t errlen)
{
	struct option opts[N_FLAGS + 4];
	const char *config = NULL;
	bool peers_reset = false;
	int c, idx;

	for (size_t i = 0; i < N_FLAGS; i++)
		opts[i] = (struct option){flag_keys[i].flag, required_argument, NULL, 0};
	opts[N_FLAGS] = (struct option){"config", required_argument, NULL, 0};
	opts[N_FLAGS + 1] = (struct option){"peer", required_argument, NULL, 0};
	opts[N_FLAGS + 2] = (struct option){"join", no_argument, NULL, 0};
	opts[N_FLAGS + 3] = (struct option){NULL, 0, NULL, 0};

	config_defaults(cfg);
	/* First pass: the file, so that flags override it whatever the order. */
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, &idx)) != -1)
		if (c == 0 && idx == (int)N_FLAGS)
			config = optarg;
	if (config && config_load_file(cfg, config, err, errlen) < 0)
		return -EINVAL;
	opterr = 1;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, &idx)) != -1) {
		char msg[400];

		if (c != 0) {
			snprintf(err, errlen, "unknown option %s (see raftfs node --help)",
				 argv[optind - 1]);
			return -EINVAL;
		}
		if (idx == (int)N_FLAGS)
			continue;
		if (idx == (int)N_FLAGS + 2) {
			if (config_set(cfg, "node", "join", "true", msg, sizeof(msg)) < 0) {
				snprintf(err, errlen, "--join: %s", msg);
				return -EINVAL;
			}
			continue;
		}
		if (idx == (int)N_FLAGS + 1) {
			char *eq = strchr(optarg, '=');

			if (!peers_reset) {
				cfg->n_peers = 0;
				peers_reset = true;
			}
			if (!eq) {
				snprintf(err, errlen, "--peer %s: want ID=HOST:PORT", optarg);
				return -EINVAL;
			}
			*eq = '\0';
			if (config_set(cfg, "peers", optarg, eq + 1, msg, sizeof(msg)) < 0) {
				snprintf(err, errlen, "--peer: %s", msg);
				return -EINVAL;
			}
			continue;
		}
		if (config_set(cfg, flag_keys[idx].section, flag_keys[idx].key, optarg, msg,
			       sizeof(msg)) < 0) {
			snprintf(err, errlen, "--%s: %s", flag_keys[idx].flag, msg);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		snprintf(err, errlen, "unexpected argument '%s'", argv[optind]);
		return -EINVAL;
	}
	if (config_validate(cfg, err, errlen) < 0)
		return -EINVAL;
	return 0;
}

int cli_node_main(int argc, char **argv)
{
	struct timespec poll_ts = {0, 100 * 1000 * 1000};
	node_config cfg;
	char err[600];
	sigset_t sigs;
	node_sm sm;
	kvsm *kv = NULL;
	node *n = NULL;
	uint64_t saved_commit;
	int status = 0, rc;

	if (cli_wants_help(argc, argv)) {
		fputs(usage, stdout);
		return 0;
	}
	if (parse(argc, argv, &cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "raftfs node: %s\n", err);
		return 2;
	}
	rlog_init(cfg.id, cfg.log_topics);
	if (!strcmp(cfg.state_machine, "fs"))
		return fuse_run_node(&cfg, getenv("RAFTFS_MOUNT_OPTS"));
	/* Signals are taken synchronously by this thread; every other thread
	 * inherits the blocked mask — RocksDB's too, started by node_new: a
	 * SIGTERM delivered to one of those (the second one local down sends,
	 * while this thread is in node_stop) ended the node at once. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	if (kvsm_open(cfg.data_dir, &kv, err, sizeof(err)) < 0) {
		fprintf(stderr, "raftfs node: test state machine: %s\n", err);
		return 1;
	}
	kvsm_iface(kv, &sm);
	if (node_new(&cfg, &sm, &n, err, sizeof(err)) < 0) {
		fprintf(stderr, "raftfs node: %s\n", err);
		kvsm_close(kv);
		return 1;
	}
	saved_commit = node_saved_commit(n);
	if (node_launch(n) < 0) {
		fprintf(stderr, "raftfs node: could not start (see the log above)\n");
		node_free(n);
		kvsm_close(kv);
		return 1;
	}
	/* Ready once it applied again what it knew to be committed, as a
	 * filesystem node is (fs/svc_start.h). */
	rc = svc_start_wait_applied(NULL, n, saved_commit, &sigs);
	if (rc > 0)
		rlog_write(RLOG_INFO, "%s during the log replay: stopping", strsignal(rc));
	else
		svc_notify("READY=1\nSTATUS=serving"); /* Type=notify (packaging/raftfs.service) */
	while (rc <= 0) { /* a signal during the replay skips it */
		int sig = sigtimedwait(&sigs, NULL, &poll_ts);

		if (sig == SIGTERM || sig == SIGINT) {
			rlog_write(RLOG_INFO, "%s: stopping", strsignal(sig));
			break;
		}
		if (node_fault(n)) {
			rlog_write(RLOG_ERR, "node failed: stopping");
			status = 1;
			break;
		}
	}
	svc_notify("STOPPING=1");
	node_stop(n);
	node_free(n);
	kvsm_close(kv);
	rlog_write(RLOG_INFO, "stopped");
	return status;
}
