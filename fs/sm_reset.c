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
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "sm_impl.h"
#include "sm_reset.h"
#include "test_gate.h"

struct sm_reset {
	char *dir; // DATA/dropped
	pthread_t thread;
	atomic_bool stop;
	bool measured;		  // counted before the thread started (short_of_space)
	bool hold;		  // RAFTFS_TEST_DROPPED_HOLD: measure, delete nothing
	bool at_start;		  // walked by the start itself (sm_reset_start_progress)
	_Atomic uint64_t bytes;	  // still to delete: allocated bytes ...
	_Atomic uint64_t entries; // ... and directory entries
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

// Entries the start's own walks (measuring and deleting before the rebuild)
// passed in this process, for the start's progress reports.
static _Atomic uint64_t start_walked;

uint64_t sm_reset_start_progress(void)
{
	return atomic_load(&start_walked);
}

// One entry measured or deleted by r.
static void walked(struct sm_reset *r)
{
	if (r->at_start)
		atomic_fetch_add(&start_walked, 1);
}

// Subtracts v from *a, stopping at 0 (a count cannot go below what is left).
static void take(_Atomic uint64_t *a, uint64_t v)
{
	uint64_t cur = atomic_load(a);

	while (!atomic_compare_exchange_weak(a, &cur, cur > v ? cur - v : 0))
		;
}

// Adds to r's counts everything under name in dirfd (itself included).
// A file's blocks are shared among its links (the tree's names and the ids
// index link the same inodes): each link counts its share, and deleting
// the last link frees them all (rm_at).
static int measure_at(struct sm_reset *r, int dirfd, const char *name)
{
	struct stat st;

	if (atomic_load(&r->stop))
		return -ECANCELED;
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW))
		return errno == ENOENT ? 0 : -errno;
	atomic_fetch_add(&r->entries, 1);
	walked(r);
	if (!S_ISDIR(st.st_mode)) {
		atomic_fetch_add(&r->bytes,
				 (uint64_t)st.st_blocks * 512 / (st.st_nlink ? st.st_nlink : 1));
		return 0;
	}
	atomic_fetch_add(&r->bytes, (uint64_t)st.st_blocks * 512);
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
			rc = measure_at(r, fd, e->d_name);
	}
	closedir(d);
	return rc;
}

// Deletes name in dirfd, a directory with everything under it, taking
// what it frees off r's counts. Stops with -ECANCELED when asked to.
static int rm_at(struct sm_reset *r, int dirfd, const char *name)
{
	struct stat st;

	if (atomic_load(&r->stop))
		return -ECANCELED;
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW))
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISDIR(st.st_mode)) {
		if (unlinkat(dirfd, name, 0) && errno != ENOENT)
			return -errno;
		take(&r->entries, 1);
		walked(r);
		if (st.st_nlink <= 1)
			take(&r->bytes, (uint64_t)st.st_blocks * 512);
		return 0;
	}
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
	if (!rc) {
		take(&r->entries, 1);
		walked(r);
		take(&r->bytes, (uint64_t)st.st_blocks * 512);
	}
	return rc;
}

// Deletes r->dir, logging the outcome.
static int delete_all(struct sm_reset *r)
{
	int rc = rm_at(r, AT_FDCWD, r->dir);

	if (rc == 0) {
		atomic_store(&r->entries, 0);
		atomic_store(&r->bytes, 0);
		fprintf(stderr, "sm: deleted %s (a tree dropped after a power loss)\n", r->dir);
	} else if (rc != -ECANCELED) {
		fprintf(stderr, "sm: deleting %s: %s (tried again at the next start)\n", r->dir,
			strerror(-rc));
	}
	return rc;
}

static void *deleter(void *arg)
{
	struct sm_reset *r = arg;

	if (!r->measured && measure_at(r, AT_FDCWD, r->dir) == -ECANCELED)
		return NULL;
	// Tests read the counts before the deletion takes them down.
	if (r->hold) {
		struct timespec nap = {0, 5 * 1000 * 1000};

		while (!atomic_load(&r->stop))
			nanosleep(&nap, NULL);
		return NULL;
	}
	delete_all(r);
	return NULL;
}

// Whether the dropped tree must go before the node goes on: the free space
// is below its size plus 1/16 (measured here only when the free space is
// below what the filesystem uses, of which the tree is a part).
static bool short_of_space(struct sm_reset *r, const char *data)
{
	struct statvfs fs;

	if (statvfs(data, &fs))
		return false; // cannot tell: the background deletion goes on
	uint64_t avail = (uint64_t)fs.f_bavail * fs.f_frsize;
	uint64_t used = (uint64_t)(fs.f_blocks - fs.f_bfree) * fs.f_frsize;
	if (avail >= used)
		return false;
	if (measure_at(r, AT_FDCWD, r->dir)) {
		// Partial counts would be added to by the deleter's own walk
		// (raftfs status would over-report): it starts from 0.
		atomic_store(&r->entries, 0);
		atomic_store(&r->bytes, 0);
		return false;
	}
	r->measured = true;
	uint64_t size = atomic_load(&r->bytes);
	if (avail >= size + size / 16)
		return false;
	fprintf(stderr,
		"sm: %s holds %llu MiB in %llu entries and only %llu MiB are free: deleting it "
		"before the rebuild, which needs about as much\n",
		r->dir, (unsigned long long)(size >> 20),
		(unsigned long long)atomic_load(&r->entries), (unsigned long long)(avail >> 20));
	return true;
}

static void reset_free(struct sm_reset *r)
{
	free(r->dir);
	free(r);
}

// Test hook: with RAFTFS_TEST_DROPPED_GATE=FILE, the start's own deletion
// waits while FILE exists (test_gate_wait), so that a test sees the start's progress report
// on it (tests/reboot/dropped_delete.sh) instead of racing the deletion.
static void test_gate(void)
{
	test_gate_wait(test_hook_env("RAFTFS_TEST_DROPPED_GATE"));
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
		reset_free(r);
		return 0; // nothing to delete
	}
	atomic_init(&r->stop, false);
	r->hold = test_hook_env("RAFTFS_TEST_DROPPED_HOLD") != NULL;
	r->at_start = true;
	if (short_of_space(r, data)) {
		test_gate();
		rc = delete_all(r);
		reset_free(r);
		return rc;
	}
	r->at_start = false; // the rest goes in the background: no start's progress
	rc = pthread_create(&r->thread, NULL, deleter, r);
	if (rc) {
		fprintf(stderr,
			"sm: deleting %s: start a thread: %s (tried again at the next start)\n",
			r->dir, strerror(rc));
		reset_free(r);
		return 0; // no fault: nothing is lost
	}
	*out = r;
	return 0;
}

void sm_reset_left(const struct sm_reset *r, uint64_t *bytes, uint64_t *entries)
{
	*bytes = r ? atomic_load(&r->bytes) : 0;
	*entries = r ? atomic_load(&r->entries) : 0;
}

void sm_dropped_left(const struct sm *sm, uint64_t *bytes, uint64_t *entries)
{
	sm_reset_left(sm->reset, bytes, entries);
}

void sm_reset_stop(struct sm_reset *r)
{
	if (!r)
		return;
	atomic_store(&r->stop, true);
	pthread_join(r->thread, NULL);
	reset_free(r);
}
