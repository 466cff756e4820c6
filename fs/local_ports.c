/* local_ports.c — the registry of ports claimed by `raftfs local` clusters. */
#include "local_ports.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "local_cluster.h"

static void registry_dir(char *out, size_t len)
{
	const char *env = getenv("RAFTFS_PORT_DIR");

	snprintf(out, len, "%s", env && *env ? env : "/tmp/raftfs-ports");
}

static void claim_path(uint16_t port, char *out, size_t len)
{
	char reg[PATH_MAX];

	registry_dir(reg, sizeof(reg));
	snprintf(out, len, "%s/%u", reg, port);
}

/* Opens the registry and takes its lock (released by closing the
 * descriptor, also when the process dies). The descriptor, or -errno. */
static int registry_lock(void)
{
	char reg[PATH_MAX], lock[PATH_MAX + 8];
	int fd;

	registry_dir(reg, sizeof(reg));
	if (mkdir(reg, 01777) == 0)
		chmod(reg, 01777); /* past the umask: every user's clusters share it */
	else if (errno != EEXIST)
		return -errno;
	/* A registry this process cannot write (another user's 0755
	 * directory, a read-only RAFTFS_PORT_DIR) cannot take claims: the
	 * caller draws unclaimed, as the header promises. */
	if (access(reg, W_OK | X_OK) < 0)
		return -errno;
	snprintf(lock, sizeof(lock), "%s/lock", reg);
	/* Read-only is enough for flock, and works on another user's file. */
	fd = open(lock, O_RDONLY | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_EX) < 0) {
		int e = errno;

		close(fd);
		return -e;
	}
	return fd;
}

/* Whether the cluster in owner names port in one of its nodes' configs.
 * A cluster file that cannot be read counts as naming it: taking a port on
 * a misreading would hand a stopped node's port to another cluster (the
 * clash the registry is there to prevent), and keeping it costs one port
 * until the directory goes. */
static bool cluster_uses(const char *owner, uint16_t port)
{
	char err[PATH_MAX + 128];
	int n = local_count(owner, err, sizeof(err));

	if (n < 0)
		return true;
	for (int id = 1; id <= n; id++) {
		char addr[300], *colon;

		if (local_addr(owner, id, addr, sizeof(addr), err, sizeof(err)) < 0)
			continue;
		colon = strrchr(addr, ':');
		if (colon && atoi(colon + 1) == port)
			return true;
	}
	return false;
}

/* Whether the cluster whose directory is owner still exists (its cluster
 * file, written before it draws any port, is there). */
static bool owner_exists(const char *owner)
{
	char path[PATH_MAX + 16];

	snprintf(path, sizeof(path), "%s/cluster", owner);
	return owner[0] == '/' && access(path, F_OK) == 0;
}

/* Reads the claim at path (a symbolic link to its owner's directory: the
 * target lives in the inode, so a claim takes no data block) into owner,
 * and its age in seconds into *age. false if there is none. */
static bool read_claim(const char *path, char *owner, size_t len, long *age)
{
	struct stat st;
	ssize_t got;

	owner[0] = '\0';
	got = readlink(path, owner, len - 1);
	if (got < 0)
		return false;
	owner[got] = '\0';
	*age = lstat(path, &st) == 0 ? (long)(time(NULL) - st.st_mtime) : 0;
	return true;
}

/* The owner of the claim of port into owner (empty when there is none) and
 * whether that claim is live. A claim whose owner is gone is removed. */
static bool live_claim(uint16_t port, char *owner, size_t len)
{
	char path[PATH_MAX + 8];
	bool live = false;
	long age = 0;

	claim_path(port, path, sizeof(path));
	if (!read_claim(path, owner, len, &age)) {
		if (errno == ENOENT)
			return false;
		owner[0] = '\0'; /* not a claim this code wrote: replace it */
	}
	if (owner_exists(owner))
		live = cluster_uses(owner, port) || age < LOCAL_PORTS_GRACE_S;
	/* Gone: the claim is free. An unlink that fails (another user's
	 * claim in the sticky directory) keeps it taken. */
	if (!live && unlink(path) < 0 && errno != ENOENT)
		live = true;
	return live;
}

static int write_claim(const char *absdir, uint16_t port)
{
	char path[PATH_MAX + 8];

	claim_path(port, path, sizeof(path));
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	return symlink(absdir, path) < 0 ? -errno : 0;
}

/* Removes the claims of clusters whose directory is gone, so the registry
 * holds about as many entries as there are ports of existing clusters
 * (a draw only looks at the ports it tries). Called with the lock held. */
static void prune_dead(void)
{
	char reg[PATH_MAX], path[PATH_MAX + 300], owner[PATH_MAX];
	struct dirent *de;
	DIR *d;

	registry_dir(reg, sizeof(reg));
	d = opendir(reg);
	if (!d)
		return;
	while ((de = readdir(d))) {
		long age;

		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "%s/%s", reg, de->d_name);
		/* A plain file is no claim of this code's: drop it too. */
		if (read_claim(path, owner, sizeof(owner), &age) ? !owner_exists(owner)
								 : errno == EINVAL)
			unlink(path);
	}
	closedir(d);
}

/* A socket bound to port on 127.0.0.1 (port 0: any the kernel gives, read
 * back into *port), or -errno. */
static int bind_port(uint16_t *port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons(*port);
	/* As the node binds (libuv sets SO_REUSEADDR): connections of a
	 * removed cluster's nodes linger in TIME_WAIT on their ports for a
	 * minute and do not keep a new node from listening. */
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &(int){1}, sizeof(int));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl) < 0) {
		int e = errno;

		close(fd);
		return -e;
	}
	*port = ntohs(sa.sin_port);
	return fd;
}

