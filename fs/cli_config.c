/* cli_config.c — raftfs config: writes a node's configuration file for a
 * cluster of machines, and checks one the way raftfs node reads it. */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "config.h"

static const char usage[] =
	"NAME\n"
	"    raftfs config - write or check a node's configuration file\n"
	"\n"
	"SYNOPSIS\n"
	"    raftfs config new --id N --peers ID=HOST:PORT,... [--cluster NAME]\n"
	"                      [--data-dir DIR] [--mount DIR] [--listen HOST:PORT]\n"
	"                      [--close behind|commit] [--join]\n"
	"    raftfs config check [--mkdir] FILE\n"
	"\n"
	"DESCRIPTION\n"
	"    new prints, on stdout, the configuration of node N of a cluster\n"
	"    whose voters are --peers (every member, node N included; the same\n"
	"    list on every machine), every line commented. Run it once per\n"
	"    machine with the same --peers and that machine's --id, and write\n"
	"    the output to /etc/raftfs/raftfs.ini there. Defaults: --cluster\n"
	"    raftfs, --data-dir /var/lib/raftfs, --mount /mnt/raftfs, --close\n"
	"    behind, listening on node N's own --peers address. --join makes a\n"
	"    node that joins a running cluster (raftfs member add; its --peers:\n"
	"    the members now and itself).\n"
	"\n"
	"    check reads FILE exactly as raftfs node --config FILE does and\n"
	"    prints what it says (node, cluster, listen address, peers, data\n"
	"    directory, mount point, close mode). --mkdir also creates the data\n"
	"    directory (mode 0700) and the mount point (0755) if missing; the\n"
	"    service unit runs it before every start.\n"
	"\n"
	"EXIT STATUS\n"
	"    0 if the configuration is valid (and the directories exist or were\n"
	"    made); 1 if a directory could not be made; 2 for bad usage or a bad\n"
	"    configuration (the message names the file, line and key).\n";

static const char default_data_dir[] = "/var/lib/raftfs";
static const char default_mount[] = "/mnt/raftfs";

/* Sets a key the way a file line would, naming the flag that gave it. */
static int set_from_flag(node_config *cfg, const char *flag, const char *section, const char *key,
			 const char *value)
{
	char msg[400];

	if (config_set(cfg, section, key, value, msg, sizeof(msg)) < 0) {
		fprintf(stderr, "raftfs config: --%s: %s\n", flag, msg);
		return -EINVAL;
	}
	return 0;
}

/* --peers 1=a:7001,2=b:7001: each item as a [peers] line. */
static int set_peers(node_config *cfg, const char *list)
{
	char *copy = strdup(list), *save = NULL, *item;
	int rc = 0;

	if (!copy)
		return -ENOMEM;
	for (item = strtok_r(copy, ",", &save); item && rc == 0;
	     item = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(item, '=');

		if (!eq) {
			fprintf(stderr, "raftfs config: --peers: '%s' is not ID=HOST:PORT\n",
				item);
			rc = -EINVAL;
			break;
		}
		*eq = '\0';
		if (config_peer_find(cfg, strtoull(item, NULL, 10))) {
			fprintf(stderr, "raftfs config: --peers: node %s is listed twice\n", item);
			rc = -EINVAL;
			break;
		}
		rc = set_from_flag(cfg, "peers", "peers", item, eq + 1);
	}
	free(copy);
	return rc;
}

/* The file raftfs config new prints: the values given, then every knob a
 * user might touch commented out at its default, so the file documents
 * itself and a later edit needs no manual. */
