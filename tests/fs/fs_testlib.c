// Helpers for the state machine tests.
#include "fs_testlib.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cmocka.h>

#include "sm_snapshot.h"

// Every directory tl_mkdtemp made that tl_rmtree has not removed yet. A
// failed assertion jumps out of a test past its own cleanup, so whatever is
// left is removed at exit -- only by the process that made it, never by a
// forked child.
#define TL_MAX_TEMPS 256
static struct {
	char *path;
	pid_t owner;
} temps[TL_MAX_TEMPS];
static pthread_mutex_t temps_mu = PTHREAD_MUTEX_INITIALIZER;

static void rm_at(int parent, const char *name);

static void remove_leftovers(void)
{
	pthread_mutex_lock(&temps_mu);
	for (int i = 0; i < TL_MAX_TEMPS; i++) {
		if (!temps[i].path || temps[i].owner != getpid())
			continue;
		fprintf(stderr, "removing %s, left by a failed test\n", temps[i].path);
		rm_at(AT_FDCWD, temps[i].path);
		free(temps[i].path);
		temps[i].path = NULL;
	}
	pthread_mutex_unlock(&temps_mu);
}

static void remember_temp(const char *path)
{
	static bool registered;
	pthread_mutex_lock(&temps_mu);
	if (!registered)
		registered = atexit(remove_leftovers) == 0;
	for (int i = 0; i < TL_MAX_TEMPS; i++)
		if (!temps[i].path) {
			temps[i].path = strdup(path);
			temps[i].owner = getpid();
			break;
		}
	pthread_mutex_unlock(&temps_mu);
}

static void forget_temp(const char *path)
{
	pthread_mutex_lock(&temps_mu);
	for (int i = 0; i < TL_MAX_TEMPS; i++)
		if (temps[i].path && !strcmp(temps[i].path, path)) {
			free(temps[i].path);
			temps[i].path = NULL;
			break;
		}
	pthread_mutex_unlock(&temps_mu);
}

char *tl_mkdtemp(void)
{
	const char *base = getenv("TMPDIR");
	char buf[4096];
	snprintf(buf, sizeof(buf), "%s/raftfs-fssm-XXXXXX", base ? base : "/tmp");
	char *p = mkdtemp(buf);
	assert_non_null(p);
	remember_temp(p);
	return strdup(p);
}

// Removes name under dirfd, descending by fds (nftw fails beyond PATH_MAX).
static void rm_at(int parent, const char *name)
{
	if (unlinkat(parent, name, 0) == 0 || (errno != EISDIR && errno != EPERM))
		return;
	int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	struct dirent *e;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			rm_at(dirfd(d), e->d_name);
	closedir(d);
	unlinkat(parent, name, AT_REMOVEDIR);
}

void tl_rmtree(char *path)
{
	if (!path)
		return;
	rm_at(AT_FDCWD, path);
	forget_temp(path);
	free(path);
}

uint8_t *tl_pack(const Fspb__Command *c, size_t *len)
{
	*len = fspb__command__get_packed_size(c);
	uint8_t *buf = malloc(*len ? *len : 1);
	assert_non_null(buf);
	fspb__command__pack(c, buf);
	return buf;
}

static int64_t now_ns = 1700000000000000000LL;

int64_t tl_last_time(void)
{
	return now_ns;
}

static bool own_ids;

void tl_use_own_ids(bool on)
{
	own_ids = on;
}

static struct tl_cmds *recording;

void tl_record(struct tl_cmds *l)
{
	recording = l;
}

void tl_cmds_free(struct tl_cmds *l)
{
	for (int i = 0; i < l->n; i++)
		free(l->cmd[i]);
	l->n = 0;
}

// Packs c into the list being recorded (tl_record), stamped as it says.
static int record(struct tl_cmds *l, Fspb__Command *c)
{
	assert_true(l->n < TL_CMDS_MAX);
	c->time_ns = TL_CMDS_TIME0 + (int64_t)l->n * 1000000;
	c->node = l->node;
	c->uid = l->uid;
	c->gid = l->gid;
	l->cmd[l->n] = tl_pack(c, &l->len[l->n]);
	l->n++;
	return 0;
}

