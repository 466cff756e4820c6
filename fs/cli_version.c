/* cli_version.c — raftfs version: the versions that decide whether two
 * builds can run in one cluster and whether a build opens a data directory
 * (packaging/README.md, "Upgrading"). */
#include <stdio.h>

#include "cli.h"
#include "store.h"
#include "transport.h"

static const char usage[] =
	"NAME\n"
	"    raftfs version - the protocol and store versions of this build\n"
	"\n"
	"SYNOPSIS\n"
	"    raftfs version\n"
	"\n"
	"DESCRIPTION\n"
	"    Prints the transport protocol version (nodes of different protocol\n"
	"    versions refuse each other at the handshake: such an upgrade stops\n"
	"    every node, then starts them all on the new build) and the store\n"
	"    format version (a data directory written in another format is\n"
	"    refused at start). Builds with the same two numbers run together\n"
	"    (the protocol version is bumped whenever mixed nodes could\n"
	"    diverge), so an upgrade between them may go one node at a time.\n";

int cli_version_main(int argc, char **argv)
{
	if (cli_wants_help(argc, argv)) {
		fputs(usage, stdout);
		return 0;
	}
	if (argc > 1) {
		fprintf(stderr, "raftfs version: unexpected argument '%s'\n\n%s", argv[1], usage);
		return 2;
	}
	printf("transport protocol %d\nstore format %d\n", TRANSPORT_VERSION, STORE_FORMAT_VERSION);
	return 0;
}
