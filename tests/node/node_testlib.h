/* node_testlib.h — what the in-process node tests share: free loopback
 * ports, a monotonic clock, a pause between polls, the config of a
 * one-node cluster or of a member of an n-node one, a node's commit index
 * by a status request, and a started cluster of kv nodes. */
#ifndef RAFTFS_NODE_TESTLIB_H
#define RAFTFS_NODE_TESTLIB_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "kvsm.h"
#include "node.h"

/* A TCP port on 127.0.0.1 that was free a moment ago (0 if none). */
uint16_t test_free_port(void);

/* CLOCK_MONOTONIC in milliseconds, for deadlines. */
long long test_now_ms(void);

/* A 5 ms pause between polls of a condition that has a deadline. */
void test_nap(void);

/* The commit index of the node at addr by a status request, answered by
 * its loop thread (so this also shows the loop is not stuck); 0 if no
 * answer within timeout_ms. */
uint64_t test_commit_index(const char *addr, unsigned timeout_ms);
/* The same node's last log index (0: no answer). */
uint64_t test_last_index(const char *addr, unsigned timeout_ms);
/* Its first log index (the log compacted below it), likewise. */
uint64_t test_first_index(const char *addr, unsigned timeout_ms);

/* cfg: the defaults, made node 1 of a one-node cluster named `cluster`
 * listening on 127.0.0.1:port, its data directory DIR/n1. */
void test_one_node_config(node_config *cfg, const char *cluster, const char *dir, uint16_t port);

/* Waits until n (a one-node cluster's node) leads and has applied its
 * term's empty entry, so the first proposal gets index 2. Returns whether
 * it did before deadline (test_now_ms() clock). */
bool test_await_lead(node *n, long long deadline);

/* The index of a node that says it leads, or -1 if none did within
 * timeout_ms. The nodes are *first, then every stride bytes on (a test's
 * array of member structs: &m[0].n, sizeof(m[0])). */
int test_leading(node *const *first, size_t stride, int n, long long timeout_ms);

/* port[0..n-1]: n distinct ports free a moment ago (one free a moment ago
 * may be handed out twice). Returns 0, or -1 if none could be found. */
int test_distinct_ports(uint16_t *port, int n);

/* cfg: the defaults, made node i + 1 of an n-node cluster named
 * `cluster` whose node j + 1 listens on 127.0.0.1:port[j], its data
 * directory DIR/n<i + 1>. */
void test_member_config(node_config *cfg, const char *cluster, const char *dir, int i, int n,
			const uint16_t *port);

/* One member of an in-process cluster of kv nodes over loopback TCP
 * (test_kv_cluster_start). The node applies through sm: the kv state
 * machine's interface (inner) unless the test's tune function changed it
 * (a gated apply, with ctx still the kvsm). */
struct test_kv_member {
	node_config cfg;
	kvsm *k;
	node_sm inner, sm;
	node *n;
};

/* Called for member i between its config and node_new: the test's own
 * settings (timeouts, bounds) or state machine. */
typedef void (*test_kv_tune_fn)(struct test_kv_member *m, int i);

/* Starts an n-node cluster named `cluster` in m[0..n-1] (zeroed first):
 * each node on its own loopback port, its data under a fresh dir
 * "/tmp/<cluster>.XXXXXX" (dir holds at least 64 bytes), snapshots off,
 * a 500 ms election timeout (no elections from a loaded machine's pauses),
 * RAFTFS_TEST_STALL set (the tests hold saves), then tune, then launched.
 * Returns 0, or -1 after saying why on stderr and undoing what was made
 * (cmocka runs no teardown after a failed setup). */
int test_kv_cluster_start(struct test_kv_member *m, int n, const char *cluster, char *dir,
			  test_kv_tune_fn tune);

/* test_kv_cluster_start in two steps, for a test that sets something on
 * the nodes themselves before any of their threads runs (a message
 * filter): test_kv_cluster_new makes the nodes (m[i].n) without launching
 * them, test_kv_cluster_launch launches them. Each returns 0, or -1 after
 * saying why on stderr and undoing what was made. */
int test_kv_cluster_new(struct test_kv_member *m, int n, const char *cluster, char *dir,
			test_kv_tune_fn tune);
int test_kv_cluster_launch(struct test_kv_member *m, int n, const char *cluster, char *dir);

/* One node with the kv state machine in m, a cluster of one named
 * `cluster` (test_one_node_config: default timings), snapshots off, its
 * data under a fresh dir "/tmp/<cluster>.XXXXXX" (dir holds at least 64
 * bytes), tune called before node_new, then launched (not yet leading:
 * test_await_lead). Returns 0, or -1 after saying why on stderr and
 * undoing what was made. Stopped by test_kv_cluster_stop(m, 1, dir). */
int test_kv_node_start(struct test_kv_member *m, const char *cluster, char *dir,
		       test_kv_tune_fn tune);

/* A gate a test's apply function waits at until the test opens it, so
 * that entries commit while none applies. */
struct test_gate {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool closed;
};
#define TEST_GATE_CLOSED                                                                           \
	{                                                                                          \
		PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, true                          \
	}

/* Waits while g is closed. */
void test_gate_wait(struct test_gate *g);

/* Opens g for good (teardowns too: a failed test must not leave an apply
 * thread waiting, or the node could not stop). */
void test_gate_open(struct test_gate *g);
/* Closes g again (a setup reusing a static gate). */
void test_gate_close(struct test_gate *g);

/* A node_start callback: stores 1 (applied) or -1 (failed) in the
 * atomic_int at arg. */
void test_on_put(void *arg, int status, int64_t result, uint64_t index);

/* A node_start callback that counts: 1 added to arg's atomic_int[0] when
 * applied, to [1] when failed. */
void test_on_count(void *arg, int status, int64_t result, uint64_t index);

/* Proposes kv on n and waits for it to apply there: 1 applied, -1 failed,
 * 0 not within ms. One at a time (the callback's flag is shared). */
int test_put_wait(node *n, const char *kv, long long ms);

/* Asks a node started with RAFTFS_TEST_STALL to hold its persist thread
 * for ms after its next save: DATA/stall-<kind> ("any": any role),
 * written aside and renamed in so the node never reads it half. Its path
 * in path. Returns 0, or -1 if it could not be written. */
int test_hold_next_save(const node_config *cfg, const char *kind, unsigned ms, char *path,
			size_t cap);

/* Stops and frees the nodes, closes their state machines, zeroes m and
 * removes dir (safe after a failed start, and twice). Returns 0, or -1 if
 * dir could not be removed. */
int test_kv_cluster_stop(struct test_kv_member *m, int n, char *dir);

#endif
