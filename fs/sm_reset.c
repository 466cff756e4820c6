// Dropping an untrusted state machine after a power loss, and deleting what was dropped.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sm_reset.h"

struct sm_reset {
	char *dir; // DATA/dropped
	pthread_t thread;
	atomic_bool stop;
};

static int fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;

	if (fd < 0 || fsync(fd))
		rc = -errno;
	if (fd >= 0)
		close(fd);
	if (rc)
		fprintf(stderr, "sm: reset: fsync %s: %s\n", path, strerror(-rc));
	return rc;
}

// Removes sm/<name> and makes that durable.
static int drop_file(int sm_fd, const char *data, const char *name)
{
	if (unlinkat(sm_fd, name, 0) && errno != ENOENT) {
		int rc = -errno;

		fprintf(stderr, "sm: reset: unlink %s/sm/%s: %s\n", data, name, strerror(-rc));
		return rc;
	}
	if (fsync(sm_fd)) {
		int rc = -errno;

		fprintf(stderr, "sm: reset: fsync %s/sm: %s\n", data, strerror(-rc));
		return rc;
	}
	return 0;
}

int sm_reset_drop(const char *data)
{
	char path[PATH_MAX], aside[PATH_MAX], to[PATH_MAX + 8];
	const char *parts[] = {"tree", "ids"};
	int rc = 0;

	snprintf(path, sizeof(path), "%s/dropped", data);
	if (mkdir(path, 0700) && errno != EEXIST) {
		rc = -errno;
		fprintf(stderr, "sm: reset: mkdir %s: %s\n", path, strerror(-rc));
		return rc;
	}
	snprintf(aside, sizeof(aside), "%s/dropped/XXXXXX", data);
	if (!mkdtemp(aside)) {
		rc = -errno;
		fprintf(stderr, "sm: reset: mkdtemp %s: %s\n", aside, strerror(-rc));
		return rc;
	}
	for (size_t i = 0; i < 2 && !rc; i++) {
		snprintf(path, sizeof(path), "%s/%s", data, parts[i]);
		snprintf(to, sizeof(to), "%s/%s", aside, parts[i]);
		if (rename(path, to) && errno != ENOENT) {
			rc = -errno;
			fprintf(stderr, "sm: reset: rename %s to %s: %s\n", path, to,
				strerror(-rc));
		}
	}
	// The tree is out of the way for good before the journal goes: a
	// fresh journal beside the old tree would be believed.
	snprintf(path, sizeof(path), "%s/dropped", data);
	if (!rc && !(rc = fsync_dir(aside)) && !(rc = fsync_dir(path)))
		rc = fsync_dir(data);
	if (rc)
		return rc;
	snprintf(path, sizeof(path), "%s/sm", data);
	int sm_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (sm_fd < 0) {
		rc = -errno;
		fprintf(stderr, "sm: reset: open %s: %s\n", path, strerror(-rc));
		return rc;
	}
	// What the dropped tree's journal and table described; the stored
	// snapshot brings its own. Leftovers of a restart cut short go too.
	// The journal last: until it is gone, the next open drops again.
	const char *files[] = {"dedup", "dedup.new", "journal.new", "journal"};
	for (size_t i = 0; i < 4 && !rc; i++)
		rc = drop_file(sm_fd, data, files[i]);
	// Last, the empty state is marked clean (sm.c check_boot): until then
	// the next open drops again.
	int fd = rc ? -1 : openat(sm_fd, "clean", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (!rc && (fd < 0 || fsync(fd) || fsync(sm_fd))) {
		rc = -errno;
		fprintf(stderr, "sm: reset: mark %s/sm/clean: %s\n", data, strerror(-rc));
	}
	if (fd >= 0)
		close(fd);
	close(sm_fd);
	return rc;
}

// Deletes name in dirfd, a directory with everything under it. Stops with
// -ECANCELED when asked to.
static int rm_at(struct sm_reset *r, int dirfd, const char *name)
{
	if (atomic_load(&r->stop))
		return -ECANCELED;
	if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT)
		return 0;
	if (errno != EISDIR)
		return -errno;
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	DIR *d = fdopendir(fd);
	if (!d) {
		int rc = -errno;

		close(fd);
		return rc;
	}
	struct dirent *e;
	int rc = 0;
	while (!rc && (e = readdir(d))) {
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			rc = rm_at(r, fd, e->d_name);
	}
	closedir(d);
	if (!rc && unlinkat(dirfd, name, AT_REMOVEDIR) && errno != ENOENT)
		rc = -errno;
	return rc;
}

static void *deleter(void *arg)
{
	struct sm_reset *r = arg;
	int rc = rm_at(r, AT_FDCWD, r->dir);

	if (rc == 0)
		fprintf(stderr, "sm: deleted %s (a tree dropped after a power loss)\n", r->dir);
	else if (rc != -ECANCELED)
		fprintf(stderr, "sm: deleting %s: %s (tried again at the next start)\n", r->dir,
			strerror(-rc));
	return NULL;
}

int sm_reset_start_deleting(const char *data, struct sm_reset **out)
{
	struct stat st;
	struct sm_reset *r;
	int rc;

	*out = NULL;
	r = calloc(1, sizeof(*r));
	if (!r || asprintf(&r->dir, "%s/dropped", data) < 0) {
		free(r);
		return -ENOMEM;
	}
	if (lstat(r->dir, &st)) {
		free(r->dir);
		free(r);
		return 0; // nothing to delete
	}
	atomic_init(&r->stop, false);
	rc = pthread_create(&r->thread, NULL, deleter, r);
	if (rc) {
		fprintf(stderr, "sm: deleting %s: start a thread: %s\n", r->dir, strerror(rc));
		free(r->dir);
		free(r);
		return -rc;
	}
	*out = r;
	return 0;
}

void sm_reset_stop(struct sm_reset *r)
{
	if (!r)
		return;
	atomic_store(&r->stop, true);
	pthread_join(r->thread, NULL);
	free(r->dir);
	free(r);
}