int tl_apply(struct sm *sm, Fspb__Command *c)
{
	if (recording)
		return record(recording, c);
	if (own_ids && !c->uid && !c->gid) {
		c->uid = geteuid();
		c->gid = getegid();
	}
	now_ns += 1000;
	c->time_ns = now_ns;
	size_t len;
	uint8_t *buf = tl_pack(c, &len);
	int result = -1;
	int rc = sm_apply(sm, sm_applied_index(sm) + 1, 0, 0, 0, buf, len, &result);
	free(buf);
	assert_int_equal(rc, 0);
	return result;
}

int tl_mknod(struct sm *sm, uint64_t parent, const char *name, uint64_t ino, uint32_t mode)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Mknod m = FSPB__MKNOD__INIT;
	m.parent = parent;
	m.name = (char *)name;
	m.ino = ino;
	m.mode = mode;
	c.op_case = FSPB__COMMAND__OP_MKNOD;
	c.mknod = &m;
	return tl_apply(sm, &c);
}

void tl_mkdir_cmd(Fspb__Command *c, Fspb__Mkdir *m, uint64_t parent, const char *name,
		  uint64_t ino, uint32_t mode)
{
	fspb__command__init(c);
	fspb__mkdir__init(m);
	m->parent = parent;
	m->name = (char *)name;
	m->ino = ino;
	m->mode = mode;
	c->op_case = FSPB__COMMAND__OP_MKDIR;
	c->mkdir = m;
}

int tl_mkdir(struct sm *sm, uint64_t parent, const char *name, uint64_t ino, uint32_t mode)
{
	Fspb__Command c;
	Fspb__Mkdir m;
	tl_mkdir_cmd(&c, &m, parent, name, ino, mode);
	return tl_apply(sm, &c);
}

int tl_mkdir_as(struct sm *sm, uint32_t node, uint64_t parent, const char *name, uint64_t ino,
		bool grant, bool close_behind)
{
	Fspb__Command c;
	Fspb__Mkdir m;
	tl_mkdir_cmd(&c, &m, parent, name, ino, 0755);
	m.grant = grant;
	m.grant_close_behind = close_behind;
	c.node = node;
	return tl_apply(sm, &c);
}

int tl_symlink(struct sm *sm, uint64_t parent, const char *name, uint64_t ino, const char *target)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Symlink m = FSPB__SYMLINK__INIT;
	m.parent = parent;
	m.name = (char *)name;
	m.ino = ino;
	m.target = (char *)target;
	c.op_case = FSPB__COMMAND__OP_SYMLINK;
	c.symlink = &m;
	return tl_apply(sm, &c);
}

int tl_link(struct sm *sm, uint64_t ino, uint64_t parent, const char *name)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Link m = FSPB__LINK__INIT;
	m.ino = ino;
	m.new_parent = parent;
	m.new_name = (char *)name;
	c.op_case = FSPB__COMMAND__OP_LINK;
	c.link = &m;
	return tl_apply(sm, &c);
}

int tl_unlink(struct sm *sm, uint64_t parent, const char *name, int dir)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Unlink m = FSPB__UNLINK__INIT;
	m.parent = parent;
	m.name = (char *)name;
	m.dir = dir;
	c.op_case = FSPB__COMMAND__OP_UNLINK;
	c.unlink = &m;
	return tl_apply(sm, &c);
}

int tl_rename(struct sm *sm, uint64_t p, const char *n, uint64_t np, const char *nn, uint32_t flags)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Rename m = FSPB__RENAME__INIT;
	m.parent = p;
	m.name = (char *)n;
	m.new_parent = np;
	m.new_name = (char *)nn;
	m.flags = flags;
	c.op_case = FSPB__COMMAND__OP_RENAME;
	c.rename = &m;
	return tl_apply(sm, &c);
}

int tl_write(struct sm *sm, uint64_t ino, uint64_t off, const void *data, size_t len)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Write m = FSPB__WRITE__INIT;
	m.ino = ino;
	m.offset = off;
	m.data.data = (uint8_t *)data;
	m.data.len = len;
	c.op_case = FSPB__COMMAND__OP_WRITE;
	c.write = &m;
	return tl_apply(sm, &c);
}

int tl_setxattr(struct sm *sm, uint64_t ino, const char *name, const char *value, int flags)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__SetXattr m = FSPB__SET_XATTR__INIT;
	m.ino = ino;
	m.name = (char *)name;
	m.value.data = (uint8_t *)value;
	m.value.len = strlen(value);
	m.flags = flags;
	c.op_case = FSPB__COMMAND__OP_SETXATTR;
	c.setxattr = &m;
	return tl_apply(sm, &c);
}

