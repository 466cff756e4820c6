/* main.c — the raftfs program: dispatches to its subcommands (fs/cli_*.c). */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "snap_cli.h"

static const char usage[] =
    "NAME\n"
    "    raftfs - a replicated POSIX filesystem on Raft\n"
    "\n"
    "SYNOPSIS\n"
    "    raftfs node --config FILE [flags]     run one node in the foreground\n"
    "    raftfs config new|check ...           write or check a node's config file\n"
    "    raftfs version                        protocol and store versions (upgrades)\n"
    "    raftfs status [--json] ADDR...        show the state of nodes\n"
    "    raftfs local create N DIR | up N DIR | down DIR | kill DIR ID |\n"
    "                 stop DIR ID |\n"
    "                 start DIR ID | status DIR | addr DIR ID |\n"
    "                 add DIR | remove DIR ID\n"
    "                                          an N-node cluster on loopback\n"
    "    raftfs kv put|get|load|dump ...       client of the test state machine\n"
    "    raftfs verify [--wait S] DIR|MOUNT... compare the mounts of a cluster\n"
    "    raftfs snapshot [--timeout MS] ADDR   snapshot a node now, compact its log\n"
    "    raftfs member list|add|remove|promote ... --via ADDR\n"
    "                                          change the members of a running cluster\n"
    "\n"
    "    Every subcommand explains itself with --help.\n";

int cli_wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
			return 1;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(int, char **);
	} cmds[] = {
	    {"node", cli_node_main}, {"status", cli_status_main}, {"local", cli_local_main},
	    {"kv", cli_kv_main},     {"verify", cli_verify_main},
	    {"snapshot", cli_snapshot_main}, {"member", cli_member_main},
	    {"config", cli_config_main}, {"version", cli_version_main},
	};

	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") ||
	    !strcmp(argv[1], "help")) {
		fputs(usage, argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (!strcmp(argv[1], cmds[i].name))
			return cmds[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "raftfs: unknown subcommand '%s'\n\n%s", argv[1], usage);
	return 2;
}
