/* fuse_mount.c — option parsing, session setup and the loop thread. */
#define FUSE_USE_VERSION 314
#include "fuse_mount.h"

#include <errno.h>
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "fs_node.h"
#include "fuse_guard.h"
#include "fuse_inval.h"
#include "fuse_ops.h"
#include "fuse_readahead.h"

struct fuse_mount {
	struct fs_node *fsn;
	struct fuse_inval *inv;
	struct fuse_fs *fs;
	struct fuse_session *se;
	struct fuse_loop_config *loop_cfg;
	struct fuse_guard *guard; /* aborts the connection if the node dies mounted */
	pthread_t thread;
	bool thread_running;
	bool unmounted; /* by fuse_mount_stop/finish: the kernel connection ended */
	atomic_bool ended;
	char mountpoint[4096];
};

/* raftfs's own mount options; all others go to libfuse. */
struct raftfs_opts {
	int linearizable;
	double timeout;
};

#define OPT(t, p)                                                                                  \
	{                                                                                          \
		t, offsetof(struct raftfs_opts, p), 1                                              \
	}
static const struct fuse_opt opt_table[] = {
    OPT("linearizable", linearizable),
    {"timeout=%lf", offsetof(struct raftfs_opts, timeout), 0},
    FUSE_OPT_END,
};

static void *loop_main(void *arg)
{
	struct fuse_mount *m = arg;

	fuse_session_loop_mt(m->se, m->loop_cfg);
	atomic_store(&m->ended, true);
	return NULL;
}

/* A FUSE mount at path whose daemon is gone. statfs, not stat: the kernel
 * answers stat of the root from its attribute cache for up to the cache
 * time (1 s) after the daemon died, so a node restarted at once (systemd's
 * Restart=, raftfs local start after kill) mounted on top of the dead
 * mount, which its clean stop then uncovered; statfs always asks the
 * daemon. ECONNABORTED: the guard aborted the connection. */
static bool dead_mount(const char *path)
{
	struct statfs sfs;

	return statfs(path, &sfs) < 0 && (errno == ENOTCONN || errno == ECONNABORTED);
}

/* A node killed with SIGKILL leaves its mount behind ("Transport endpoint is
 * not connected"); a restarted node replaces it. */
static void detach_stale(const char *mountpoint)
{
	/* Several may be stacked (killed again before anyone looked). */
	for (int i = 0; i < 16 && dead_mount(mountpoint); i++) {
		if (umount2(mountpoint, MNT_DETACH) < 0) {
			fprintf(stderr, "fuse: detaching the stale mount at %s: %s\n", mountpoint,
				strerror(errno));
			return;
		}
		fprintf(stderr, "fuse: detached a stale mount at %s\n", mountpoint);
	}
}

int fuse_mount_start(struct fs_node *fsn, struct fs_release *rel, const char *mountpoint,
		     const char *opts, struct fuse_mount **out)
{
	struct raftfs_opts ro = {0, -1};
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct fuse_ops_cfg cfg;
	struct fuse_mount *m;
	char base[256];
	int rc = -EINVAL;

	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->fsn = fsn;
	if (!realpath(mountpoint, m->mountpoint)) {
		detach_stale(mountpoint);
		if (!realpath(mountpoint, m->mountpoint)) {
			rc = -errno;
			fprintf(stderr, "fuse: mount point %s: %s\n", mountpoint, strerror(errno));
			free(m);
			return rc;
		}
	}
	detach_stale(m->mountpoint);
	snprintf(base, sizeof(base), "default_permissions,fsname=raftfs,subtype=raftfs%s",
		 geteuid() == 0 ? ",allow_other" : "");
	if (fuse_opt_add_arg(&args, "raftfs") || fuse_opt_add_arg(&args, "-o") ||
	    fuse_opt_add_arg(&args, base) ||
	    (opts && *opts && (fuse_opt_add_arg(&args, "-o") || fuse_opt_add_arg(&args, opts)))) {
		rc = -ENOMEM;
		goto fail;
	}
	if (fuse_opt_parse(&args, &ro, opt_table, NULL) < 0) {
		fprintf(stderr, "fuse: bad mount options '%s'\n", opts ? opts : "");
		goto fail;
	}
	if (ro.timeout < 0 && ro.timeout != -1) {
		fprintf(stderr, "fuse: timeout=%g: must not be negative\n", ro.timeout);
		goto fail;
	}
	/* Linearizable: the kernel must ask (and so pass a barrier) every
	 * time, unless the user chose a cache timeout. */
	if (ro.timeout == -1)
		ro.timeout = ro.linearizable ? 0 : 1.0;
	cfg.linearizable = ro.linearizable != 0;
	cfg.timeout = ro.timeout;
	cfg.rel = rel;
	rc = fuse_inval_new(&m->inv);
	if (rc < 0) {
		fprintf(stderr, "fuse: invalidation thread: %s\n", strerror(-rc));
		goto fail;
	}
	rc = fuse_fs_new(fsn, m->inv, &cfg, &m->fs);
	if (rc < 0)
		goto fail;
	m->se = fuse_session_new(&args, fuse_fs_ops(), sizeof(struct fuse_lowlevel_ops), m->fs);
	if (!m->se) {
		fprintf(stderr, "fuse: cannot create the session (options '%s')\n",
			opts ? opts : "");
		rc = -EINVAL;
		goto fail;
	}
	if (fuse_session_mount(m->se, m->mountpoint) != 0) {
		fprintf(stderr, "fuse: cannot mount at %s\n", m->mountpoint);
		rc = -EIO;
		goto fail;
	}
	if (geteuid() == 0) {
		rc = fuse_guard_start(m->mountpoint, &m->guard);
		if (rc < 0)
			fprintf(stderr, "fuse: no guard for %s (if this node is killed while "
					"the kernel waits for it, its mount may hang): %s\n",
				m->mountpoint, strerror(-rc));
		rc = fuse_readahead_set(m->mountpoint, FUSE_READAHEAD_KB);
		if (rc < 0)
			fprintf(stderr, "fuse: readahead of %s stays the kernel's default: %s\n",
				m->mountpoint, strerror(-rc));
	}
	fuse_inval_set_session(m->inv, m->se);
	fuse_fs_set_session(m->fs, m->se);
	fs_node_set_inval(fsn, m->inv);
	m->loop_cfg = fuse_loop_cfg_create();
	if (!m->loop_cfg) {
		rc = -ENOMEM;
		goto fail_mounted;
	}
	/* Threads wait in barriers (open); mutations do not hold a thread. */
	fuse_loop_cfg_set_max_threads(m->loop_cfg, 64);
	fuse_loop_cfg_set_idle_threads(m->loop_cfg, 8);
	rc = -pthread_create(&m->thread, NULL, loop_main, m);
	if (rc < 0) {
		fprintf(stderr, "fuse: starting the session loop: %s\n", strerror(-rc));
		goto fail_mounted;
	}
	m->thread_running = true;
	fuse_fs_release_orphans(m->fs);
	fuse_opt_free_args(&args);
	*out = m;
	return 0;

fail_mounted:
	fs_node_set_inval(fsn, NULL);
	fuse_inval_set_session(m->inv, NULL);
	fuse_session_unmount(m->se);
fail:
	fuse_opt_free_args(&args);
	fuse_mount_free(m);
	return rc;
}

