// sm_id_known.c — DATA/sm/ids_known: the id counter is past every id this node handed out before.
#include "sm_id_known.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "sm_impl.h"

// By path, not by sm->sm_fd: an install swaps sm/ (and that fd) on the
// apply thread while a create asks here.
static void known_path(const struct sm *sm, char *path, size_t size)
{
	snprintf(path, size, "%s/sm/ids_known", sm->data_dir);
}

bool sm_ids_known(struct sm *sm)
{
	if (atomic_load(&sm->ids_known))
		return true;
	// An install swaps sm/ for a new directory: the file may be gone from
	// it. Then only this process knows, and the next start checks again
	// (one barrier more), which is safe.
	char path[PATH_MAX];

	known_path(sm, path, sizeof(path));
	if (access(path, F_OK) != 0)
		return false;
	atomic_store(&sm->ids_known, true);
	return true;
}

int sm_ids_mark_known(struct sm *sm)
{
	char path[PATH_MAX], dir[PATH_MAX];
	int fd, dfd = -1, rc = 0;

	known_path(sm, path, sizeof(path));
	snprintf(dir, sizeof(dir), "%s/sm", sm->data_dir);
	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd >= 0)
		dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	// What it vouches for is durable already: every raise of the counter
	// while catching up reserved it in next_id, fsynced, before the apply
	// went on. Synced all the same (once per data directory), so that a
	// power loss does not cost the next start a barrier.
	if (fd < 0 || dfd < 0 || fsync(fd) || fsync(dfd))
		rc = -errno;
	if (fd >= 0)
		close(fd);
	if (dfd >= 0)
		close(dfd);
	// Known for this process whatever the outcome: the record only
	// spares the next start its barrier (a full disk costs it one).
	atomic_store(&sm->ids_known, true);
	if (rc)
		fprintf(stderr, "sm: record %s: %s (the next start waits for a barrier again)\n",
			path, strerror(-rc));
	return rc;
}
