/* local_cluster.c — files and processes of a `raftfs local` cluster. */
#include "local_cluster.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "local_ports.h"
#include "mono_ms.h"

#define FUSE_SUPER_MAGIC 0x65735546

bool local_is_fs(const char *dir)
{
	char path[PATH_MAX], kind[16] = "";
	FILE *f;

	snprintf(path, sizeof(path), "%s/cluster", dir);
	f = fopen(path, "r");
	if (!f)
		return false;
	if (fscanf(f, "%*d %*s %15s", kind) != 1)
		kind[0] = '\0';
	fclose(f);
	return !strcmp(kind, "fs");
}

/* A node's own files: DIR/n<id> for a kv cluster; for a filesystem cluster
 * DIR/n<id> is the node's mount and its files are in DIR/node<id>. */
static void node_path(const char *dir, int id, const char *file, char *out, size_t len)
{
	snprintf(out, len, "%s/%s%d%s%s", dir, local_is_fs(dir) ? "node" : "n", id, file ? "/" : "",
		 file ? file : "");
}

void local_node_dir(const char *dir, int id, char *out, size_t len)
{
	node_path(dir, id, NULL, out, len);
}

void local_mount_path(const char *dir, int id, char *out, size_t len)
{
	snprintf(out, len, "%s/n%d", dir, id);
}

/* The port of node id's [peers] entry in its own config, or 0. */
static uint16_t node_port(const char *dir, int id)
{
	char addr[128], err[PATH_MAX + 64], *colon;

	if (local_addr(dir, id, addr, sizeof(addr), err, sizeof(err)) < 0)
		return 0;
	colon = strrchr(addr, ':');
	return colon ? (uint16_t)atoi(colon + 1) : 0;
}

bool local_port_taken(const char *dir, int id)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	uint16_t port = node_port(dir, id);
	bool taken;
	int fd;

	if (!port)
		return false;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons(port);
	/* As the node binds (libuv sets SO_REUSEADDR): the connections of the
	 * node's last run that linger in TIME_WAIT on its port would fail a
	 * plain bind, and do not keep the node from listening. */
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &(int){1}, sizeof(int));
	taken = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno == EADDRINUSE;
	close(fd);
	return taken;
}

/* Replaces the line "<id> = 127.0.0.1:<old>" of the config file ini with
 * the same address on port new_port; every other byte stays as it was. */
static int rewrite_peer_port(const char *ini, int id, uint16_t old, uint16_t new_port)
{
	char want[64], tmp[PATH_MAX + 8], line[4096];
	FILE *in, *out;
	int found = 0, rc = 0;

	snprintf(want, sizeof(want), "%d = 127.0.0.1:%u\n", id, old);
	snprintf(tmp, sizeof(tmp), "%s.new", ini);
	in = fopen(ini, "r");
	if (!in)
		return -errno;
	out = fopen(tmp, "w");
	if (!out) {
		rc = -errno;
		fclose(in);
		return rc;
	}
	while (fgets(line, sizeof(line), in)) {
		if (!strcmp(line, want)) {
			fprintf(out, "%d = 127.0.0.1:%u\n", id, new_port);
			found = 1;
		} else {
			fputs(line, out);
		}
	}
	if (ferror(in) || ferror(out))
		rc = -EIO;
	fclose(in);
	if (fclose(out) != 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && !found)
		rc = -ENOENT;
	if (rc == 0 && rename(tmp, ini) < 0)
		rc = -errno;
	if (rc < 0)
		unlink(tmp);
	return rc;
}

