// test_gate.h — test hooks: the environment variables that switch them on,
// and a gate at which a thread waits while a file exists.
#ifndef RAFTFS_FS_TEST_GATE_H
#define RAFTFS_FS_TEST_GATE_H

#include <stdbool.h>

// getenv(name) for a test hook (RAFTFS_TEST_*): when it is set, logs a
// WARNING naming it, once per name and process, since a hook is compiled
// into every build and a variable left in a production environment (a gate
// file left behind) would hold a thread there.
const char *test_hook_env(const char *name);

// Tests only (gate: the file an environment variable names, NULL when it is
// not set). While gate exists: makes gate.reached once, so that a test can
// await the thread's arrival instead of guessing it, then waits (polling
// every 5 ms) until the test removes gate. Returns at once when gate is
// NULL or absent; and without waiting any longer once the process is
// stopping (test_gate_stop) or after TEST_GATE_MAX_S (a gate left behind:
// logged), so that a gate never holds a node's stop or its start for good.
void test_gate_wait(const char *gate);

// Longest a thread waits at one gate: above any test's hold (a test's own
// timeout is a few minutes at most, and it holds a gate for a step of it).
#define TEST_GATE_MAX_S 120

// The process is stopping: every gate is open from now on, for the threads
// waiting at one and those that come to one (the apply thread, which the
// stop joins; a lookup, which the unmount waits for).
void test_gate_stop(void);

// The same gate for a caller that must not block (a main loop asking at
// every turn): true while gate exists, having made gate.reached; false
// when gate is NULL or absent, or once the process is stopping.
bool test_gate_closed(const char *gate);

#endif