int tl_removexattr(struct sm *sm, uint64_t ino, const char *name)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__RemoveXattr m = FSPB__REMOVE_XATTR__INIT;
	m.ino = ino;
	m.name = (char *)name;
	c.op_case = FSPB__COMMAND__OP_REMOVEXATTR;
	c.removexattr = &m;
	return tl_apply(sm, &c);
}

int tl_release(struct sm *sm, uint64_t ino)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Release m = FSPB__RELEASE__INIT;
	m.ino = ino;
	c.op_case = FSPB__COMMAND__OP_RELEASE;
	c.release = &m;
	return tl_apply(sm, &c);
}

int tl_fallocate(struct sm *sm, uint64_t ino, int mode, uint64_t off, uint64_t len)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Fallocate m = FSPB__FALLOCATE__INIT;
	m.ino = ino;
	m.mode = mode;
	m.offset = off;
	m.length = len;
	c.op_case = FSPB__COMMAND__OP_FALLOCATE;
	c.fallocate = &m;
	return tl_apply(sm, &c);
}

int tl_setattr(struct sm *sm, const Fspb__SetAttr *s)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	c.op_case = FSPB__COMMAND__OP_SETATTR;
	c.setattr = (Fspb__SetAttr *)s;
	return tl_apply(sm, &c);
}

// ---- Random sequences.