static void print_config(const node_config *cfg, const node_config *def, bool listen_given)
{
	printf("# raftfs node configuration: node %" PRIu64 " of cluster '%s'.\n"
	       "# Read by raftfs node --config FILE (the service: /etc/raftfs/raftfs.ini);\n"
	       "# check it with raftfs config check FILE. Every machine's file is the same\n"
	       "# but for [node] id. A line that starts with '#' is a comment; a key\n"
	       "# commented out takes the default shown. Unknown keys are errors.\n"
	       "\n"
	       "[node]\n"
	       "# This node's id: its line in [peers]. 1..65535, and never given to\n"
	       "# another machine later (a replacement gets a new id: raftfs member).\n"
	       "id = %" PRIu64 "\n"
	       "# Peers and clients of another cluster name are refused: a guard\n"
	       "# against wiring mistakes, not a password (packaging/README.md, Security).\n"
	       "cluster = %s\n",
	       cfg->id, cfg->cluster, cfg->id, cfg->cluster);
	printf("# Where this node accepts its peers and raftfs status/member/snapshot\n"
	       "# (one TCP port). Default: its own address in [peers]; 0.0.0.0:PORT\n"
	       "# listens on every interface.\n");
	if (listen_given)
		printf("listen = %s:%u\n", cfg->listen_host, cfg->listen_port);
	else
		printf("# listen = %s:%u\n", config_peer_find(cfg, cfg->id)->host,
		       config_peer_find(cfg, cfg->id)->port);
	printf("# The Raft log, snapshots and a plain copy of the files (DATA/tree,\n"
	       "# readable while the node is down). A local disk; never shared.\n"
	       "data_dir = %s\n"
	       "# Where the filesystem is mounted on this machine (made by the\n"
	       "# service's raftfs config check --mkdir if missing).\n"
	       "mount = %s\n"
	       "# fs: the filesystem. (kv is a test state machine without a mount.)\n"
	       "state_machine = %s\n"
	       "# A change that finds no quorum fails with ETIMEDOUT after this long.\n"
	       "proposal_timeout_ms = %u\n",
	       cfg->data_dir, cfg->mount, cfg->state_machine, cfg->proposal_timeout_ms);
	if (cfg->join)
		printf("# This node joins a running cluster: it waits, without campaigning,\n"
		       "# until raftfs member add makes it a member.\n"
		       "join = true\n");
	printf("\n[peers]\n"
	       "# Every voting member as id = host:port, this node included; the same\n"
	       "# list on every machine. Read only at a node's first start: after that\n"
	       "# the members come from the replicated log (raftfs member add/remove).\n");
	for (size_t i = 0; i < cfg->n_peers; i++)
		printf("%" PRIu64 " = %s:%u\n", cfg->peers[i].id, cfg->peers[i].host,
		       cfg->peers[i].port);
	printf("\n[fs]\n"
	       "# When close() returns. behind: once the new file's commands are\n"
	       "# proposed (fast for many small files; if this machine dies, a file\n"
	       "# closed in the last moments is whole or absent on the others, never\n"
	       "# torn; fsync() is the durability point). commit: once committed on a\n"
	       "# quorum (close means durable, as on NFS; ~2.5x slower per small file).\n"
	       "close = %s\n"
	       "# Changes in directories this node made are answered once proposed\n"
	       "# (close, fsync and fsyncdir wait for them and report their errors).\n"
	       "# write_behind = %s\n",
	       cfg->close_behind ? "behind" : "commit", def->write_behind ? "true" : "false");
	printf("\n[raft]\n"
	       "# Snapshot the state (and cut the log) every this many entries...\n"
	       "# snapshot_entries = %" PRIu64 "\n"
	       "# ...or once this many bytes of entries were applied since the last one.\n"
	       "# snapshot_bytes = %" PRIu64 "\n"
	       "# Entries kept behind a snapshot so a node that was down briefly\n"
	       "# catches up from the log, not a whole snapshot (default: half of\n"
	       "# snapshot_entries, at most snapshot_bytes / 2 of data).\n"
	       "# snapshot_trailing = %" PRIu64 "\n"
	       "# One tick in ms; a follower that hears no leader for election_ticks\n"
	       "# to twice that many ticks starts an election. Raise both on a slow or\n"
	       "# distant network (every node the same).\n"
	       "# tick_ms = %u\n"
	       "# election_ticks = %d\n"
	       "# A leader sends each follower a heartbeat every this many ticks\n"
	       "# (below election_ticks; an idle node wakes for each one). Unset, it is\n"
	       "# %d, or election_ticks - 1 when that is smaller.\n"
	       "# heartbeat_ticks = %d\n"
	       "# A leader's entries not yet on its own disk, at most (bytes, entries).\n"
	       "# unsaved_bytes = %" PRIu64 "\n"
	       "# unsaved_entries = %" PRIu64 "\n",
	       def->snapshot_entries, def->snapshot_bytes, def->snapshot_entries / 2,
	       def->tick_ms, def->election_ticks, def->heartbeat_ticks, def->heartbeat_ticks,
	       def->unsaved_bytes,
	       def->unsaved_entries);
	printf("\n[log]\n"
	       "# Extra log topics on stderr (the journal): NET,CLNT,APPL,PERS or all.\n"
	       "# topics = NET\n");
}

