// Crash safety, exhaustively: for every command of a scenario covering every op, stop its execution
// after each of its steps in turn (as a crash there would), restart, redo, finish, and compare with
// a clean run.
#include <errno.h>
#include <linux/falloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "fs_testlib.h"
#include "sm.h"
#include "tree_compare.h"

#define D1 ((1ULL << 48) | 1)
#define D2 ((1ULL << 48) | 2)
#define D3 ((1ULL << 48) | 3)
#define F1 ((1ULL << 48) | 11)
#define F2 ((1ULL << 48) | 12)
#define F3 ((1ULL << 48) | 13)
#define F4 ((1ULL << 48) | 14)

#define MAX_CMDS 32

struct scenario {
	int n;
	uint8_t *cmd[MAX_CMDS];
	size_t len[MAX_CMDS];
	bool own_ids; // commands by the node's own uid and gid (else 1000:100)
};

static void add(struct scenario *s, Fspb__Command *c)
{
	c->time_ns = 1600000000000000000LL + (int64_t)s->n * 1000000;
	c->uid = s->own_ids ? geteuid() : 1000;
	c->gid = s->own_ids ? getegid() : 100;
	s->cmd[s->n] = tl_pack(c, &s->len[s->n]);
	s->n++;
}

static void mkdir_(struct scenario *s, uint64_t parent, const char *name, uint64_t ino,
		   uint32_t mode)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Mkdir m = FSPB__MKDIR__INIT;
	m.parent = parent;
	m.name = (char *)name;
	m.ino = ino;
	m.mode = mode;
	c.op_case = FSPB__COMMAND__OP_MKDIR;
	c.mkdir = &m;
	add(s, &c);
}

static void mknod_(struct scenario *s, uint64_t parent, const char *name, uint64_t ino,
		   uint32_t mode)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Mknod m = FSPB__MKNOD__INIT;
	m.parent = parent;
	m.name = (char *)name;
	m.ino = ino;
	m.mode = mode;
	c.op_case = FSPB__COMMAND__OP_MKNOD;
	c.mknod = &m;
	add(s, &c);
}

static void write_(struct scenario *s, uint64_t ino, uint64_t off, const char *data, int append)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Write w = FSPB__WRITE__INIT;
	w.ino = ino;
	w.offset = off;
	w.data.data = (uint8_t *)data;
	w.data.len = strlen(data);
	w.append = append;
	c.op_case = FSPB__COMMAND__OP_WRITE;
	c.write = &w;
	add(s, &c);
}

static void rename_(struct scenario *s, uint64_t p, const char *n, uint64_t np, const char *nn,
		    uint32_t flags)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Rename r = FSPB__RENAME__INIT;
	r.parent = p;
	r.name = (char *)n;
	r.new_parent = np;
	r.new_name = (char *)nn;
	r.flags = flags;
	c.op_case = FSPB__COMMAND__OP_RENAME;
	c.rename = &r;
	add(s, &c);
}

static void unlink_(struct scenario *s, uint64_t p, const char *n, int dir)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Unlink u = FSPB__UNLINK__INIT;
	u.parent = p;
	u.name = (char *)n;
	u.dir = dir;
	c.op_case = FSPB__COMMAND__OP_UNLINK;
	c.unlink = &u;
	add(s, &c);
}

static void release_(struct scenario *s, uint64_t ino)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Release r = FSPB__RELEASE__INIT;
	r.ino = ino;
	c.op_case = FSPB__COMMAND__OP_RELEASE;
	c.release = &r;
	add(s, &c);
}

