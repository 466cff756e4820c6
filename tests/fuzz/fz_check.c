/* fz_check.c — randomness, the op log, and comparing one call's results on mount and model. */
#include "fz.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

const char *const fz_op_names[K_NKINDS] = {
    "open",	"close",    "write",	 "read",     "ftruncate", "fallocate", "lseek",
    "copy",	"fsync",    "fstat",	 "stat",     "truncate",  "mkdir",     "rmdir",
    "unlink",	"rename",   "link",	 "symlink",  "readlink",  "chmod",     "chown",
    "utimens",	"setxattr", "getxattr",	 "listxattr", "removexattr", "readdir", "mkfifo",
    "durable",
};

struct fz_res fz_res_of(long ret)
{
	return (struct fz_res){.ret = ret, .err = ret < 0 ? errno : 0};
}

uint64_t fz_rand(struct fz *z)
{
	uint64_t x = (z->rng += 0x9e3779b97f4a7c15ull);
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

uint64_t fz_below(struct fz *z, uint64_t n)
{
	return n ? fz_rand(z) % n : 0;
}

size_t fz_size(struct fz *z)
{
	unsigned r = (unsigned)fz_below(z, 100);

	if (r < 50)
		return 1 + fz_below(z, 4096);
	if (r < 80)
		return 1 + fz_below(z, 64 << 10);
	if (r < 96)
		return 1 + fz_below(z, 1 << 20);
	return 1 + fz_below(z, 4 << 20);
}

void fz_fill(struct fz *z, unsigned char *b, size_t n)
{
	uint64_t x = z->seed * 31 + (uint64_t)z->op + 1;

	/* A cheap generator of its own: the run's sequence must not depend on the size. */
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		b[i] = (unsigned char)x;
	}
}

void fz_describe(struct fz *z, const char *fmt, ...)
{
	va_list ap;

	memmove(z->log[0], z->log[1], sizeof(z->log) - sizeof(z->log[0]));
	memcpy(z->log[FZ_LOG - 1], z->desc, FZ_DESC);
	va_start(ap, fmt);
	int n = snprintf(z->desc, FZ_DESC, "#%ld n%d ", z->op, z->cur + 1);
	vsnprintf(z->desc + n, FZ_DESC - (size_t)n, fmt, ap);
	va_end(ap);
	if (z->verbose)
		printf("%s\n", z->desc);
}

bool fz_gone(const struct fz *z)
{
	return (errno == ENOTCONN || errno == ECONNABORTED) && z->gone_ok;
}

int fz_fail(struct fz *z, const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fprintf(stderr, "fsop_fuzz: the operations before the failure:\n");
	for (int i = 0; i < FZ_LOG; i++)
		if (z->log[i][0])
			fprintf(stderr, "  %s\n", z->log[i]);
	fprintf(stderr, "FAIL (seed %llu, op %ld: %s): ", (unsigned long long)z->seed, z->op,
		z->desc);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	return -1;
}

static const char *errname(int e)
{
	static char b[32];
	const char *n = e ? strerrorname_np(e) : "0";

	if (n)
		return n;
	snprintf(b, sizeof(b), "errno %d", e);
	return b;
}

void fz_note(struct fz *z, struct fz_res t)
{
	if (t.ret < 0 && t.err > 0 && t.err < (int)(sizeof(z->errs) / sizeof(z->errs[0])))
		z->errs[t.err]++;
	/* Rare and tolerated only from a fifo: named, so a run shows where
	 * each came from. */
	if (t.ret < 0 && t.err == EAGAIN)
		printf("  EAGAIN: %s\n", z->desc);
}

/* mount_went_away: the mount of the last operation answers ENOTCONN now and
 * the run may end so (gone_ok); asked by statfs, which the kernel always
 * sends to the mount (a stat may be answered from its cache). A call under way when its node was killed
 * ends half done without an error of its own: the kernel splits a big write
 * into WRITE requests and returns the bytes of those answered before the
 * connection died (seed 3401 of fuzz.faults_behind: pwrite of 2959744 bytes
 * on the killed leader's mount returned 3953, its first page). */
static bool mount_went_away(const struct fz *z)
{
	struct statfs sf;

	return z->gone_ok && fstatfs(z->troot[z->cur], &sf) < 0 && fz_gone(z);
}

/* Errors no race between correct callers explains: in chaos mode these fail the run. */
static bool is_fault(int e)
{
	return e == EIO || e == ETIMEDOUT || e == EREMOTE || e == EAGAIN || e == ENOMEM ||
	       e == EDEADLK || e == EPROTO || e == EBADMSG;
}

int fz_check(struct fz *z, const char *what, struct fz_res t, struct fz_res m)
{
	fz_note(z, t);
	if (t.ret < 0 && (t.err == ENOTCONN || t.err == ECONNABORTED) && z->gone_ok)
		return 3;
	if (z->mode == FZ_CHAOS) {
		/* Chaos opens are non-blocking (fifos): EAGAIN is a fifo's answer. */
		bool io = !strcmp(what, "read") || !strcmp(what, "pread") ||
			  !strcmp(what, "write") || !strcmp(what, "pwrite");
		if (t.ret < 0 && is_fault(t.err) && !(io && t.err == EAGAIN))
			return fz_fail(z, "%s: %s, an error no race explains", what, errname(t.err));
		return 0;
	}
	if ((t.ret < 0) != (m.ret < 0) || (t.ret < 0 && t.err != m.err) ||
	    (t.ret >= 0 && t.ret != m.ret)) {
		if (mount_went_away(z))
			return 3;
		return fz_fail(z, "%s: mount %ld (%s), model %ld (%s)", what, t.ret,
			       t.ret < 0 ? errname(t.err) : "ok", m.ret,
			       m.ret < 0 ? errname(m.err) : "ok");
	}
	return 0;
}