static int cmd_new(int argc, char **argv)
{
	node_config cfg, def;
	bool listen_given = false, have_peers = false;
	char err[600];

	config_defaults(&def);
	config_defaults(&cfg);
	snprintf(cfg.state_machine, sizeof(cfg.state_machine), "fs");
	snprintf(cfg.data_dir, sizeof(cfg.data_dir), "%s", default_data_dir);
	snprintf(cfg.mount, sizeof(cfg.mount), "%s", default_mount);
	cfg.close_behind = true; /* the file says it; the environment does not choose */
	for (int i = 1; i < argc; i++) {
		static const struct {
			const char *flag, *section, *key;
		} flags[] = {
		    {"id", "node", "id"},		{"cluster", "node", "cluster"},
		    {"data-dir", "node", "data_dir"}, {"mount", "node", "mount"},
		    {"listen", "node", "listen"},	{"close", "fs", "close"},
		};
		const char *name = argv[i] + 2;
		size_t f;

		if (!strcmp(argv[i], "--join")) {
			cfg.join = true;
			continue;
		}
		if (strncmp(argv[i], "--", 2) || i + 1 == argc) {
			fprintf(stderr, "raftfs config new: unexpected argument '%s'\n\n%s",
				argv[i], usage);
			return 2;
		}
		if (!strcmp(name, "peers")) {
			if (set_peers(&cfg, argv[++i]) < 0)
				return 2;
			have_peers = true;
			continue;
		}
		for (f = 0; f < sizeof(flags) / sizeof(flags[0]); f++)
			if (!strcmp(name, flags[f].flag))
				break;
		if (f == sizeof(flags) / sizeof(flags[0])) {
			fprintf(stderr, "raftfs config new: unknown option %s\n\n%s", argv[i],
				usage);
			return 2;
		}
		if (set_from_flag(&cfg, flags[f].flag, flags[f].section, flags[f].key,
				  argv[++i]) < 0)
			return 2;
		listen_given |= !strcmp(name, "listen");
	}
	if (!have_peers) {
		fprintf(stderr, "raftfs config new: --peers is required (every member, "
				"ID=HOST:PORT,...)\n");
		return 2;
	}
	if (config_validate(&cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "raftfs config new: %s\n", err);
		return 2;
	}
	print_config(&cfg, &def, listen_given);
	return fflush(stdout) == 0 ? 0 : 1;
}

/* mkdir -p path with mode for the last component (parents 0755). A dead
 * FUSE mount left by a killed node (ENOTCONN) counts as present: the node
 * detaches it when it mounts. */
static int make_dirs(const char *path, mode_t mode)
{
	char buf[PATH_MAX];
	struct stat st;

	if (stat(path, &st) == 0)
		return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
	if (errno == ENOTCONN)
		return 0;
	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return -ENAMETOOLONG;
	for (char *s = buf + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return -errno;
		*s = '/';
	}
	if (mkdir(buf, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static int cmd_check(int argc, char **argv)
{
	const char *file = NULL;
	bool mk = false;
	node_config cfg;
	char err[600];
	int rc;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--mkdir"))
			mk = true;
		else if (argv[i][0] != '-' && !file)
			file = argv[i];
		else {
			fprintf(stderr, "raftfs config check: unexpected argument '%s'\n\n%s",
				argv[i], usage);
			return 2;
		}
	}
	if (!file) {
		fprintf(stderr, "raftfs config check: no file given\n\n%s", usage);
		return 2;
	}
	config_defaults(&cfg);
	if (config_load_file(&cfg, file, err, sizeof(err)) < 0 ||
	    config_validate(&cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "raftfs config check: %s\n", err);
		return 2;
	}
	printf("%s: node %" PRIu64 " of cluster '%s', listens on %s:%u, state machine %s\n", file,
	       cfg.id, cfg.cluster, cfg.listen_host, cfg.listen_port, cfg.state_machine);
	for (size_t i = 0; i < cfg.n_peers; i++)
		printf("  peer %" PRIu64 " at %s:%u\n", cfg.peers[i].id, cfg.peers[i].host,
		       cfg.peers[i].port);
	printf("  data %s, mount %s, close %s%s\n", cfg.data_dir, cfg.mount[0] ? cfg.mount : "(none)",
	       cfg.close_behind ? "behind" : "commit", cfg.join ? ", joining" : "");
	/* raftfs node's default is the test state machine: a hand-written
	 * file that forgot the line starts a node that never mounts. */
	if (cfg.mount[0] && strcmp(cfg.state_machine, "fs"))
		fprintf(stderr, "raftfs config check: %s: warning: mount = %s is ignored: "
				"state_machine is %s (want state_machine = fs)\n",
			file, cfg.mount, cfg.state_machine);
	if (!mk)
		return 0;
	rc = make_dirs(cfg.data_dir, 0700);
	if (rc < 0) {
		fprintf(stderr, "raftfs config check: data directory %s: %s\n", cfg.data_dir,
			strerror(-rc));
		return 1;
	}
	rc = cfg.mount[0] ? make_dirs(cfg.mount, 0755) : 0;
	if (rc < 0) {
		fprintf(stderr, "raftfs config check: mount point %s: %s\n", cfg.mount,
			strerror(-rc));
		return 1;
	}
	return 0;
}

int cli_config_main(int argc, char **argv)
{
	if (argc < 2 || cli_wants_help(argc, argv)) {
		fputs(usage, argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (!strcmp(argv[1], "new"))
		return cmd_new(argc - 1, argv + 1);
	if (!strcmp(argv[1], "check"))
		return cmd_check(argc - 1, argv + 1);
	fprintf(stderr, "raftfs config: unknown command '%s'\n\n%s", argv[1], usage);
	return 2;
}
