// test_gate.h — a test hook's gate: a thread waits while a file exists.
#ifndef RAFTFS_FS_TEST_GATE_H
#define RAFTFS_FS_TEST_GATE_H

#include <stdbool.h>

// Tests only (gate: the file an environment variable names, NULL when it is
// not set). While gate exists: makes gate.reached once, so that a test can
// await the thread's arrival instead of guessing it, then waits (polling
// every 5 ms) until the test removes gate. Returns at once when gate is
// NULL or absent.
void test_gate_wait(const char *gate);

// The same gate for a caller that must not block (a main loop asking at
// every turn): true while gate exists, having made gate.reached; false
// when gate is NULL or absent.
bool test_gate_closed(const char *gate);

#endif
