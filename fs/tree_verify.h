/* tree_verify.h — the nodes' data dirs of a local cluster compared at one applied index. */
#ifndef RAFTFS_FS_TREE_VERIFY_H
#define RAFTFS_FS_TREE_VERIFY_H

#include <stdio.h>

/* How many difference lines `raftfs verify` keeps for printing: per pair
 * of mounts (cli_verify.c), in all for --trees (tree_verify.c). More are
 * counted, not kept: trees that differ everywhere would otherwise hold a
 * line per object in memory. */
#define VERIFY_MAX_LINES 2000

/* Compares DIR/node<i>/data of every node of the `raftfs local` cluster in
 * dir with node 1's (tree_compare, TREE_CMP_DATA: the tree, the hard-link
 * index DATA/ids with its orphans and who released them).
 *
 * The trees change while nodes apply, so a comparison counts only if it was
 * made at one index N: every node reported applied == commit == N (nothing
 * committed left to apply) before its tree was read and again after. A
 * command applied or being applied in between raises that node's commit
 * index (an entry is applied only once committed, and both only grow), so
 * an unchanged pair proves the tree was not touched. Until such a round
 * succeeds, or wait_s seconds pass, it tries again (every 50 ms).
 *
 * Differences are printed to out, one per line ("node1 vs node2: msg"),
 * then a summary line. Returns 0 if identical, 1 if they differ or no
 * settled round was found in time (the reason printed), -1 for a cluster
 * that cannot be read (the reason on stderr). */
int tree_verify_nodes(const char *dir, double wait_s, FILE *out);

#endif
