/* fuse_guard.c — the child that aborts a dead node's FUSE connection. */
#include "fuse_guard.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test_gate.h"

#define FUSECTL_DIR "/sys/fs/fuse/connections"

struct fuse_guard {
	pid_t pid;
	int disarm_fd; /* write end: one byte says "unmounted cleanly" */
};

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static void unescape(char *s)
{
	char *out = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*out++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 3;
		} else {
			*out++ = *s;
		}
	}
	*out = '\0';
}

int fuse_guard_connection(const char *mountpoint, unsigned *conn)
{
	static char line[3 * 4096 + 512], mp[3 * 4096 + 1];
	FILE *f = fopen("/proc/self/mountinfo", "re");
	int rc = -ENOENT;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		unsigned major, minor;
		const char *sep = strstr(line, " - ");

		if (!sep || strncmp(sep + 3, "fuse", 4) != 0 ||
		    sscanf(line, "%*u %*u %u:%u %*s %12288s", &major, &minor, mp) != 3)
			continue;
		unescape(mp);
		if (major == 0 && strcmp(mp, mountpoint) == 0) {
			*conn = minor;
			rc = 0;
		}
	}
	fclose(f);
	return rc;
}

/* The connection's abort file, mounting fusectl if nobody has. */
static int abort_file(unsigned conn, char *path, size_t size)
{
	snprintf(path, size, FUSECTL_DIR "/%u/abort", conn);
	if (access(path, W_OK) == 0)
		return 0;
	if (mount("fusectl", FUSECTL_DIR, "fusectl", 0, NULL) < 0 && errno != EBUSY)
		return -errno;
	return access(path, W_OK) == 0 ? 0 : -errno;
}

/* Test hook (RAFTFS_TEST_GUARD_GATE=FILE): a guard about to abort for its
 * dead node makes FILE.reached and waits while FILE exists, at most
 * TEST_GATE_MAX_S, as a guard on a loaded machine may run late
 * (tests/mount/mount_guard_reuse.sh). System calls only (the child's
 * rule): both names are made before the fork. */
static void guard_gate(const char *gate, const char *reached)
{
	struct timespec ts = {0, 5 * 1000 * 1000};
	int fd;

	if (!gate || access(gate, F_OK) != 0)
		return;
	fd = open(reached, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (fd >= 0)
		close(fd);
	for (int i = 0; i < TEST_GATE_MAX_S * 200 && access(gate, F_OK) == 0; i++)
		nanosleep(&ts, NULL);
}

/* The child. Only system calls from here on: it is a fork of a process
 * with many threads, whose locks (malloc's, stdio's) may be held by
 * threads that do not exist in the child. */
static void __attribute__((noreturn)) guard_main(int disarm_fd, int abort_fd, pid_t parent,
						 const char *gate, const char *reached)
{
	/* Above 4 first, so that neither lands on the other's new number. */
	int d = fcntl(disarm_fd, F_DUPFD, 5), a = fcntl(abort_fd, F_DUPFD, 5);
	sigset_t usr1;
	int sig_fd;

	/* Keep the disarm pipe (as 3), the abort file (as 4) and stderr;
	 * above all, let go of /dev/fuse and the store's lock, which the
	 * node's death must free. */
	if (d < 0 || a < 0 || dup2(d, 3) < 0 || dup2(a, 4) < 0)
		_exit(1);
	close_range(5, ~0U, 0);
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	sigprocmask(SIG_BLOCK, &usr1, NULL);
	sig_fd = signalfd(-1, &usr1, 0);
	prctl(PR_SET_NAME, "raftfs-guard");
	/* The kernel sends SIGUSR1 when the thread that forked exits: the
	 * node's main thread, which unmounts and disarms before it returns. */
	if (sig_fd < 0 || prctl(PR_SET_PDEATHSIG, SIGUSR1) < 0)
		_exit(1);
	while (getppid() == parent) {
		struct pollfd p[2] = {{.fd = 3, .events = POLLIN}, {.fd = sig_fd, .events = POLLIN}};
		char c;

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			_exit(1);
		}
		if (p[1].revents)
			break; /* the node is dying without having unmounted */
		if (p[0].revents) {
			/* A byte: unmounted cleanly. End of file: every thread
			 * of the node has gone, and the kernel aborted the
			 * connection itself when /dev/fuse closed. */
			if (read(3, &c, 1) >= 0)
				_exit(0);
		}
	}
	guard_gate(gate, reached);
	/* The file opened at the start: once the connection is gone, a write
	 * to it does nothing (fuse_guard_start says why not by its path). */
	if (write(4, "1", 1) < 0)
		_exit(1);
	_exit(0);
}

int fuse_guard_start(const char *mountpoint, struct fuse_guard **out)
{
	char path[sizeof(FUSECTL_DIR) + 32], reached[4096];
	const char *gate = test_hook_env("RAFTFS_TEST_GUARD_GATE");
	struct fuse_guard *g;
	pid_t parent = getpid();
	unsigned conn = 0;
	int pipe_fds[2], abort_fd, rc;

	if (gettid() != parent)
		return -EINVAL; /* the death signal follows the forking thread */
	rc = fuse_guard_connection(mountpoint, &conn);
	if (rc == 0)
		rc = abort_file(conn, path, sizeof(path));
	if (rc < 0)
		return rc;
	/* Opened now, not at the node's death: a connection's number is its
	 * device's minor, which the kernel hands out again (the lowest free)
	 * once the mount is gone. A guard that ran late (a loaded machine)
	 * after its node's dead mount was detached (a restart detaches it,
	 * fuse_mount.c's dead_mount) opened the number's abort file then and
	 * aborted whichever mount had the number by then: the restarted
	 * node's own, or another's, which stopped ("was unmounted"). This
	 * file stays this connection's: fusectl unbinds it when the
	 * connection goes, and a write to it then does nothing. */
	abort_fd = open(path, O_WRONLY | O_CLOEXEC);
	if (abort_fd < 0)
		return -errno;
	g = calloc(1, sizeof(*g));
	if (!g) {
		close(abort_fd);
		return -ENOMEM;
	}
	if (pipe2(pipe_fds, O_CLOEXEC) < 0) {
		rc = -errno;
		close(abort_fd);
		free(g);
		return rc;
	}
	snprintf(reached, sizeof(reached), "%s.reached", gate ? gate : "");
	g->pid = fork();
	if (g->pid == 0)
		guard_main(pipe_fds[0], abort_fd, parent, gate, reached);
	rc = g->pid < 0 ? -errno : 0;
	close(pipe_fds[0]);
	close(abort_fd);
	if (rc < 0) {
		close(pipe_fds[1]);
		free(g);
		return rc;
	}
	g->disarm_fd = pipe_fds[1];
	*out = g;
	return 0;
}

void fuse_guard_stop(struct fuse_guard *g)
{
	if (!g)
		return;
	if (write(g->disarm_fd, "x", 1) < 0)
		kill(g->pid, SIGKILL);
	close(g->disarm_fd);
	while (waitpid(g->pid, NULL, 0) < 0 && errno == EINTR)
		;
	free(g);
}
