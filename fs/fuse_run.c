/* fuse_run.c — the main loop of a node running the filesystem. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "config.h"
#include "fs_node.h"
#include "fs_release.h"
#include "fuse_mount.h"
#include "node.h"
#include "node_members.h"
#include "runtime_log.h"
#include "sm_reset.h"
#include "sm_starts.h"
#include "svc_notify.h"
#include "svc_start.h"
#include "test_gate.h"
#include "mono_ms.h"

/* The start command's state: proposed (or waiting to be again), applied,
 * given up (the node's state machine failed), or failed — then the main
 * loop proposes it again (hello_retry): a node that started without a
 * quorum (its peers not up yet) must still tell the others it is back
 * once they are, or they keep it marked silent. */
enum { HELLO_WAIT, HELLO_APPLIED, HELLO_FAILED, HELLO_GIVEN_UP, HELLO_GATED };
/* The pause before the first retry, doubled per failure up to the cap. */
#define HELLO_RETRY_MS 500
#define HELLO_RETRY_MAX_MS 30000

struct hello {
	atomic_int state;
	atomic_int failures; /* said in the log: the first, then every tenth */
	int64_t next_ms; /* main loop only: when to propose again */
	int64_t pause_ms;
	struct fs_node *f; /* told once the command applied (fs_node_set_back) */
	/* Tests: RAFTFS_TEST_HELLO_GATE=FILE holds the start command back
	 * while FILE exists (HELLO_GATED; the main loop proposes it once the
	 * test removed FILE; every other proposal of the node waits in
	 * fs_node_propose meanwhile), so that a test can look at this node's
	 * directories from another mount after it restarted and before any
	 * command of it committed (tests/mount/mount_holder_early.sh). */
	const char *gate;
};

/* A node that cannot get its start command in (no quorum for minutes, or
 * removed from the cluster while still running) tries every 30 s: its log
 * says so at the first failure and at every tenth, not every time. */
static bool hello_say(struct hello *h)
{
	return atomic_fetch_add(&h->failures, 1) % 10 == 0;
}

/* Not proposed (stage "to propose") or not applied ("to apply"): the main
 * loop proposes it again (hello_retry). */
static void hello_failed(struct hello *h, const char *stage, int err)
{
	if (hello_say(h))
		rlog_write(RLOG_INFO, "start command failed %s: %s (proposed again until it "
				      "applies or the node stops)",
			   stage, strerror(err));
	atomic_store(&h->state, HELLO_FAILED);
}

/* Applied (EINVAL: no operation) or failed (tried again: hello_retry).
 * Said in the log: from here on the others know this node is back
 * (mount.holder_back waits for the line), and its mount answers behind
 * again in the directories it holds (fs_node_back). */
static void hello_done(void *arg, int err)
{
	struct hello *h = arg;

	if (err == 0 || err == EINVAL) {
		fs_node_set_back(h->f);
		rlog_write(RLOG_INFO, "start command applied: the others know this node is back");
		atomic_store(&h->state, HELLO_APPLIED);
	} else {
		hello_failed(h, "to apply", err);
	}
}

/* A command without an operation, proposed at every start, for two ends:
 *  - a fresh cluster's root has times 0 until the first command applies
 *    and stamps it with its proposer's clock (fs/sm.c, stamp_root): so
 *    that happens when the cluster is made rather than at its first
 *    change (the first to apply wins, on every node alike);
 *  - a node that restarted says it is back: a mount that revoked one of
 *    its directories because it did not answer marks it silent and
 *    revokes its other directories at once, until a command of it
 *    applies there (fs/fuse_grant.h, fuse_holder_*). Without this, a
 *    restarted node that proposed nothing stayed marked, and its first
 *    change answered behind in a directory it still held could be
 *    revoked under it instead of recalled (failed at apply, reported at
 *    its next close). One log entry per start, and one per try again;
 *  - it says what this node's state machine honours and since when its
 *    table of start commands is complete (fs/sm_starts.h), so that a
 *    Revoke decided before its revoker applied this command changes
 *    nothing where it applies after it. */
static void propose_hello(struct fs_node *f, struct hello *h)
{
	Fspb__Command c;
	int rc;

	fspb__command__init(&c);
	c.time_ns = fs_node_now();
	c.node = fs_node_id(f);
	sm_start_fill(fs_node_sm(f), &c);
	atomic_store(&h->state, HELLO_WAIT);
	rc = fs_node_propose(f, &c, hello_done, h);
	if (rc == EIO) {
		/* The state machine failed (node_fault): it applies nothing any
		 * more, so trying again only fills the log. */
		rlog_write(RLOG_ERR, "the start's command (the root's birth time, this node "
				     "is back) not proposed: the state machine failed");
		atomic_store(&h->state, HELLO_GIVEN_UP);
	} else if (rc) {
		hello_failed(h, "to propose", rc);
	}
}

