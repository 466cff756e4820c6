/* node_testlib.h — what the in-process node tests share: free loopback
 * ports, a monotonic clock, a pause between polls, the config of a
 * one-node cluster or of a member of an n-node one, and a node's commit
 * index by a status request. */
#ifndef RAFTFS_NODE_TESTLIB_H
#define RAFTFS_NODE_TESTLIB_H

#include <stdint.h>

#include "config.h"
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

#endif