static void build(struct scenario *s)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	s->n = 0;
	mkdir_(s, SM_ROOT_ID, "a", D1, 0755);
	mkdir_(s, SM_ROOT_ID, "b", D2, 02775);
	mknod_(s, D1, "f", F1, S_IFREG | 0644);
	write_(s, F1, 0, "hello", 0);
	write_(s, F1, 2, "world", 1);
	Fspb__SetXattr sx = FSPB__SET_XATTR__INIT;
	sx.ino = F1;
	sx.name = "user.x";
	sx.value.data = (uint8_t *)"1";
	sx.value.len = 1;
	c.op_case = FSPB__COMMAND__OP_SETXATTR;
	c.setxattr = &sx;
	add(s, &c);
	Fspb__Link ln = FSPB__LINK__INIT;
	ln.ino = F1;
	ln.new_parent = D2;
	ln.new_name = "g";
	c.op_case = FSPB__COMMAND__OP_LINK;
	c.link = &ln;
	add(s, &c);
	Fspb__Symlink sl = FSPB__SYMLINK__INIT;
	sl.parent = D1;
	sl.name = "l";
	sl.ino = F2;
	sl.target = "f";
	c.op_case = FSPB__COMMAND__OP_SYMLINK;
	c.symlink = &sl;
	add(s, &c);
	mknod_(s, D1, "p", F3, S_IFIFO | 0600);
	Fspb__SetAttr sa = FSPB__SET_ATTR__INIT;
	sa.ino = F1;
	sa.valid = SM_SET_UID | SM_SET_GID | SM_SET_MODE;
	sa.uid = 7;
	sa.gid = 8;
	sa.mode = 04755;
	c.op_case = FSPB__COMMAND__OP_SETATTR;
	c.setattr = &sa;
	add(s, &c);
	Fspb__SetAttr sb = FSPB__SET_ATTR__INIT;
	sb.ino = F1;
	sb.valid = SM_SET_SIZE | SM_SET_MTIME | SM_SET_ATIME;
	sb.size = 7;
	sb.mtime_ns = 123456789;
	sb.atime_ns = 987654321;
	c.setattr = &sb;
	add(s, &c);
	Fspb__Fallocate fa = FSPB__FALLOCATE__INIT;
	fa.ino = F1;
	fa.mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
	fa.offset = 0;
	fa.length = 2;
	c.op_case = FSPB__COMMAND__OP_FALLOCATE;
	c.fallocate = &fa;
	add(s, &c);
	mknod_(s, D2, "h", F4, S_IFREG | 0600);
	rename_(s, D2, "h", D1, "l", 0);	       // over a symlink: F2 an orphan
	rename_(s, D1, "p", D2, "g", RENAME_EXCHANGE); // a FIFO and a file swap places
	mkdir_(s, SM_ROOT_ID, "e", D3, 0700);
	rename_(s, SM_ROOT_ID, "a", SM_ROOT_ID, "e", 0); // a directory onto an empty one
	rename_(s, SM_ROOT_ID, "b", D1, "bb", 0);	 // a directory to another parent
	Fspb__RemoveXattr rx = FSPB__REMOVE_XATTR__INIT;
	rx.ino = F1;
	rx.name = "user.x";
	c.op_case = FSPB__COMMAND__OP_REMOVEXATTR;
	c.removexattr = &rx;
	add(s, &c);
	unlink_(s, D1, "p", 0);
	unlink_(s, D1, "f", 0); // F1 an orphan
	write_(s, F1, 100, "orphan data", 0);
	release_(s, F2);
	release_(s, F1);
	unlink_(s, D2, "g", 0);
	unlink_(s, D1, "bb", 1);
}

static void setattr_(struct scenario *s, uint64_t ino, uint32_t valid, uint32_t uid, uint32_t gid,
		     uint32_t mode)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__SetAttr a = FSPB__SET_ATTR__INIT;
	a.ino = ino;
	a.valid = valid;
	a.uid = uid;
	a.gid = gid;
	a.mode = mode;
	c.op_case = FSPB__COMMAND__OP_SETATTR;
	c.setattr = &a;
	add(s, &c);
}

// Creates and SetAttrs by the node's own ids, where apply skips a chown or
// chmod to what an object already has (apply.c, set_owner_mode), and the
// ones it must still make: a mode the umask masked, set-id bits, a chown
// to the same owner that clears set-uid or removes a capability.
static void build_own_ids(struct scenario *s)
{
	uint32_t u = geteuid(), g = getegid();
	s->n = 0;
	s->own_ids = true;
	mkdir_(s, SM_ROOT_ID, "a", D1, 0755);
	mkdir_(s, SM_ROOT_ID, "b", D2, 02777);
	mknod_(s, D1, "f", F1, S_IFREG | 0644);
	mknod_(s, D2, "g", F2, S_IFREG | 04755);
	setattr_(s, F1, SM_SET_UID | SM_SET_GID, u, g, 0);
	setattr_(s, F1, SM_SET_MODE, 0, 0, 0644);
	setattr_(s, F2, SM_SET_UID, u, 0, 0); // clears set-uid
	setattr_(s, D1, SM_SET_UID | SM_SET_GID | SM_SET_MODE, u, g, 0700);
	if (u == 0) { // security.capability needs CAP_SETFCAP
		// struct vfs_cap_data, revision 2: CAP_NET_BIND_SERVICE permitted.
		static uint8_t cap[20] = {0x00, 0x00, 0x00, 0x02, 0x00, 0x04};
		Fspb__Command c = FSPB__COMMAND__INIT;
		Fspb__SetXattr sx = FSPB__SET_XATTR__INIT;
		sx.ino = F1;
		sx.name = "security.capability";
		sx.value.data = cap;
		sx.value.len = sizeof(cap);
		c.op_case = FSPB__COMMAND__OP_SETXATTR;
		c.setxattr = &sx;
		add(s, &c);
		setattr_(s, F1, SM_SET_UID | SM_SET_GID, u, g, 0); // removes it
	}
	setattr_(s, F1, SM_SET_UID | SM_SET_GID | SM_SET_MODE, 1000, 100, 0640);
}