bool fuse_mount_ended(struct fuse_mount *m)
{
	return atomic_load(&m->ended);
}

/* Commands the mount proposed get this long to commit at stop before the
 * node fails them (a quorum answers in milliseconds; without one, waiting
 * longer gains nothing). */
#define STOP_GRACE_MS 1000

static void nap_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

void fuse_mount_stop(struct fuse_mount *m)
{
	if (!m || !m->se)
		return;
	fs_node_set_inval(m->fsn, NULL);
	fuse_inval_set_session(m->inv, NULL);
	fuse_session_exit(m->se);
	/* A mount nobody uses goes at once, and the kernel connection with
	 * it, which ends the loop. One in use (an open file, a waiting
	 * request, a working directory) stays until fuse_mount_finish. Only
	 * root may; otherwise fuse_mount_finish detaches through fusermount3. */
	if (geteuid() == 0 && umount2(m->mountpoint, UMOUNT_NOFOLLOW) == 0)
		m->unmounted = true;
	/* Write-behind and pipelined commands were answered before they
	 * committed: give them a moment to, unless the node already saw
	 * that it has no quorum. */
	for (int ms = 0; ms < STOP_GRACE_MS && fs_node_outstanding(m->fsn) > 0 &&
			 !fs_node_stalled(m->fsn);
	     ms += 10)
		nap_ms(10);
}

void fuse_mount_finish(struct fuse_mount *m)
{
	struct timespec ts;

	if (!m || !m->se)
		return;
	if (!m->unmounted && !atomic_load(&m->ended)) {
		/* Still in use. MNT_FORCE aborts the kernel connection even
		 * though the unmount itself fails as busy (EBUSY): requests the
		 * kernel still queues fail with ENOTCONN, and the session
		 * loop's reads end. Then the mount is detached. */
		if (geteuid() == 0 && (umount2(m->mountpoint, MNT_FORCE | UMOUNT_NOFOLLOW) == 0 ||
				       (errno == EBUSY &&
					umount2(m->mountpoint, MNT_DETACH | UMOUNT_NOFOLLOW) == 0)))
			m->unmounted = true;
		else if (geteuid() == 0)
			fprintf(stderr, "fuse: unmounting %s: %s\n", m->mountpoint,
				strerror(errno));
	}
	/* Not root (or the above failed): fusermount3 -u -z. This also
	 * closes the session's device, so it comes after the loop's end
	 * where it can: a worker still reading it might read another file
	 * that took its descriptor number. */
	if (!m->unmounted)
		fuse_session_unmount(m->se);
	if (m->thread_running) {
		/* The node stopped before this: every request that waited for
		 * it has been answered, so the loop's workers come back. */
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 10;
		if (pthread_timedjoin_np(m->thread, NULL, &ts) == 0)
			m->thread_running = false;
		else
			fprintf(stderr, "fuse: the session loop at %s did not end\n",
				m->mountpoint);
	}
	if (m->unmounted && !m->thread_running)
		fuse_session_unmount(m->se); /* closes the device; nothing mounted */
}

void fuse_mount_free(struct fuse_mount *m)
{
	if (!m)
		return;
	if (m->thread_running)
		return; /* still in use by the loop: left for the process exit
			 * (and the guard, which aborts the connection then) */
	fuse_guard_stop(m->guard);
	/* The invalidation thread first: it may be inside a notify call on
	 * the session. */
	fuse_inval_free(m->inv);
	if (m->se)
		fuse_session_destroy(m->se);
	if (m->loop_cfg)
		fuse_loop_cfg_destroy(m->loop_cfg);
	fuse_fs_free(m->fs);
	free(m);
}
