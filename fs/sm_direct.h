// sm_direct.h — whether the apply's direct writes (apply.c, exec_write) can
// go around the page cache on the filesystem of a node's data directory.
#ifndef RAFTFS_SM_DIRECT_H
#define RAFTFS_SM_DIRECT_H

#include <stdbool.h>

// Writes a few pages with O_DIRECT to an unnamed file (O_TMPFILE) in
// directory dir and reads their residency back (mincore): true only when
// the write was taken and left them uncached, as on ext4 or xfs. False
// where O_DIRECT is refused (at open or at the write: EINVAL), where it is
// taken but the pages are cached all the same (tmpfs since Linux 6.6: a
// direct write there costs the aligned copy and the same fill), and where
// the probe itself fails (why is in *why, a static string).
bool sm_direct_bypasses_cache(const char *dir, const char **why);

#endif