int local_move_node(const char *dir, int n, int id, char *err, size_t errlen)
{
	uint16_t old = node_port(dir, id), port;
	int rc;

	if (!old) {
		snprintf(err, errlen, "%s: node %d has no address to move", dir, id);
		return -EINVAL;
	}
	/* Not the port of another node of this cluster (stopped: its port is
	 * free, but it will bind it again). */
	for (int tries = 0;; tries++) {
		bool ours = false;

		rc = local_ports_draw(dir, 1, &port, err, errlen);
		if (rc < 0)
			return rc;
		for (int i = 1; i <= n; i++)
			ours |= node_port(dir, i) == port;
		if (!ours || tries == 100)
			break;
	}
	for (int i = 1; i <= n; i++) {
		char ini[PATH_MAX];

		node_path(dir, i, "raftfs.ini", ini, sizeof(ini));
		rc = rewrite_peer_port(ini, id, old, port);
		if (rc < 0) {
			snprintf(err, errlen, "%s: moving node %d from port %u to %u: %s", ini, id,
				 old, port, strerror(-rc));
			return rc;
		}
	}
	local_ports_release(dir, old);
	return 0;
}

/* Writes DIR/cluster ("<count> <name> <kind>") through a temporary file
 * and a rename, so a reader never sees it empty or half written: another
 * process's port draw reads it to tell whether a claim is live
 * (local_ports.c), and an empty file in between would make a stopped
 * node's port look free and make node_path() take DIR/n<id> (a filesystem
 * cluster's mount) for the node's own directory. */
static int write_cluster_file(const char *dir, int n, const char *name, const char *kind, char *err,
			      size_t errlen)
{
	char path[PATH_MAX], tmp[PATH_MAX + 8];
	FILE *f;
	int rc = 0;

	snprintf(path, sizeof(path), "%s/cluster", dir);
	snprintf(tmp, sizeof(tmp), "%s.new", path);
	f = fopen(tmp, "w");
	if (!f) {
		rc = -errno;
		snprintf(err, errlen, "%s: create: %s", tmp, strerror(-rc));
		return rc;
	}
	if (fprintf(f, "%d %s %s\n", n, name, kind) < 0)
		rc = -EIO;
	if (fclose(f) != 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc < 0) {
		snprintf(err, errlen, "%s: write: %s", path, strerror(-rc));
		unlink(tmp);
	}
	return rc;
}

int local_create(const char *dir, int n, char *err, size_t errlen)
{
	char path[PATH_MAX], name[32];
	uint16_t ports[CONFIG_MAX_PEERS];
	uint32_t rnd = 0;
	node_config cfg;
	const char *sm;
	int rc;

	if (n < 1 || n > CONFIG_MAX_PEERS) {
		snprintf(err, errlen, "node count %d out of range 1..%d", n, CONFIG_MAX_PEERS);
		return -EINVAL;
	}
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "%s: mkdir: %s", dir, strerror(errno));
		return -errno;
	}
	snprintf(path, sizeof(path), "%s/cluster", dir);
	if (access(path, F_OK) == 0) {
		snprintf(err, errlen,
			 "%s: a cluster exists there already (raftfs local down %s, "
			 "then remove it)",
			 dir, dir);
		return -EEXIST;
	}
	sm = getenv("RAFTFS_LOCAL_SM") ? getenv("RAFTFS_LOCAL_SM") : "fs";
	if (strcmp(sm, "fs") && strcmp(sm, "kv")) {
		snprintf(err, errlen, "RAFTFS_LOCAL_SM=%s: want fs or kv", sm);
		return -EINVAL;
	}
	/* The kind first: node_path() depends on it. */
	rc = write_cluster_file(dir, n, "-", sm, err, errlen);
	if (rc < 0)
		return rc;
	/* Claimed in the registry until the directory goes (local_ports.h):
	 * no other cluster draws a port of a node of this one that is down. */
	rc = local_ports_draw(dir, n, ports, err, errlen);
	if (rc < 0)
		return rc;
	/* A name of its own, so two local clusters never accept each other. */
	if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
		rnd = (uint32_t)getpid() ^ (uint32_t)time(NULL);
	snprintf(name, sizeof(name), "local-%08x", rnd);
	config_defaults(&cfg);
	snprintf(cfg.cluster, sizeof(cfg.cluster), "%s", name);
	cfg.n_peers = (size_t)n;
	for (int i = 0; i < n; i++) {
		cfg.peers[i].id = (uint64_t)i + 1;
		snprintf(cfg.peers[i].host, sizeof(cfg.peers[i].host), "127.0.0.1");
		cfg.peers[i].port = ports[i];
	}
	for (int i = 1; i <= n; i++) {
		char nd[PATH_MAX], ini[PATH_MAX + 16];

		node_path(dir, i, NULL, nd, sizeof(nd));
		if (mkdir(nd, 0755) < 0 && errno != EEXIST) {
			snprintf(err, errlen, "%s: mkdir: %s", nd, strerror(errno));
			return -errno;
		}
		cfg.id = (uint64_t)i;
		snprintf(cfg.state_machine, sizeof(cfg.state_machine), "%s", sm);
		if (!strcmp(sm, "fs")) {
			char mnt[PATH_MAX];

			local_mount_path(dir, i, mnt, sizeof(mnt));
			if (mkdir(mnt, 0755) < 0 && errno != EEXIST) {
				snprintf(err, errlen, "%s: mkdir: %s", mnt, strerror(errno));
				return -errno;
			}
			if (!realpath(mnt, cfg.mount))
				snprintf(cfg.mount, sizeof(cfg.mount), "%s", mnt);
		}
		node_path(dir, i, "data", cfg.data_dir, sizeof(cfg.data_dir));
		node_path(dir, i, "raftfs.ini", ini, sizeof(ini));
		rc = config_write_file(&cfg, ini);
		if (rc < 0) {
			snprintf(err, errlen, "%s: write: %s", ini, strerror(-rc));
			return rc;
		}
	}
	return write_cluster_file(dir, n, name, sm, err, errlen);
}

