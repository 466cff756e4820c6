/* runtime_log.h — log lines of the node runtime (transport, node loop,
 * apply, client requests), by topic.
 *
 * Topics are switched on by the config's [log] topics or the environment
 * variable RAFTFS_DEBUG (comma-separated, or "all"); errors and lifecycle
 * events (topic INFO/ERR) are always written. Each line goes to stderr and
 * starts with the wall-clock time, node id and current term. Thread-safe.
 */
#ifndef RAFTFS_RUNTIME_LOG_H
#define RAFTFS_RUNTIME_LOG_H

#include <stdint.h>

enum rlog_topic {
	RLOG_ERR = 1u << 0,  /* always on: something failed */
	RLOG_INFO = 1u << 1, /* always on: start, stop, leader changes */
	RLOG_NET = 1u << 2,  /* connections, handshakes, drops */
	RLOG_CLNT = 1u << 3, /* proposals, completions, retries, reads */
	RLOG_APPL = 1u << 4, /* apply thread */
	RLOG_PERS = 1u << 5, /* Ready handling: what is saved */
};

/* Sets this process's node id and enabled topics (a comma-separated list
 * as in the config, merged with RAFTFS_DEBUG). */
void rlog_init(uint64_t node_id, const char *topics);

/* The current term shown on each line (the loop thread updates it). */
void rlog_set_term(uint64_t term);

/* True if the topic is on (cheap: one load). */
int rlog_on(unsigned topic);

void rlog_write(unsigned topic, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Logs only when the topic is on; arguments are not evaluated otherwise. */
#define RLOG(topic, ...)                                                                           \
	do {                                                                                       \
		if (rlog_on(topic))                                                                \
			rlog_write((topic), __VA_ARGS__);                                          \
	} while (0)

#endif
