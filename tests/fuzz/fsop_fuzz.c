/* fsop_fuzz.c — seeded random filesystem operations on raftfs mounts, checked against a local directory. */
#include "fz.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* How often each kind runs, out of the sum. */
static const int weights[K_NKINDS] = {
    [K_OPEN] = 10,   [K_CLOSE] = 5,    [K_WRITE] = 12,   [K_READ] = 8,	 [K_FTRUNC] = 3,
    [K_FALLOC] = 3,  [K_LSEEK] = 3,    [K_COPY] = 2,	 [K_FSYNC] = 3,	 [K_FSTAT] = 3,
    [K_STAT] = 5,    [K_TRUNC] = 2,    [K_MKDIR] = 6,	 [K_RMDIR] = 3,	 [K_UNLINK] = 5,
    [K_RENAME] = 7,  [K_LINK] = 3,     [K_SYMLINK] = 3,	 [K_READLINK] = 2, [K_CHMOD] = 2,
    [K_CHOWN] = 2,   [K_UTIMENS] = 2,  [K_SETXATTR] = 3, [K_GETXATTR] = 2, [K_LISTXATTR] = 2,
    [K_RMXATTR] = 2, [K_READDIR] = 3,  [K_MKFIFO] = 1,	 [K_DURABLE] = 2,
};

static bool is_fd_kind(int k)
{
	return k >= K_CLOSE && k <= K_FSTAT;
}

static const char *volatile g_desc;

/* A hung operation is a finding: name it, then die of the alarm. */
static void on_alarm(int sig)
{
	static const char msg[] = "\nfsop_fuzz: operation hung: ";
	const char *d = g_desc;

	(void)!write(2, msg, sizeof(msg) - 1);
	(void)!write(2, d, strlen(d));
	(void)!write(2, "\n", 1);
	signal(sig, SIG_DFL);
	raise(sig);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: fsop_fuzz [-s SEED] [-n OPS] [-k CHECK_EVERY] [-t SECONDS] [-v] [-L|-l|-c] [-g]\n"
		"                 [-d MANIFEST] MODEL_DIR MOUNT_DIR [MOUNT_DIR...]\n"
		"       fsop_fuzz -x [-s SEED] [-n OPS] [-g] [-d MANIFEST] MOUNT_DIR [MOUNT_DIR...]\n"
		"       fsop_fuzz -C MANIFEST DIR\n"
		"Runs OPS random operations in the (empty) work directories MOUNT_DIR, one at a\n"
		"time, each also on MODEL_DIR (a directory on a local disk), and fails on the\n"
		"first result, data or tree that differs. With several mounts, operations go\n"
		"through them in turn; switching mounts passes the close-to-open sync point\n"
		"(fsync of what was written there, fsyncdir, an open on the next mount) unless\n"
		"-L. -x: no model, shared names, only faults (EIO, ETIMEDOUT...) fail. -g: a\n"
		"mount that goes away (ENOTCONN) ends the run with status 3. -d: also write\n"
		"files in .fzdur, fsync them and list them in MANIFEST; -C checks a MANIFEST\n"
		"against DIR. -k: compare whole trees every CHECK_EVERY ops (0: at the end).\n"
		"-l: mounts with the linearizable option: switching mounts only fsyncs the\n"
		"handles written there (writes are pipelined in every mode).\n"
		"-c: mounts with close = behind: switching mounts fsyncs the handles written\n"
		"there but no directory (the new mount's lookups recall what the old holds);\n"
		"-cc: nor opens anything on the new mount (no barrier).\n");
}

static int open_root(const char *path, char *copy)
{
	snprintf(copy, FZ_PATH, "%s", path);
	int fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		fprintf(stderr, "fsop_fuzz: open the work directory %s: %s\n", path,
			strerror(errno));
	return fd;
}

/* The close-to-open sync point between mounts (README "Consistency"): what
 * mount `from` changed is complete once fsync/fsyncdir returned there, and
 * an open on `to` passes a barrier that waits for it. */