/* The range to draw from, inclusive; lo = 0 when only the kernel's choice
 * (port 0) is left: an odd ephemeral range that starts near 10000. */
static int draw_range(unsigned *lo, unsigned *hi, char *err, size_t errlen)
{
	const char *env = getenv("RAFTFS_LOCAL_PORTS");
	unsigned elo = 32768, ehi = 60999;
	FILE *f;

	if (env && *env) {
		if (sscanf(env, "%u-%u", lo, hi) != 2 || *lo < 1 || *lo > *hi || *hi > 65535) {
			snprintf(err, errlen, "RAFTFS_LOCAL_PORTS=%s: want LO-HI within 1-65535",
				 env);
			return -EINVAL;
		}
		return 0;
	}
	f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
	if (f) {
		if (fscanf(f, "%u %u", &elo, &ehi) != 2)
			elo = 32768;
		fclose(f);
	}
	*lo = 10000;
	*hi = elo - 1;
	if (elo <= 11000)
		*lo = *hi = 0;
	return 0;
}

/* Whether port may be handed out: not chosen already in this draw, not
 * claimed by a live cluster (dir's own included: its stopped nodes). */
static bool unclaimed(int regfd, uint16_t port, const uint16_t *chosen, int n_chosen)
{
	char owner[PATH_MAX];

	for (int j = 0; j < n_chosen; j++)
		if (chosen[j] == port)
			return false;
	return regfd < 0 || !live_claim(port, owner, sizeof(owner));
}

int local_ports_draw(const char *dir, int n, uint16_t *ports, char *err, size_t errlen)
{
	int fds[CONFIG_MAX_PEERS], regfd, rc = 0, i;
	char absdir[PATH_MAX];
	unsigned lo, hi;

	if (n < 0 || n > CONFIG_MAX_PEERS) {
		snprintf(err, errlen, "drawing %d ports: at most %d", n, CONFIG_MAX_PEERS);
		return -EINVAL;
	}
	rc = draw_range(&lo, &hi, err, errlen);
	if (rc < 0)
		return rc;
	if (!realpath(dir, absdir)) {
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		return -errno;
	}
	regfd = registry_lock(); /* < 0: draw unclaimed */
	for (i = 0; i < n && rc == 0; i++) {
		unsigned span = hi - lo + 1, tries = lo ? span : 1000u;
		uint32_t r = 0;

		if (getrandom(&r, sizeof(r), 0) != sizeof(r))
			r = (uint32_t)rand();
		/* From a random point, every port of the range once: a narrow
		 * range (tests) is searched whole. */
		fds[i] = -1;
		for (unsigned k = 0; k < tries && fds[i] < 0 && rc == 0; k++) {
			uint16_t p = (uint16_t)(lo ? lo + (r + k) % span : 0);
			int fd;

			if (lo && !unclaimed(regfd, p, ports, i))
				continue;
			fd = bind_port(&p);
			if (fd == -EADDRINUSE)
				continue;
			if (fd < 0) {
				rc = fd;
				snprintf(err, errlen, "binding a port on 127.0.0.1: %s",
					 strerror(-rc));
			} else if (!lo && !unclaimed(regfd, p, ports, i)) {
				close(fd);
			} else {
				fds[i] = fd;
				ports[i] = p;
			}
		}
		if (fds[i] < 0) {
			if (rc == 0) {
				rc = -EADDRNOTAVAIL;
				snprintf(
				    err, errlen,
				    "no free port in %u-%u that no raftfs local cluster claims", lo,
				    hi);
			}
			break;
		}
	}
	/* Every chosen socket stays bound until all are chosen and claimed,
	 * so a process drawing without the registry cannot get them either. */
	for (int j = 0; rc == 0 && regfd >= 0 && j < n; j++) {
		rc = write_claim(absdir, ports[j]);
		/* Not allowed to write there after all: the ports stay drawn,
		 * unclaimed (those claimed already are this cluster's). */
		if (rc == -EACCES || rc == -EPERM || rc == -EROFS) {
			rc = 0;
			break;
		}
		if (rc < 0) {
			char path[PATH_MAX + 8];

			claim_path(ports[j], path, sizeof(path));
			snprintf(err, errlen, "%s: claiming port %u: %s", path, ports[j],
				 strerror(-rc));
		}
	}
	while (i-- > 0)
		close(fds[i]);
	if (regfd >= 0) {
		prune_dead();
		close(regfd);
	}
	return rc;
}

int local_ports_claim(const char *dir, uint16_t port)
{
	char absdir[PATH_MAX], owner[PATH_MAX];
	int regfd, rc;

	if (port == 0)
		return -EINVAL; /* no port in its config */
	if (!realpath(dir, absdir))
		return -errno;
	regfd = registry_lock();
	if (regfd < 0)
		return regfd;
	if (live_claim(port, owner, sizeof(owner)) && strcmp(owner, absdir))
		rc = -EADDRINUSE;
	else
		rc = write_claim(absdir, port);
	close(regfd);
	return rc;
}

void local_ports_release(const char *dir, uint16_t port)
{
	char absdir[PATH_MAX], owner[PATH_MAX], path[PATH_MAX + 8];
	long age;
	int regfd;

	if (!realpath(dir, absdir))
		return;
	regfd = registry_lock();
	if (regfd < 0)
		return;
	/* Only dir's own claim goes: another cluster's, live or not, is for
	 * a claim or prune_dead to judge. */
	claim_path(port, path, sizeof(path));
	if (read_claim(path, owner, sizeof(owner), &age) && !strcmp(owner, absdir))
		unlink(path);
	close(regfd);
}
