/* fuse_readahead.c — a mount's readahead window, set through its bdi in sysfs. */
#include "fuse_readahead.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fuse_guard.h"

int fuse_readahead_set(const char *mountpoint, unsigned kb)
{
	char path[64], val[16];
	unsigned conn = 0;
	int fd, len, rc = fuse_guard_connection(mountpoint, &conn);

	if (rc < 0)
		return rc;
	/* A FUSE connection's bdi is named 0:<its device minor>. */
	snprintf(path, sizeof(path), "/sys/class/bdi/0:%u/read_ahead_kb", conn);
	len = snprintf(val, sizeof(val), "%u\n", kb);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	rc = write(fd, val, (size_t)len) == len ? 0 : -errno;
	close(fd);
	return rc;
}