static uint64_t rnd(uint64_t *s)
{
	// splitmix64: deterministic and good enough for test mixes.
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

#define GEN_CLIENTS 3

struct ents {
	int n;
	char name[64][NAME_MAX + 1];
	uint64_t id[64];
	mode_t mode[64];
};

static int collect_ent(void *arg, const char *name, const struct stat *st, off_t next)
{
	struct ents *e = arg;
	if (!strcmp(name, ".") || !strcmp(name, "..") || e->n == 64)
		return 0;
	snprintf(e->name[e->n], sizeof(e->name[0]), "%s", name);
	e->id[e->n] = st->st_ino;
	e->mode[e->n] = st->st_mode;
	e->n++;
	return 0;
}

// Sorts e by name: the generated sequence must not depend on the local
// filesystem's readdir order.
static void sort_ents(struct ents *e)
{
	for (int i = 1; i < e->n; i++)
		for (int j = i; j > 0 && strcmp(e->name[j - 1], e->name[j]) > 0; j--) {
			char name[NAME_MAX + 1];
			memcpy(name, e->name[j], sizeof(name));
			memcpy(e->name[j], e->name[j - 1], sizeof(name));
			memcpy(e->name[j - 1], name, sizeof(name));
			uint64_t id = e->id[j];
			e->id[j] = e->id[j - 1];
			e->id[j - 1] = id;
			mode_t mode = e->mode[j];
			e->mode[j] = e->mode[j - 1];
			e->mode[j - 1] = mode;
		}
}

// A random directory reached by descending from the root (its entries in e).
static uint64_t walk(struct sm *sm, uint64_t *r, struct ents *e)
{
	uint64_t d = SM_ROOT_ID;
	for (int depth = 0;; depth++) {
		e->n = 0;
		assert_int_equal(sm_readdir(sm, d, 0, false, collect_ent, e), 0);
		sort_ents(e);
		if (depth == 5 || rnd(r) % 2)
			return d;
		int dirs[64], nd = 0;
		for (int i = 0; i < e->n; i++)
			if (S_ISDIR(e->mode[i]))
				dirs[nd++] = i;
		if (nd == 0)
			return d;
		d = e->id[dirs[rnd(r) % nd]];
	}
}

static int first_orphan(void *arg, uint64_t id)
{
	*(uint64_t *)arg = id;
	return 1;
}

void tl_gen(struct tl_seq *s, uint64_t seed, size_t n)
{
	// Commands are chosen against a scratch state machine that applies them
	// as they are made, so most name things that exist and succeed.
	char *scratch = s->scratch = tl_mkdtemp();
	struct sm *sm;
	assert_int_equal(sm_open(scratch, 1, &sm), 0);
	static struct ents e1, e2;
	s->n = n;
	s->client = calloc(n, sizeof(*s->client));
	s->seq = calloc(n, sizeof(*s->seq));
	s->min_pending = calloc(n, sizeof(*s->min_pending));
	s->cmd = calloc(n, sizeof(*s->cmd));
	s->len = calloc(n, sizeof(*s->len));
	assert_true(s->client && s->seq && s->cmd && s->len);
	uint64_t r = seed;
	uint64_t next_seq[GEN_CLIENTS + 1] = {0};
	size_t last_of[GEN_CLIENTS + 1];
	bool has_last[GEN_CLIENTS + 1] = {false};
	static uint8_t data[8192];
	char names[8][4];
	for (int i = 0; i < 8; i++)
		snprintf(names[i], sizeof(names[i]), "n%d", i);
	const char *xnames[] = {"user.a", "user.b", "trusted.c"};
	for (size_t i = 0; i < n; i++) {
		uint64_t client = rnd(&r) % (GEN_CLIENTS + 1);
		// A retry of the client's last command (as after a leader change).
		if (client && has_last[client] && rnd(&r) % 20 == 0) {
			size_t j = last_of[client];
			s->client[i] = client;
			s->seq[i] = s->seq[j];
			s->min_pending[i] = s->min_pending[j];
			s->len[i] = s->len[j];
			s->cmd[i] = malloc(s->len[j] ? s->len[j] : 1);
			memcpy(s->cmd[i], s->cmd[j], s->len[j]);
			int res;
			assert_int_equal(sm_apply(sm, i + 1, client, s->seq[i], s->min_pending[i],
						  s->cmd[i], s->len[i], &res),
					 0);
			continue;
		}
		Fspb__Command c = FSPB__COMMAND__INIT;
		c.uid = rnd(&r) % 3 * 1000;
		c.gid = rnd(&r) % 3 * 1000;
		c.time_ns = 1600000000000000000LL + (int64_t)i * 1000003;
		uint64_t parent = walk(sm, &r, &e1), parent2 = walk(sm, &r, &e2);
		// An existing name half the time (for unlink, rename, link over).
		const char *name =
		    e1.n && rnd(&r) % 2 ? e1.name[rnd(&r) % e1.n] : names[rnd(&r) % 8];
		const char *name2 =
		    e2.n && rnd(&r) % 2 ? e2.name[rnd(&r) % e2.n] : names[rnd(&r) % 8];
		// Mostly a non-directory: data ops need one.
		uint64_t obj = e2.n ? e2.id[rnd(&r) % e2.n] : SM_ROOT_ID;
		for (int k = 0; k < e2.n && rnd(&r) % 5; k++) {
			int pickk = (int)(rnd(&r) % e2.n);
			if (!S_ISDIR(e2.mode[pickk])) {
				obj = e2.id[pickk];
				break;
			}
		}
		if (rnd(&r) % 8 == 0)
			sm_each_orphan(sm, first_orphan, &obj);
		uint64_t fresh = (1ULL << 48) | (i + 1);
		Fspb__Mknod mk = FSPB__MKNOD__INIT;
		Fspb__Mkdir md = FSPB__MKDIR__INIT;
		Fspb__Symlink sl = FSPB__SYMLINK__INIT;
		Fspb__Link ln = FSPB__LINK__INIT;
		Fspb__Unlink ul = FSPB__UNLINK__INIT;
		Fspb__Rename rn = FSPB__RENAME__INIT;
		Fspb__Write wr = FSPB__WRITE__INIT;
		Fspb__Fallocate fa = FSPB__FALLOCATE__INIT;
		Fspb__SetAttr sa = FSPB__SET_ATTR__INIT;
		Fspb__SetXattr sx = FSPB__SET_XATTR__INIT;
		Fspb__RemoveXattr rx = FSPB__REMOVE_XATTR__INIT;
		Fspb__Release rl = FSPB__RELEASE__INIT;
		uint64_t rel_ids[1];
		static const uint32_t voters[3] = {1, 2, 3};
		unsigned op = rnd(&r) % 100;
		if (op < 14) {
			static const uint32_t types[] = {S_IFREG, S_IFREG,  S_IFREG,
							 S_IFIFO, S_IFSOCK, S_IFCHR};
			mk.parent = parent;
			mk.name = (char *)name;
			mk.ino = fresh;
			mk.mode = types[rnd(&r) % 6] | (rnd(&r) % 2 ? 0644 : 06755);
			mk.rdev = makedev(1, 3);
			c.op_case = FSPB__COMMAND__OP_MKNOD;
			c.mknod = &mk;
		} else if (op < 24) {
			md.parent = parent;
			md.name = (char *)name;
			md.ino = fresh;
			md.mode = rnd(&r) % 4 ? 0755 : 02775;
			c.op_case = FSPB__COMMAND__OP_MKDIR;
			c.mkdir = &md;
		} else if (op < 28) {
			sl.parent = parent;
			sl.name = (char *)name;
			sl.ino = fresh;
			sl.target = (char *)name2;
			c.op_case = FSPB__COMMAND__OP_SYMLINK;
			c.symlink = &sl;
		} else if (op < 33) {
			ln.ino = obj;
			ln.new_parent = parent;
			ln.new_name = (char *)name;
			c.op_case = FSPB__COMMAND__OP_LINK;
			c.link = &ln;
		} else if (op < 45) {
			ul.parent = parent;
			ul.name = (char *)name;
			ul.dir = rnd(&r) % 3 == 0;
			c.op_case = FSPB__COMMAND__OP_UNLINK;
			c.unlink = &ul;
		} else if (op < 60) {
			static const uint32_t flags[] = {0, 0, 0, RENAME_NOREPLACE,
							 RENAME_EXCHANGE};
			rn.parent = parent;
			rn.name = (char *)name;
			rn.new_parent = parent2;
			rn.new_name = (char *)name2;
			rn.flags = flags[rnd(&r) % 5];
			c.op_case = FSPB__COMMAND__OP_RENAME;
			c.rename = &rn;
		} else if (op < 78) {
			for (size_t k = 0; k < sizeof(data); k++)
				data[k] = (uint8_t)rnd(&r);
			wr.ino = obj;
			wr.offset = rnd(&r) % 65536;
			wr.data.data = data;
			wr.data.len = rnd(&r) % sizeof(data);
			wr.append = rnd(&r) % 4 == 0;
			c.op_case = FSPB__COMMAND__OP_WRITE;
			c.write = &wr;
		} else if (op < 81) {
			static const int modes[] = {0, FALLOC_FL_KEEP_SIZE,
						    FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
						    FALLOC_FL_ZERO_RANGE, FALLOC_FL_COLLAPSE_RANGE};
			fa.ino = obj;
			fa.mode = modes[rnd(&r) % 5];
			fa.offset = rnd(&r) % 65536;
			fa.length = rnd(&r) % 65536;
			c.op_case = FSPB__COMMAND__OP_FALLOCATE;
			c.fallocate = &fa;
		} else if (op < 90) {
			sa.ino = obj;
			sa.valid = (uint32_t)(rnd(&r) % 512) & 0x1bf;
			sa.mode = rnd(&r) % 2 ? 0600 : 04711;
			sa.uid = rnd(&r) % 3 * 7;
			sa.gid = rnd(&r) % 3 * 7;
			sa.size = rnd(&r) % 100000;
			sa.atime_ns = 1500000000000000000LL + (int64_t)(rnd(&r) % 1000000);
			sa.mtime_ns = 1500000000000000000LL + (int64_t)(rnd(&r) % 1000000);
			c.op_case = FSPB__COMMAND__OP_SETATTR;
			c.setattr = &sa;
		} else if (op < 95) {
			sx.ino = obj;
			sx.name = (char *)xnames[rnd(&r) % 3];
			sx.value.data = data;
			sx.value.len = rnd(&r) % 64;
			sx.flags = (int)(rnd(&r) % 3);
			c.op_case = FSPB__COMMAND__OP_SETXATTR;
			c.setxattr = &sx;
		} else if (op < 97) {
			rx.ino = obj;
			rx.name = (char *)xnames[rnd(&r) % 3];
			c.op_case = FSPB__COMMAND__OP_REMOVEXATTR;
			c.removexattr = &rx;
		} else {
			// Half of them the first version's (drop at once), half a
			// node's release of two ids among voters 1..3.
			rl.ino = obj;
			if (rnd(&r) % 2) {
				rl.node = 1 + (uint32_t)(rnd(&r) % 3);
				rl.ids = rel_ids;
				rl.n_ids = 1;
				rel_ids[0] = obj;
				sm_each_orphan(sm, first_orphan, &rel_ids[0]);
				rl.voters = (uint32_t *)voters;
				rl.n_voters = 3;
			}
			c.op_case = FSPB__COMMAND__OP_RELEASE;
			c.release = &rl;
		}
		s->client[i] = client;
		s->seq[i] = client ? ++next_seq[client] : 0;
		// A few proposals of each client in flight: it still waits for
		// the last two or three.
		s->min_pending[i] = s->seq[i] > 3 ? s->seq[i] - rnd(&r) % 3 : s->seq[i];
		s->cmd[i] = tl_pack(&c, &s->len[i]);
		int res;
		assert_int_equal(sm_apply(sm, i + 1, s->client[i], s->seq[i], s->min_pending[i],
					  s->cmd[i], s->len[i], &res),
				 0);
		if (client) {
			last_of[client] = i;
			has_last[client] = true;
		}
	}
	sm_close(sm);
	tl_rmtree(scratch);
	s->scratch = NULL;
}

void tl_gen_free(struct tl_seq *s)
{
	tl_rmtree(s->scratch);
	s->scratch = NULL;
	for (size_t i = 0; i < s->n; i++)
		free(s->cmd[i]);
	free(s->client);
	free(s->seq);
	free(s->min_pending);
	free(s->cmd);
	free(s->len);
}

int tl_kill_until_done(int (*child)(void *arg, int progress), void *arg, unsigned max_delay_us,
		       int max_kills)
{
	int kills = 0;

	for (;;) {
		int p[2], status;
		uint64_t step;
		pid_t pid;

		assert_int_equal(pipe(p), 0);
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			close(p[0]);
			// The parent reads one report only: the others must
			// not block the child once the pipe is full.
			fcntl(p[1], F_SETFL, O_NONBLOCK);
			_exit(child(arg, p[1]));
		}
		close(p[1]);
		// Once the child is under way (or done), kill it at a random
		// instant of the next max_delay_us.
		if (read(p[0], &step, sizeof(step)) == sizeof(step)) {
			usleep((useconds_t)(rand() % (int)max_delay_us));
			kill(pid, SIGKILL);
		}
		close(p[0]);
		assert_int_equal(waitpid(pid, &status, 0), pid);
		if (WIFEXITED(status)) {
			assert_int_equal(WEXITSTATUS(status), 0);
			return kills;
		}
		assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
		if (++kills >= max_kills)
			return kills;
	}
}

