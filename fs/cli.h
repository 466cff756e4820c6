/* cli.h — the subcommands of the raftfs program (fs/main.c dispatches). Each
 * takes the arguments after its name (argv[0] is the subcommand name) and
 * returns the process exit status. */
#ifndef RAFTFS_CLI_H
#define RAFTFS_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "transport.pb-c.h"

/* raftfs node --config FILE [flags]: runs one node in the foreground. */
int cli_node_main(int argc, char **argv);

/* raftfs status [--json] ADDR...: health and replication state of nodes. */
int cli_status_main(int argc, char **argv);

/* raftfs local up|down|kill|stop|start|status|addr ...: a cluster of
 * node processes on loopback, for trying things out and for tests. */
int cli_local_main(int argc, char **argv);

/* raftfs kv put|get|load|dump ...: client of the replicated test state
 * machine (consensus/kvsm.h). */
int cli_kv_main(int argc, char **argv);

/* raftfs verify [--wait S] DIR | MOUNT...: compares the mounts of a
 * cluster (fs/cli_verify.c). */
int cli_verify_main(int argc, char **argv);

/* Asks the node at addr for its status within timeout_ms: 0 with *ns (free
 * with transportpb__node_status__free_unpacked), or a negative errno with
 * the reason in err. */
int cli_fetch_status(const char *addr, unsigned timeout_ms, Transportpb__NodeStatus **ns,
		     char *err, size_t errlen);

/* raftfs member list|add|remove|promote ... --via ADDR: the membership of
 * a running cluster (fs/cli_member.c). */
int cli_member_main(int argc, char **argv);

/* One membership request (op: Transportpb__MemberRequest__Op) to the node
 * at via, following "not the leader" answers to the leader, within
 * timeout_ms: 0 with the node's answer in *out (its error field may be
 * set; free with transportpb__response__free_unpacked), or a negative
 * errno with the reason in err. */
int cli_member_call(const char *via, int op, uint64_t id, const char *addr, int learner,
		    unsigned timeout_ms, Transportpb__Response **out, char *err, size_t errlen);

/* raftfs config new|check ...: writes a node's configuration file for a
 * cluster of machines, or checks one (fs/cli_config.c). */
int cli_config_main(int argc, char **argv);

/* raftfs version: the transport protocol and store format versions of
 * this build (fs/cli_version.c). */
int cli_version_main(int argc, char **argv);

/* True if argv holds -h or --help. */
int cli_wants_help(int argc, char **argv);

#endif
