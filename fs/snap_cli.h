/* snap_cli.h — the `raftfs snapshot` subcommand (fs/main.c dispatches). */
#ifndef RAFTFS_FS_SNAP_CLI_H
#define RAFTFS_FS_SNAP_CLI_H

/* raftfs snapshot [--timeout MS] ADDR: has the node at ADDR snapshot its
 * state machine now and compact its log; waits until the snapshot is
 * stored and prints its index and size. Returns the exit status. */
int cli_snapshot_main(int argc, char **argv);

#endif