/* At the start: proposes the start command, unless a test's gate holds
 * it back (struct hello, gate). */
static void hello_start(struct fs_node *f, struct hello *h)
{
	h->f = f;
	h->gate = test_hook_env("RAFTFS_TEST_HELLO_GATE");
	if (test_gate_closed(h->gate)) {
		rlog_write(RLOG_INFO, "start command held back (RAFTFS_TEST_HELLO_GATE)");
		atomic_store(&h->state, HELLO_GATED);
		return;
	}
	propose_hello(f, h);
}

/* From the main loop (every poll): a failed start command is proposed
 * again after a pause that doubles per failure, HELLO_RETRY_MAX_MS at
 * most, until one applies or the node stops; a gated one once its gate
 * opened. */
static void hello_retry(struct fs_node *f, struct hello *h)
{
	int64_t now;

	if (atomic_load(&h->state) == HELLO_GATED && !test_gate_closed(h->gate))
		propose_hello(f, h);
	/* Another node began keeping its table of start commands after this
	 * node's last start (upgraded, or rebuilt from an image): the check
	 * of Revokes stays off until this node's start is newer than that
	 * (fs/sm_starts.h). Once: the next applies after that node's. */
	if (atomic_load(&h->state) == HELLO_APPLIED &&
	    sm_start_outdated(fs_node_sm(f), fs_node_id(f))) {
		rlog_write(RLOG_INFO, "start command proposed again: another node's table of "
				      "start commands began after this node's last one");
		propose_hello(f, h);
	}
	if (atomic_load(&h->state) != HELLO_FAILED)
		return;
	now = mono_ms();
	if (!h->next_ms) {
		h->pause_ms = h->pause_ms ? h->pause_ms * 2 : HELLO_RETRY_MS;
		if (h->pause_ms > HELLO_RETRY_MAX_MS)
			h->pause_ms = HELLO_RETRY_MAX_MS;
		h->next_ms = now + h->pause_ms;
	}
	if (now < h->next_ms)
		return;
	h->next_ms = 0;
	propose_hello(f, h);
}

/* node_sm.status: what is left of a tree dropped after a power loss. */
static void sm_status(void *ctx, node_sm_status *out)
{
	sm_dropped_left(fs_node_sm(ctx), &out->dropped_bytes, &out->dropped_entries);
}

/* The main thread looks at what sends it no signal (the start command's
 * gate and retries, an ended mount, a fault) every MAIN_POLL_MS while the
 * start command is not applied, every MAIN_IDLE_POLL_MS after: an idle
 * node woke 10 times a second for it, a fifth of a follower's wake-ups
 * once its loop went quiet (bench/fs/README.md, "Session 14 (idle)"). An
 * unmount stops the node within a second. */
#define MAIN_POLL_MS 100
#define MAIN_IDLE_POLL_MS 1000