// ---- power-loss tests

void tl_fake_boot_id(const char *dir)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/sm/boot", dir);
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	fputs("00000000-0000-0000-0000-000000000000\n", fp);
	fclose(fp);
}

bool tl_exists(const char *dir, const char *sub)
{
	char path[4096];
	struct stat st;
	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	return lstat(path, &st) == 0;
}

bool tl_dropped_deleted(const char *dir)
{
	for (int i = 0; i < 3000 && tl_exists(dir, "dropped"); i++)
		usleep(10000);
	return !tl_exists(dir, "dropped");
}

void tl_run_and_die(const char *dir, uint32_t node, int (*fn)(struct sm *sm, void *arg),
		    void *arg)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct sm *sm;
		_exit(sm_open(dir, node, &sm) || fn(sm, arg));
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

void tl_make_image(const char *path, uint64_t dir, uint64_t file)
{
	char *src = tl_mkdtemp();
	struct sm *a;
	uint64_t index;
	assert_int_equal(sm_open(src, 1, &a), 0);
	assert_int_equal(tl_mkdir(a, SM_ROOT_ID, "img", dir, 0755), 0);
	assert_int_equal(tl_mknod(a, dir, "f", file, S_IFREG | 0644), 0);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(sm_snapshot_make(a, sm_snap_fd_sink, &fd, &index), 0);
	close(fd);
	sm_close(a);
	tl_rmtree(src);
}

int tl_image_put(void *arg, const void *buf, size_t len)
{
	struct tl_image *im = arg;
	uint8_t *more = realloc(im->buf, im->len + len);

	if (!more)
		return -ENOMEM;
	memcpy(more + im->len, buf, len);
	im->buf = more;
	im->len += len;
	return 0;
}

ssize_t tl_image_get(void *arg, void *buf, size_t len)
{
	struct tl_image *im = arg;
	size_t n = im->len - im->off < len ? im->len - im->off : len;

	memcpy(buf, im->buf + im->off, n);
	im->off += n;
	return (ssize_t)n;
}