static int switch_mount(struct fz *z, int from, int to)
{
	if (fz_sync_fds(z, from))
		return -1;
	if (z->linearizable) {
		/* Metadata: every lookup and stat passes a barrier of its own. */
		z->syncs++;
		z->cur = to;
		return 0;
	}
	z->cur = from;
	/* close = behind promises close-to-open without fsyncdir: the new
	 * mount's lookups recall the directories the old one holds, and each
	 * Return applies behind what the holder answered early. */
	if (!z->close_only) {
		fz_describe(z, "fsyncdir on n%d, then an open on n%d", from + 1, to + 1);
		int dfd = openat(z->troot[from], ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd < 0 || fsync(dfd) < 0)
			return fz_fail(z, "fsyncdir of the work directory: %s", strerror(errno));
		close(dfd);
	} else if (z->close_only > 1) {
		/* Nothing at all: the new mount's first lookup in a directory
		 * the old one holds is the fence (README "Close behind"). */
		z->syncs++;
		z->cur = to;
		return 0;
	} else {
		fz_describe(z, "an open on n%d after n%d (no fsyncdir)", to + 1, from + 1);
	}
	int fd = openat(z->troot[to], ".fzsync", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fz_fail(z, "open .fzsync on n%d: %s", to + 1, strerror(errno));
	close(fd);
	z->syncs++;
	z->cur = to;
	return 0;
}

static int pick_kind(struct fz *z)
{
	int sum = 0, k;

	for (k = 0; k < K_NKINDS; k++)
		sum += (k == K_DURABLE && !z->durable) ? 0 : weights[k];
	int r = (int)fz_below(z, (uint64_t)sum);
	for (k = 0; k < K_NKINDS; k++) {
		int w = (k == K_DURABLE && !z->durable) ? 0 : weights[k];
		if (r < w)
			break;
		r -= w;
	}
	return k;
}

/* One operation: the kind, the mount it goes through, the sync point if that changed. */
static int step(struct fz *z, bool lax)
{
	int kind = pick_kind(z), slot = -1, to;

	if (kind == K_OPEN) {
		bool room = false;
		for (int i = 0; i < FZ_MAX_FDS; i++)
			room |= !z->fds[i].used;
		if (!room)
			kind = K_CLOSE;
	}
	if (is_fd_kind(kind) && (slot = fz_pick_fd(z)) < 0)
		kind = K_OPEN;
	to = slot >= 0 ? z->fds[slot].mount : (int)fz_below(z, (uint64_t)z->nmounts);
	if (to != z->cur && z->mode == FZ_MODEL && !lax && switch_mount(z, z->cur, to))
		return -1;
	z->cur = to;
	z->counts[kind]++;
	if (fz_scan(z)) {
		return fz_gone(z) ? 3 : fz_fail(z, "scan the work tree: %s", strerror(errno));
	}
	if (kind == K_DURABLE)
		return fz_durable_write(z);
	if (slot >= 0)
		return fz_fd_op(z, kind, slot);
	return fz_path_op(z, kind);
}

static void summary(const struct fz *z)
{
	printf("fsop_fuzz: seed %llu: %ld operations, %ld mount switches, %ld durable files\n  ",
	       (unsigned long long)z->seed, z->op, z->syncs, z->ndurable);
	for (int k = 0; k < K_NKINDS; k++)
		if (z->counts[k])
			printf("%s %ld  ", fz_op_names[k], z->counts[k]);
	printf("\n  errors from the mount:");
	for (int e = 1; e < (int)(sizeof(z->errs) / sizeof(z->errs[0])); e++)
		if (z->errs[e])
			printf(" %s %ld", strerrorname_np(e), z->errs[e]);
	printf("\n");
	if (z->seek_checked)
		printf("  %ld SEEK_DATA/SEEK_HOLE answers checked against the model's content\n",
		       z->seek_checked);
	if (z->known_moved)
		printf("  known: %ld ESTALE from a directory another mount moved (retried after a "
		       "lookup)\n", z->known_moved);
	if (z->known_estale)
		printf("  known divergences: %ld ESTALE from fstat of a removed directory or fifo\n",
		       z->known_estale);
}

static int run(struct fz *z, long check_every, unsigned timeout, bool lax)
{
	int rc = 0;

	for (z->op = 1; z->op <= z->nops && !rc; z->op++) {
		alarm(timeout);
		rc = step(z, lax);
		if (!rc && z->mode == FZ_MODEL && check_every && z->op % check_every == 0)
			rc = fz_compare_trees(z, z->cur);
	}
	z->op--;
	if (!rc)
		rc = fz_close_all(z);
	for (int m = 0; m < z->nmounts && !rc && z->mode == FZ_MODEL; m++) {
		alarm(timeout);
		if (m != z->cur && (rc = switch_mount(z, z->cur, m)))
			break;
		rc = fz_compare_trees(z, m);
	}
	alarm(0);
	return rc;
}

static int setup(struct fz *z, char **dirs, int ndirs)
{
	int i = 0;

	if (z->mode == FZ_MODEL) {
		if ((z->mroot = open_root(dirs[i++], z->mpath)) < 0)
			return -1;
	}
	for (; i < ndirs; i++) {
		if (z->nmounts == FZ_MAX_MOUNTS)
			return fprintf(stderr, "fsop_fuzz: at most %d mounts\n", FZ_MAX_MOUNTS), -1;
		if ((z->troot[z->nmounts] = open_root(dirs[i], z->tpath[z->nmounts])) < 0)
			return -1;
		z->nmounts++;
	}
	if (!z->nmounts)
		return usage(), -1;
	if (z->durable && mkdirat(z->troot[0], ".fzdur", 0755) < 0 && errno != EEXIST)
		return fprintf(stderr, "fsop_fuzz: mkdir %s/.fzdur: %s\n", z->tpath[0],
			       strerror(errno)),
		       -1;
	if (z->mode == FZ_MODEL && z->nmounts > 1) {
		/* What each mount opens to pass its barrier when the run switches to it. */
		int fd = openat(z->troot[0], ".fzsync", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
		if (fd < 0 || fsync(fd) < 0)
			return fprintf(stderr, "fsop_fuzz: create %s/.fzsync: %s\n", z->tpath[0],
				       strerror(errno)),
			       -1;
		close(fd);
	}
	z->buf = malloc(FZ_MAX_FILE);
	z->buf2 = malloc(FZ_MAX_FILE);
	if (!z->buf || !z->buf2)
		return fprintf(stderr, "fsop_fuzz: no memory for the buffers\n"), -1;
	return 0;
}

int main(int argc, char **argv)
{
	static struct fz z;
	long check_every = 200;
	unsigned timeout = 60;
	bool lax = false;
	const char *check_manifest = NULL;
	int c;

	z.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
	z.nops = 1000;
	z.mode = FZ_MODEL;
	while ((c = getopt(argc, argv, "s:n:k:t:vLlcgxd:C:h")) != -1) {
		switch (c) {
		case 's':
			z.seed = strtoull(optarg, NULL, 0);
			break;
		case 'n':
			z.nops = strtol(optarg, NULL, 0);
			break;
		case 'k':
			check_every = strtol(optarg, NULL, 0);
			break;
		case 't':
			timeout = (unsigned)strtoul(optarg, NULL, 0);
			break;
		case 'v':
			z.verbose++;
			break;
		case 'L':
			lax = true;
			break;
		case 'l':
			z.linearizable = true;
			break;
		case 'c':
			z.close_only++;
			break;
		case 'g':
			z.gone_ok = true;
			break;
		case 'x':
			z.mode = FZ_CHAOS;
			break;
		case 'd':
			z.durable = optarg;
			break;
		case 'C':
			check_manifest = optarg;
			break;
		default:
			usage();
			return 2;
		}
	}
	if (check_manifest) {
		if (optind + 1 != argc)
			return usage(), 2;
		return fz_durable_check(check_manifest, argv[optind]) ? 1 : 0;
	}
	if (optind >= argc)
		return usage(), 2;
	z.rng = z.seed;
	g_desc = z.desc;
	signal(SIGALRM, on_alarm);
	umask(022);
	if (setup(&z, argv + optind, argc - optind))
		return 2;
	printf("fsop_fuzz: seed %llu, %ld operations, %d mount%s, %s\n",
	       (unsigned long long)z.seed, z.nops, z.nmounts, z.nmounts > 1 ? "s" : "",
	       z.mode == FZ_CHAOS	? "no model (chaos)"
	       : lax		? "model, no sync points"
	       : z.close_only > 1 ? "model, no sync point but fsync of written handles"
	       : z.close_only	? "model, sync points without fsyncdir"
				: "model");
	fflush(stdout);
	int rc = run(&z, check_every, timeout, lax);
	summary(&z);
	free(z.buf);
	free(z.buf2);
	if (rc == 3) {
		printf("fsop_fuzz: the mount went away at op %ld\n", z.op);
		return 3;
	}
	return rc ? 1 : 0;
}
