// Test hooks' switches and gates (fs/test_gate.h): a gate opens when the
// test removes its file, and for good once the process is stopping (a
// node's stop joins the apply thread a gate may hold: before, a gate file
// left behind held it until SIGKILL); a hook's variable is warned about
// once per name.
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_gate.h"

static char dir[] = "/tmp/raftfs-test-gate.XXXXXX";
static char gate[64], reached[80];

static void *waiter(void *arg)
{
	(void)arg;
	test_gate_wait(gate);
	return NULL;
}

// Until the waiter made gate.reached: it is at the gate.
static void await_reached(void)
{
	struct timespec nap = {0, 5 * 1000 * 1000};

	while (access(reached, F_OK) != 0)
		nanosleep(&nap, NULL);
}

static void close_gate(void)
{
	unlink(reached);
	int fd = open(gate, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	close(fd);
}

static void test_removed_gate_opens(void **state)
{
	pthread_t th;

	(void)state;
	close_gate();
	assert_int_equal(pthread_create(&th, NULL, waiter, NULL), 0);
	await_reached();
	assert_true(test_gate_closed(gate));
	assert_int_equal(unlink(gate), 0);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_false(test_gate_closed(gate));
}

// Runs after test_removed_gate_opens: the stop is for good.
static void test_stop_opens_every_gate(void **state)
{
	pthread_t th;

	(void)state;
	close_gate();
	assert_int_equal(pthread_create(&th, NULL, waiter, NULL), 0);
	await_reached();
	test_gate_stop();
	// Without the stop this join waits for ever (ctest's TIMEOUT fails it).
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(access(gate, F_OK), 0); // it went on with the file there
	assert_false(test_gate_closed(gate));
	test_gate_wait(gate); // returns at once
	unlink(gate);
	unlink(reached);
}

// Lines of path holding needle.
static int count_lines(const char *path, const char *needle)
{
	char line[1024];
	int n = 0;
	FILE *f = fopen(path, "r");

	assert_non_null(f);
	while (fgets(line, sizeof(line), f))
		n += strstr(line, needle) != NULL;
	fclose(f);
	return n;
}

static void test_hook_warned_once(void **state)
{
	char log[80];
	int saved = dup(STDERR_FILENO), fd;

	(void)state;
	snprintf(log, sizeof(log), "%s/log", dir);
	fd = open(log, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
	assert_true(fd >= 0 && saved >= 0);
	fflush(stderr);
	assert_true(dup2(fd, STDERR_FILENO) >= 0);
	setenv("RAFTFS_TEST_GATE_T1", "x", 1);
	setenv("RAFTFS_TEST_GATE_T2", "y", 1);
	unsetenv("RAFTFS_TEST_GATE_T3");
	for (int i = 0; i < 3; i++) {
		assert_string_equal(test_hook_env("RAFTFS_TEST_GATE_T1"), "x");
		assert_string_equal(test_hook_env("RAFTFS_TEST_GATE_T2"), "y");
		assert_null(test_hook_env("RAFTFS_TEST_GATE_T3"));
	}
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(fd);
	assert_int_equal(count_lines(log, "WARNING: test hook RAFTFS_TEST_GATE_T1=x"), 1);
	assert_int_equal(count_lines(log, "WARNING: test hook RAFTFS_TEST_GATE_T2=y"), 1);
	assert_int_equal(count_lines(log, "RAFTFS_TEST_GATE_T3"), 0);
	unlink(log);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_removed_gate_opens),
	    cmocka_unit_test(test_stop_opens_every_gate),
	    cmocka_unit_test(test_hook_warned_once),
	};

	if (!mkdtemp(dir))
		return 1;
	snprintf(gate, sizeof(gate), "%s/gate", dir);
	snprintf(reached, sizeof(reached), "%s/gate.reached", dir);
	int failed = cmocka_run_group_tests(tests, NULL, NULL);
	rmdir(dir);
	return failed;
}
