/* svc_start.h — a node's start as the service manager sees it: progress
 * while it restores its snapshot and replays its log (so a long start is
 * not killed), and the wait for that replay before it says READY=1. */
#ifndef RAFTFS_SVC_START_H
#define RAFTFS_SVC_START_H

#include <signal.h>
#include <stdint.h>

#include "node.h"

/* How often progress is told (ms), and how much longer (us) the manager is
 * asked to wait each time: a start that stops moving is given no more
 * time, so a stuck restore still ends at TimeoutStartSec. */
#define SVC_START_TICK_MS 5000u
#define SVC_START_EXTEND_US 30000000ull

struct svc_start;

/* Begins reporting: unless $NOTIFY_SOCKET is unset (no service manager to
 * tell), a thread sends, every tick_ms, STATUS= with what the start is
 * doing (deleting a dropped tree before a rebuild when space is short:
 * entries walked so far, sm_reset_start_progress; restoring the stored
 * snapshot: bytes read so far; replaying the log: entries applied of those
 * to replay) and, when that moved since the
 * last tick, EXTEND_TIMEOUT_USEC=extend_us (sd_notify(3)). Call before
 * node_new, which restores the snapshot (RAFTFS_TEST_START_TICK_MS in the
 * environment replaces tick_ms, for tests). 0 or a negative errno (the
 * thread could not start; the start goes on without reports). */
int svc_start_begin(unsigned tick_ms, uint64_t extend_us, struct svc_start **out);

/* Waits until n (launched) has applied entry `to` again — the commit index
 * its store held at start (node_saved_commit): everything this node knew
 * to be committed before it went down, which its own log holds, so no
 * peer is needed (Raft §5.3: committed entries are applied in order; the
 * state machine may have been dropped after a power loss, fs/sm_reset.h).
 * Until then the mount would show an older state than the one this node
 * showed before it stopped. s (may be NULL) reports the replay. Returns 0
 * once applied, the signal number when one of sigs (blocked by the caller;
 * SIGPIPE is passed over) arrives first, or n's fault code (node_fault) if
 * applying failed. */
int svc_start_wait_applied(struct svc_start *s, node *n, uint64_t to, const sigset_t *sigs);

/* Stops the reports (and the thread) and frees s; NULL is allowed. */
void svc_start_end(struct svc_start *s);

#endif
