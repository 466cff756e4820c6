// Compares two filesystem trees as a user sees them: for tests and `raftfs verify`.
#ifndef RAFTFS_FS_TREE_COMPARE_H
#define RAFTFS_FS_TREE_COMPARE_H

// What the two roots are.
enum tree_cmp_kind {
	// Two state machine data dirs (DATA): compares DATA/tree using the ids and
	// ctimes kept in xattrs, the user's nlink (index link not counted), and
	// the orphans (files with no name left, awaiting Release) by id.
	TREE_CMP_DATA,
	// Two mounts (or any plain directories): st_ino, st_ctim and st_nlink as
	// reported, every xattr listed.
	TREE_CMP_MOUNT,
};

// Called once per difference with a line such as "a/b: mode 100644 vs 100600".
typedef void (*tree_diff_fn)(void *arg, const char *msg);

// The same for tree_compare_each: other (1 ... n-1) is the tree that differs
// from the first.
typedef void (*tree_diffs_fn)(void *arg, int other, const char *msg);

// Walks both trees and reports every difference in names, types, ids, modes,
// owners, sizes (not of directories: their local size depends on history),
// mtimes, ctimes, link counts, device numbers, symlink targets, xattrs and
// content. atime is not compared (not replicated).
// Objects are reached by descriptors relative to their parent, so paths
// longer than PATH_MAX are compared too; the walk holds two descriptors per
// directory level. The roots a and b (and a data dir) may be symlinks;
// nothing below them is followed. Messages name objects by their path
// relative to the roots, in full.
// Returns the number of differences (0: identical) or a negative errno if
// anything could not be read or compared (reported through fn too, as a
// difference: nothing is ever skipped silently).
int tree_compare(const char *a, const char *b, enum tree_cmp_kind kind, tree_diff_fn fn, void *arg);

// Compares roots[0] with each of roots[1 ... n-1] as tree_compare does, in
// one walk that reads every object of roots[0] once (not once per other
// tree): the differences of each pair, in the order tree_compare gives
// them, interleaved between pairs. The walk holds n descriptors per
// directory level. Returns the number of differences of all pairs, or a
// negative errno if anything could not be read or compared.
int tree_compare_each(const char *const *roots, int n, enum tree_cmp_kind kind, tree_diffs_fn fn,
		      void *arg);

// Whether roots[0] differs from any of roots[1 ... n-1], as
// tree_compare_each would find, but stopping at the first difference: 0
// if identical (the whole trees were walked), 1 if they differ, or a
// negative errno if something could not be read. For a caller waiting for
// the trees to converge, whose rounds before the last need no list.
int tree_differ(const char *const *roots, int n, enum tree_cmp_kind kind);

#endif