static void free_scenario(struct scenario *s)
{
	for (int i = 0; i < s->n; i++)
		free(s->cmd[i]);
	s->n = 0;
}

static void print_diff(void *arg, const char *msg)
{
	fprintf(stderr, "  diff (%s): %s\n", (const char *)arg, msg);
}

// Applies commands [0, n) of s to a fresh state machine in dir, left open in
// *slot (where teardown finds it if an assertion fails).
static struct sm *replay_prefix(const struct scenario *s, const char *dir, int n, int *results,
				struct sm **slot)
{
	int res;
	assert_int_equal(sm_open(dir, 1, slot), 0);
	for (int j = 0; j < n; j++) {
		assert_int_equal(
		    sm_apply(*slot, (uint64_t)j + 1, 0, 0, 0, s->cmd[j], s->len[j], &res), 0);
		if (results)
			results[j] = res;
	}
	return *slot;
}

// Everything a run creates, removed by teardown also when an assertion fails.
struct fx {
	struct scenario s;
	char *ref[MAX_CMDS];
	char *dir;
	struct sm *sm;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	sm_close(f->sm);
	tl_rmtree(f->dir);
	for (int i = 0; i < MAX_CMDS; i++)
		tl_rmtree(f->ref[i]);
	free_scenario(&f->s);
	free(f);
	return 0;
}

static void crash_after_every_step(struct fx *f, void (*builder)(struct scenario *s))
{
	struct scenario *sp = &f->s;
	builder(sp);
	struct scenario s = *sp;
	// ref[i]: the state after commands 0..i, applied without a crash. A stop
	// inside command i is compared right after its redo, so a redo that
	// diverges cannot be masked by later commands.
	char **ref = f->ref;
	int want[MAX_CMDS];
	for (int i = 0; i < s.n; i++) {
		ref[i] = tl_mkdtemp();
		sm_close(replay_prefix(&s, ref[i], i + 1, want, &f->sm));
		f->sm = NULL;
	}
	for (int i = 0; i < s.n; i++)
		assert_int_equal(want[i], 0); // the scenario is meant to succeed throughout

	int crashes = 0;
	for (int i = 0; i < s.n; i++) {
		for (int k = 1;; k++) {
			char *dir = f->dir = tl_mkdtemp();
			int res;
			struct sm *sm = replay_prefix(&s, dir, i, NULL, &f->sm);
			sm_test_crash_at(sm, k);
			int rc = sm_apply(sm, (uint64_t)i + 1, 0, 0, 0, s.cmd[i], s.len[i], &res);
			sm_close(sm);
			f->sm = NULL;
			if (rc == 0) { // fewer than k steps: every stop point of i visited
				tl_rmtree(dir);
				f->dir = NULL;
				break;
			}
			assert_int_equal(rc, -ECANCELED);
			crashes++;
			// Restart: command i is delivered again and redone.
			assert_int_equal(sm_open(dir, 1, &f->sm), 0);
			sm = f->sm;
			assert_int_equal(sm_applied_index(sm), i);
			assert_int_equal(
			    sm_apply(sm, (uint64_t)i + 1, 0, 0, 0, s.cmd[i], s.len[i], &res), 0);
			assert_int_equal(res, want[i]);
			sm_close(sm);
			f->sm = NULL;
			char where[64];
			snprintf(where, sizeof(where), "stop at step %d of command %d", k, i);
			assert_int_equal(
			    tree_compare(ref[i], dir, TREE_CMP_DATA, print_diff, where), 0);
			tl_rmtree(dir);
		}
	}
	fprintf(stderr, "  %d commands, stopped at %d intermediate states, all converged\n", s.n,
		crashes);
	assert_true(crashes > 3 * s.n);
}

static void test_crash_after_every_step(void **state)
{
	crash_after_every_step(*state, build);
}

static void test_own_ids_crash_after_every_step(void **state)
{
	crash_after_every_step(*state, build_own_ids);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_crash_after_every_step, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_own_ids_crash_after_every_step, setup,
					    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