int local_name(const char *dir, char *name, size_t len)
{
	char path[PATH_MAX], buf[128] = "";
	FILE *f;

	snprintf(path, sizeof(path), "%s/cluster", dir);
	f = fopen(path, "r");
	if (!f)
		return -errno;
	if (fscanf(f, "%*d %127s", buf) != 1 || !strcmp(buf, "-"))
		buf[0] = '\0';
	fclose(f);
	if (!buf[0])
		return -EINVAL;
	snprintf(name, len, "%s", buf);
	return 0;
}

int local_count(const char *dir, char *err, size_t errlen)
{
	char path[PATH_MAX];
	FILE *f;
	int n = 0;

	snprintf(path, sizeof(path), "%s/cluster", dir);
	f = fopen(path, "r");
	if (!f) {
		snprintf(err, errlen, "%s: %s (not a raftfs local cluster?)", path,
			 strerror(errno));
		return -ENOENT;
	}
	if (fscanf(f, "%d", &n) != 1 || n < 1 || n > CONFIG_MAX_PEERS) {
		fclose(f);
		snprintf(err, errlen, "%s: malformed", path);
		return -EINVAL;
	}
	fclose(f);
	return n;
}

int local_addr(const char *dir, int id, char *addr, size_t len, char *err, size_t errlen)
{
	char ini[PATH_MAX];
	node_config cfg;
	const config_peer *p;
	int rc;

	node_path(dir, id, "raftfs.ini", ini, sizeof(ini));
	config_defaults(&cfg);
	rc = config_load_file(&cfg, ini, err, errlen);
	if (rc < 0)
		return rc;
	p = config_peer_find(&cfg, (uint64_t)id);
	if (!p) {
		snprintf(err, errlen, "%s: node %d not among its peers", ini, id);
		return -EINVAL;
	}
	snprintf(addr, len, "%s:%u", p->host, p->port);
	return 0;
}

/* Threads of pid not yet exited (the "Threads:" line of its status). */
static int threads_left(pid_t pid)
{
	char path[64], line[128];
	int n = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Threads: %d", &n) == 1)
			break;
	fclose(f);
	return n;
}

