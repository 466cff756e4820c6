/* fuse_readahead.h — how much the kernel reads ahead through a mount: FUSE read requests of
 * max_readahead (1 MiB) instead of the kernel's default 128 KiB. */
#ifndef RAFTFS_FUSE_READAHEAD_H
#define RAFTFS_FUSE_READAHEAD_H

/* The readahead window asked for, KiB: the FUSE layer's max_readahead and
 * max_write (fuse_ops.c), so a sequential read is one request per MiB. */
#define FUSE_READAHEAD_KB 1024u

/* Sets the readahead of the FUSE mount at mountpoint (just mounted) to kb.
 * Why: libfuse cannot raise max_readahead above what the kernel offers at
 * init, the backing device's default (128 KiB), so each MiB read
 * sequentially cost eight requests, each a round trip through a FUSE
 * thread (bench/fs/README.md, "Session 7: sequential reads"); the
 * connection's bdi takes a larger window from root through sysfs. 0 or a
 * negative errno (the mount works with the default; the caller logs it). */
int fuse_readahead_set(const char *mountpoint, unsigned kb);

#endif