int fuse_run_node(const struct node_config *cfg, const char *mount_opts)
{
	const struct timespec poll_ts = {0, MAIN_POLL_MS * 1000000L},
			      idle_poll_ts = {MAIN_IDLE_POLL_MS / 1000,
					      MAIN_IDLE_POLL_MS % 1000 * 1000000L};
	struct fuse_mount *m = NULL;
	struct fs_node *f = NULL;
	struct fs_release *rel = NULL;
	struct svc_start *start = NULL;
	/* Static: a start command's done may come as late as the node's
	 * close (one node per process). */
	static struct hello hello;
	uint64_t saved_commit;
	uint32_t voters[CONFIG_MAX_PEERS];
	bool fault_logged = false;
	char err[600];
	sigset_t sigs;
	node_sm iface;
	node *n = NULL;
	int rc, status = 0;

	if (cfg->id > 65535) {
		fprintf(stderr, "raftfs node: id %llu: the filesystem wants ids 1..65535\n",
			(unsigned long long)cfg->id);
		return 2;
	}
	/* Signals are taken synchronously by this thread; every other thread
	 * inherits the blocked mask — RocksDB's too, started by node_new: a
	 * SIGTERM delivered to one of those would end the process without
	 * unmounting. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGPIPE);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	svc_start_begin(SVC_START_TICK_MS, SVC_START_EXTEND_US, &start);
	rc = fs_node_open(cfg->data_dir, (uint32_t)cfg->id, &f);
	if (rc < 0) {
		fprintf(stderr, "raftfs node: filesystem state machine in %s: %s\n", cfg->data_dir,
			strerror(-rc));
		svc_start_end(start);
		return 1;
	}
	fs_node_iface(f, &iface);
	iface.status = sm_status;
	if (node_new(cfg, &iface, &n, err, sizeof(err)) < 0) {
		fprintf(stderr, "raftfs node: %s\n", err);
		fs_node_close(f);
		svc_start_end(start);
		return 1;
	}
	saved_commit = node_saved_commit(n);
	fs_node_attach(f, n);
	fs_node_set_write_behind(f, cfg->write_behind);
	fs_node_set_close_behind(f, cfg->close_behind);
	/* Orphans go once every voter released them (fs/README-sm.md); the
	 * voters are the membership as this node applied it (the store's,
	 * else [peers]), carried in every Release and kept up to date by
	 * membership changes (node_members.h). */
	{
		uint64_t v[CONFIG_MAX_PEERS];
		size_t nv = node_voters(n, v, CONFIG_MAX_PEERS);

		for (size_t i = 0; i < nv && i < CONFIG_MAX_PEERS; i++)
			voters[i] = (uint32_t)v[i];
		rc = fs_release_new(f, (uint32_t)cfg->id, voters, nv, &rel);
	}
	if (rc == 0)
		node_set_members_hook(n, fs_release_on_members, rel);
	if (rc < 0 || node_launch(n) < 0) {
		fprintf(stderr, "raftfs node: could not start (see the log above)\n");
		node_free(n);
		fs_release_free(rel);
		fs_node_close(f);
		svc_start_end(start);
		return 1;
	}
	/* Not ready before this node shows at least what it showed before it
	 * stopped: after a power loss it rebuilds from its snapshot and
	 * replays its own log (fs/sm_reset.h), and a mount or a service
	 * started meanwhile would see an older state. */
	rc = svc_start_wait_applied(start, n, saved_commit, &sigs);
	svc_start_end(start);
	if (rc > 0) {
		rlog_write(RLOG_INFO, "%s during the log replay: stopping", strsignal(rc));
		goto stop;
	}
	if (rc < 0)
		rlog_write(RLOG_ERR, "the log replay failed (%s): serving what was applied",
			   node_strerror(rc));
	hello_start(f, &hello);
	if (!cfg->mount[0])
		fs_release_start(rel); /* a mount does it once it serves */
	if (cfg->mount[0]) {
		rc = fuse_mount_start(f, rel, cfg->mount, mount_opts, &m);
		if (rc < 0) {
			fprintf(stderr, "raftfs node: mounting at %s failed\n", cfg->mount);
			status = 1;
			goto stop;
		}
		rlog_write(RLOG_INFO, "mounted at %s", cfg->mount);
	}
	/* systemd (Type=notify) starts the units ordered after this one now:
	 * the mount answers (reads from the local tree; changes wait for a
	 * quorum, which at boot may still be assembling). */
	/* STATUS= replaces the start's last progress line in systemctl status. */
	rc = svc_notify("READY=1\nSTATUS=serving");
	if (rc < 0)
		rlog_write(RLOG_ERR, "telling the service manager we are ready: %s", strerror(-rc));
	for (;;) {
		int sig = sigtimedwait(&sigs, NULL,
				       atomic_load(&hello.state) == HELLO_APPLIED ? &idle_poll_ts
										  : &poll_ts);

		if (sig == SIGTERM || sig == SIGINT || sig == SIGHUP) {
			rlog_write(RLOG_INFO, "%s: stopping", strsignal(sig));
			break;
		}
		hello_retry(f, &hello);
		if (m && fuse_mount_ended(m)) {
			rlog_write(RLOG_INFO, "%s was unmounted: stopping", cfg->mount);
			break;
		}
		if (node_fault(n) && !fault_logged) {
			rlog_write(RLOG_ERR, "the state machine failed: not applying any more, "
					     "serving reads only");
			fault_logged = true;
		}
	}
stop:
	svc_notify("STOPPING=1");
	test_gate_stop(); /* a test hook's gate holds no thread the stop joins */
	/* A request waiting for a commit (no quorum) or a barrier is answered
	 * only when the node fails it: the node stops between the mount's
	 * two halves, so none is left waiting when the loop is joined. */
	fuse_mount_stop(m);
	node_stop(n);
	fuse_mount_finish(m);
	fuse_mount_free(m);
	fs_release_free(rel); /* its thread may still propose through n */
	node_free(n);
	fs_node_close(f);
	rlog_write(RLOG_INFO, "stopped");
	return status;
}