/* A zombie main thread whose other threads are still exiting: the process
 * still holds its files (the store's lock) and its mount. This lasted over
 * a second for a node killed by a signal while it unmounted. */
static bool exiting(pid_t pid)
{
	return threads_left(pid) > 1;
}

/* Alive and not a zombie (a node whose parent exited may linger as a
 * zombie where nothing reaps it); a process still exiting is alive. */
static bool alive(pid_t pid)
{
	char path[64], buf[256], *p;
	FILE *f;
	bool live = false;

	if (pid <= 0 || kill(pid, 0) < 0)
		return false;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return false;
	if (fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')')) && p[1] == ' ')
		live = p[2] != 'Z' && p[2] != 'X';
	fclose(f);
	return live || exiting(pid);
}

pid_t local_pid(const char *dir, int id)
{
	char path[PATH_MAX], cmd[4096], want[PATH_MAX + 16];
	long pid = 0;
	FILE *f;
	size_t n;
	int fd;

	node_path(dir, id, "pid", path, sizeof(path));
	f = fopen(path, "r");
	if (!f)
		return 0;
	if (fscanf(f, "%ld", &pid) != 1)
		pid = 0;
	fclose(f);
	if (!alive((pid_t)pid))
		return 0;
	/* Guard against a recycled pid: the process must run our config. */
	snprintf(path, sizeof(path), "/proc/%ld/cmdline", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = (size_t)(read(fd, cmd, sizeof(cmd) - 1) > 0 ? lseek(fd, 0, SEEK_CUR) : 0);
	close(fd);
	/* An exiting process shows no command line any more; its pid is not
	 * free for reuse yet, so it is still the node of the pid file. */
	if (n == 0 && exiting((pid_t)pid))
		return (pid_t)pid;
	for (size_t i = 0; i < n; i++)
		if (cmd[i] == '\0')
			cmd[i] = ' ';
	cmd[n] = '\0';
	node_path(dir, id, "raftfs.ini", want, sizeof(want));
	return strstr(cmd, want) ? (pid_t)pid : 0;
}

int local_start(const char *dir, int id, char *err, size_t errlen)
{
	char ini[PATH_MAX], log[PATH_MAX], pidf[PATH_MAX], self[PATH_MAX];
	ssize_t sl;
	pid_t pid;
	FILE *f;

	if (local_pid(dir, id) > 0)
		return 0;
	node_path(dir, id, "raftfs.ini", ini, sizeof(ini));
	node_path(dir, id, "node.log", log, sizeof(log));
	node_path(dir, id, "pid", pidf, sizeof(pidf));
	if (access(ini, R_OK) < 0) {
		snprintf(err, errlen, "%s: %s (no node %d in this cluster?)", ini, strerror(errno),
			 id);
		return -ENOENT;
	}
	sl = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (sl < 0) {
		snprintf(err, errlen, "/proc/self/exe: %s", strerror(errno));
		return -errno;
	}
	self[sl] = '\0';
	/* A cluster created before the registry, or moved to another
	 * directory, claims its ports as it runs; best effort (a port claimed
	 * by another cluster shows as a failed listen, reported by the
	 * caller). */
	(void)local_ports_claim(dir, node_port(dir, id));
	pid = fork();
	if (pid < 0) {
		snprintf(err, errlen, "fork: %s", strerror(errno));
		return -errno;
	}
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);

		/* Its own session: it outlives this command and its terminal. */
		setsid();
		if (fd < 0 || nul < 0 || dup2(nul, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
			_exit(127);
		/* Where this run's lines begin (local_log_tail). */
		dprintf(1, "%s pid %d\n", LOCAL_START_MARK, (int)getpid());
		/* Nothing else of the caller's: a file it has open on a mount
		 * of the cluster would stay open, held by the node, for as
		 * long as the node runs (an unlinked file then never goes). */
		close_range(3, ~0u, 0);
		execl(self, "raftfs", "node", "--config", ini, (char *)NULL);
		_exit(127);
	}
	f = fopen(pidf, "w");
	if (!f || fprintf(f, "%d\n", (int)pid) < 0 || fclose(f) != 0) {
		snprintf(err, errlen, "%s: write: %s", pidf, strerror(errno));
		kill(pid, SIGKILL);
		return -EIO;
	}
	return 0;
}

int local_signal(const char *dir, int id, int sig, unsigned wait_ms, bool escalate)
{
	pid_t pid = local_pid(dir, id);
	long long deadline = mono_ms() + wait_ms;

	if (pid <= 0)
		return 0;
	kill(pid, sig);
	for (;;) {
		struct timespec ts = {0, 5 * 1000 * 1000};

		/* Reaps it when it is our own child (started by this process). */
		waitpid(pid, NULL, WNOHANG);
		if (!alive(pid))
			return 0;
		if (mono_ms() > deadline) {
			if (!escalate)
				return -ETIMEDOUT;
			kill(pid, SIGKILL);
			escalate = false;
			deadline = mono_ms() + 5000;
		}
		nanosleep(&ts, NULL);
	}
}

bool local_is_fuse(const char *path)
{
	struct statfs sfs;

	return statfs(path, &sfs) == 0 && sfs.f_type == FUSE_SUPER_MAGIC;
}

/* A FUSE mount answers at path with the root (inode 1). */
static bool mount_answers(const char *path)
{
	struct stat st;

	return local_is_fuse(path) && stat(path, &st) == 0 && st.st_ino == 1;
}

bool local_alive(const char *dir, int id)
{
	char path[PATH_MAX];
	long pid = 0;
	FILE *f;

	node_path(dir, id, "pid", path, sizeof(path));
	f = fopen(path, "r");
	if (!f)
		return false;
	if (fscanf(f, "%ld", &pid) != 1)
		pid = 0;
	fclose(f);
	/* Not reaped here: a child that exited stays a zombie (not alive)
	 * until local_exit_desc tells how it ended. */
	return alive((pid_t)pid);
}

int local_exit_desc(const char *dir, int id, char *out, size_t len)
{
	char path[PATH_MAX];
	long pid = 0;
	int status;
	FILE *f;

	snprintf(out, len, "exited (how is unknown: not started by this command)");
	node_path(dir, id, "pid", path, sizeof(path));
	f = fopen(path, "r");
	if (!f)
		return -ESRCH;
	if (fscanf(f, "%ld", &pid) != 1)
		pid = 0;
	fclose(f);
	if (pid <= 0 || waitpid((pid_t)pid, &status, WNOHANG) != (pid_t)pid)
		return -ESRCH;
	if (WIFEXITED(status))
		snprintf(out, len, "exited with status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(out, len, "was killed by signal %d (%s)", WTERMSIG(status),
			 strsignal(WTERMSIG(status)));
	return 0;
}

int local_wait_mount(const char *dir, int id, unsigned timeout_ms)
{
	long long deadline = mono_ms() + timeout_ms;
	char mnt[PATH_MAX];

	if (!local_is_fs(dir))
		return 0;
	local_mount_path(dir, id, mnt, sizeof(mnt));
	while (!mount_answers(mnt)) {
		struct timespec ts = {0, 20 * 1000 * 1000};

		if (!local_alive(dir, id))
			return -ESRCH;
		if (mono_ms() > deadline)
			return -ETIMEDOUT;
		nanosleep(&ts, NULL);
	}
	return 0;
}

void local_unmount(const char *dir, int id)
{
	char mnt[PATH_MAX];
	struct statfs sfs;

	if (!local_is_fs(dir))
		return;
	local_mount_path(dir, id, mnt, sizeof(mnt));
	/* A killed node's mount fails with ENOTCONN; a live one is FUSE. */
	if ((statfs(mnt, &sfs) < 0 && errno == ENOTCONN) || local_is_fuse(mnt))
		umount2(mnt, MNT_DETACH);
}

int local_add_node(const char *dir, int like, const config_peer *members, size_t n_members,
		   int *id, char *err, size_t errlen)
{
	char ini[PATH_MAX + 16], nd[PATH_MAX], name[128], kind[16] = "";
	uint16_t port;
	node_config cfg;
	int n, rc;

	n = local_count(dir, err, errlen);
	if (n < 0)
		return n;
	if (n >= CONFIG_MAX_PEERS || n_members >= CONFIG_MAX_PEERS) {
		snprintf(err, errlen, "%s: %d nodes, the most a cluster may have", dir, n);
		return -ENOSPC;
	}
	node_path(dir, like, "raftfs.ini", ini, sizeof(ini));
	config_defaults(&cfg);
	rc = config_load_file(&cfg, ini, err, errlen);
	if (rc < 0)
		return rc;
	rc = local_ports_draw(dir, 1, &port, err, errlen);
	if (rc < 0)
		return rc;
	*id = n + 1;
	for (size_t i = 0; i < n_members; i++)
		if (members[i].id == (uint64_t)*id) {
			snprintf(err, errlen,
				 "node id %d is a member already (the cluster's files in %s do "
				 "not match the cluster)",
				 *id, dir);
			return -EEXIST;
		}
	memcpy(cfg.peers, members, n_members * sizeof(*members));
	cfg.n_peers = n_members;
	cfg.peers[cfg.n_peers].id = (uint64_t)*id;
	snprintf(cfg.peers[cfg.n_peers].host, sizeof(cfg.peers[0].host), "127.0.0.1");
	cfg.peers[cfg.n_peers].port = port;
	cfg.n_peers++;
	cfg.id = (uint64_t)*id;
	cfg.join = true;
	cfg.listen_host[0] = '\0';
	node_path(dir, *id, NULL, nd, sizeof(nd));
	if (mkdir(nd, 0755) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "%s: mkdir: %s", nd, strerror(errno));
		return -errno;
	}
	if (local_is_fs(dir)) {
		char mnt[PATH_MAX];

		local_mount_path(dir, *id, mnt, sizeof(mnt));
		if (mkdir(mnt, 0755) < 0 && errno != EEXIST) {
			snprintf(err, errlen, "%s: mkdir: %s", mnt, strerror(errno));
			return -errno;
		}
		if (!realpath(mnt, cfg.mount))
			snprintf(cfg.mount, sizeof(cfg.mount), "%s", mnt);
	}
	node_path(dir, *id, "data", cfg.data_dir, sizeof(cfg.data_dir));
	node_path(dir, *id, "raftfs.ini", ini, sizeof(ini));
	rc = config_write_file(&cfg, ini);
	if (rc < 0) {
		snprintf(err, errlen, "%s: write: %s", ini, strerror(-rc));
		return rc;
	}
	/* The count last: a failure above leaves the cluster as it was. */
	if (local_name(dir, name, sizeof(name)) < 0)
		snprintf(name, sizeof(name), "-");
	snprintf(kind, sizeof(kind), "%s", local_is_fs(dir) ? "fs" : "kv");
	return write_cluster_file(dir, n + 1, name, kind, err, errlen);
}

int local_mark_removed(const char *dir, int id)
{
	char path[PATH_MAX];
	int fd;

	node_path(dir, id, "removed", path, sizeof(path));
	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	close(fd);
	return 0;
}

bool local_removed(const char *dir, int id)
{
	char path[PATH_MAX];

	node_path(dir, id, "removed", path, sizeof(path));
	return access(path, F_OK) == 0;
}

int local_members(const char *dir, int *ids, int max, char *err, size_t errlen)
{
	int n = local_count(dir, err, errlen), m = 0;

	if (n < 0)
		return n;
	for (int id = 1; id <= n; id++)
		if (!local_removed(dir, id) && m < max)
			ids[m++] = id;
	if (m == 0) {
		snprintf(err, errlen, "%s: every node was removed", dir);
		return -ENOENT;
	}
	return m;
}
