// test_gate.c — a test hook's gate (test_gate.h).
#include "test_gate.h"

#include <fcntl.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

void test_gate_wait(const char *gate)
{
	struct timespec nap = {0, 5 * 1000 * 1000};
	char reached[4096];
	int fd;

	if (!gate || access(gate, F_OK) != 0)
		return;
	snprintf(reached, sizeof(reached), "%s.reached", gate);
	if ((fd = open(reached, O_CREAT | O_WRONLY | O_CLOEXEC, 0644)) >= 0)
		close(fd);
	while (access(gate, F_OK) == 0)
		nanosleep(&nap, NULL);
}

bool test_gate_closed(const char *gate)
{
	char reached[4096];
	int fd;

	if (!gate || access(gate, F_OK) != 0)
		return false;
	snprintf(reached, sizeof(reached), "%s.reached", gate);
	if ((fd = open(reached, O_CREAT | O_WRONLY | O_CLOEXEC, 0644)) >= 0)
		close(fd);
	return true;
}
